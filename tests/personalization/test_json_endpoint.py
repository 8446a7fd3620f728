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


async def test_completion_answers_with_the_order_and_needs_no_api_key(shop: Shop) -> None:
    merchant = await shop.merchant(approval="manual")
    order, path = await shop.order_with_link(merchant)

    response = await shop.client.post(_endpoint(path), json={"items": VALUES})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == order["id"] and body["status"] == "pending_approval"
    mug = body["items"][0]["personalization"]
    assert mug == {
        "fields": mug["fields"],
        "status": "completed",
        "values": {"name": "Ada", "photo": "https://img.example/ada.png"},
    }
    assert body["allowed_actions"]["approve"] is True
    assert (await shop.order(merchant, order["id"]))["status"] == "pending_approval"

    again = await shop.client.post(_endpoint(path), json={"items": VALUES})
    _error(again, 409, "already_personalized")


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
    assert response.json()["status"] == "scheduled"
