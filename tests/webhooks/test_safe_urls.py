"""Webhooks go only to public https addresses: checked when the URL is set, and again after DNS
at every delivery, which then connects to the address it checked; redirects are not followed and
nothing of the receiver's answer is stored.

The set-time checks run against the API with a real database; the delivery checks run the
delivery activity against a real database and real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.webhooks.delivery import WebhookActivities
from api.main import create_app
from contracts.webhooks import DeliverWebhook
from db.engine import session_factory
from db.models import WebhookDelivery, WebhookEvent
from devstack.processes import TLS
from domain.webhook_urls import address_refusal, addresses_problem, url_problem
from runtime.settings import Settings
from tests.helpers.api import ADMIN_TOKEN
from tests.helpers.webhook_delivery import add_merchant

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "224.0.0.1": "multicast",
    "0.0.0.0": "unspecified",
    "100.64.0.1": "reserved",
    "::1": "loopback",
    "::": "unspecified",
    "fd00::1": "private",
    "fe80::1": "link-local",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "link-local",
    "::ffff:10.0.0.1": "private",
    # IPv6 spellings of IPv4 addresses, judged by the IPv4 address they reach.
    "64:ff9b::a9fe:a9fe": "link-local",  # NAT64 to 169.254.169.254
    "64:ff9b::7f00:1": "loopback",
    "64:ff9b::a00:1": "private",
    "::a9fe:a9fe": "link-local",  # IPv4-compatible
    "::10.0.0.1": "private",
    "::8.8.8.8": "reserved",  # deprecated: refused even to a public address
    "2002:a9fe:a9fe::1": "link-local",  # 6to4
    "2002:c0a8:101::1": "private",
    # Refused whatever they hold.
    "64:ff9b:1::808:808": "reserved",  # NAT64 for local use
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "reserved",  # Teredo
    "fec0::1": "private",  # site-local
    "feff:ffff::1": "private",
}


@pytest.mark.parametrize(("address", "kind"), REFUSED.items())
def test_each_kind_of_non_public_address_is_named(address: str, kind: str) -> None:
    assert address_refusal(address) == kind


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(address) is None
    host = f"[{address}]" if ":" in address else address
    assert url_problem(f"https://{host}/hooks", allow_private=False) is None


def test_a_name_resolving_to_nat64_metadata_is_refused_after_dns() -> None:
    problem = addresses_problem(
        "hooks.example.com", ["2606:4700::1111", "64:ff9b::a9fe:a9fe"], allow_private=False
    )
    assert problem == (
        "must be a public address; hooks.example.com resolves to 64:ff9b::a9fe:a9fe, "
        "which is link-local"
    )


@asynccontextmanager
async def _admin_api(database_url: str, temporal: Any, **settings: Any) -> AsyncIterator[Any]:
    app = create_app(
        Settings(database_url=database_url, admin_token=ADMIN_TOKEN, **settings),
        temporal=temporal,
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):

        async def create(url: str) -> httpx.Response:
            return await http.post(
                "/v1/admin/merchants",
                json={"name": "Hook Shop", "support_email": "a@b.example", "webhook_url": url},
                headers={"X-Admin-Token": ADMIN_TOKEN},
            )

        yield create


def _url(address: str) -> str:
    return f"https://[{address}]/hooks" if ":" in address else f"https://{address}/hooks"


async def test_non_public_webhook_urls_are_refused_when_set(
    dev_env: WorkflowEnvironment, database_url: str
) -> None:
    async with _admin_api(database_url, dev_env.client) as create:
        refused = [_url(a) for a in REFUSED] + [
            "https://localhost:8443/hooks",  # a name, resolving to 127.0.0.1
            "https://shop.localhost/hooks",
            "https://printer.local/hooks",
            "https://metadata.google.internal/computeMetadata/v1/",
            "http://hooks.example.com/hooks",  # not https
            "ftp://hooks.example.com/hooks",
        ]
        for url in refused:
            response = await create(url)
            assert response.status_code == 422, (url, response.text)
            error = response.json()["error"]
            assert error["code"] == "validation_error", error
            assert "webhook_url" in str(error["details"]), (url, error)
        allowed = await create("https://hooks.example.com/printflow")
        assert allowed.status_code == 201, allowed.text


async def test_webhook_allow_private_takes_http_and_local_addresses(
    dev_env: WorkflowEnvironment, database_url: str
) -> None:
    async with _admin_api(database_url, dev_env.client, webhook_allow_private=True) as create:
        for url in ("http://127.0.0.1:9999/hooks", "https://localhost/hooks", _url("10.0.0.1")):
            assert (await create(url)).status_code == 201, url


# -- at delivery -------------------------------------------------------------------------------

SECRET_BODY = "receiver-private-detail-7f3a"


@asynccontextmanager
async def _server() -> AsyncIterator[tuple[int, list[str]]]:
    """A receiver on 127.0.0.1: ``/redirect`` answers 307 to ``/target``, ``/fail`` a 500 with
    a body that must never be stored, ``/target`` 200. Yields the port and the paths hit."""
    hits: list[str] = []

    async def handle(request: Request) -> Response:
        hits.append(request.url.path)
        if request.url.path == "/redirect":
            return Response(status_code=307, headers={"Location": "/target"})
        if request.url.path == "/fail":
            return Response(SECRET_BODY, status_code=500)
        return Response("ok")

    app = Starlette(
        routes=[Route(p, handle, methods=["POST"]) for p in ("/redirect", "/fail", "/target")]
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):  # uvicorn has no "started" event; it starts in milliseconds
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1], hits
    finally:
        server.should_exit = True
        await task


async def _deliver_once(
    engine: AsyncEngine, url: str, *, allow_private: bool
) -> tuple[WebhookDelivery, ApplicationError | None]:
    merchant_id = await add_merchant(engine, url)
    event_id = "evt_" + uuid.uuid4().hex
    async with session_factory(engine)() as session:
        session.add(
            WebhookEvent(
                id=event_id,
                merchant_id=merchant_id,
                type="order.status_updated",
                payload={"id": event_id},
                created_at=datetime.now(UTC),
            )
        )
        await session.commit()
    failure: ApplicationError | None = None
    async with httpx.AsyncClient(verify=TLS) as http:
        activities = WebhookActivities(engine, http, timeout=5, allow_private=allow_private)
        try:
            await activities.deliver_webhook(DeliverWebhook(event_id=event_id))
        except ApplicationError as err:
            failure = err
    async with session_factory(engine)() as session:
        row = (
            await session.exec(select(WebhookDelivery).where(WebhookDelivery.event_id == event_id))
        ).one()
    return row, failure


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(engine: AsyncEngine) -> None:
    async with _server() as (port, hits):
        # Stored directly, as a name that resolved elsewhere when it was set would be.
        row, failure = await _deliver_once(
            engine, f"https://localhost:{port}/target", allow_private=False
        )
        assert failure is not None
        assert (row.succeeded, row.status_code, row.error) == (False, None, "refused_address")
        assert hits == [], "nothing may reach a loopback address"

        # The same receiver over a private name is reached when private addresses are allowed.
        row, failure = await _deliver_once(
            engine, f"http://localhost:{port}/target", allow_private=True
        )
        assert failure is None and row.succeeded and row.status_code == 200
        assert hits == ["/target"]


async def test_redirects_are_not_followed(engine: AsyncEngine) -> None:
    async with _server() as (port, hits):
        row, failure = await _deliver_once(
            engine, f"http://127.0.0.1:{port}/redirect", allow_private=True
        )
    assert failure is not None
    assert (row.succeeded, row.status_code) == (False, 307)
    assert hits == ["/redirect"], "the redirect's target must not be called"


async def test_nothing_of_the_receivers_answer_is_stored(engine: AsyncEngine) -> None:
    async with _server() as (port, hits):
        row, failure = await _deliver_once(
            engine, f"http://127.0.0.1:{port}/fail", allow_private=True
        )
    assert hits == ["/fail"] and failure is not None
    assert (row.succeeded, row.status_code, row.error) == (False, 500, "HTTP 500")
    assert SECRET_BODY not in str(failure)


async def test_a_closed_port_is_recorded_as_a_kind_of_error(engine: AsyncEngine) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    row, failure = await _deliver_once(engine, f"http://127.0.0.1:{port}/x", allow_private=True)
    assert failure is not None
    assert (row.status_code, row.error) == (None, "connect_error")
