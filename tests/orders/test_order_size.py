"""What an order may weigh, and the largest one accepted running its whole life.

An order travels through Temporal whole a few times (the workflow's input, the state carried
into a new run, the print job); a payload over 2 MB fails its workflow task forever. So the API
caps an order's items at ``ITEMS_MAX_BYTES`` as JSON (422 naming ``items``) and the customer's
personalization values at ``PERSONALIZATION_MAX_BYTES`` in all (422 ``invalid_personalization``
naming an item), and an order at every cap at once goes from the API through its link, the
cutoff, the facility and its reports to ``delivered``, every event of its history far below the
payload limit.

In-process API and worker on the session's dev server, SQLite and PostgreSQL; links are e-mailed
a second after the order arrives, and Reykjavik cuts off every 2 seconds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select
from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine, session_factory
from db.models import Order
from domain.orders import ITEMS_MAX_BYTES, METADATA_MAX_CHARS, PERSONALIZATION_MAX_BYTES
from tests.helpers.api import Api, order_json, running_api
from tests.helpers.production import TOKENS, tracking
from tests.personalization.conftest import Shop, link_in, path_of
from workflows.orders import OrderWorkflow

FACILITY = {"Authorization": f"Bearer {TOKENS['reykjavik']}"}
# Far below the 2 MB Temporal takes in one payload.
PAYLOAD_MARGIN = 1024 * 1024


@pytest.fixture
async def shop(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Shop]:
    async with running_api(
        dev_env.client,
        database_url,
        tmp_path,
        base_url="http://printflow.test",
        personalization_email_delay=timedelta(seconds=1),
    ) as api:
        yield Shop(**{f.name: getattr(api, f.name) for f in fields(api)})


def _items(count: int, url_length: int, personalized: bool) -> list[dict[str, Any]]:
    spec = {
        "fields": [
            {"name": "text", "label": "Text on the print", "type": "text", "max_length": 700}
        ]
    }
    return [
        {
            "item_reference_id": f"item-{i:03d}",
            "product_uid": "poster_a3_matte",
            "quantity": 1,
            "files": [
                {"type": f"page-{f}", "url": f"https://files.example/{i}/{f}/" + "p" * url_length}
                for f in range(3)
            ],
        }
        | ({"personalization": spec} if personalized else {})
        for i in range(count)
    ]


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


async def _orders(shop: Shop) -> int:
    engine = create_engine(shop.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return (await session.exec(select(func.count()).select_from(Order))).one()
    finally:
        await engine.dispose()


async def test_items_over_the_cap_are_a_422_naming_them_and_nothing_is_created(
    shop: Shop,
) -> None:
    key = Api.auth(await shop.merchant())
    body = order_json(items=_items(100, 600, personalized=False))
    assert ITEMS_MAX_BYTES < _size(body["items"]) < shop.settings.max_body_bytes
    response = await shop.client.post("/v1/orders", json=body, headers=key)
    assert response.status_code == 422, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == ["items"]
    assert str(ITEMS_MAX_BYTES) in error["details"][0]["message"]
    assert await _orders(shop) == 0


async def test_the_largest_accepted_order_lives_its_whole_life(shop: Shop) -> None:
    merchant = await shop.merchant()
    key = Api.auth(merchant)
    body = order_json(country="IS", items=_items(100, 410, personalized=True))
    body["metadata"] = {"notes": ["n" * 90 for _ in range(40)], "crm": {"id": "CRM-1"}}
    assert METADATA_MAX_CHARS - 300 < len(str(body["metadata"])) <= METADATA_MAX_CHARS
    assert ITEMS_MAX_BYTES * 0.9 < _size(body["items"]) <= ITEMS_MAX_BYTES, _size(body["items"])

    created = await shop.client.post("/v1/orders", json=body, headers=key)
    assert created.status_code == 201, created.text[:300]
    order_id = created.json()["id"]
    token = path_of(link_in(await shop.link_mail(body["order_reference_id"]))).rsplit("/", 1)[1]

    # Values one byte over the cap are refused, naming an item; the order still waits.
    each = (PERSONALIZATION_MAX_BYTES // 100) - len("text")
    over = {f"item-{i:03d}": {"text": "v" * each} for i in range(100)}
    over["item-099"]["text"] += "v" * (PERSONALIZATION_MAX_BYTES % 100 + 1)
    refused = await shop.client.post(f"/v1/personalization/{token}", json={"items": over})
    assert refused.status_code == 422, refused.text[:300]
    error = refused.json()["error"]
    assert error["code"] == "invalid_personalization"
    assert str(PERSONALIZATION_MAX_BYTES) in " ".join(error["details"].values())
    assert set(error["details"]) <= set(over)
    assert (await shop.order(merchant, order_id))["status"] == "pending_personalization"

    values = {f"item-{i:03d}": {"text": "v" * each} for i in range(100)}
    values["item-099"]["text"] += "v" * (PERSONALIZATION_MAX_BYTES % 100)
    completed = await shop.client.post(f"/v1/personalization/{token}", json={"items": values})
    assert completed.status_code == 200, completed.text[:300]

    produced = await shop.until(key, order_id, lambda o: o["status"] == "in_production")
    assert produced["metadata"] == body["metadata"]
    assert [i["personalization"]["values"] for i in produced["items"]] == list(values.values())
    job = shop.simulator.state.simulator.find_job_for_order(order_id)
    assert job is not None, "the print job never reached the facility"
    sent = job.request["items"]
    assert [i["personalization"] for i in sent] == list(values.values())
    assert all(len(i["files"]) == 3 for i in sent)

    for n, (kind, extra) in enumerate(
        [("printed", {}), ("shipped", tracking("PKG-LARGEST")), ("delivered", {})]
    ):
        report = {"event_id": f"largest-{order_id}-{n}", "order_id": order_id, "type": kind}
        posted = await shop.client.post(
            "/v1/production/events", json=report | extra, headers=FACILITY
        )
        assert posted.status_code == 202, posted.text
        await shop.until(key, order_id, lambda o, k=kind: o["status"] == k)  # type: ignore[misc]

    # The read model holds what the workflow ended with.
    handle = shop.temporal.get_workflow_handle_for(OrderWorkflow.run, order_id)
    final = await handle.result()
    engine = create_engine(shop.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            row = await session.get(Order, order_id)
            assert row is not None and row.state == final.model_dump(mode="json")
    finally:
        await engine.dispose()
    assert final.status.value == "delivered"

    # Every payload of its history is far below Temporal's limit, the order carried whole
    # only where it must be: its input, the link, the values, the projections that carry
    # changed items (the link's, the values'), the print job.
    events = [e for e in (await handle.fetch_history()).events]
    sizes = sorted((e.ByteSize() for e in events), reverse=True)
    assert sizes[0] < PAYLOAD_MARGIN, sizes[:5]
    assert len([s for s in sizes if s > 64 * 1024]) <= 6, sizes[:8]
    assert (await handle.query(OrderWorkflow.order)).version == final.version
