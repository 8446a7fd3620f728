"""A hostile string in every field: a 422 that names the field, and nothing created or changed.

The report that started this: ``"REF\\nBcc: x@evil.test"`` as an order reference was accepted,
then broke the e-mail subject built from it, and the link e-mail was retried forever; NUL was a
201 on SQLite and a failure on PostgreSQL. Control characters (tab aside) never reach a workflow.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.support.api import ADMIN_TOKEN, Api, order_json

HOSTILE = ["REF\nBcc: x@evil.test", "a\rb", "nul\x00byte", "esc\x1b[31m", "line\u2028sep"]

# Where text goes in an order, as (path in the body, what the error names).
ORDER_FIELDS: list[tuple[tuple[Any, ...], str]] = [
    (("order_reference_id",), "order_reference_id"),
    (("customer_reference_id",), "customer_reference_id"),
    *(
        (("shipping_address", name), f"shipping_address.{name}")
        for name in (
            "first_name",
            "last_name",
            "company",
            "address_line_1",
            "address_line_2",
            "city",
            "state",
            "post_code",
            "email",
            "phone",
        )
    ),
    (("items", 0, "item_reference_id"), "items.0.item_reference_id"),
    (("items", 0, "product_uid"), "items.0.product_uid"),
    (("items", 0, "files", 0, "type"), "items.0.files.0.type"),
]


def _with(body: dict[str, Any], path: tuple[Any, ...], value: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error", error
    fields = [d["field"] for d in error["details"] or []]
    assert any(f.startswith(field) for f in fields) or field in error["message"], (field, error)


async def test_no_field_of_an_order_takes_a_control_character(api: Api) -> None:
    key = Api.auth(await api.merchant())
    body = order_json("HOSTILE-BASE")
    for path, field in ORDER_FIELDS:
        for value in HOSTILE:
            _refused(
                await api.client.post("/v1/orders", json=_with(body, path, value), headers=key),
                field,
            )
    for metadata in ({"note": "x\ny"}, {"nested": {"deep": ["ok", "nul\x00"]}}, {"k\ney": "v"}):
        response = await api.client.post(
            "/v1/orders", json=body | {"metadata": metadata}, headers=key
        )
        _refused(response, "metadata")
    listed = await api.client.get("/v1/orders", headers=key)
    assert listed.json()["data"] == [], "nothing was created"

    # A tab is text, and the same order without the hostile parts goes through.
    fine = _with(body, ("shipping_address", "address_line_2"), "Hof\t2")
    created = await api.client.post("/v1/orders", json=fine, headers=key)
    assert created.status_code == 201, created.text


async def test_no_other_write_takes_a_control_character(api: Api) -> None:
    key = Api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json("HOSTILE-2"), headers=key)
    order_id = created.json()["id"]
    for value in HOSTILE:
        cancel = await api.client.post(
            f"/v1/orders/{order_id}/cancel", json={"reason": value}, headers=key
        )
        _refused(cancel, "reason")
        address = order_json()["shipping_address"] | {"city": value}
        moved = await api.client.put(
            f"/v1/orders/{order_id}/shipping-address", json=address, headers=key
        )
        _refused(moved, "city")
        merchant = await api.client.post(
            "/v1/admin/merchants",
            json={"name": value, "support_email": "help@shop.test"},
            headers={"X-Admin-Token": ADMIN_TOKEN},
        )
        _refused(merchant, "name")
        event = await api.client.post(
            "/v1/production/events",
            json={"event_id": value, "order_id": order_id, "type": "printed"},
            headers={"Authorization": "Bearer tok-berlin"},
        )
        _refused(event, "event_id")
    order = (await api.client.get(f"/v1/orders/{order_id}", headers=key)).json()
    assert order["status"] == "scheduled" and order["cancel_reason"] is None
    assert [e["type"] for e in order["events"]] == ["created"], "nothing changed"


async def test_a_control_character_in_the_url_is_refused_before_any_route(api: Api) -> None:
    key = Api.auth(await api.merchant())
    for url in (
        "/v1/orders?order_reference_id=a%0Ab",
        "/v1/orders?order_reference_id=nul%00",
        "/v1/orders/ord_x%0D%0ASet-Cookie:%20a=b",
    ):
        response = await api.client.get(url, headers=key)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    fine = await api.client.get("/v1/orders?order_reference_id=a%09b", headers=key)
    assert fine.status_code == 200, fine.text
