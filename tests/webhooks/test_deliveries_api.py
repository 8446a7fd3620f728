"""What a merchant sees of their webhooks over the API: every attempt, and redelivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from db.models import Merchant
from tests.helpers.api import Api
from tests.helpers.production import FullApi, tracking


async def _deliveries(api: FullApi, key: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await api.client.get("/v1/webhooks/deliveries", params=params, headers=key)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _recorded(api: FullApi, key: dict[str, str], count: int, **params: Any) -> list[Any]:
    """The delivery rows once ``count`` are there: an attempt is recorded after its answer."""
    for _ in range(100):
        rows = (await _deliveries(api, key, **params))["data"]
        if len(rows) >= count:
            return list(rows)
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} deliveries recorded: {rows}")


async def test_deliveries_are_listed_newest_first_and_a_redelivery_repeats_the_event(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await api.hooked_merchant())
    order = await api.in_production(key)
    oid = order["id"]
    assert (await api.event(oid, "printed")).status_code == 202
    await api.receiver.wait_for(lambda r: len(r.accepted()) == 2)  # in_production, printed

    rows = await _recorded(api, key, 2, order_id=oid)
    assert [r["outcome"] for r in rows] == ["succeeded", "succeeded"]
    assert [r["event_id"] for r in rows] == api.receiver.accepted_ids()[::-1], "newest first"
    assert {r["event_type"] for r in rows} == {"order.status_updated"}
    assert all(r["status_code"] == 200 and r["attempt"] == 1 for r in rows)
    assert all(r["url"] == api.receiver.url and r["order_id"] == oid for r in rows)

    first_page = await _deliveries(api, key, order_id=oid, limit=1)
    cursor = first_page["next_cursor"]
    second_page = await _deliveries(api, key, order_id=oid, limit=1, cursor=cursor)
    assert [first_page["data"][0]["id"], second_page["data"][0]["id"]] == [r["id"] for r in rows]
    assert second_page["next_cursor"] is None

    event_id = rows[-1]["event_id"]  # the in_production event
    redo = await api.client.post(f"/v1/webhooks/events/{event_id}/redeliver", headers=key)
    assert (redo.status_code, redo.json()) == (202, {"event_id": event_id, "queued": True})
    await api.receiver.wait_for(lambda r: len(r.accepted()) == 3)
    first, again = api.receiver.attempts_of(event_id)
    assert first.body == again.body and again.verified
    only = await _recorded(api, key, 2, event_id=event_id)
    assert [(r["attempt"], r["outcome"]) for r in only] == [
        (2, "succeeded"),
        (1, "succeeded"),
    ]

    events = await api.client.get("/v1/webhooks/events", params={"order_id": oid}, headers=key)
    listed = events.json()["data"]
    assert [e["id"] for e in listed] == [r["event_id"] for r in rows]
    assert all(e["delivered_at"] for e in listed)
    assert listed[0]["payload"]["data"]["status"] == "printed"
    newest = await api.client.get("/v1/webhooks/events", params={"limit": 1}, headers=key)
    older = await api.client.get(
        "/v1/webhooks/events",
        params={"limit": 1, "cursor": newest.json()["next_cursor"]},
        headers=key,
    )
    assert [newest.json()["data"][0]["id"], older.json()["data"][0]["id"]] == [
        e["id"] for e in listed
    ]
    assert older.json()["next_cursor"] is None


async def test_failed_attempts_are_on_record_and_never_hold_the_order_up(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await api.hooked_merchant())
    order = await api.in_production(key)
    oid = order["id"]
    await api.receiver.wait_for(lambda r: len(r.accepted()) == 1)
    # From now on the receiver is down: every attempt fails.
    api.receiver.fail_until = datetime.now(UTC) + timedelta(days=1)

    assert (await api.event(oid, "printed")).status_code == 202
    assert (await api.event(oid, "shipped", **tracking("PKG9"))).status_code == 202
    assert (await api.event(oid, "delivered")).status_code == 202
    # The order goes on without waiting for the merchant's receiver.
    await api.until(key, oid, lambda o: o["status"] == "delivered")

    await api.receiver.wait_for(lambda r: r.requests[-1].answered == 503)
    rows = await _recorded(api, key, 2, order_id=oid)
    failed = [r for r in rows if r["attempt"] == 1]
    assert failed[0]["outcome"] == "failed"
    assert failed[0]["status_code"] == 503 and "503" in failed[0]["error"]
    # Later events wait behind the failing one: only one event has been tried since.
    tried = {r.event_id for r in api.receiver.requests[1:]}
    assert len(tried) == 1


async def test_redelivery_is_for_the_merchants_own_events_with_a_webhook_url(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await api.hooked_merchant())
    other = Api.auth(await api.merchant(name="Other Shop"))
    await api.in_production(key)
    await api.receiver.wait_for(lambda r: len(r.accepted()) == 1)
    event_id = api.receiver.accepted_ids()[0]

    stranger = await api.client.post(f"/v1/webhooks/events/{event_id}/redeliver", headers=other)
    assert stranger.status_code == 404
    assert stranger.json()["error"]["code"] == "webhook_event_not_found"
    assert (await _deliveries(api, other))["data"] == []
    unknown = await api.client.post("/v1/webhooks/events/evt_nope/redeliver", headers=key)
    assert unknown.status_code == 404

    async with api.app.state.sessions() as session:
        await session.exec(update(Merchant).values(webhook_url=None))  # type: ignore[call-overload]
        await session.commit()
    off = await api.client.post(f"/v1/webhooks/events/{event_id}/redeliver", headers=key)
    assert off.status_code == 409
    assert off.json()["error"]["code"] == "webhook_not_configured"
