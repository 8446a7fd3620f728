"""Reprints: a produced order is reordered with a claim that support finds by either order."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers.api import Api, order_json
from tests.helpers.production import FullApi

TWO_ITEMS = [
    {
        "item_reference_id": "mug",
        "product_uid": "mug_11oz_white",
        "quantity": 1,
        "files": [{"type": "default", "url": "https://files.example/mug.png"}],
    },
    {
        "item_reference_id": "poster",
        "product_uid": "poster_a3",
        "quantity": 2,
        "files": [{"type": "default", "url": "https://files.example/poster.pdf"}],
    },
]


async def _printed(api: FullApi, key: dict[str, str], reference: str) -> dict[str, Any]:
    order = await api.in_production(key, reference, items=TWO_ITEMS)
    assert (await api.event(order["id"], "printed")).status_code == 202
    return await api.until(key, order["id"], lambda o: o["status"] == "printed")


async def test_a_misprint_is_reprinted_and_the_claim_links_both_orders(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    original = await _printed(api, key, "CLAIM-1")
    oid = original["id"]
    assert original["allowed_actions"]["reorder"] is True

    claim_body = {
        "reason": "misprint",
        "description": "the poster colours are washed out",
        "item_reference_ids": ["poster"],
    }
    response = await api.client.post(f"/v1/orders/{oid}/reorder", json=claim_body, headers=key)
    assert response.status_code == 201, response.text
    reprint, claim = response.json()["order"], response.json()["claim"]
    assert reprint["reorder_of"] == oid
    assert reprint["order_reference_id"] == "CLAIM-1-R1"
    assert [i["item_reference_id"] for i in reprint["items"]] == ["poster"]
    assert reprint["items"][0]["quantity"] == 2
    assert reprint["shipping_address"] == original["shipping_address"]
    assert reprint["status"] == "scheduled"  # a reprint needs no approval
    assert claim["original_order_id"] == oid and claim["new_order_id"] == reprint["id"]
    assert claim["original_order_reference_id"] == "CLAIM-1"
    assert claim["new_order_reference_id"] == "CLAIM-1-R1"
    assert claim["reason"] == "misprint" and claim["item_reference_ids"] == ["poster"]
    assert claim["photo_urls"] == []

    # Linked both ways: the original lists its reprint, in the list view too.
    assert (await api.order(key, oid))["reorders"] == [reprint["id"]]
    params = {"order_reference_id": "CLAIM-1"}
    listed = await api.client.get("/v1/orders", params=params, headers=key)
    assert listed.json()["data"][0]["reorders"] == [reprint["id"]]
    assert (await api.order(key, reprint["id"]))["reorder_of"] == oid
    # The reprint is a real order with its own workflow: it reaches production on its own.
    await api.until(key, reprint["id"], lambda o: o["status"] == "in_production")

    # Support finds the claim by either order, by id or by the merchant's order number.
    for params in (
        {"order_id": oid},
        {"order_id": reprint["id"]},
        {"order_reference_id": "CLAIM-1"},
        {"order_reference_id": "CLAIM-1-R1"},
    ):
        found = await api.client.get("/v1/claims", params=params, headers=key)
        assert found.status_code == 200
        assert [c["id"] for c in found.json()["data"]] == [claim["id"]], params
    none = await api.client.get("/v1/claims", params={"order_reference_id": "NOPE"}, headers=key)
    assert none.json()["data"] == []
    one = await api.client.get(f"/v1/claims/{claim['id']}", headers=key)
    assert one.status_code == 200 and one.json() == claim


async def test_the_same_reorder_again_is_the_same_claim_and_a_new_one_is_the_next_reprint(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    oid = (await _printed(api, key, "CLAIM-2"))["id"]
    body = {
        "reason": "damaged",
        "description": "the mug arrived broken",
        "photo_urls": ["https://photos.example/broken-mug.jpg"],
        "item_reference_ids": ["mug"],
    }
    first = await api.client.post(f"/v1/orders/{oid}/reorder", json=body, headers=key)
    again = await api.client.post(f"/v1/orders/{oid}/reorder", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["claim"] == first.json()["claim"]
    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    assert first.json()["claim"]["photo_urls"] == ["https://photos.example/broken-mug.jpg"]

    lost = await api.client.post(
        f"/v1/orders/{oid}/reorder",
        json={"reason": "lost", "description": "never arrived"},  # all items, no photos needed
        headers=key,
    )
    assert lost.status_code == 201, lost.text
    assert lost.json()["order"]["order_reference_id"] == "CLAIM-2-R2"
    assert [i["item_reference_id"] for i in lost.json()["order"]["items"]] == ["mug", "poster"]
    assert (await api.order(key, oid))["reorders"] == [
        first.json()["order"]["id"],
        lost.json()["order"]["id"],
    ]
    page1 = await api.client.get("/v1/claims", params={"order_id": oid, "limit": 1}, headers=key)
    cursor = page1.json()["next_cursor"]
    assert cursor is not None
    page2 = await api.client.get(
        "/v1/claims", params={"order_id": oid, "limit": 1, "cursor": cursor}, headers=key
    )
    newest_first = [page1.json()["data"][0]["id"], page2.json()["data"][0]["id"]]
    assert newest_first == [lost.json()["claim"]["id"], first.json()["claim"]["id"]]
    assert page2.json()["next_cursor"] is None


async def test_reorders_are_refused_until_printed_and_need_evidence(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    scheduled = await api.client.post("/v1/orders", json=order_json(country="DE"), headers=key)
    sid = scheduled.json()["id"]
    early = await api.client.post(
        f"/v1/orders/{sid}/reorder", json={"reason": "lost", "description": "x"}, headers=key
    )
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "order_not_produced"

    oid = (await _printed(api, key, "CLAIM-3"))["id"]
    for body, field in (
        ({"reason": "damaged", "description": "broken"}, ""),  # photos are required
        ({"reason": "defective", "description": "leaks", "photo_urls": []}, ""),
        ({"reason": "bored", "description": "x"}, "reason"),
        ({"reason": "lost", "description": ""}, "description"),
        ({"reason": "lost", "description": "x", "photo_urls": ["not a url"]}, "photo_urls"),
        ({"reason": "lost", "description": "x", "item_reference_ids": ["cup"]}, "item_reference"),
        ({"reason": "lost", "description": "x", "item_reference_ids": []}, "item_reference"),
    ):
        response = await api.client.post(f"/v1/orders/{oid}/reorder", json=body, headers=key)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert any(d["field"].startswith(field) for d in error["details"]), error
    assert (await api.order(key, oid))["reorders"] == []
    claims = await api.client.get("/v1/claims", headers=key)
    assert claims.json()["data"] == []


async def test_another_merchant_sees_neither_the_order_nor_the_claim(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    other = Api.auth(await api.merchant(name="Other Shop"))
    oid = (await _printed(api, key, "CLAIM-4"))["id"]
    body = {"reason": "lost", "description": "never arrived"}
    refused = await api.client.post(f"/v1/orders/{oid}/reorder", json=body, headers=other)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "order_not_found"
    mine = await api.client.post(f"/v1/orders/{oid}/reorder", json=body, headers=key)
    claim_id = mine.json()["claim"]["id"]
    hidden = await api.client.get(f"/v1/claims/{claim_id}", headers=other)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "claim_not_found"
    listed = await api.client.get("/v1/claims", params={"order_id": oid}, headers=other)
    assert listed.json()["data"] == []
    assert (await api.client.get("/v1/claims", headers={"X-API-Key": "nope"})).status_code == 401


async def test_concurrent_reorders_make_one_reprint_per_distinct_claim(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    oid = (await _printed(api, key, "CLAIM-5"))["id"]
    url = f"/v1/orders/{oid}/reorder"
    same = {"reason": "lost", "description": "never arrived"}
    other = {"reason": "misprint", "description": "wrong colour", "item_reference_ids": ["mug"]}
    responses = await asyncio.gather(
        *(api.client.post(url, json=same, headers=key) for _ in range(3)),
        api.client.post(url, json=other, headers=key),
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 201, 201], [
        r.text for r in responses
    ]
    same_claims = {r.json()["claim"]["id"] for r in responses[:3]}
    assert len(same_claims) == 1, "identical requests are one claim"
    reprints = {r.json()["order"]["id"] for r in responses}
    assert len(reprints) == 2
    references = {r.json()["order"]["order_reference_id"] for r in responses}
    assert references == {"CLAIM-5-R1", "CLAIM-5-R2"}
    assert sorted((await api.order(key, oid))["reorders"]) == sorted(reprints)
    claims = (await api.client.get("/v1/claims", params={"order_id": oid}, headers=key)).json()
    assert len(claims["data"]) == 2
