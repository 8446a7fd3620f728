"""``X-Request-Id`` on every answer, and the log of merchants' failed requests that support reads.

Against the running API (real Temporal dev server, SQLite and PostgreSQL).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import select

from api.pruning import prune
from api.services.request_log import requests_for
from db.models import RequestLog
from tests.helpers.api import ADMIN_TOKEN, Api, order_json

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
FRESH = re.compile(r"req_[A-Za-z0-9_\-]{24}")


async def _log(api: Api) -> list[RequestLog]:
    async with api.app.state.sessions() as session:
        rows = await session.exec(select(RequestLog).order_by(RequestLog.id))  # type: ignore[arg-type]
        return list(rows.all())


async def test_every_answer_carries_a_fresh_request_id(api: Api) -> None:
    merchant = await api.merchant()
    key = Api.auth(merchant)
    answers = [
        await api.client.get("/healthz"),
        await api.client.get("/v1/orders", headers=key),
        await api.client.get("/v1/orders"),  # 401
        await api.client.get("/v1/orders/ord_nope", headers=key),  # 404
        await api.client.get("/no/such/path"),  # 404, no route
        await api.client.delete("/v1/orders", headers=key),  # 405
        await api.client.post("/v1/orders", json={"items": []}, headers=key),  # 422
        await api.client.get("/v1/orders?status=%0a", headers=key),  # 422 from the URL guard
        await api.client.post(
            "/v1/orders", json={}, headers=key | {"Idempotency-Key": "bad key"}
        ),  # 422 from the idempotency middleware
        await api.client.get("/v1/support/plan", headers=key),
        await api.client.get("/p/not-a-token"),  # an HTML page
    ]
    ids = [a.headers.get("X-Request-Id", "") for a in answers]
    assert all(FRESH.fullmatch(i) for i in ids), [
        (a.status_code, i) for a, i in zip(answers, ids, strict=True)
    ]
    assert len(set(ids)) == len(ids)
    assert [a.status_code for a in answers][2:9] == [401, 404, 404, 405, 422, 422, 422]


async def test_a_valid_incoming_request_id_is_echoed_and_anything_else_replaced(api: Api) -> None:
    merchant = await api.merchant()
    key = Api.auth(merchant)
    for mine in ("checkout-42.retry_1", "a" * 100, "7f3c2e1a-0b9d-4c8e-a1f2-3d4e5f607182"):
        answer = await api.client.get("/v1/orders", headers=key | {"X-Request-Id": mine})
        assert answer.headers["X-Request-Id"] == mine
    for hostile in ("a" * 101, "has space", "semi;colon", "ümlaut", "", "x\ty", "../x/y"):
        answer = await api.client.get(
            "/v1/orders/ord_nope", headers=key | {"X-Request-Id": hostile.encode()}
        )
        assert answer.status_code == 404
        assert FRESH.fullmatch(answer.headers["X-Request-Id"]), hostile
    assert len(answer.headers.get_list("X-Request-Id")) == 1


async def test_replays_and_unexpected_errors_carry_one_too(api: Api) -> None:
    merchant = await api.merchant()
    key = Api.auth(merchant)
    order = await api.client.post("/v1/orders", json=order_json("RID-1"), headers=key)
    assert order.status_code == 201, order.text
    headers = key | {"Idempotency-Key": "cancel-rid-1"}
    path = f"/v1/orders/{order.json()['id']}/cancel"
    first = await api.client.post(path, json={}, headers=headers)
    again = await api.client.post(path, json={}, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert FRESH.fullmatch(first.headers["X-Request-Id"])
    assert FRESH.fullmatch(again.headers["X-Request-Id"])
    assert first.headers["X-Request-Id"] != again.headers["X-Request-Id"]

    async def boom() -> None:
        raise RuntimeError("a bug")

    api.app.add_api_route("/v1/_test/boom", boom)
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        broken = await client.get("/v1/_test/boom", headers=key | {"X-Request-Id": "bug-1"})
    assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal_error"
    assert broken.headers["X-Request-Id"] == "bug-1"
    assert [
        (r.route, r.status, r.error_code) for r in await _log(api) if r.request_id == "bug-1"
    ] == [("/v1/_test/boom", 500, "internal_error")]


async def test_the_access_log_names_the_request_id(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    merchant = await api.merchant()
    with caplog.at_level(logging.INFO, logger="printflow.access"):
        answer = await api.client.get("/v1/orders/ord_nope", headers=Api.auth(merchant))
    lines = [r for r in caplog.records if r.name == "printflow.access"]
    assert [getattr(r, "request_id", None) for r in lines] == [answer.headers["X-Request-Id"]]
    assert answer.headers["X-Request-Id"] in lines[0].getMessage()


async def test_a_merchants_failed_requests_are_logged_without_secrets(api: Api) -> None:
    merchant = await api.merchant()
    key = Api.auth(merchant)
    other = await api.merchant(name="Other Shop")

    ok = await api.client.get("/v1/orders", headers=key)
    missing = await api.client.get(
        "/v1/orders/ord_nope?secret=hunter2", headers=key | {"X-Request-Id": "mine-1"}
    )
    invalid = await api.client.post(
        "/v1/orders", json={"order_reference_id": "x", "secret": "hunter2"}, headers=key
    )
    unmatched = await api.client.get("/v1/ordres/hunter2", headers=key)
    guarded = await api.client.get("/v1/orders?q=%00hunter2", headers=key)
    anonymous = await api.client.get("/v1/orders/ord_nope")
    wrong_key = await api.client.get("/v1/orders/ord_nope", headers={"X-API-Key": "pf_nope"})
    admin = await api.client.patch("/v1/admin/merchants/mer_nope", json={}, headers=ADMIN)
    others = await api.client.get("/v1/orders/ord_nope", headers=Api.auth(other))
    assert ok.status_code == 200 and admin.status_code == 404

    rows = await _log(api)
    seen = [(r.merchant_id, r.method, r.route, r.status, r.error_code) for r in rows]
    assert seen == [
        (merchant["id"], "GET", "/v1/orders/{order_id}", 404, "order_not_found"),
        (merchant["id"], "POST", "/v1/orders", 422, "validation_error"),
        (merchant["id"], "GET", "unmatched", 404, "not_found"),
        (merchant["id"], "GET", "unmatched", 422, "validation_error"),
        (other["id"], "GET", "/v1/orders/{order_id}", 404, "order_not_found"),
    ]
    assert [r.request_id for r in rows] == [
        a.headers["X-Request-Id"] for a in (missing, invalid, unmatched, guarded, others)
    ]
    assert rows[0].request_id == "mine-1"
    for answer in (ok, anonymous, wrong_key, admin):
        assert answer.headers["X-Request-Id"] not in {r.request_id for r in rows}
    everything = " ".join(r.model_dump_json() for r in rows)
    for secret in ("hunter2", merchant["api_key"], other["api_key"], "ordres"):
        assert secret not in everything


async def test_support_sees_only_the_merchants_own_requests(api: Api) -> None:
    mugs, cups = await api.merchant(name="Mugs"), await api.merchant(name="Cups")
    a = await api.client.get("/v1/orders/ord_a", headers=Api.auth(mugs))
    b = await api.client.post("/v1/orders", json={}, headers=Api.auth(mugs))
    c = await api.client.get("/v1/orders/ord_c", headers=Api.auth(cups))
    fine = await api.client.get("/v1/orders", headers=Api.auth(mugs))
    ids = [r.headers["X-Request-Id"] for r in (a, b, c, fine)] + ["req_unknown"]

    async with api.app.state.sessions() as session:
        found = await requests_for(session, mugs["id"], ids)
        assert await requests_for(session, mugs["id"], []) == []
    assert [(e.request_id, e.route, e.status, e.error_code) for e in found] == [
        (ids[0], "/v1/orders/{order_id}", 404, "order_not_found"),
        (ids[1], "/v1/orders", 422, "validation_error"),
    ]
    assert all(e.method in ("GET", "POST") and e.created_at.tzinfo for e in found)

    mine = await api.client.get(f"/v1/requests/{ids[0]}", headers=Api.auth(mugs))
    assert mine.status_code == 200, mine.text
    assert mine.json() | {"created_at": None} == {
        "request_id": ids[0],
        "method": "GET",
        "route": "/v1/orders/{order_id}",
        "status": 404,
        "error_code": "order_not_found",
        "created_at": None,
    }
    for request_id in (ids[2], ids[3], "req_unknown"):
        refused = await api.client.get(f"/v1/requests/{request_id}", headers=Api.auth(mugs))
        assert refused.status_code == 404, refused.text


async def test_a_failed_log_write_never_changes_the_answer(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    merchant = await api.merchant()
    async with api.app.state.engine.begin() as connection:
        await connection.execute(text("DROP TABLE request_log"))
    with caplog.at_level(logging.WARNING, logger="printflow.api"):
        answer = await api.client.get("/v1/orders/ord_nope", headers=Api.auth(merchant))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "order_not_found"
    assert any(
        "could not record" in r.getMessage() and answer.headers["X-Request-Id"] in r.getMessage()
        for r in caplog.records
    )


async def test_rows_older_than_30_days_are_pruned(api: Api) -> None:
    merchant = await api.merchant()
    # Days ahead: the API's own pruning loop (which runs at start, at the real time, and on a
    # loaded machine may run only now) leaves these rows to the call under test.
    now = datetime.now(UTC) + timedelta(days=10)
    async with api.app.state.sessions() as session:
        for request_id, age in (("old", 31), ("edge", 29), ("new", 0)):
            session.add(
                RequestLog(
                    request_id=request_id,
                    merchant_id=merchant["id"],
                    method="GET",
                    route="/v1/orders",
                    status=404,
                    created_at=now - timedelta(days=age),
                )
            )
        await session.commit()
        assert await prune(session, now) == 1
        left: Any = await requests_for(session, merchant["id"], ["old", "edge", "new"])
    assert [e.request_id for e in left] == ["edge", "new"]
