"""``/healthz`` and ``/readyz`` against real dependencies that go away and come back.

The API reaches PostgreSQL and the Temporal dev server through ``TcpProxy``; cutting the proxy is
a network partition as the API sees it (pooled connections die, new ones are refused).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.alerts import ConfigurationAlerts
from api.main import create_app
from db.engine import create_engine
from runtime.settings import Settings
from tests.conftest import suite_converter
from tests.helpers.polling import apoll
from tests.ops.conftest import TcpProxy


@asynccontextmanager
async def _api(database_url: str, temporal: Client) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=database_url), temporal=temporal)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):
        yield http


async def _proxy_to(address: str) -> TcpProxy:
    host, _, port = address.rpartition(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    return proxy


async def _ready(http: httpx.AsyncClient) -> dict[str, Any] | None:
    response = await http.get("/readyz")
    return dict(response.json()) if response.status_code == 200 else None


async def _not_ready(http: httpx.AsyncClient) -> dict[str, Any] | None:
    response = await http.get("/readyz")
    return dict(response.json()) if response.status_code == 503 else None


async def test_readyz_follows_temporal_away_and_back(
    dev_env: WorkflowEnvironment, database_url: str
) -> None:
    proxy = await _proxy_to(dev_env.client.service_client.config.target_host)
    temporal = await Client.connect(proxy.address, data_converter=suite_converter())
    async with _api(database_url, temporal) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {"database": "ok", "temporal": "ok", "configuration": "ok"},
        }

        await proxy.cut()
        body = await apoll("readyz to report Temporal", lambda: _not_ready(http))
        assert body["error"]["code"] == "not_ready"
        assert body["error"]["message"].startswith("temporal: ")
        assert body["error"]["details"]["database"] == "ok"
        assert body["error"]["details"]["temporal"] != "ok"
        assert (await http.get("/healthz")).json() == {"status": "ok"}, "alive all the same"

        await proxy.restore()
        await apoll("readyz to recover", lambda: _ready(http))
    await proxy.cut()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_readyz_follows_the_database_away_and_back(
    dev_env: WorkflowEnvironment, database_url: str
) -> None:
    url = make_url(database_url)
    proxy = await _proxy_to(f"{url.host}:{url.port or 5432}")
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    async with _api(through_proxy, dev_env.client) as http:
        assert await _ready(http)

        await proxy.cut()
        body = await apoll("readyz to report the database", lambda: _not_ready(http))
        assert body["error"]["message"].startswith("database: unreachable")
        assert body["error"]["details"]["temporal"] == "ok"
        assert (await http.get("/healthz")).status_code == 200

        await proxy.restore()
        await apoll("readyz to recover", lambda: _ready(http))
    await proxy.cut()


async def test_readyz_is_degraded_while_the_worker_reports_our_configuration_refused(
    dev_env: WorkflowEnvironment, database_url: str
) -> None:
    """What a worker's activity recorded (``activities.alerts``) the API reads: still 200, so
    the load balancer keeps serving merchants, but ``degraded``, naming the setting to fix."""
    async with _api(database_url, dev_env.client) as http:
        engine = create_engine(database_url)
        try:
            alerts = ConfigurationAlerts(engine)
            await alerts.refused(
                "facility:oslo",
                "api_token of facility oslo in PRINTFLOW_FACILITIES_FILE",
                "facility oslo refused our api_token (401) to the print job",
            )
            degraded = await http.get("/readyz")
            assert degraded.status_code == 200
            body = degraded.json()
            assert body["status"] == "degraded"
            assert body["checks"]["configuration"] == (
                "facility oslo refused our api_token (401) to the print job: "
                "fix api_token of facility oslo in PRINTFLOW_FACILITIES_FILE"
            )

            await alerts.ok("facility:oslo")  # the next call went through
            assert (await http.get("/readyz")).json()["status"] == "ready"
        finally:
            await engine.dispose()
