"""The whole API, fuzzed from its own OpenAPI description (schemathesis, a fixed seed and a
bounded number of cases per operation): no answer is a 5xx, and every error is the envelope of
docs/api.md, "Errors": ``{"error": {"code", "message", "details"}}``.

The API runs as a real server (uvicorn on 127.0.0.1) with its workers, the Temporal dev server,
an SQLite database and a mail sink (``tests/helpers/api.py``), in a thread of its own; the
generated requests carry a merchant's API key, the admin token, an agent's token and a
facility's token, so they get past authentication to the code behind it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, seed, settings
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from runtime.settings import Settings
from tests.helpers.api import ADMIN_TOKEN, TEST_FACILITIES, running_api

CASES_PER_OPERATION = 25


@dataclass
class Target:
    url: str
    openapi: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _serve(
    address: str, tmp_path: Path, ready: threading.Event, stop: threading.Event, out: list[Any]
) -> None:
    async def main() -> None:
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        database_url = f"sqlite:///{tmp_path / 'printflow.db'}"
        async with running_api(client, database_url, tmp_path, update_timeout=2) as api:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            config = uvicorn.Config(api.app, log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:  # noqa: ASYNC110 - uvicorn has no "started" event
                await asyncio.sleep(0.01)
            out.append((f"http://127.0.0.1:{sock.getsockname()[1]}", api.app.openapi()))
            ready.set()
            while not stop.is_set():  # noqa: ASYNC110 - the test's thread sets it
                await asyncio.sleep(0.1)
            server.should_exit = True
            await task

    try:
        asyncio.run(main())
    except BaseException as err:  # reported to the test's thread
        out.append(err)
        ready.set()


@pytest.fixture(scope="module")
def target(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    ready, stop, out = threading.Event(), threading.Event(), []  # type: list[Any]
    address = dev_env.client.service_client.config.target_host
    thread = threading.Thread(
        target=_serve, args=(address, tmp_path_factory.mktemp("fuzz"), ready, stop, out)
    )
    thread.start()
    try:
        assert ready.wait(60), "the API did not start"
        if isinstance(out[0], BaseException):
            raise out[0]
        url, openapi = out[0]
        admin = {"X-Admin-Token": ADMIN_TOKEN}
        with httpx.Client(base_url=url, timeout=30) as http:
            merchant = http.post(
                "/v1/admin/merchants",
                json={"name": "Fuzz Shop", "support_email": "help@fuzz.example"},
                headers=admin,
            )
            assert merchant.status_code == 201, merchant.text
            agent = http.post(
                "/v1/admin/agents",
                json={"name": "Fuzz Agent", "email": "agent@fuzz.example"},
                headers=admin,
            )
            assert agent.status_code == 201, agent.text
        yield Target(
            url=url,
            openapi=openapi,
            headers={
                **admin,
                "X-API-Key": merchant.json()["api_key"],
                "X-Agent-Token": agent.json()["token"],
                "Authorization": f"Bearer {TEST_FACILITIES[0]['api_token']}",
            },
        )
    finally:
        stop.set()
        thread.join(60)


def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx is ``{"error": {"code": str, "message": str, "details": ...}}``."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the envelope: {body!r}"
    error = body["error"]
    assert isinstance(error, dict), f"not the envelope: {body!r}"
    assert isinstance(error.get("code"), str) and error["code"], f"no code: {body!r}"
    assert isinstance(error.get("message"), str), f"no message: {body!r}"
    return None


# The description as the app builds it (the running server serves the same one).
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@schema.parametrize()
@seed(20261128)
@settings(
    max_examples=CASES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_every_error_in_the_envelope(case: schemathesis.Case, target: Target) -> None:
    response = case.call(base_url=target.url, headers=target.headers, timeout=30)
    case.validate_response(
        response, checks=[schemathesis.checks.not_a_server_error, error_envelope]
    )


def _nested(depth: int) -> str:
    """JSON text nested ``depth`` levels (objects and arrays alternating), written out by hand:
    generated cases stay shallow, and Python's encoder gives up at about 1000 levels."""
    opening = "".join('{"k":' if level % 2 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return f'{opening}"x"{closing}'


@pytest.mark.parametrize("depth", [9, 200, 1000, 20000])
def test_deep_nesting_is_a_422_in_the_envelope_never_a_5xx(target: Target, depth: int) -> None:
    """Deep JSON as an order's metadata (checked to 8 levels), in a field that wants text, and
    as a whole body, on every operation that takes a JSON body."""
    order = {
        "order_reference_id": f"DEEP-{depth}",
        "shipping_address": {
            "first_name": "Kari",
            "last_name": "Nordmann",
            "address_line_1": "Karl Johans gate 1",
            "city": "Oslo",
            "post_code": "0154",
            "country": "NO",
            "email": "kari@example.com",
        },
        "items": [{"item_reference_id": "i", "product_uid": "poster_a3_matte", "quantity": 1}],
        "metadata": "DEEP",
    }
    bodies = [("POST", "/v1/orders", json.dumps(order).replace('"DEEP"', _nested(depth)))]
    bodies.append(("POST", "/v1/orders", _nested(depth)))
    for path, operations in target.openapi["paths"].items():
        for method, operation in operations.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                url = path.replace("{", "x").replace("}", "")
                bodies.append((method.upper(), url, _nested(depth)))
    answers = []
    with httpx.Client(base_url=target.url, timeout=30) as http:
        for method, url, body in bodies:
            response = http.request(
                method,
                url,
                content=body.encode(),
                headers={**target.headers, "Content-Type": "application/json"},
            )
            assert response.status_code < 500, (method, url, depth, response.text[:300])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert isinstance(error["code"], str) and error["code"], (method, url, error)
            answers.append(response)
    deep_metadata = answers[0]
    assert deep_metadata.status_code == 422, deep_metadata.text[:300]
    # Past what the body reader takes, the body as a whole is refused; short of it, metadata.
    field = deep_metadata.json()["error"]["details"][0]["field"]
    assert field == ("metadata" if depth < 900 else ""), deep_metadata.text[:300]
