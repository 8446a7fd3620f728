"""POST /v1/personalization/{token}: the same completion for shops that build their own form."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.personalization.conftest import Shop, link_in, path_of, personalized_order

VALUES = {
    "mug-1": {"name": " Ada ", "photo": "https://img.example/ada.png"},
    "poster-1": {"greeting": "Happy birthday!"},
}


def _endpoint(path: str) -> str:
    return "/v1/personalization/" + path.rsplit("/", 1)[1]


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return dict(error)


async def test_completion_answers_with_what_the_page_shows_and_needs_no_api_key(
    shop: Shop,
) -> None:
    merchant = await shop.merchant(approval="manual")
    order, path = await shop.order_with_link(merchant)

    response = await shop.client.post(_endpoint(path), json={"items": VALUES})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"shop_name", "order_reference_id", "expires_at", "items"}
    assert body["shop_name"] == merchant["name"]
    assert body["order_reference_id"] == order["order_reference_id"]
    mug = body["items"][0]
    assert mug["item_reference_id"] == "mug-1" and mug["status"] == "completed"
    assert mug["values"] == {"name": "Ada", "photo": "https://img.example/ada.png"}
    assert {f["name"]: f.get("max_length") for f in mug["fields"]}["name"] == 20
    assert (await shop.order(merchant, order["id"]))["status"] == "pending_approval"

    again = await shop.client.post(_endpoint(path), json={"items": VALUES})
    _error(again, 409, "already_personalized")


async def test_the_link_reads_as_the_page_shows_it_never_address_email_or_metadata(
    shop: Shop,
) -> None:
    merchant = await shop.merchant()
    body = personalized_order()
    body["metadata"] = {"internal_price": "12.50", "crm_id": "CRM-998877"}
    order, path = await shop.order_with_link(merchant, body)
    full = await shop.order(merchant, order["id"])
    address = full["shipping_address"]

    read = await shop.client.get(_endpoint(path))
    assert read.status_code == 200, read.text
    view = read.json()
    assert [i["item_reference_id"] for i in view["items"]] == ["mug-1", "poster-1"]
    assert all(i["status"] == "pending" and i["values"] is None for i in view["items"])
    assert view["expires_at"]
    completed = await shop.client.post(_endpoint(path), json={"items": VALUES})
    assert completed.status_code == 200, completed.text
    for answer in (read, completed):
        text = answer.text
        for secret in (
            address["email"],
            address["address_line_1"],
            address["last_name"],
            address["post_code"],
            "CRM-998877",
            "12.50",
            order["id"],
            merchant["support_email"],
        ):
            assert secret not in text, f"{secret!r} leaked"
        for key in ("shipping_address", "metadata", "id", "status", "events", "facility"):
            assert key not in answer.json(), key


async def test_values_that_break_the_rules_are_a_422_naming_each_field(shop: Shop) -> None:
    merchant = await shop.merchant()
    order, path = await shop.order_with_link(merchant)

    response = await shop.client.post(
        _endpoint(path),
        json={"items": {"mug-1": {"name": "x" * 21, "photo": "not a url", "size": "XL"}}},
    )

    error = _error(response, 422, "invalid_personalization")
    assert set(error["details"]) == {"mug-1.name", "mug-1.photo", "mug-1.size"}
    assert "20" in error["details"]["mug-1.name"]
    assert (await shop.order(merchant, order["id"]))["status"] == "pending_personalization"


async def test_a_body_of_the_wrong_shape_is_a_validation_error(shop: Shop) -> None:
    merchant = await shop.merchant()
    _, path = await shop.order_with_link(merchant)

    bodies: list[dict[str, Any]] = [
        {"items": ["mug-1"]},
        {"items": {"mug-1": {"name": 7}}},
        {"values": {}},
    ]
    for body in bodies:
        response = await shop.client.post(_endpoint(path), json=body)
        error = _error(response, 422, "validation_error")
        assert error["details"], body


async def test_unknown_tokens_are_404(shop: Shop) -> None:
    response = await shop.client.post(_endpoint("/p/" + "Z" * 43), json={"items": VALUES})
    _error(response, 404, "link_not_found")


async def test_a_canceled_order_is_409(shop: Shop) -> None:
    merchant = await shop.merchant()
    order, path = await shop.order_with_link(merchant)
    await shop.client.post(f"/v1/orders/{order['id']}/cancel", json={}, headers=shop.auth(merchant))

    error = _error(
        await shop.client.post(_endpoint(path), json={"items": VALUES}), 409, "order_canceled"
    )
    assert error["details"]["order_reference_id"] == order["order_reference_id"]


async def test_an_order_approved_without_personalization_is_409(shop: Shop) -> None:
    merchant = await shop.merchant()
    order, path = await shop.order_with_link(merchant)
    await shop.client.post(f"/v1/orders/{order['id']}/approve", headers=shop.auth(merchant))

    response = await shop.client.post(_endpoint(path), json={"items": VALUES})
    _error(response, 409, "personalization_closed")


@pytest.mark.parametrize("link_ttl", [timedelta(seconds=3)])
async def test_an_expired_link_is_410_and_its_successor_works(shop: Shop) -> None:
    merchant = await shop.merchant()
    body = personalized_order()
    order, first = await shop.order_with_link(merchant, body)
    second = path_of(link_in(await shop.link_mail(body["order_reference_id"], number=2)))

    _error(await shop.client.post(_endpoint(first), json={"items": VALUES}), 410, "link_expired")
    response = await shop.client.post(_endpoint(second), json={"items": VALUES})
    assert response.status_code == 200, response.text
    assert {i["status"] for i in response.json()["items"]} == {"completed"}
    assert (await shop.order(merchant, order["id"]))["status"] == "scheduled"
