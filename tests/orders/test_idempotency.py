"""Idempotency-Key on the API's writes: a retry gets the first answer, and the change happens once.

Against the running API (real Temporal dev server, SQLite and PostgreSQL): merchants created by
an operator, orders canceled by merchants, personalization completed by the end customer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlmodel import col, func, select
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api import idempotency
from db.models import Agent, IdempotentRequest, Merchant
from domain.orders import CancelRequest
from tests.helpers.api import ADMIN_TOKEN, Api, order_json, running_api
from tests.helpers.polling import apoll
from workflows.orders import OrderWorkflow

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
REPLAYED = "Idempotent-Replayed"


def _merchant_body(name: str) -> dict[str, Any]:
    return {"name": name, "support_email": "help@mugs.example.com"}


def _public(merchant: dict[str, object]) -> dict[str, object]:
    """A merchant as answered, without the secrets that are shown once (never replayed)."""
    return {k: v for k, v in merchant.items() if k not in ("api_key", "webhook_secret")}


async def _merchants_named(api: Api, name: str) -> int:
    async with api.app.state.sessions() as session:
        query = select(func.count()).select_from(Merchant).where(Merchant.name == name)
        return int((await session.exec(query)).one())


async def test_a_retried_merchant_creation_gets_the_first_answer_and_one_merchant(
    api: Api,
) -> None:
    headers = ADMIN | {"Idempotency-Key": "onboard-mugs-1"}
    first = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body("Mugs"), headers=headers
    )
    again = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body("Mugs"), headers=headers
    )

    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    secrets = {"api_key", "webhook_secret"}
    kept = {k: v for k, v in first.json().items() if k not in secrets}
    assert {k: v for k, v in again.json().items() if k not in secrets} == kept
    # Secrets are shown once: the replay says so instead of keeping them in a table.
    assert again.json()["api_key"] != first.json()["api_key"]
    assert (
        "shown once" in again.json()["api_key"] and "shown once" in again.json()["webhook_secret"]
    )
    assert again.headers[REPLAYED] == "true" and REPLAYED not in first.headers
    assert again.headers["content-type"] == first.headers["content-type"]
    assert await _merchants_named(api, "Mugs") == 1
    listed = await api.client.get("/v1/orders", headers={"X-API-Key": first.json()["api_key"]})
    assert listed.status_code == 200, listed.text
    async with api.app.state.sessions() as session:
        stored = (await session.exec(select(IdempotentRequest))).all()
    assert stored and all(first.json()["api_key"] not in (r.response_body or "") for r in stored)

    other = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body("Cups"), headers=headers
    )
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert await _merchants_named(api, "Cups") == 0


async def test_a_retried_cancel_gets_the_same_200_and_cancels_once(api: Api) -> None:
    key = Api.auth(await api.merchant())
    order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    path = f"/v1/orders/{order['id']}/cancel"
    headers = key | {"Idempotency-Key": "cancel-1"}

    first = await api.client.post(path, json={"reason": "duplicate"}, headers=headers)
    again = await api.client.post(path, json={"reason": "duplicate"}, headers=headers)

    assert (first.status_code, again.status_code) == (200, 200), (first.text, again.text)
    assert first.json()["status"] == "canceled"
    assert again.content == first.content and again.headers[REPLAYED] == "true"
    timeline = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()["events"]
    assert [e["type"] for e in timeline] == ["created", "canceled"]

    # Without the key, the same request is a new cancel, which the canceled order refuses.
    plain = await api.client.post(path, json={"reason": "duplicate"}, headers=key)
    assert plain.status_code == 409 and plain.json()["error"]["code"] == "order_canceled"
    assert REPLAYED not in plain.headers


async def test_a_key_belongs_to_the_caller_that_sent_it(api: Api) -> None:
    owner = Api.auth(await api.merchant(name="Owner"))
    snoop = Api.auth(await api.merchant(name="Snoop"))
    other = Api.auth(await api.merchant(name="Other"))
    mine = (await api.client.post("/v1/orders", json=order_json(), headers=owner)).json()
    theirs = (await api.client.post("/v1/orders", json=order_json(), headers=other)).json()
    body = {"reason": "duplicate"}
    shared = {"Idempotency-Key": "cancel-today"}

    canceled = await api.client.post(
        f"/v1/orders/{mine['id']}/cancel", json=body, headers=owner | shared
    )
    assert canceled.status_code == 200, canceled.text

    # The same request with the same key from another merchant is theirs: not found, no replay.
    snooping = await api.client.post(
        f"/v1/orders/{mine['id']}/cancel", json=body, headers=snoop | shared
    )
    assert snooping.status_code == 404, snooping.text
    assert snooping.json()["error"]["code"] == "order_not_found"
    assert REPLAYED not in snooping.headers and "canceled" not in snooping.text

    # A third merchant's own request with that key runs: its order, not the owner's answer.
    own = await api.client.post(
        f"/v1/orders/{theirs['id']}/cancel", json=body, headers=other | shared
    )
    assert own.status_code == 200, own.text
    assert own.json()["id"] == theirs["id"] and own.json()["status"] == "canceled"
    assert REPLAYED not in own.headers


async def test_without_the_header_every_request_runs_and_nothing_is_kept(api: Api) -> None:
    first = await api.client.post("/v1/admin/merchants", json=_merchant_body("Pens"), headers=ADMIN)
    again = await api.client.post("/v1/admin/merchants", json=_merchant_body("Pens"), headers=ADMIN)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] != again.json()["id"]
    assert REPLAYED not in again.headers
    assert await _merchants_named(api, "Pens") == 2
    async with api.app.state.sessions() as session:
        assert (await session.exec(select(IdempotentRequest))).all() == []


async def test_a_malformed_key_is_a_422_and_nothing_is_created(api: Api) -> None:
    for key in [b"", b"k" * 201, b"two words", b"cl\xc3\xa9", b"tab\there"]:
        response = await api.client.post(
            "/v1/admin/merchants",
            json=_merchant_body("Bad Key"),
            headers=[(b"X-Admin-Token", ADMIN_TOKEN.encode()), (b"Idempotency-Key", key)],
        )
        assert response.status_code == 422, (key, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error" and "Idempotency-Key" in error["message"]
    assert await _merchants_named(api, "Bad Key") == 0

    longest = await api.client.post(
        "/v1/admin/merchants",
        json=_merchant_body("Long Key"),
        headers=ADMIN | {"Idempotency-Key": "~" * 200},
    )
    assert longest.status_code == 201, longest.text


async def test_concurrent_duplicates_create_one_merchant(api: Api) -> None:
    headers = ADMIN | {"Idempotency-Key": "onboard-race"}
    responses = await asyncio.gather(
        *(
            api.client.post("/v1/admin/merchants", json=_merchant_body("Race"), headers=headers)
            for _ in range(10)
        )
    )
    ran = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(ran) == 1, [(r.status_code, r.headers.get(REPLAYED)) for r in responses]
    for response in responses:
        if response.status_code == 201:
            assert _public(response.json()) == _public(ran[0].json())
        else:
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "idempotency_key_in_progress"
            assert response.headers["Retry-After"] == "1"
    assert await _merchants_named(api, "Race") == 1
    later = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body("Race"), headers=headers
    )
    assert later.status_code == 201 and _public(later.json()) == _public(ran[0].json())


async def test_a_request_left_in_progress_holds_its_key_for_a_minute_only(api: Api) -> None:
    """A process died between running a request and keeping its answer."""
    headers = ADMIN | {"Idempotency-Key": "onboard-crash"}
    first = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body("Crash"), headers=headers
    )
    assert first.status_code == 201, first.text

    async def left_in_progress(since: timedelta) -> None:
        async with api.app.state.sessions() as session:
            changed = await session.exec(
                update(IdempotentRequest)
                .where(col(IdempotentRequest.key) == "onboard-crash")
                .values(
                    status_code=None,
                    response_body=None,
                    completed_at=None,
                    created_at=datetime.now(UTC) - since,
                )
            )
            await session.commit()
            assert changed.rowcount == 1

    await left_in_progress(timedelta(seconds=5))
    busy = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body("Crash"), headers=headers
    )
    assert busy.status_code == 409, busy.text
    assert busy.json()["error"]["code"] == "idempotency_key_in_progress"
    assert busy.headers["Retry-After"] == "1"

    await left_in_progress(timedelta(seconds=61))
    rerun = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body("Crash"), headers=headers
    )
    assert rerun.status_code == 201 and REPLAYED not in rerun.headers, rerun.text
    replayed = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body("Crash"), headers=headers
    )
    assert replayed.headers[REPLAYED] == "true"
    assert _public(replayed.json()) == _public(rerun.json())


# --------------------------------------------------------------- personalization (token in path)

LINK = re.compile(r"https?://[^\s\"'<>]+/p/([A-Za-z0-9_-]+)")


@pytest.fixture
async def mailing_api(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    """The API whose orders e-mail their personalization link a second after they arrive."""
    async with running_api(
        dev_env.client, database_url, tmp_path, personalization_email_delay=timedelta(seconds=1)
    ) as running:
        yield running


async def test_a_retried_personalization_gets_its_200_again(mailing_api: Api) -> None:
    api = mailing_api
    key = Api.auth(await api.merchant())
    item = order_json()["items"][0] | {
        "personalization": {
            "fields": [
                {
                    "name": "name",
                    "label": "Name",
                    "type": "text",
                    "max_length": 20,
                    "required": True,
                }
            ]
        }
    }
    body = order_json(items=[item])
    created = await api.client.post("/v1/orders", json=body, headers=key)
    assert created.json()["status"] == "pending_personalization", created.text
    mail = await api.mail.wait_for(lambda m: body["order_reference_id"] in str(m["Subject"]), 20)
    found = LINK.search(str(mail.get_body(("plain",)).get_content()))
    assert found, "the e-mail carries the customer's link"
    path = f"/v1/personalization/{found.group(1)}"
    values = {"items": {item["item_reference_id"]: {"name": "Ada"}}}

    first = await api.client.post(path, json=values, headers={"Idempotency-Key": "form-1"})
    again = await api.client.post(path, json=values, headers={"Idempotency-Key": "form-1"})
    assert (first.status_code, again.status_code) == (200, 200), (first.text, again.text)
    assert again.content == first.content and again.headers[REPLAYED] == "true"

    plain = await api.client.post(path, json=values)
    assert plain.status_code == 409 and plain.json()["error"]["code"] == "already_personalized"


# --------------------------------------------------------------- answers that could not be kept


def fail_completion_once(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The database stops answering just when the first answer is to be kept (after the app
    committed its write); it answers again at once. Returns the keys that failed."""
    failed: list[str] = []
    original = idempotency._complete

    async def complete(state: Any, owner: str, key: str, *rest: Any) -> None:
        if not failed:
            failed.append(key)
            raise OperationalError("UPDATE idempotent_requests", {}, ConnectionError("injected"))
        await original(state, owner, key, *rest)

    monkeypatch.setattr(idempotency, "_complete", complete)
    return failed


async def abandon(api: Api, key: str) -> None:
    """Makes the row of ``key`` look 61 s old: its first run is taken for dead."""
    async with api.app.state.sessions() as session:
        aged = await session.exec(
            update(IdempotentRequest)
            .where(col(IdempotentRequest.key) == key)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=61))
        )
        await session.commit()
        assert aged.rowcount == 1


async def retried_after_a_lost_answer(
    api: Api, monkeypatch: pytest.MonkeyPatch, path: str, body: Any, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    """Sends the write while keeping its answer fails: the caller gets the write's answer (not
    a 503), a retry meanwhile is told to wait, and the retry that runs again once the row is
    abandoned answers what the first run made. Returns (first answer, rerun's answer)."""
    failed = fail_completion_once(monkeypatch)
    first = await api.client.post(path, json=body, headers=headers)
    assert failed == [headers["Idempotency-Key"]], "the injected failure never happened"
    assert first.status_code == 201, first.text
    busy = await api.client.post(path, json=body, headers=headers)
    assert busy.status_code == 409, busy.text
    assert busy.json()["error"]["code"] == "idempotency_key_in_progress"
    await abandon(api, headers["Idempotency-Key"])
    rerun = await api.client.post(path, json=body, headers=headers)
    assert rerun.status_code == 201, rerun.text
    assert rerun.json()["id"] == first.json()["id"], "the rerun made a second one"
    replayed = await api.client.post(path, json=body, headers=headers)
    assert replayed.headers[REPLAYED] == "true" and replayed.json() == rerun.json()
    return first, rerun


async def test_a_merchant_whose_answer_was_not_kept_is_created_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = ADMIN | {"Idempotency-Key": "onboard-lost"}
    first, rerun = await retried_after_a_lost_answer(
        api, monkeypatch, "/v1/admin/merchants", _merchant_body("Lost"), headers
    )
    assert first.json()["api_key"].startswith("pf_"), "the first answer shows the key"
    assert "shown once" in rerun.json()["api_key"], "a rerun never shows a secret again"
    assert _public(rerun.json()) == _public(first.json())
    assert await _merchants_named(api, "Lost") == 1


async def test_an_agent_whose_answer_was_not_kept_is_created_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = ADMIN | {"Idempotency-Key": "hire-lost"}
    body = {"name": "Lost Agent", "email": "lost@printflow.test", "role": "agent"}
    first, rerun = await retried_after_a_lost_answer(
        api, monkeypatch, "/v1/admin/agents", body, headers
    )
    assert first.json()["token"].startswith("pfagt_") and "shown once" in rerun.json()["token"]
    async with api.app.state.sessions() as session:
        query = select(func.count()).select_from(Agent).where(Agent.name == "Lost Agent")
        assert (await session.exec(query)).one() == 1


async def test_a_stranger_claims_no_key_and_a_large_answer_is_not_kept(api: Api) -> None:
    key = Api.auth(await api.merchant())
    for credential in ({}, {"X-API-Key": "pf_made-up"}, {"X-Admin-Token": "guess"}):
        refused = await api.client.post(
            "/v1/orders", json=order_json(), headers=credential | {"Idempotency-Key": "k-1"}
        )
        assert refused.status_code == 401, refused.text
    personalized = await api.client.post(
        "/v1/personalization/" + "t" * 43, json={"items": {}}, headers={"Idempotency-Key": "k-2"}
    )
    assert personalized.status_code == 404, personalized.text
    async with api.app.state.sessions() as session:
        assert (await session.exec(select(IdempotentRequest))).all() == []

    api.settings.idempotency_max_answer_bytes = 200
    headers = key | {"Idempotency-Key": "big-answer"}
    body = order_json("BIG-1")
    created = await api.client.post("/v1/orders", json=body, headers=headers)
    assert created.status_code == 201 and len(created.content) > 200, created.text
    async with api.app.state.sessions() as session:
        assert (await session.exec(select(IdempotentRequest))).all() == [], "kept over the cap"
    again = await api.client.post("/v1/orders", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"], again.text


async def test_a_cancel_retried_after_it_closed_the_order_gets_the_canceled_order(
    api: Api,
) -> None:
    # The first attempt canceled the order, but its answer was lost (a 503: the API answers and
    # keeps nothing while the workflow still works), and the canceled order's workflow closed.
    # The retry with the same key reaches a closed workflow: it gets the canceled order, as the
    # first attempt would have, not a 409.
    key = Api.auth(await api.merchant())
    order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    handle = api.temporal.get_workflow_handle(order["id"])

    async def started() -> bool:
        try:
            await handle.describe()
        except RPCError:
            return False
        return True

    await apoll("the order's workflow to start", started)
    # What the lost attempt did: the API's Update, with the id it makes of the key.
    await handle.execute_update(
        OrderWorkflow.cancel, CancelRequest(reason="duplicate"), id="cancel:lost-answer-1"
    )
    await handle.result()  # canceled, the workflow has closed
    path = f"/v1/orders/{order['id']}/cancel"

    retried = await api.client.post(
        path, json={"reason": "duplicate"}, headers=key | {"Idempotency-Key": "lost-answer-1"}
    )

    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "canceled"
    shown = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()
    assert retried.json() == shown
    assert [e["type"] for e in shown["events"]] == ["created", "canceled"]
    # Another key is another cancel, which the canceled order refuses.
    other = await api.client.post(
        path, json={"reason": "duplicate"}, headers=key | {"Idempotency-Key": "another-cancel"}
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "order_canceled"
