"""The catalog through the API: products, shipping methods, quotes, and orders that are
validated, routed and priced by it (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import select

from activities.order_projection import ProjectionActivities
from contracts.orders import Projection
from db.engine import create_engine
from db.models import Order, Quote
from domain.orders import OrderState, Shipment, Status
from tests.helpers.api import Api, order_json


def _item(ref: str, product_uid: str, quantity: int = 1) -> dict[str, Any]:
    return {
        "item_reference_id": ref,
        "product_uid": product_uid,
        "quantity": quantity,
        "files": [{"type": "default", "url": f"https://files.example/{ref}.pdf"}],
    }


async def test_products_in_pages_by_kind_and_one_by_one(api: Api) -> None:
    key = Api.auth(await api.merchant())
    assert (await api.client.get("/v1/products")).status_code == 401

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await api.client.get("/v1/products", params=params, headers=key)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) <= 3
        seen += [p["product_uid"] for p in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert {"mug_11oz_white", "poster_a2_matte", "canvas_30x40", "greeting_card_a6"} <= set(seen)

    posters = await api.client.get("/v1/products", params={"kind": "poster"}, headers=key)
    assert {p["kind"] for p in posters.json()["data"]} == {"poster"}
    assert "poster_a2_matte" in [p["product_uid"] for p in posters.json()["data"]]

    mug = await api.client.get("/v1/products/mug_11oz_white", headers=key)
    assert mug.status_code == 200
    assert mug.json()["prices"] == {"EUR": "9.90", "USD": "10.90", "GBP": "8.50"}
    assert mug.json()["print_areas"][0]["width_mm"] == 200

    missing = await api.client.get("/v1/products/mug_15oz", headers=key)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "product_not_found"
    bad = await api.client.get("/v1/products", params={"cursor": "nope"}, headers=key)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"


async def test_shipping_methods_that_reach_a_country(api: Api) -> None:
    key = Api.auth(await api.merchant())
    germany = await api.client.get("/v1/shipping-methods", params={"country": "de"}, headers=key)
    assert germany.status_code == 200, germany.text
    methods = {m["id"]: m for m in germany.json()["data"]}
    assert list(methods) == ["standard", "tracked", "express"]
    assert methods["express"]["transit_days"] == {"min": 1, "max": 2}
    assert methods["standard"]["prices"]["GBP"] == {
        "first_item": "4.29",
        "each_further_item": "1.29",
    }
    assert methods["standard"]["country"] == "DE" and methods["tracked"]["tracked"] is True

    south_africa = await api.client.get(
        "/v1/shipping-methods", params={"country": "ZA"}, headers=key
    )
    assert [m["id"] for m in south_africa.json()["data"]] == ["standard", "tracked"]

    bad = await api.client.get("/v1/shipping-methods", params={"country": "XX"}, headers=key)
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "query.country"


async def test_a_quote_per_method_cheapest_first_and_kept(api: Api) -> None:
    merchant = await api.merchant()
    key = Api.auth(merchant)
    body = {
        "shipping_address": {"country": "DE", "post_code": "10117"},
        "items": [
            {"product_uid": "mug_11oz_white", "quantity": 2},
            {"product_uid": "poster_a3_matte", "quantity": 3},
        ],
        "currency": "USD",
    }
    answer = await api.client.post("/v1/quotes", json=body, headers=key)
    assert answer.status_code == 201, answer.text
    quote = answer.json()
    assert quote["id"].startswith("quo_") and quote["currency"] == "USD"
    lines = quote["quotes"]
    assert [q["shipping_method"] for q in lines] == ["standard", "tracked", "express"]
    standard = lines[0]
    assert (standard["items_total"], standard["shipping"], standard["total"]) == (
        "46.55",
        "12.49",
        "59.04",
    )
    assert [Decimal(q["total"]) for q in lines] == sorted(Decimal(q["total"]) for q in lines)
    assert standard["facility"] == "berlin"
    cutoff, ships_by = (datetime.fromisoformat(standard[k]) for k in ("cutoff_at", "ships_by"))
    assert ships_by >= cutoff > datetime.now(UTC)
    estimate = standard["delivery_estimate"]
    assert estimate["earliest"] <= estimate["latest"]
    expires = datetime.fromisoformat(quote["expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)

    async with api.app.state.sessions() as session:
        row = await session.get(Quote, quote["id"])
    assert row is not None and row.merchant_id == merchant["id"]
    assert row.options[0] == {
        "shipping_method": "standard",
        "facility": "berlin",
        "items_total": "46.55",
        "shipping": "12.49",
        "total": "59.04",
    }

    unknown = await api.client.post(
        "/v1/quotes",
        json={**body, "items": [{"product_uid": "mug_15oz", "quantity": 1}]},
        headers=key,
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_product"
    assert unknown.json()["error"]["details"] == [{"item": 0, "product_uid": "mug_15oz"}]

    floats = await api.client.post("/v1/quotes", json={**body, "currency": "JPY"}, headers=key)
    assert floats.status_code == 422


async def test_an_order_is_validated_routed_and_priced_by_the_catalog(api: Api) -> None:
    key = Api.auth(await api.merchant())
    unknown = await api.client.post(
        "/v1/orders",
        json=order_json(items=[_item("mug", "mug_11oz_white"), _item("frame", "frame_a4")]),
        headers=key,
    )
    assert unknown.status_code == 422, unknown.text
    error = unknown.json()["error"]
    assert error["code"] == "unknown_product"
    assert "items[1] (frame): 'frame_a4'" in error["message"]
    assert error["details"] == [
        {"item": 1, "item_reference_id": "frame", "product_uid": "frame_a4"}
    ]

    express_to_za = await api.client.post(
        "/v1/orders", json=order_json(country="ZA", shipping_method="express"), headers=key
    )
    assert express_to_za.status_code == 422
    assert express_to_za.json()["error"]["code"] == "not_shippable"
    assert "'express' does not reach ZA" in express_to_za.json()["error"]["message"]

    drone = await api.client.post(
        "/v1/orders", json=order_json(shipping_method="drone"), headers=key
    )
    assert drone.status_code == 422
    assert drone.json()["error"]["code"] == "unknown_shipping_method"

    created = await api.client.post(
        "/v1/orders",
        json=order_json(
            "CAT-1",
            items=[_item("mug", "mug_11oz_white", 2), _item("card", "greeting_card_a6")],
            currency="GBP",
        ),
        headers=key,
    )
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["shipping_method"] == "standard"  # the cheapest
    assert order["price"] == {
        "currency": "GBP",
        "items_total": "19.50",
        "shipping": "6.87",
        "total": "26.37",
    }
    ships_by = datetime.fromisoformat(order["ships_by"])
    assert ships_by > datetime.fromisoformat(order["cutoff_at"])
    assert order["delivery_estimate"]["earliest"] <= order["delivery_estimate"]["latest"]
    # The workflow keeps the terms: its answer to a cancel, and its projection, show them.
    canceled = await api.client.post(f"/v1/orders/{order['id']}/cancel", headers=key)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    seen = await api.until(key, order["id"], lambda o: o["status"] == "canceled")
    for shown in (canceled.json(), seen):
        assert shown["price"] == order["price"] and shown["ships_by"] == order["ships_by"]
        assert shown["delivery_estimate"] == order["delivery_estimate"]
        assert shown["shipping_method"] == "standard"

    express = await api.client.post(
        "/v1/orders", json=order_json("CAT-2", shipping_method="express"), headers=key
    )
    assert express.status_code == 201, express.text
    assert express.json()["shipping_method"] == "express"
    assert express.json()["price"] == {
        "currency": "EUR",
        "items_total": "9.90",
        "shipping": "14.95",
        "total": "24.85",
    }


async def test_a_quote_holds_its_price_until_it_expires(api: Api) -> None:
    key = Api.auth(await api.merchant())
    body = {
        "shipping_address": {"country": "US", "state": "NY"},
        "items": [{"product_uid": "canvas_30x40", "quantity": 1}],
        "currency": "USD",
    }
    quote = (await api.client.post("/v1/quotes", json=body, headers=key)).json()
    assert quote["quotes"][0]["facility"] == "newark"
    # The catalog's prices change after the quote: the quote keeps what it said.
    async with api.app.state.sessions() as session:
        row = await session.get(Quote, quote["id"])
        assert row is not None
        row.options = [
            {**o, "items_total": "25.00", "total": str(Decimal("25.00") + Decimal(o["shipping"]))}
            for o in row.options
        ]
        session.add(row)
        await session.commit()

    items = [_item("canvas", "canvas_30x40")]
    quoted = order_json("Q-1", country="US", items=items, quote_id=quote["id"])
    created = await api.client.post("/v1/orders", json=quoted, headers=key)
    assert created.status_code == 201, created.text
    assert created.json()["price"] == {
        "currency": "USD",
        "items_total": "25.00",
        "shipping": "5.49",
        "total": "30.49",
    }
    assert created.json()["facility"]["id"] == "newark"

    express = order_json(
        "Q-2", country="US", items=items, quote_id=quote["id"], shipping_method="express"
    )
    answer = await api.client.post("/v1/orders", json=express, headers=key)
    assert answer.status_code == 201 and answer.json()["price"]["shipping"] == "16.99"

    wrong = order_json("Q-3", country="US", items=[_item("canvas", "canvas_30x40", 2)])
    mismatch = await api.client.post(
        "/v1/orders", json={**wrong, "quote_id": quote["id"]}, headers=key
    )
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["code"] == "quote_mismatch"
    assert "2 x canvas_30x40, the quote's 1 x canvas_30x40" in mismatch.json()["error"]["message"]

    other = Api.auth(await api.merchant(name="Other Shop"))
    stolen = await api.client.post(
        "/v1/orders", json={**quoted, "order_reference_id": "Q-4"}, headers=other
    )
    assert stolen.status_code == 422 and stolen.json()["error"]["code"] == "unknown_quote"

    # The quote expires: a new order is refused, the retry of the order it made is not.
    async with api.app.state.sessions() as session:
        row = await session.get(Quote, quote["id"])
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
        await session.commit()
    late = await api.client.post(
        "/v1/orders", json={**quoted, "order_reference_id": "Q-5"}, headers=key
    )
    assert late.status_code == 422 and late.json()["error"]["code"] == "quote_expired"
    retry = await api.client.post("/v1/orders", json=quoted, headers=key)
    assert retry.status_code == 200, retry.text
    assert retry.json()["id"] == created.json()["id"]
    assert retry.json()["price"]["total"] == "30.49"


async def test_orders_from_before_the_catalog_show_no_price(api: Api) -> None:
    key = Api.auth(await api.merchant())
    created = (await api.client.post("/v1/orders", json=order_json("OLD-1"), headers=key)).json()
    await api.until(key, created["id"], lambda o: bool(o["events"]))
    # As the row of an order taken before the catalog holds it: no terms anywhere.
    terms = ("shipping_method", "price", "ships_by", "delivery_estimate", "promise")
    async with api.app.state.sessions() as session:
        row = (await session.exec(select(Order).where(Order.id == created["id"]))).one()
        row.state = {k: v for k, v in row.state.items() if k not in terms}
        session.add(row)
        await session.commit()
    shown = (await api.client.get(f"/v1/orders/{created['id']}", headers=key)).json()
    assert shown["price"] is None and shown["ships_by"] is None
    assert shown["shipping_method"] is None and shown["delivery_estimate"] is None
    assert shown["status"] == "scheduled"


async def test_standards_count_orders_shipped_by_their_promise(api: Api) -> None:
    key = Api.auth(await api.merchant())
    other = Api.auth(await api.merchant(name="Other Shop"))
    ids = []
    for n in range(6):
        created = await api.client.post("/v1/orders", json=order_json(f"STD-{n}"), headers=key)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    theirs = await api.client.post("/v1/orders", json=order_json("STD-X"), headers=other)
    assert theirs.status_code == 201
    async with api.app.state.sessions() as session:
        row = await session.get(Order, ids[0])
        assert row is not None and row.ships_by is not None, "the row is born with its promise"

    now = datetime.now(UTC)
    day = timedelta(days=1)
    # (ships_by, shipped_at, status) as the read model will hold them.
    outcomes: list[tuple[datetime, datetime | None, str]] = [
        (now - 5 * day, now - 6 * day, "shipped"),  # in time
        (now - 3 * day, now - day, "shipped"),  # shipped late
        (now - 2 * day, None, "in_production"),  # late, not shipped yet
        (now - day, None, "canceled"),  # canceled: promised nothing
        (now + 2 * day, None, "in_production"),  # still ahead
        (now - 40 * day, None, "in_production"),  # before the window
    ]
    async with api.app.state.sessions() as session:
        for order_id, (ships_by, _, status) in zip(ids, outcomes, strict=True):
            row = await session.get(Order, order_id)
            assert row is not None
            row.ships_by, row.status = ships_by, status
            session.add(row)
        await session.commit()
    # The first package's time is the projection's to write, from the workflow's state.
    engine = create_engine(api.settings.database_url)
    try:
        for order_id, (ships_by, shipped_at, status) in zip(ids, outcomes, strict=True):
            if shipped_at is None:
                continue
            async with api.app.state.sessions() as session:
                row = await session.get(Order, order_id)
                assert row is not None
                state = OrderState.model_validate(row.state)
            package = Shipment(carrier="DHL", tracking_code=order_id, shipped_at=shipped_at)
            shipped = state.model_copy(
                update={
                    "status": Status(status),
                    "shipments": [package],
                    "version": state.version + 1,
                    "ships_by": ships_by,
                }
            )
            await ProjectionActivities(engine).project_order(Projection(slim=shipped))
    finally:
        await engine.dispose()

    answer = await api.client.get("/v1/support/standards", headers=key)
    assert answer.status_code == 200, answer.text
    ship_by = answer.json()["ship_by"]
    assert ship_by["window_days"] == 30
    assert (ship_by["orders"], ship_by["shipped_in_time"], ship_by["late"]) == (3, 1, 2)
    assert ship_by["shipped_in_time_rate"] == 0.3333
    assert ship_by["pending"] == 1
    fresh = (await api.client.get("/v1/support/standards", headers=other)).json()["ship_by"]
    assert fresh["orders"] == 0 and fresh["shipped_in_time_rate"] is None
    assert fresh["pending"] == 1


async def test_a_new_address_routes_by_the_catalog_and_moves_the_promise(api: Api) -> None:
    key = Api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json("ADDR-1"), headers=key)
    assert created.status_code == 201, created.text
    order = created.json()
    address = {**order_json()["shipping_address"], "country": "US", "state": "NY"}

    moved = await api.client.put(
        f"/v1/orders/{order['id']}/shipping-address", json=address, headers=key
    )
    assert moved.status_code == 200, moved.text
    after = moved.json()
    assert after["facility"]["id"] == "newark"
    assert after["ships_by"] != order["ships_by"]
    assert after["price"] == order["price"] and after["shipping_method"] == "standard"
    event = next(e for e in after["events"] if e["type"] == "shipping_address_updated")
    assert event["detail"]["facility"] == "newark"
    moved_to = datetime.fromisoformat(event["detail"]["ships_by"])
    assert moved_to == datetime.fromisoformat(after["ships_by"])

    # A country no facility ships this order's method to: refused, nothing changed.
    express = await api.client.post(
        "/v1/orders", json=order_json("ADDR-2", shipping_method="express"), headers=key
    )
    assert express.status_code == 201, express.text
    far = {**order_json()["shipping_address"], "country": "NZ"}
    refused = await api.client.put(
        f"/v1/orders/{express.json()['id']}/shipping-address", json=far, headers=key
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "not_shippable"
    shown = (await api.client.get(f"/v1/orders/{express.json()['id']}", headers=key)).json()
    assert shown["shipping_address"]["country"] == "DE"
