"""Support IDs on orders, and cancel reason codes: what a merchant sees through the API, the
read model, webhooks and e-mails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

import api.services.orders as order_service
from activities.holds import HoldActivities
from contracts.orders import HoldNotice
from db.models import Order
from domain.orders import HoldKind, new_state
from domain.support_ids import generate_support_id, is_support_id
from domain.views import order_public
from integrations.mail import Mailer, render_email
from runtime.settings import Settings
from tests.helpers.api import Api, order_json, running_api
from tests.helpers.workflows import order_input

# ---------------------------------------------------------------------------- Support IDs


async def test_every_order_gets_a_support_id_the_api_and_read_model_agree_on(api: Api) -> None:
    key = Api.auth(await api.merchant())
    orders = [
        (await api.client.post("/v1/orders", json=order_json(f"S-{i}"), headers=key)).json()
        for i in range(3)
    ]
    ids = [o["support_id"] for o in orders]
    assert all(is_support_id(i) for i in ids), ids
    assert len(set(ids)) == 3
    for order in orders:
        seen = await api.until(key, order["id"], lambda o: o["events"])
        assert seen["support_id"] == order["support_id"]
    async with api.app.state.sessions() as session:
        rows = {r.id: r for r in (await session.exec(select(Order))).all()}
    for order in orders:
        row = rows[order["id"]]
        assert row.support_id == order["support_id"] == row.state["support_id"]
        assert row.workflow_input["support_id"] == order["support_id"]
    again = await api.client.post("/v1/orders", json=order_json("S-0"), headers=key)
    assert again.status_code == 200 and again.json()["support_id"] == ids[0]


async def test_the_list_finds_an_order_by_support_id_as_people_type_it(api: Api) -> None:
    owner = Api.auth(await api.merchant(name="Owner"))
    other = Api.auth(await api.merchant(name="Other"))
    mine = (await api.client.post("/v1/orders", json=order_json(), headers=owner)).json()
    await api.client.post("/v1/orders", json=order_json(), headers=owner)
    for typed in [mine["support_id"], f"  {mine['support_id'].lower()} "]:
        found = await api.client.get("/v1/orders", params={"support_id": typed}, headers=owner)
        assert found.status_code == 200, found.text
        assert [o["id"] for o in found.json()["data"]] == [mine["id"]]
    # Another merchant's Support ID finds nothing (never another merchant's order).
    theirs = await api.client.get(
        "/v1/orders", params={"support_id": mine["support_id"]}, headers=other
    )
    assert theirs.json() == {"data": [], "next_cursor": None}
    unused = await api.client.get("/v1/orders", params={"support_id": "PF-22222222"}, headers=owner)
    assert unused.status_code == 200 and unused.json()["data"] == []


@pytest.mark.parametrize(
    ("typed", "says"),
    [("7KQ2M9XR", "must start with 'PF-'"), ("PF-0O1IL", "8 characters"), ("PF-OOOOOOOO", "'O'")],
)
async def test_a_malformed_support_id_filter_is_a_422_saying_what_one_looks_like(
    api: Api, typed: str, says: str
) -> None:
    key = Api.auth(await api.merchant())
    response = await api.client.get("/v1/orders", params={"support_id": typed}, headers=key)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == "query.support_id"
    assert says in error["message"] and "looks like PF-" in error["message"]


async def test_a_support_id_collision_draws_another(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Api.auth(await api.merchant())
    first = (await api.client.post("/v1/orders", json=order_json("C-1"), headers=key)).json()
    fresh = generate_support_id()
    draws = iter([first["support_id"], first["support_id"], fresh])
    monkeypatch.setattr(order_service, "generate_support_id", lambda: next(draws))
    second = await api.client.post("/v1/orders", json=order_json("C-2"), headers=key)
    assert second.status_code == 201, second.text
    assert second.json()["support_id"] == fresh
    async with api.app.state.sessions() as session:
        rows = (await session.exec(select(Order).where(Order.support_id == fresh))).all()
    assert [r.order_reference_id for r in rows] == ["C-2"]
    assert rows[0].workflow_input["support_id"] == fresh


async def test_the_database_refuses_a_second_order_with_the_same_support_id(api: Api) -> None:
    key = Api.auth(await api.merchant())
    first = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    async with api.app.state.sessions() as session:
        row = await session.get(Order, first["id"])
        assert row is not None
        clone = Order.model_validate(
            row.model_dump() | {"id": "ord_clone", "order_reference_id": "CLONE"}
        )
        session.add(clone)
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_an_order_from_before_support_ids_shows_the_one_its_row_got(api: Api) -> None:
    """Its workflow does not know a Support ID (the migration gave the row one): the API, and
    the webhook payloads the projection builds, show the row's."""
    key = Api.auth(await api.merchant())
    order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    async with api.app.state.sessions() as session:
        row = await session.get(Order, order["id"])
        assert row is not None
        row.state = {**row.state, "support_id": None}
        await session.commit()
    seen = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()
    assert seen["support_id"] == order["support_id"]
    listed = (await api.client.get("/v1/orders", headers=key)).json()["data"]
    assert [o["support_id"] for o in listed] == [order["support_id"]]


def test_the_view_in_answers_and_webhooks_carries_the_support_id() -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    inp = order_input(now).model_copy(update={"support_id": "PF-7KQ2M9XR"})
    state = new_state(inp)
    view = order_public(state, [], now).model_dump(mode="json")
    assert view["support_id"] == "PF-7KQ2M9XR"
    assert view["cancel_reason_code"] is None


def test_merchant_emails_show_the_support_id_beside_the_order_reference() -> None:
    text, html = render_email(
        "personalization_link",
        reference="SHOP-1",
        order_id="ord_1",
        support_id="PF-7KQ2M9XR",
        url="http://x/p/t",
        expires="soon",
        seq=1,
        items=[],
    )
    assert "Support ID: PF-7KQ2M9XR" in text and "PF-7KQ2M9XR" in html
    holds = HoldActivities(Mailer(Settings()), "http://api", engine=None)  # type: ignore[arg-type]
    for notice in ("hold", "canceled"):
        hold = HoldNotice(
            order_id="ord_1",
            merchant_id="mer_1",
            order_reference_id="SHOP-1",
            support_email="help@shop.test",
            kind=HoldKind.ADDRESS_INVALID,
            description="no such street",
            notice=notice,  # type: ignore[arg-type]
            support_id="PF-7KQ2M9XR",
        )
        text, html = holds.render(hold, ["line-1"])
        assert "order ord_1, Support ID PF-7KQ2M9XR)" in text, notice
        assert "Support ID PF-7KQ2M9XR" in html
        text, _ = holds.render(hold.model_copy(update={"support_id": None}), ["line-1"])
        assert "Support ID" not in text


@pytest.fixture
async def mailing_api(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    """The API whose orders e-mail their personalization link a second after they arrive."""
    async with running_api(
        dev_env.client, database_url, tmp_path, personalization_email_delay=timedelta(seconds=1)
    ) as running:
        yield running


async def test_the_personalization_email_carries_the_support_id(mailing_api: Api) -> None:
    api = mailing_api
    key = Api.auth(await api.merchant())
    item = order_json()["items"][0] | {
        "personalization": {"fields": [{"name": "name", "label": "Name", "type": "text"}]}
    }
    body = order_json(items=[item])
    created = (await api.client.post("/v1/orders", json=body, headers=key)).json()
    mail = await api.mail.wait_for(lambda m: body["order_reference_id"] in str(m["Subject"]), 20)
    plain = str(mail.get_body(("plain",)).get_content())
    assert f"Support ID: {created['support_id']}" in plain


# ---------------------------------------------------------------------------- cancel reason codes


async def test_a_cancel_reason_code_is_kept_on_the_order_and_its_timeline(api: Api) -> None:
    key = Api.auth(await api.merchant())
    order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    canceled = await api.client.post(
        f"/v1/orders/{order['id']}/cancel",
        json={"reason": "the blue mug ran out", "reason_code": "inventory_shortage"},
        headers=key,
    )
    assert canceled.status_code == 200, canceled.text
    body = canceled.json()
    assert body["status"] == "canceled"
    assert body["cancel_reason_code"] == "inventory_shortage"
    assert body["cancel_reason"] == "the blue mug ran out"
    assert body["events"][-1]["detail"] == {
        "reason": "the blue mug ran out",
        "reason_code": "inventory_shortage",
    }
    seen = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()
    assert seen["cancel_reason_code"] == "inventory_shortage"
    async with api.app.state.sessions() as session:
        row = await session.get(Order, order["id"])
    assert row is not None and row.state["cancel_reason_code"] == "inventory_shortage"


@pytest.mark.parametrize("code", ["customer_request", "duplicate", "other"])
async def test_each_code_and_none_is_accepted(api: Api, code: str) -> None:
    key = Api.auth(await api.merchant())
    coded = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    plain = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    answer = await api.client.post(
        f"/v1/orders/{coded['id']}/cancel", json={"reason_code": code}, headers=key
    )
    assert answer.json()["cancel_reason_code"] == code
    without = await api.client.post(
        f"/v1/orders/{plain['id']}/cancel", json={"reason": "dup"}, headers=key
    )
    assert without.json()["cancel_reason_code"] is None
    assert without.json()["events"][-1]["detail"] == {"reason": "dup"}


@pytest.mark.parametrize(
    "body",
    [{"reason_code": "lost_interest"}, {"reason_code": "INVENTORY_SHORTAGE"}, {"reason_code": 3}],
)
async def test_an_unknown_reason_code_is_a_422_naming_the_field_and_nothing_changes(
    api: Api, body: dict[str, Any]
) -> None:
    key = Api.auth(await api.merchant())
    order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    refused = await api.client.post(f"/v1/orders/{order['id']}/cancel", json=body, headers=key)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == ["reason_code"]
    assert "customer_request" in error["message"]
    after = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()
    assert after["status"] == "scheduled" and after["cancel_reason_code"] is None
