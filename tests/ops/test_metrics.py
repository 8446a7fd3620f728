"""The API's ``/metrics``: requests by route template, latencies, and open orders by status;
only with the metrics token, and never a query per scrape.

Against the real stack of tests/helpers/api.py (dev server, in-process worker, SQLite and
PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import event
from temporalio.testing import WorkflowEnvironment

from tests.helpers.api import METRICS_TOKEN, Api, order_json, running_api
from tests.helpers.polling import apoll

SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


async def _samples(api: Api) -> list[Sample]:
    response = await api.client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def _value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


async def test_requests_are_counted_by_route_template_not_by_path(api: Api) -> None:
    merchant = await api.merchant()
    key = api.auth(merchant)
    created = await api.client.post("/v1/orders", json=order_json(), headers=key)
    assert created.status_code == 201
    order_id = created.json()["id"]
    for _ in range(3):
        assert (await api.client.get(f"/v1/orders/{order_id}", headers=key)).status_code == 200
    assert (await api.client.get("/v1/orders/ord_nope", headers=key)).status_code == 404
    assert (await api.client.get("/p/" + "x" * 43)).status_code in (404, 410)
    assert (await api.client.get("/no/such/page")).status_code == 404

    samples = await _samples(api)
    detail = "/v1/orders/{order_id}"
    total = "printflow_http_requests_total"
    assert _value(samples, total, method="GET", route=detail, status="200") == 3
    assert _value(samples, total, method="GET", route=detail, status="404") == 1
    assert _value(samples, total, method="POST", route="/v1/orders", status="201") == 1
    assert _value(samples, total, method="GET", route="/p/{token}") == 1
    assert _value(samples, total, method="GET", route="unmatched", status="404") == 1
    latency = "printflow_http_request_duration_seconds_count"
    assert _value(samples, latency, method="GET", route=detail) == 4
    routes = {s.labels.get("route", "") for s in samples}
    assert not any(order_id in r or "x" * 43 in r for r in routes), "raw paths never become labels"


async def _eventually(api: Api, check: Callable[[list[Sample]], bool]) -> list[Sample]:
    """Scrapes until ``check`` holds: the count is refreshed in the background (0.2 s here)."""

    async def scrape() -> list[Sample] | None:
        samples = await _samples(api)
        return samples if check(samples) else None

    result: list[Sample] = await apoll("the open-orders gauges", scrape)
    return result


async def test_open_orders_are_counted_per_status_from_the_read_model(api: Api) -> None:
    before = await _samples(api)
    assert _value(before, "printflow_open_orders", status="scheduled") == 0

    auto = api.auth(await api.merchant(approval="auto", name="Auto"))
    manual = api.auth(await api.merchant(approval="manual", name="Manual"))
    for _ in range(2):
        created = await api.client.post("/v1/orders", json=order_json(), headers=auto)
        assert created.json()["status"] == "scheduled"
    waiting = await api.client.post("/v1/orders", json=order_json(), headers=manual)
    assert waiting.json()["status"] == "pending_approval"
    canceled = await api.client.post("/v1/orders", json=order_json(), headers=auto)
    response = await api.client.post(f"/v1/orders/{canceled.json()['id']}/cancel", headers=auto)
    assert response.json()["status"] == "canceled"

    samples = await _eventually(
        api,
        lambda s: (
            _value(s, "printflow_open_orders", status="scheduled") == 2
            and _value(s, "printflow_open_orders", status="pending_approval") == 1
        ),
    )
    assert _value(samples, "printflow_open_orders", status="scheduled") == 2
    assert _value(samples, "printflow_open_orders", status="pending_approval") == 1
    assert _value(samples, "printflow_open_orders", status="in_production") == 0
    assert _value(samples, "printflow_open_orders", status="canceled") is None, "closed: not open"
    assert _value(samples, "printflow_open_orders_refresh_failures_total") == 0


async def test_metrics_need_the_token(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
        response = await api.client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
        assert "printflow_" not in response.text


@pytest.fixture
async def untokened(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    async with running_api(dev_env.client, database_url, tmp_path, metrics_token=None) as api:
        yield api


async def test_without_a_metrics_token_set_metrics_are_refused(untokened: Api) -> None:
    response = await untokened.client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "metrics_disabled"


@pytest.fixture
async def slow_refresh(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    async with running_api(
        dev_env.client, database_url, tmp_path, metrics_refresh_interval=timedelta(hours=1)
    ) as api:
        yield api


async def test_a_scrape_never_queries_the_database(slow_refresh: Api) -> None:
    api = slow_refresh
    key = api.auth(await api.merchant())
    assert (await api.client.post("/v1/orders", json=order_json(), headers=key)).status_code == 201
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = api.app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(5):
            samples = await _samples(api)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements == [], statements
    # Counted at start-up (no orders then), not again before the next refresh an hour later.
    assert _value(samples, "printflow_open_orders", status="scheduled") == 0

    # The same listener sees the background count when it runs.
    event.listen(engine, "before_cursor_execute", record)
    try:
        await api.app.state.metrics.refresh_open_orders(api.app.state.engine)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert any("orders" in s and "GROUP BY" in s.upper() for s in statements), statements
    assert _value(await _samples(api), "printflow_open_orders", status="scheduled") == 1


@pytest.fixture
async def small(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    """Bodies up to 2 KiB, three requests at once per key, three failed sign-ins a minute."""
    async with running_api(
        dev_env.client,
        database_url,
        tmp_path,
        max_body_bytes=2048,
        rate_limit="3/s",
        rate_limit_burst=3,
        auth_failure_limit="3/minute",
    ) as api:
        yield api


async def test_refusals_of_the_perimeter_and_replays_are_counted_and_logged(
    small: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = small
    caplog.set_level(logging.INFO, logger="printflow.access")
    key = api.auth(await api.merchant())
    big = order_json(metadata={"notes": "x" * 4096})
    assert (await api.client.post("/v1/orders", json=big, headers=key)).status_code == 413
    replay = key | {"Idempotency-Key": "metrics-1"}
    first = await api.client.post("/v1/orders", json=order_json("MET-1"), headers=replay)
    await asyncio.sleep(1.1)  # a fresh window: the next two fit, then the limit
    again = await api.client.post("/v1/orders", json=order_json("MET-1"), headers=replay)
    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    assert again.headers["Idempotent-Replayed"] == "true"
    statuses = [(await api.client.get("/v1/orders", headers=key)).status_code for _ in range(3)]
    assert statuses[-1] == 429, statuses
    for n in range(4):
        await api.client.get("/v1/orders", headers={"X-API-Key": f"pf_guess-{n}"})

    samples = await _samples(api)
    total = "printflow_http_requests_total"
    assert _value(samples, total, method="POST", route="/v1/orders", status="413") == 1
    assert _value(samples, total, method="GET", route="/v1/orders", status="429") == 2
    assert _value(samples, total, method="GET", route="/v1/orders", status="401") == 3
    refusals = "printflow_http_refusals_total"
    assert _value(samples, refusals, reason="body_too_large") == 1
    assert _value(samples, refusals, reason="rate_limited") == 1
    assert _value(samples, refusals, reason="too_many_failed_authentications") == 1
    replays = "printflow_idempotent_replays_total"
    assert _value(samples, replays, method="POST", route="/v1/orders") == 1

    access = [r for r in caplog.records if r.name == "printflow.access"]
    refused = [(r.status, r.refusal) for r in access if getattr(r, "refusal", None)]  # type: ignore[attr-defined]
    assert sorted(refused) == [
        (413, "body_too_large"),
        (429, "rate_limited"),
        (429, "too_many_failed_authentications"),
    ], refused
    replayed = [r for r in access if getattr(r, "replayed", False)]
    assert len(replayed) == 1 and "replayed" in replayed[0].getMessage()
    assert all("/v1/orders" in r.getMessage() for r in access if r.status in (413, 429))  # type: ignore[attr-defined]
