"""What a merchant sees through the API: create, read, list, cancel, re-address, approve."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlmodel import select

from db.models import Merchant, Order
from tests.helpers.api import ADMIN_TOKEN, Api, order_json
from tests.helpers.polling import apoll


async def test_admin_creates_merchants_and_keeps_only_the_key_hash(api: Api) -> None:
    merchant = await api.merchant(approval="manual")
    assert merchant["api_key"].startswith("pf_") and merchant["webhook_secret"]
    assert merchant["approval"] == "manual"
    async with api.app.state.sessions() as session:
        row = (await session.exec(select(Merchant).where(Merchant.id == merchant["id"]))).one()
    assert merchant["api_key"] not in row.model_dump_json()

    wrong = await api.client.post(
        "/v1/admin/merchants",
        json={"name": "x", "support_email": "x@example.com"},
        headers={"X-Admin-Token": "nope"},
    )
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    assert ADMIN_TOKEN not in wrong.text


async def test_requests_without_a_valid_key_are_refused(api: Api) -> None:
    missing = await api.client.get("/v1/orders")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    unknown = await api.client.get("/v1/orders", headers={"X-API-Key": "pf_not-a-key"})
    assert unknown.status_code == 401


async def test_a_new_order_is_scheduled_for_its_facility_cutoff(api: Api) -> None:
    key = Api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json("A-1"), headers=key)
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["status"] == "scheduled"
    assert order["facility"]["id"] == "berlin"
    cutoff = datetime.fromisoformat(order["cutoff_at"])
    assert cutoff.astimezone().utcoffset() is not None
    assert order["editable_until"] == order["cutoff_at"]
    assert order["allowed_actions"] == {
        "cancel": True,
        "update_address": True,
        "approve": False,
        "reorder": False,
    }
    seen = await api.until(key, order["id"], lambda o: o["events"])
    assert [e["type"] for e in seen["events"]] == ["created"]
    assert seen["cutoff_at"] == order["cutoff_at"], "API and workflow agree on the cutoff"


async def test_create_is_idempotent_on_the_order_reference(api: Api) -> None:
    key = Api.auth(await api.merchant())
    body = order_json("IDEM-1")
    first = await api.client.post("/v1/orders", json=body, headers=key)
    again = await api.client.post("/v1/orders", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]

    changed = order_json("IDEM-1")
    changed["items"][0]["quantity"] = 3
    clash = await api.client.post("/v1/orders", json=changed, headers=key)
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "order_reference_conflict"
    assert clash.json()["error"]["details"]["order_id"] == first.json()["id"]


async def test_twenty_concurrent_identical_creates_make_one_order_and_one_workflow(
    api: Api,
) -> None:
    merchant = await api.merchant()
    key = Api.auth(merchant)
    body = order_json("RACE-1")
    responses = await asyncio.gather(
        *(api.client.post("/v1/orders", json=body, headers=key) for _ in range(20))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [201], [r.text for r in responses if r.status_code >= 300]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    order_id = ids.pop()

    async with api.app.state.sessions() as session:
        rows = (await session.exec(select(Order).where(Order.merchant_id == merchant["id"]))).all()
    assert [r.id for r in rows] == [order_id]

    async def runs() -> list[Any]:
        return [w async for w in api.temporal.list_workflows(f"WorkflowId = '{order_id}'")]

    # Visibility may lag a moment behind; the run is never doubled.
    assert len(await apoll("the order's run to be visible", runs)) == 1


async def test_invalid_orders_get_the_error_envelope_and_nothing_is_created(api: Api) -> None:
    key = Api.auth(await api.merchant())
    cases: list[tuple[dict[str, Any], str]] = []
    long_name = order_json()
    long_name["shipping_address"]["first_name"] = "X" * 26
    cases.append((long_name, "shipping_address.first_name"))
    no_state = order_json(country="US")
    del no_state["shipping_address"]["state"]
    cases.append((no_state, "shipping_address"))
    bad_country = order_json()
    bad_country["shipping_address"]["country"] = "XX"
    cases.append((bad_country, "shipping_address.country"))
    zero = order_json()
    zero["items"][0]["quantity"] = 0
    cases.append((zero, "items.0.quantity"))
    too_many = order_json()
    too_many["items"] = [dict(too_many["items"][0], item_reference_id=f"l{i}") for i in range(101)]
    cases.append((too_many, "items"))
    long_line = order_json()
    long_line["shipping_address"]["address_line_1"] = "Y" * 36
    cases.append((long_line, "shipping_address.address_line_1"))

    for body, field in cases:
        response = await api.client.post("/v1/orders", json=body, headers=key)
        assert response.status_code == 422, (field, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert any(d["field"].startswith(field) for d in error["details"]), (field, error)
    listed = await api.client.get("/v1/orders", headers=key)
    assert listed.json() == {"data": [], "next_cursor": None}

    not_json = await api.client.post(
        "/v1/orders", content=b"{not json", headers={**key, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 422 and not_json.json()["error"]["code"] == "validation_error"


async def test_another_merchants_order_is_not_found(api: Api) -> None:
    owner = Api.auth(await api.merchant(name="Owner"))
    other = Api.auth(await api.merchant(name="Other"))
    order = (await api.client.post("/v1/orders", json=order_json(), headers=owner)).json()
    for method, path in [
        ("GET", f"/v1/orders/{order['id']}"),
        ("POST", f"/v1/orders/{order['id']}/cancel"),
        ("POST", f"/v1/orders/{order['id']}/approve"),
    ]:
        response = await api.client.request(method, path, headers=other)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "order_not_found"
    still = await api.client.get(f"/v1/orders/{order['id']}", headers=owner)
    assert still.json()["status"] == "scheduled"


async def test_cancel_then_every_change_is_refused(api: Api) -> None:
    key = Api.auth(await api.merchant())
    order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    canceled = await api.client.post(
        f"/v1/orders/{order['id']}/cancel", json={"reason": "duplicate"}, headers=key
    )
    assert canceled.status_code == 200, canceled.text
    body = canceled.json()
    assert body["status"] == "canceled" and body["cancel_reason"] == "duplicate"
    assert body["allowed_actions"] == dict.fromkeys(body["allowed_actions"], False)
    assert [e["type"] for e in body["events"]] == ["created", "canceled"]

    again = await api.client.post(f"/v1/orders/{order['id']}/cancel", headers=key)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "order_canceled"
    readdress = await api.client.put(
        f"/v1/orders/{order['id']}/shipping-address",
        json=order_json()["shipping_address"],
        headers=key,
    )
    assert readdress.status_code == 409


async def test_shipping_address_changes_and_bad_addresses_change_nothing(api: Api) -> None:
    key = Api.auth(await api.merchant())
    order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    address = dict(order["shipping_address"], address_line_1="Friedrichstr. 43", post_code="10969")
    moved = await api.client.put(
        f"/v1/orders/{order['id']}/shipping-address", json=address, headers=key
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["shipping_address"]["address_line_1"] == "Friedrichstr. 43"

    bad = dict(address, city="C" * 31)
    refused = await api.client.put(
        f"/v1/orders/{order['id']}/shipping-address", json=bad, headers=key
    )
    assert refused.status_code == 422
    now = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()
    assert now["shipping_address"]["address_line_1"] == "Friedrichstr. 43"
    assert [e["type"] for e in now["events"]] == ["created", "shipping_address_updated"]


async def test_manual_approval_merchants_approve_before_the_cutoff_counts(api: Api) -> None:
    key = Api.auth(await api.merchant(approval="manual"))
    order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    assert order["status"] == "pending_approval"
    assert order["cutoff_at"] is None and order["editable_until"] is None
    assert order["allowed_actions"]["approve"] is True

    approved = await api.client.post(f"/v1/orders/{order['id']}/approve", headers=key)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "scheduled"
    assert approved.json()["editable_until"] == approved.json()["cutoff_at"] is not None
    twice = await api.client.post(f"/v1/orders/{order['id']}/approve", headers=key)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "order_not_pending"

    # An order may ask for automatic approval although the merchant approves by hand.
    auto = await api.client.post("/v1/orders", json=order_json(approval="auto"), headers=key)
    assert auto.json()["status"] == "scheduled"


async def test_after_the_cutoff_the_order_is_in_production_and_cannot_be_canceled(
    api: Api,
) -> None:
    key = Api.auth(await api.merchant())
    order = (await api.client.post("/v1/orders", json=order_json(country="IS"), headers=key)).json()
    assert order["facility"]["id"] == "reykjavik"
    produced = await api.until(key, order["id"], lambda o: o["status"] == "in_production")
    assert produced["job_id"].startswith("job_")
    assert produced["allowed_actions"]["cancel"] is False

    refused = await api.client.post(f"/v1/orders/{order['id']}/cancel", headers=key)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "order_in_production"
    assert "production" in error["message"]

    jobs = await api.facility("/print-jobs")
    assert [j["order_id"] for j in jobs] == [order["id"]]


async def test_list_filters_and_paginates_without_gaps_or_repeats(api: Api) -> None:
    key = Api.auth(await api.merchant())
    ids = []
    for i in range(5):
        created = await api.client.post("/v1/orders", json=order_json(f"L-{i}"), headers=key)
        ids.append(created.json()["id"])
    await api.client.post(f"/v1/orders/{ids[0]}/cancel", headers=key)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/v1/orders", params=params, headers=key)).json()
        seen += [o["id"] for o in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert seen == list(reversed(ids)), "newest first, each order once"

    canceled = (
        await api.client.get("/v1/orders", params={"status": "canceled"}, headers=key)
    ).json()
    assert [o["id"] for o in canceled["data"]] == [ids[0]]
    by_ref = (
        await api.client.get("/v1/orders", params={"order_reference_id": "L-3"}, headers=key)
    ).json()
    assert [o["id"] for o in by_ref["data"]] == [ids[3]]

    bad_cursor = await api.client.get("/v1/orders", params={"cursor": "garbage"}, headers=key)
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["error"]["code"] == "invalid_cursor"
    bad_limit = await api.client.get("/v1/orders", params={"limit": 0}, headers=key)
    assert bad_limit.status_code == 422
    bad_status = await api.client.get("/v1/orders", params={"status": "lost"}, headers=key)
    assert bad_status.status_code == 422


async def test_openapi_documents_the_contract(api: Api) -> None:
    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    spec = (await api.client.get("/openapi.json")).json()
    for path in [
        "/v1/orders",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/cancel",
        "/v1/orders/{order_id}/shipping-address",
        "/v1/orders/{order_id}/approve",
        "/v1/admin/merchants",
    ]:
        assert path in spec["paths"], path
