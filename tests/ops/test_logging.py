"""Structured logs: JSON lines that name the order and run, and never a secret.

From the redaction rules, through the SDK's workflow and activity loggers in-process, to a full
order through real processes (API, worker, simulator) whose every log line is read back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import sys
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from devstack.mailsink import free_port
from devstack.stack import SimulatorOptions, Stack, StackConfig
from runtime.logs import (
    REDACTED,
    TOKEN_PATH_PREFIXES,
    JsonFormatter,
    RedactingFilter,
    build_handler,
    mask_token_path,
    redact,
    register_secret,
)
from runtime.settings import Settings
from tests.helpers.api import Api, order_json
from tests.helpers.polling import apoll, poll
from tests.ops.conftest import TcpProxy, facility, log_lines

KEY = "pf_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"
WEBHOOK_SECRET = "whsec_" + "z" * 40
TOKEN = "Tk9_" + "q" * 40


# ------------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"key {KEY} refused", KEY),
        (f"signing with {WEBHOOK_SECRET}", WEBHOOK_SECRET),
        (f'"GET /p/{TOKEN} HTTP/1.1" 200', TOKEN),
        (f"POST http://api/v1/personalization/{TOKEN}", TOKEN),
        ("Authorization: Bearer dev-token-oslo", "dev-token-oslo"),
        ("headers={'x-admin-token': 'hunter2hunter2'}", "hunter2hunter2"),
        ("token pfagt_" + "Zz9" * 15 + " refused", "pfagt_" + "Zz9" * 15),
        ("headers={'x-agent-token': 'letmeinletmein'}", "letmeinletmein"),
        ("postgresql://printflow:pa55word@db:5432/printflow", "pa55word"),
    ],
)
def test_what_looks_like_our_secrets_is_masked(line: str, secret: str) -> None:
    masked = redact(line)
    assert secret not in masked
    assert REDACTED in masked


def test_configured_secrets_are_masked_and_ordinary_ids_are_not() -> None:
    admin_token = "adm-" + secrets.token_hex(8)
    register_secret(admin_token)
    line = f"admin {admin_token} created mer_1234abcd for ord_5678 job_9a"
    assert redact(line) == f"admin {REDACTED} created mer_1234abcd for ord_5678 job_9a"
    register_secret("abc")  # too short to mask safely: ignored, not every "abc" in every line
    assert redact("abc def") == "abc def"


def _record(msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "printflow.test", "msg": msg, "args": args})
    record.levelno, record.levelname = logging.INFO, "INFO"
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_json_line_carries_the_order_and_run_and_no_secret() -> None:
    try:
        raise RuntimeError(f"facility answered 500 to key {KEY}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = _record(
        "order %s: submitted with %s",
        "ord_1",
        KEY,
        temporal_activity={
            "activity_id": "5",
            "activity_type": "submit_print_job",
            "attempt": 2,
            "namespace": "default",
            "task_queue": "printflow",
            "workflow_id": "ord_1",
            "workflow_run_id": "run-1",
            "workflow_type": "OrderWorkflow",
        },
        route=f"/p/{TOKEN}",
    )
    record.exc_info = exc_info
    assert RedactingFilter().filter(record)
    line = JsonFormatter().format(record)

    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == f"order ord_1: submitted with pf_{REDACTED}"
    assert (doc["order_id"], doc["run_id"], doc["activity"], doc["attempt"]) == (
        "ord_1",
        "run-1",
        "submit_print_job",
        2,
    )
    assert doc["route"] == f"/p/{REDACTED}"
    assert "RuntimeError" in doc["exception"]
    assert KEY not in line and TOKEN not in line
    assert "temporal_activity" not in doc, "flattened into fields"


def test_text_lines_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    handler = build_handler("text")
    logger = logging.getLogger("printflow.test.text")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("webhook signed with %s", WEBHOOK_SECRET)
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert f"webhook signed with whsec_{REDACTED}" in err
    assert WEBHOOK_SECRET not in err


def _route_templates(routes: list[Any], prefix: str = "") -> list[str]:
    """Every route's path template, through included routers (FastAPI keeps those apart)."""
    templates = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            templates += _route_templates(included.routes, prefix + route.include_context.prefix)
        elif isinstance(getattr(route, "path", None), str):
            templates.append(prefix + route.path)
    return templates


def test_every_route_with_a_token_in_its_path_is_masked_by_the_one_rule() -> None:
    """A route whose path carries a ``{token}`` is listed in ``TOKEN_PATH_PREFIXES``, so every
    log line masks it, today's routes and any added later."""
    templates = _route_templates(create_app(Settings()).routes)
    bearing = [t for t in templates if "{token}" in t]
    assert bearing, templates
    for template in bearing:
        assert template.startswith(TOKEN_PATH_PREFIXES), template
        assert template.index("{token}") == len(template.split("{token}")[0])
        shown = template.replace("{token}", TOKEN)
        assert TOKEN not in redact(f"GET {shown} 200"), template
        assert TOKEN not in mask_token_path(shown), template
    for prefix in TOKEN_PATH_PREFIXES:
        short = f"GET {prefix}abc/ 404"  # a mistyped token, a trailing slash: masked all the same
        assert redact(short) == f"GET {prefix}{REDACTED}/ 404"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_no_token_of_a_customer_page_reaches_a_log_line(
    dev_env: WorkflowEnvironment,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The access log's lines for unmatched paths (a 404, a redirect for a trailing slash) and
    the 503 handler's line when the database is away, for ``/c/``, ``/p/`` and
    ``/v1/personalization/``: what the loggers are given (caplog) and what the process writes
    (its redacting handler on stderr) hold no token."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = create_app(Settings(database_url=through_proxy), temporal=dev_env.client)
    handler = build_handler("text")
    loggers = [logging.getLogger(n) for n in ("printflow.access", "printflow.api")]
    for logger in loggers:
        logger.addHandler(handler)
    caplog.set_level(logging.INFO)
    tokens = {prefix: secrets.token_urlsafe(32) for prefix in TOKEN_PATH_PREFIXES}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api"
            ) as http,
        ):
            for prefix, token in tokens.items():
                await http.get(f"{prefix}{token}/")
                await http.get(f"{prefix}{token}/no/such/page")
            await proxy.cut()
            down = []
            for prefix, token in tokens.items():
                down.append((await http.get(f"{prefix}{token}")).status_code)
            assert 503 in down, down
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        await proxy.cut()
    written = capsys.readouterr().err
    # The API's own lines (the test's HTTP client logs its requests too).
    given = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("printflow"))
    assert "dependency unavailable" in given and " 404 " in given, given
    assert f"/c/{REDACTED}" in given, given
    for prefix, token in tokens.items():
        assert token not in given, f"{prefix} token handed to a logger:\n{given}"
        assert token not in written, f"{prefix} token written:\n{written}"


# ------------------------------------------------------------------------------- in-process


async def test_workflow_and_activity_lines_name_their_order_and_run(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    key = api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json(country="IS"), headers=key)
    order_id = created.json()["id"]

    async def in_production() -> bool:
        order = (await api.client.get(f"/v1/orders/{order_id}", headers=key)).json()
        return bool(order["status"] == "in_production")

    await apoll("the order to reach production", in_production)
    run_id = (await api.temporal.get_workflow_handle(order_id).describe()).run_id

    formatter = JsonFormatter()
    ours = [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name in ("temporalio.workflow", "temporalio.activity")
        and order_id
        in r.getMessage()
        + json.dumps(getattr(r, "temporal_workflow", {}))
        + json.dumps(getattr(r, "temporal_activity", {}))
    ]
    workflow_lines = [d for d in ours if d["logger"] == "temporalio.workflow"]
    activity_lines = [d for d in ours if d["logger"] == "temporalio.activity"]
    assert any("created" in d["message"] for d in workflow_lines)
    assert any("in_production" in d["message"] for d in workflow_lines)
    assert any(d.get("activity") == "submit_print_job" for d in activity_lines)
    for doc in ours:
        assert (doc["order_id"], doc["run_id"]) == (order_id, run_id), doc


# ------------------------------------------------------------------------------- real processes


class _WebhookReceiver:
    """A merchant's webhook endpoint on a thread: answers 200 and keeps what it got."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[dict[str, str]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_WebhookReceiver]:
    receiver = _WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


LINK = re.compile(r"https?://[^\s\"'<>]+/p/([A-Za-z0-9_-]+)")
SMTP_PASSWORD = "smtp-" + secrets.token_urlsafe(16)
FACILITY_TOKEN = "tok-" + secrets.token_urlsafe(16)


def _text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


@pytest.mark.e2e
def test_a_full_order_through_real_processes_logs_json_and_no_secret(
    tmp_path: Path, receiver: _WebhookReceiver
) -> None:
    facilities = tmp_path / "facilities.json"
    worker_metrics = free_port("127.0.0.1")
    config = StackConfig.ephemeral(
        tmp_path / "stack",
        facilities_file=facilities,
        simulator=SimulatorOptions(printed_after=0.5, shipped_after=0.5, delivered_after=0.5),
        env={
            "PRINTFLOW_LOG_FORMAT": "json",
            "PRINTFLOW_SMTP_USERNAME": "printflow",
            "PRINTFLOW_SMTP_PASSWORD": SMTP_PASSWORD,
            "PRINTFLOW_PERSONALIZATION_EMAIL_DELAY": "1",
            "PRINTFLOW_WORKER_METRICS_PORT": str(worker_metrics),
        },
    )
    stack = Stack(config)
    facilities.write_text(json.dumps([facility(stack.simulator_url, token=FACILITY_TOKEN)]))

    with stack, httpx.Client(timeout=10) as http:
        merchant = stack.create_merchant(
            "Secret Mugs", "help@secret-mugs.example.com", webhook_url=receiver.url
        )
        key = {"X-API-Key": merchant["api_key"]}
        body = order_json(
            items=[
                {
                    "item_reference_id": "mug",
                    "product_uid": "mug_11oz",
                    "quantity": 1,
                    "files": [{"type": "default", "url": "https://files.example/mug.png"}],
                    "personalization": {
                        "fields": [{"name": "name", "label": "Name", "type": "text"}]
                    },
                }
            ]
        )
        created = http.post(f"{stack.api_url}/v1/orders", json=body, headers=key)
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        assert created.json()["status"] == "pending_personalization"

        # The customer's journey, with the token in URLs the API logs requests for.
        mail = asyncio.run(stack.mail.wait_for(lambda m: LINK.search(_text(m)) is not None, 30))
        token = LINK.findall(_text(mail))[0]
        assert http.get(f"{stack.api_url}/p/{token}").status_code == 200
        done = http.post(
            f"{stack.api_url}/v1/personalization/{token}",
            json={"items": {"mug": {"name": "Ada"}}},
        )
        assert done.status_code == 200, done.text

        # Callers' mistakes put secrets where a careless access log would print them.
        wrong_key = "pf_" + secrets.token_urlsafe(32)
        assert (
            http.get(f"{stack.api_url}/v1/orders", headers={"X-API-Key": wrong_key}).status_code
            == 401
        )
        assert http.get(f"{stack.api_url}/debug/{wrong_key}").status_code == 404

        def delivered() -> bool:
            order = http.get(f"{stack.api_url}/v1/orders/{order_id}", headers=key).json()
            return bool(order["status"] == "delivered")

        poll("the order to be delivered", delivered, timeout=90)
        poll("a webhook delivery", lambda: receiver.received, timeout=30)

        # "delivered" is visible as soon as it is projected; the run completes a moment later.
        completed = re.compile(
            r'^temporal_workflow_completed\{[^}]*workflow_type="OrderWorkflow"', re.M
        )

        def worker_metrics_after_completion() -> str:
            text = http.get(f"http://127.0.0.1:{worker_metrics}/metrics").text
            return text if completed.search(text) else ""

        worker_scrape = poll("the run's completion metric", worker_metrics_after_completion, 30)
        api_scrape = http.get(
            f"{stack.api_url}/metrics",
            headers={"Authorization": f"Bearer {stack.metrics_token}"},
        ).text
        run_id = asyncio.run(_run_id(stack.temporal_address, order_id))

    # The worker's Prometheus endpoint serves the SDK's metrics about this very work.
    assert re.search(
        r'^temporal_activity_execution_latency_count\{[^}]*activity_type="submit_print_job"',
        worker_scrape,
        re.M,
    )
    assert re.search(
        r'^temporal_workflow_completed\{[^}]*workflow_type="OrderWorkflow"', worker_scrape, re.M
    )
    assert (
        'printflow_http_requests_total{method="POST",route="/v1/orders",status="201"} 1.0'
        in api_scrape
    )

    secrets_used = {
        "merchant API key": merchant["api_key"],
        "webhook secret": merchant["webhook_secret"],
        "admin token": stack.admin_token,
        "SMTP password": SMTP_PASSWORD,
        "personalization token": token,
        "facility API token": FACILITY_TOKEN,
        "rejected API key": wrong_key,
    }
    for name in ("api", "worker", "simulator"):
        text = stack.log_path(name).read_text()
        for what, value in secrets_used.items():
            assert value not in text, f"the {what} appears in {name}.log"

    documents = {}
    for name in ("api", "worker"):
        lines = list(log_lines(stack.log_path(name)))
        assert lines, f"{name} logged nothing"
        documents[name] = [json.loads(line) for line in lines]  # one JSON object a line

    order_work = [
        d
        for d in documents["worker"]
        if d["logger"] in ("temporalio.workflow", "temporalio.activity")
        and d.get("workflow_type") == "OrderWorkflow"
    ]
    assert {"created", "delivered"} <= {
        m.split(": ")[1].split(" ")[0] for m in (d["message"] for d in order_work) if ": " in m
    }
    assert any(d.get("activity") == "submit_print_job" for d in order_work)
    for doc in order_work:
        assert (doc["order_id"], doc["run_id"]) == (order_id, run_id), doc
    assert any(
        d["logger"] == "printflow.access" and d.get("route") == "/v1/personalization/{token}"
        for d in documents["api"]
    )
    # Each access line names the X-Request-Id its answer carried.
    access = [d for d in documents["api"] if d["logger"] == "printflow.access"]
    assert access and all(re.fullmatch(r"req_[\w-]{24}", d.get("request_id") or "") for d in access)


async def _run_id(address: str, order_id: str) -> str:
    client = await Client.connect(address)
    return (await client.get_workflow_handle(order_id).describe()).run_id
