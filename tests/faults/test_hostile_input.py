"""A control character in any text a merchant or a facility sends: a 422 ``validation_error``
whose details name the field, and nothing created or changed. A tab is text.

The report that started this: ``"REF\\nBcc: x@evil.test"`` as an order reference was accepted,
then ended up in the subject of an e-mail built from it, and the e-mail was retried forever; NUL
was a 201 on SQLite and a failure on PostgreSQL. Refused here, in every field, for line feed,
carriage return, NUL, escape and the Unicode line separator: in an order's body (the address,
the items, their files and personalization fields, metadata keys and values at any depth), in a
cancel, an address change, a hold's replacement files, a reorder, a merchant, a facility's
event, and in the URL.

In-process API and worker (``api`` fixture: a real dev server, SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlmodel import func, select

from db.models import Claim, Merchant, ProductionEvent
from domain.orders import ITEMS_MAX_BYTES
from tests.helpers.api import ADMIN_TOKEN, FACILITY_URL, TEST_FACILITIES, Api, order_json

HOSTILE = {
    "line-feed": "REF\nBcc: x@evil.test",
    "carriage-return": "a\rb",
    "nul": "nul\x00byte",
    "escape": "esc\x1b[31m",
    "line-separator": "line\u2028sep",
}
THE_REPORT = "REF\nBcc: x@evil.test"
TOKENS = {f["id"]: f["api_token"] for f in TEST_FACILITIES}
ADMIN = {"X-Admin-Token": ADMIN_TOKEN}

# Every text field of an order's body: (path in the body, the field the error must name, and
# whether it is free text, where a tab must pass).
ORDER_FIELDS: list[tuple[tuple[Any, ...], str, bool]] = [
    (("order_reference_id",), "order_reference_id", False),
    (("customer_reference_id",), "customer_reference_id", False),
    *(
        (("shipping_address", name), f"shipping_address.{name}", free)
        for name, free in (
            ("first_name", True),
            ("last_name", True),
            ("company", True),
            ("address_line_1", True),
            ("address_line_2", True),
            ("city", True),
            ("state", True),
            ("post_code", False),
            ("country", False),
            ("email", False),
            ("phone", False),
        )
    ),
    (("items", 0, "item_reference_id"), "items.0.item_reference_id", False),
    (("items", 0, "product_uid"), "items.0.product_uid", False),
    (("items", 0, "files", 0, "type"), "items.0.files.0.type", False),
    (("items", 0, "files", 0, "url"), "items.0.files.0.url", False),
    (
        ("items", 0, "personalization", "fields", 0, "label"),
        "items.0.personalization.fields.0.label",
        True,
    ),
    (
        ("items", 0, "personalization", "fields", 0, "name"),
        "items.0.personalization.fields.0.name",
        False,
    ),
]
# Metadata is free-form JSON: the text may hide in a key or a value, at any depth.
METADATA: list[tuple[str, Any]] = [
    ("a value", lambda v: {"note": v}),
    ("a key", lambda v: {v: "x"}),
    ("a value in a list in an object", lambda v: {"nested": {"deep": ["ok", v]}}),
    ("a key in an object", lambda v: {"nested": {v: 1}}),
]


def personalized_order(reference: str | None = None, **overrides: Any) -> dict[str, Any]:
    """An order whose item has a personalization field (so its label and name are text too)."""
    body = order_json(reference, **overrides)
    body["items"][0]["personalization"] = {
        "fields": [{"name": "engraving", "label": "Name on the mug", "type": "text"}]
    }
    body["shipping_address"] |= {"company": "Mugs GmbH", "address_line_2": "Hof", "state": "BE"}
    body["shipping_address"]["phone"] = "+49 30 1234567"
    body["customer_reference_id"] = "cust-1"
    return body


def with_value(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


def at(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        body = body[step]
    return body


def refusal(response: httpx.Response, field: str) -> str | None:
    """None if ``response`` is a 422 ``validation_error`` naming ``field``; else what it is.

    A detail names the field by its ``field`` (the field or a part of it) or, for a check of
    the whole body such as metadata's, by its message (``"...metadata: ..."``).
    """
    if response.status_code != 422:
        return f"{response.status_code} {response.text[:300]}"
    error = response.json().get("error") or {}
    if error.get("code") != "validation_error":
        return f"422 with code {error.get('code')!r}: {error}"
    details = error.get("details") or []
    for detail in details:
        where = detail.get("field") or ""
        if where == field or where.startswith(f"{field}."):
            return None
        if f"{field}:" in (detail.get("message") or ""):
            return None
    return f"422 whose details do not name {field!r}: {details}"


def refused(response: httpx.Response, field: str) -> None:
    problem = refusal(response, field)
    assert problem is None, f"{field}: {problem}"


async def listed(api: Api, key: dict[str, str]) -> list[str]:
    response = await api.client.get("/v1/orders", params={"limit": 100}, headers=key)
    assert response.status_code == 200, response.text
    return [o["id"] for o in response.json()["data"]]


async def order(api: Api, key: dict[str, str], order_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/orders/{order_id}", headers=key)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def count(api: Api, model: Any, *where: Any) -> int:
    async with api.app.state.sessions() as session:
        query = select(func.count()).select_from(model)
        for clause in where:
            query = query.where(clause)
        return int((await session.exec(query)).one())


async def facility_event(api: Api, body: dict[str, Any]) -> httpx.Response:
    return await api.client.post(
        "/v1/production/events",
        json=body,
        headers={"Authorization": f"Bearer {TOKENS['reykjavik']}"},
    )


async def at_reykjavik(api: Api, key: dict[str, str], reference: str) -> str:
    """An order at Reykjavik (cutoff every 2 s), created early in a cutoff period."""
    # Early in the period, so the order's cutoff is at least a second away.
    await asyncio.sleep((2.1 - time.time() % 2) % 2)
    created = await api.client.post(
        "/v1/orders", json=order_json(reference, country="IS"), headers=key
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


# ---------------------------------------------------------------------------- the order's body


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
async def test_no_text_field_of_an_order_takes_a_control_character(api: Api, value: str) -> None:
    key = Api.auth(await api.merchant())
    base = personalized_order("HOSTILE-BASE")
    failures = []
    for path, field, _ in ORDER_FIELDS:
        response = await api.client.post(
            "/v1/orders", json=with_value(base, path, value), headers=key
        )
        if problem := refusal(response, field):
            failures.append(f"{field}: {problem}")
    for where, metadata in METADATA:
        response = await api.client.post(
            "/v1/orders", json=base | {"metadata": metadata(value)}, headers=key
        )
        if problem := refusal(response, "metadata"):
            failures.append(f"metadata, {where}: {problem}")
    assert not failures, f"{value!r} was not refused as it must be:\n" + "\n".join(failures)
    assert await listed(api, key) == [], "nothing was created"

    # The same body without the control character is an order.
    created = await api.client.post("/v1/orders", json=base, headers=key)
    assert created.status_code == 201, created.text


async def test_a_tab_is_text_where_text_is_free(api: Api) -> None:
    key = Api.auth(await api.merchant())
    ids = []
    for n, (path, field, free) in enumerate(ORDER_FIELDS):
        if not free:
            continue
        text = "Hof\t2" if path[0] == "shipping_address" else "Name\ton the mug"
        body = with_value(personalized_order(f"TAB-{n}"), path, text)
        created = await api.client.post("/v1/orders", json=body, headers=key)
        assert created.status_code == 201, (field, created.text)
        assert at(created.json(), path) == text, field
        ids.append(created.json()["id"])
    body = order_json("TAB-META") | {"metadata": {"note": "a\tb", "nested": {"deep": ["c\td"]}}}
    created = await api.client.post("/v1/orders", json=body, headers=key)
    assert created.status_code == 201, created.text
    assert created.json()["metadata"] == body["metadata"]
    ids.append(created.json()["id"])
    assert sorted(await listed(api, key)) == sorted(ids)


async def test_the_report_that_started_this(api: Api) -> None:
    key = Api.auth(await api.merchant())
    response = await api.client.post("/v1/orders", json=order_json(THE_REPORT), headers=key)
    refused(response, "order_reference_id")
    assert await listed(api, key) == [], "nothing was created"
    search = await api.client.get(
        "/v1/orders", params={"order_reference_id": THE_REPORT}, headers=key
    )
    assert search.status_code == 422, search.text
    assert search.json()["error"]["code"] == "validation_error"
    assert api.mail.messages == [], "no e-mail went out"


# ---------------------------------------------------------------------------- other writes


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_cancel_or_an_address_change_takes_no_control_character(
    api: Api, value: str
) -> None:
    key = Api.auth(await api.merchant())
    body = personalized_order("HOSTILE-WRITES")
    del body["items"][0]["personalization"]
    created = await api.client.post("/v1/orders", json=body, headers=key)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    before = await order(api, key, order_id)

    cancel = await api.client.post(
        f"/v1/orders/{order_id}/cancel", json={"reason": value}, headers=key
    )
    refused(cancel, "reason")
    address = body["shipping_address"]
    for name in address:
        moved = await api.client.put(
            f"/v1/orders/{order_id}/shipping-address", json=address | {name: value}, headers=key
        )
        refused(moved, name)

    after = await order(api, key, order_id)
    assert after == before, "a refused write changed the order"
    assert after["status"] == "scheduled" and after["cancel_reason"] is None
    assert [e["type"] for e in after["events"]] == ["created"]


async def test_a_tab_in_a_cancel_reason_is_text(api: Api) -> None:
    key = Api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json("TAB-CANCEL"), headers=key)
    order_id = created.json()["id"]
    canceled = await api.client.post(
        f"/v1/orders/{order_id}/cancel", json={"reason": "asked\tby phone"}, headers=key
    )
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["cancel_reason"] == "asked\tby phone"


async def test_a_held_order_takes_no_control_character_in_replacement_files(api: Api) -> None:
    key = Api.auth(await api.merchant())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.simulator), base_url=FACILITY_URL
    ) as facility:
        order_id = await at_reykjavik(api, key, "HOSTILE-HOLD")
        staged = await facility.post("/_control/reject-order", json={"order_id": order_id})
        assert staged.is_success, staged.text
        held = await api.until(key, order_id, lambda o: o["status"] == "on_hold")
        assert held["hold"]["kind"] == "facility_rejected", held["hold"]

        file = {"type": "default", "url": "https://files.example/fixed.png"}
        for value in HOSTILE.values():
            for files, field in (
                ({"line-1": [file | {"type": value}]}, "files.line-1.0.type"),
                (
                    {"line-1": [file | {"url": f"https://files.example/{value}.png"}]},
                    "files.line-1.0.url",
                ),
                ({f"line{value}1": [file]}, "files"),
            ):
                answer = await api.client.post(
                    f"/v1/orders/{order_id}/resolve-hold",
                    json={"action": "replace_files", "files": files},
                    headers=key,
                )
                refused(answer, field)
        assert await order(api, key, order_id) == held, "a refused answer changed the hold"
        assert await api.facility("/print-jobs") == []

        # The facility fixed, the same order goes through with proper files.
        assert (await facility.delete(f"/_control/reject-order/{order_id}")).is_success
        answer = await api.client.post(
            f"/v1/orders/{order_id}/resolve-hold",
            json={"action": "replace_files", "files": {"line-1": [file]}},
            headers=key,
        )
        assert answer.status_code == 200, answer.text
        done = await api.until(key, order_id, lambda o: o["status"] == "in_production")
        assert [{k: f[k] for k in file} for f in done["items"][0]["files"]] == [file]


async def test_a_produced_order_takes_no_control_character_from_facility_or_merchant(
    api: Api,
) -> None:
    key = Api.auth(await api.merchant())
    order_id = await at_reykjavik(api, key, "HOSTILE-PRODUCED")
    produced = await api.until(key, order_id, lambda o: o["status"] == "in_production")

    def event(**fields: Any) -> dict[str, Any]:
        return {"event_id": "fev_" + uuid.uuid4().hex, "order_id": order_id} | fields

    tracking = {"carrier": "DHL", "tracking_code": "PKG1", "tracking_url": "https://t.test/1"}
    issue = {"kind": "other", "description": "smudge on the rim"}
    for value in HOSTILE.values():
        for body, field in (
            (event(type="printed", event_id=value), "event_id"),
            (event(type="printed", order_id=f"{order_id}{value}"), "order_id"),
            (event(type="shipped", tracking=tracking | {"carrier": value}), "tracking.carrier"),
            (
                event(type="shipped", tracking=tracking | {"tracking_code": value}),
                "tracking.tracking_code",
            ),
            (
                event(
                    type="shipped", tracking=tracking | {"tracking_url": f"https://t.test/{value}"}
                ),
                "tracking.tracking_url",
            ),
            (event(type="issue", issue=issue | {"description": value}), "issue.description"),
        ):
            refused(await facility_event(api, body), field)
    assert await count(api, ProductionEvent, ProductionEvent.order_id == order_id) == 0
    assert await order(api, key, order_id) == produced, "a refused event changed the order"

    printed = await facility_event(api, event(type="printed"))
    assert printed.status_code == 202, printed.text
    await api.until(key, order_id, lambda o: o["status"] == "printed")

    claim = {"reason": "misprint", "description": "colours washed out"}
    for value in HOSTILE.values():
        for body, field in (
            (claim | {"description": value}, "description"),
            (claim | {"item_reference_ids": [value]}, "item_reference_ids"),
            (claim | {"photo_urls": [f"https://photos.test/{value}.jpg"]}, "photo_urls"),
        ):
            answer = await api.client.post(f"/v1/orders/{order_id}/reorder", json=body, headers=key)
            refused(answer, field)
    assert await listed(api, key) == [order_id], "no reprint was created"
    assert await count(api, Claim, Claim.original_order_id == order_id) == 0

    # A tab is text: in a claim's description and in a facility's issue report.
    reorder = await api.client.post(
        f"/v1/orders/{order_id}/reorder",
        json=claim | {"description": "washed out\tall over"},
        headers=key,
    )
    assert reorder.status_code == 201, reorder.text
    assert reorder.json()["claim"]["description"] == "washed out\tall over"
    reported = await facility_event(
        api, event(type="issue", issue=issue | {"description": "smudge\ton the rim"})
    )
    assert reported.status_code == 202, reported.text


async def test_a_merchant_takes_no_control_character(api: Api) -> None:
    before = await count(api, Merchant)
    merchant = {"name": "Mug Shop", "support_email": "help@shop.test"}
    for value in HOSTILE.values():
        for body, field in (
            (merchant | {"name": value}, "name"),
            (merchant | {"support_email": f"help{value}@shop.test"}, "support_email"),
            (merchant | {"webhook_url": f"https://hooks.test/{value}"}, "webhook_url"),
        ):
            refused(await api.client.post("/v1/admin/merchants", json=body, headers=ADMIN), field)
    assert await count(api, Merchant) == before, "no merchant was created"
    created = await api.client.post(
        "/v1/admin/merchants", json=merchant | {"name": "Mug\tShop"}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "Mug\tShop"


# ---------------------------------------------------------------------------- the URL


async def test_a_control_character_in_the_url_is_refused_before_any_route(api: Api) -> None:
    key = Api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json("URL-1"), headers=key)
    order_id = created.json()["id"]
    before = await order(api, key, order_id)
    for value in HOSTILE.values():
        encoded = quote(value, safe="")
        for method, url in (
            ("GET", f"/v1/orders?order_reference_id=a{encoded}b"),
            ("GET", f"/v1/claims?order_reference_id=a{encoded}b"),
            ("GET", f"/v1/orders/{order_id}{encoded}"),
            ("POST", f"/v1/orders/{order_id}{encoded}/cancel"),
            ("POST", f"/v1/orders?note={encoded}"),
        ):
            body = order_json("URL-2") if url.startswith("/v1/orders?") else {}
            response = await api.client.request(method, url, json=body, headers=key)
            assert response.status_code == 422, (value, url, response.text)
            error = response.json()["error"]
            assert error["code"] == "validation_error", (url, error)
            assert "URL" in error["message"], (url, error)
    plain = await api.client.get("/v1/orders?order_reference_id=a%0Ab", headers=key)
    assert plain.status_code == 422, plain.text
    assert plain.json()["error"]["code"] == "validation_error"
    assert await listed(api, key) == [order_id], "nothing was created"
    assert await order(api, key, order_id) == before, "nothing was changed"

    fine = await api.client.get("/v1/orders?order_reference_id=URL%091", headers=key)
    assert fine.status_code == 200, fine.text


async def test_the_refusal_of_a_query_parameter_names_it(api: Api) -> None:
    key = Api.auth(await api.merchant())
    response = await api.client.get("/v1/orders?order_reference_id=a%0Ab", headers=key)
    refused(response, "order_reference_id")


# ---------------------------------------------------------------------------- deep nesting

DEEP = "__deep__"


def nested(depth: int) -> str:
    """JSON text: ``depth`` levels of lists and objects, alternating, around ``"x"`` (written
    out by hand: Python's JSON encoder itself gives up at about 1000 levels)."""
    opening = "".join('{"k":' if level % 2 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return f'{opening}"x"{closing}'


def with_deep(body: Any, depth: int) -> str:
    """``body`` as JSON text, with the string ``DEEP`` replaced by ``nested(depth)``."""
    return json.dumps(body).replace(f'"{DEEP}"', nested(depth))


def deep_metadata(depth: int) -> str:
    """Metadata ``depth`` levels deep (metadata itself the first), as JSON text."""
    return with_deep({"k": DEEP}, depth - 1)


async def post_json(
    api: Api, method: str, url: str, text: str, headers: dict[str, str]
) -> httpx.Response:
    headers = {**headers, "Content-Type": "application/json"}
    return await api.client.request(method, url, content=text.encode(), headers=headers)


async def test_metadata_deeper_than_eight_levels_is_refused_naming_it(api: Api) -> None:
    """201 for an order whose metadata is nested 8 deep; 422 naming ``metadata`` for 9, 200 (an
    order that could never have run: the worker's converter reads JSON only ~200 deep) and
    900 (once a RecursionError and a 500); too long is a 422 too."""
    key = Api.auth(await api.merchant())
    for depth in (9, 200, 900):
        text = json.dumps(order_json(f"DEEP-{depth}") | {"metadata": DEEP}).replace(
            f'"{DEEP}"', deep_metadata(depth)
        )
        response = await post_json(api, "POST", "/v1/orders", text, key)
        refused(response, "metadata")
        assert "8 levels" in response.json()["error"]["message"], response.text
    too_long = order_json("LONG") | {"metadata": {"note": "x" * 4000}}
    refused(await api.client.post("/v1/orders", json=too_long, headers=key), "metadata")
    assert await listed(api, key) == [], "nothing was created"

    deepest = order_json("DEEP-8") | {"metadata": json.loads(deep_metadata(8))}
    created = await api.client.post("/v1/orders", json=deepest, headers=key)
    assert created.status_code == 201, created.text
    assert created.json()["metadata"] == deepest["metadata"]


@pytest.mark.parametrize("depth", [100, 500, 900, 1000, 5000])
async def test_json_nested_deep_anywhere_in_a_body_is_a_422_in_the_envelope(
    api: Api, depth: int
) -> None:
    """Wherever deep JSON sits in a body (metadata, a field that wants text, an item, the body
    itself), and however deep (past what Python's JSON reader takes, too), the answer is a
    422 in the error envelope: never a 500."""
    key = Api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json("DEEP-BASE"), headers=key)
    order_id = created.json()["id"]
    base = order_json("DEEP-ANY")
    requests: list[tuple[str, str, Any, dict[str, str]]] = [
        ("POST", "/v1/orders", base | {"metadata": {"k": DEEP}}, key),
        ("POST", "/v1/orders", base | {"order_reference_id": DEEP}, key),
        ("POST", "/v1/orders", base | {"items": [DEEP]}, key),
        ("POST", "/v1/orders", DEEP, key),
        ("PUT", f"/v1/orders/{order_id}/shipping-address", {"city": DEEP}, key),
        ("POST", f"/v1/orders/{order_id}/cancel", {"reason": DEEP}, key),
        ("POST", "/v1/admin/merchants", {"name": DEEP}, ADMIN),
    ]
    for method, url, body, headers in requests:
        response = await post_json(api, method, url, with_deep(body, depth), headers)
        assert response.status_code == 422, (url, response.status_code, response.text[:300])
        error = response.json()["error"]
        assert error["code"] == "validation_error", (url, error)
    assert await listed(api, key) == [order_id], "nothing was created"


async def test_the_largest_and_deepest_accepted_order_runs_to_the_facility(api: Api) -> None:
    """What is accepted can run: an order at every limit at once (100 items of 20 files each,
    the items just under ITEMS_MAX_BYTES, metadata 8 levels deep and near its 4000 characters)
    is decoded by the worker through the suite's data converter (encrypted payloads), goes to
    production at the cutoff and its print job reaches the facility with every item and file.
    (tests/orders/test_order_size.py takes the largest order with personalization through its
    whole life.)"""
    assert api.settings.payload_keys is not None, "the suite runs with PRINTFLOW_PAYLOAD_KEYS"
    key = Api.auth(await api.merchant())
    metadata = json.loads(deep_metadata(8))
    metadata["notes"] = ["n" * 90 for _ in range(40)]
    assert 3800 < len(str(metadata)) <= 4000
    body = order_json("LARGEST", country="IS") | {"metadata": metadata}
    item = body["items"][0]
    body["items"] = [
        item
        | {
            "item_reference_id": f"item-{i:03d}",
            "files": [
                {"type": f"p{f}", "url": f"https://files.example/{i}/{f}/" + "p" * 22}
                for f in range(20)
            ],
        }
        for i in range(100)
    ]
    size = len(json.dumps(body["items"], separators=(",", ":")))
    assert ITEMS_MAX_BYTES * 0.85 < size <= ITEMS_MAX_BYTES, size

    # Early in Reykjavik's 2-second cutoff period, so the cutoff is not already due.
    await asyncio.sleep((2.1 - time.time() % 2) % 2)
    created = await api.client.post("/v1/orders", json=body, headers=key)
    assert created.status_code == 201, created.text[:300]
    order_id = created.json()["id"]
    produced = await api.until(key, order_id, lambda o: o["status"] == "in_production")
    assert produced["metadata"] == metadata

    simulator = api.simulator.state.simulator
    job = simulator.find_job_for_order(order_id)
    assert job is not None, "the print job never reached the facility"
    sent = job.request["items"]
    assert [i["item_reference_id"] for i in sent] == [f"item-{i:03d}" for i in range(100)]
    assert all(len(i["files"]) == 20 for i in sent)
