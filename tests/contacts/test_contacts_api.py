"""Customer contacts through the API, against real parts: the Temporal dev server with a
worker, SQLite and PostgreSQL, a real SMTP sink. Each rule of the contact policy is asked for
once through HTTP, allowed and refused; the customer's e-mail, the /c/{token} page and reply,
and the merchant's support standards follow. Then the promise under faults: a contact created
while Temporal is unreachable is answered 201 and started later by the relay, a reply sent
before its workflow ever ran goes with the start, and retries with the same Idempotency-Key
apply once.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete
from sqlmodel import col, func, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from api.relay import ContactStarter
from db.models import (
    CustomerContact,
    CustomerContactMessage,
    CustomerContactStart,
    IdempotentRequest,
)
from tests.conftest import suite_converter
from tests.helpers.api import ADMIN_TOKEN, Api, order_json, started
from tests.helpers.contacts import link_in
from tests.helpers.mail import text_of
from tests.orders.test_idempotency import retried_after_a_lost_answer

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
CUSTOMER = "erika@example.com"


async def berlin_merchant(api: Api, name: str = "Mug Shop") -> dict[str, str]:
    response = await api.client.post(
        "/v1/admin/merchants",
        json={
            "name": name,
            "support_email": "help@mugs.example.com",
            "timezone": "Europe/Berlin",
            "country": "DE",
        },
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return {"X-API-Key": response.json()["api_key"]}


async def order(api: Api, key: dict[str, str]) -> dict[str, Any]:
    response = await api.client.post("/v1/orders", json=order_json(), headers=key)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def canceled(api: Api, key: dict[str, str], code: str) -> dict[str, Any]:
    made = await order(api, key)
    response = await api.client.post(
        f"/v1/orders/{made['id']}/cancel", json={"reason_code": code}, headers=key
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def contact(support_id: str, reason: str = "invalid_address", **extra: str) -> dict[str, str]:
    return {
        "support_id": support_id,
        "reason": reason,
        "subject": "About your delivery address",
        "body": "The house number seems to be missing.\nCould you tell us?",
        **extra,
    }


async def test_the_contact_rules_through_the_api(api: Api) -> None:
    key = await berlin_merchant(api)
    other = await berlin_merchant(api, "Other Shop")
    scheduled = await order(api, key)
    sid = scheduled["support_id"]

    async def post(body: dict[str, str], who: dict[str, str] = key) -> Any:
        return await api.client.post("/v1/customer-contacts", json=body, headers=who)

    # A Support ID without PF-: 422 saying what one looks like.
    bad = await post(contact("XX-7KQ2M9XR"))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    assert (
        "PF-" in bad.json()["error"]["message"] and "PF-7KQ2M9XR" in bad.json()["error"]["message"]
    )
    # Not the merchant's own order: 404 (and nothing about whose it is).
    assert (await post(contact(sid), other)).json()["error"]["code"] == "order_not_found"
    assert (await post(contact(sid), other)).status_code == 404
    # A reason outside the list: 422 with the list.
    unknown = await post(contact(sid, "marketing"))
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "reason_not_allowed"
    assert unknown.json()["error"]["details"]["allowed_reasons"] == [
        "invalid_address",
        "delivery_delay",
        "returned_to_sender",
        "inventory_cancellation",
    ]
    # A reason that does not fit a scheduled order: 409.
    late = await post(contact(sid, "delivery_delay"))
    assert late.status_code == 409 and late.json()["error"]["code"] == "reason_does_not_fit"
    assert late.json()["error"]["details"]["reasons_that_fit"] == ["invalid_address"]
    assert (await post(contact(sid, "returned_to_sender"))).status_code == 409
    # Offering a substitute: 422.
    swap = await post(contact(sid, body="We can send you a similar mug instead."))
    assert swap.status_code == 422 and swap.json()["error"]["code"] == "substitute_not_allowed"
    # The customer's own cancel: 409, whatever the reason; an inventory cancel may be explained.
    by_customer = await canceled(api, key, "customer_request")
    refused = await post(contact(by_customer["support_id"], "inventory_cancellation"))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "customer_cancellation"
    shortage = await canceled(api, key, "inventory_shortage")
    sorry = await post(
        contact(
            shortage["support_id"],
            "inventory_cancellation",
            body="We ran out of this mug and canceled the order. You are welcome to place a "
            "new order when it is back in stock next month.",
        )
    )
    assert sorry.status_code == 201, sorry.text
    win_back = await post(
        contact(shortage["support_id"], "inventory_cancellation", body="Please reconsider!")
    )
    assert win_back.status_code == 409
    assert win_back.json()["error"]["code"] == "customer_cancellation"
    # Control characters are refused like everywhere.
    nul = await post(contact(sid, subject="Hi\x00there"))
    assert nul.status_code == 422

    # Allowed: the contact as created, the Support ID in any case.
    created = await post(contact(f"  {sid.lower()} "))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["support_id"] == sid and body["order_id"] == scheduled["id"]
    assert body["reason"] == "invalid_address" and body["status"] == "open"
    assert body["sla_state"] == "none" and body["reply_due_at"] is None
    assert [m["author_kind"] for m in body["messages"]] == ["merchant"]

    # Reads: the merchant's own only; lists filter by Support ID and status.
    got = await api.client.get(f"/v1/customer-contacts/{body['id']}", headers=key)
    assert got.status_code == 200 and got.json()["id"] == body["id"]
    assert (
        await api.client.get(f"/v1/customer-contacts/{body['id']}", headers=other)
    ).status_code == 404
    listed = await api.client.get(
        "/v1/customer-contacts", params={"support_id": sid, "status": "open"}, headers=key
    )
    assert [c["id"] for c in listed.json()["data"]] == [body["id"]]
    everything = await api.client.get("/v1/customer-contacts", params={"limit": 1}, headers=key)
    assert len(everything.json()["data"]) == 1 and everything.json()["next_cursor"]
    rest = await api.client.get(
        "/v1/customer-contacts",
        params={"limit": 1, "cursor": everything.json()["next_cursor"]},
        headers=key,
    )
    assert {everything.json()["data"][0]["id"], rest.json()["data"][0]["id"]} == {
        body["id"],
        sorry.json()["id"],
    }
    malformed = await api.client.get(
        "/v1/customer-contacts", params={"support_id": "123"}, headers=key
    )
    assert malformed.status_code == 422 and "PF-" in malformed.json()["error"]["message"]
    assert (
        await api.client.get("/v1/customer-contacts", params={"support_id": sid}, headers=other)
    ).json()["data"] == []


async def test_the_customer_is_emailed_replies_on_the_page_and_the_merchant_answers(
    api: Api,
) -> None:
    key = await berlin_merchant(api)
    made = await order(api, key)
    created = await api.client.post(
        "/v1/customer-contacts", json=contact(made["support_id"]), headers=key
    )
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]

    mail = await api.mail.wait_for(lambda m: CUSTOMER in str(m["To"]), timeout=20)
    assert "The house number seems to be missing." in text_of(mail)
    url = link_in(mail)
    path = url.removeprefix(api.settings.public_base_url)
    page = await api.client.get(path)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert made["support_id"] in page.text and made["order_reference_id"] in page.text
    assert "Unter den Linden" not in page.text and CUSTOMER not in page.text

    # Hostile text is escaped; control characters refused with the form kept.
    refused = await api.client.post(path, data={"body": "bad\x00text"})
    assert refused.status_code == 422 and "bad" in refused.text
    empty = await api.client.post(path, data={"body": "   "})
    assert empty.status_code == 422
    hostile = "<script>alert(1)</script> Hauptstr. 5"
    replied = await api.client.post(path, data={"body": hostile})
    assert replied.status_code == 200, replied.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in replied.text
    assert "<script>alert(1)" not in replied.text

    seen = (await api.client.get(f"/v1/customer-contacts/{contact_id}", headers=key)).json()
    assert [m["author_kind"] for m in seen["messages"]] == ["merchant", "customer"]
    assert seen["messages"][1]["body"] == hostile
    assert seen["sla_state"] == "on_track" and seen["reply_due_at"] is not None
    told = await api.mail.wait_for(lambda m: "Your customer wrote" in str(m["Subject"]))
    assert "Hauptstr. 5" in text_of(told)

    # The merchant's reply: the policy's text rules hold, then it is e-mailed to the customer.
    swap = await api.client.post(
        f"/v1/customer-contacts/{contact_id}/messages",
        json={"body": "Would you accept a different colour?"},
        headers=key,
    )
    assert swap.status_code == 422 and swap.json()["error"]["code"] == "substitute_not_allowed"
    answer = await api.client.post(
        f"/v1/customer-contacts/{contact_id}/messages",
        json={"body": "Thank you, updated!"},
        headers=key,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["sla_state"] == "met" and answer.json()["reply_due_at"] is None
    assert [m["author_kind"] for m in answer.json()["messages"]] == [
        "merchant",
        "customer",
        "merchant",
    ]
    await api.mail.wait_for(
        lambda m: CUSTOMER in str(m["To"]) and "Thank you, updated!" in text_of(m)
    )
    other = await berlin_merchant(api, "Other Shop")
    assert (
        await api.client.post(
            f"/v1/customer-contacts/{contact_id}/messages", json={"body": "hi"}, headers=other
        )
    ).status_code == 404

    # The standards: one deadline, replied in time.
    for _ in range(50):
        standards = (await api.client.get("/v1/support/standards", headers=key)).json()
        if standards["customer_reply"]["deadlines"]:
            break
        await asyncio.sleep(0.1)
    reply = standards["customer_reply"]
    assert reply["window_days"] == 30 and reply["target"] == "P1D"
    assert (reply["deadlines"], reply["replied_in_time"], reply["missed"]) == (1, 1, 0)
    assert reply["reply_in_time_rate"] == 1.0 and reply["pending"] == 0
    fresh = (await api.client.get("/v1/support/standards", headers=other)).json()
    assert fresh["customer_reply"]["reply_in_time_rate"] is None

    # Unknown tokens: a 404 page.
    assert (await api.client.get("/c/" + "x" * 43)).status_code == 404
    assert (await api.client.post("/c/short", data={"body": "hi"})).status_code == 404


# ---------------------------------------------------------------------------- under faults

REPLAYED = "Idempotent-Replayed"


async def _unreachable_temporal() -> Client:
    # Nothing listens there: every call fails, as with a Temporal server that is down.
    return await Client.connect("127.0.0.1:1", lazy=True, data_converter=pydantic_data_converter)


async def _created_while_temporal_is_down(api: Api, key: dict[str, str]) -> dict[str, Any]:
    """A contact created by an API process that cannot reach Temporal: answered 201, its
    start kept in the outbox with the reason, no workflow."""
    made = await order(api, key)
    down = ContactStarter(api.app.state.sessions, await _unreachable_temporal(), api.settings)
    api.app.state.contact_starter = down
    created = await api.client.post(
        "/v1/customer-contacts", json=contact(made["support_id"]), headers=key
    )
    await down.close()
    api.app.state.contact_starter = ContactStarter(
        api.app.state.sessions, api.temporal, api.settings
    )
    assert created.status_code == 201, created.text
    body = dict(created.json())
    assert body["status"] == "open" and [m["author_kind"] for m in body["messages"]] == ["merchant"]
    async with api.app.state.sessions() as session:
        waiting = await session.get(CustomerContactStart, body["id"])
        assert waiting is not None and waiting.last_error, "kept, with the reason"
    with pytest.raises(RPCError) as absent:
        await api.temporal.get_workflow_handle(body["id"]).describe()
    assert absent.value.status == RPCStatusCode.NOT_FOUND
    return body


async def _make_due(api: Api, contact_id: str) -> None:
    async with api.app.state.sessions() as session:
        row = await session.get(CustomerContactStart, contact_id)
        assert row is not None
        row.due_at = datetime.now(UTC) - timedelta(seconds=1)
        await session.commit()


async def _outbox_gone(api: Api, contact_id: str) -> None:
    # Started rows are deleted in batches, a moment after their start.
    for _ in range(50):
        async with api.app.state.sessions() as session:
            if await session.get(CustomerContactStart, contact_id) is None:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the outbox still holds {contact_id}")


def _mails_with(api: Api, text: str) -> int:
    return sum(1 for m in api.mail.messages if CUSTOMER in str(m["To"]) and text in text_of(m))


async def test_a_contact_created_while_temporal_is_unreachable_is_started_later_by_the_relay(
    api: Api,
) -> None:
    key = await berlin_merchant(api)
    created = await _created_while_temporal_is_down(api, key)
    assert _mails_with(api, "The house number seems to be missing.") == 0

    # Later, in any API process that reaches Temporal, the sweep finds it due and starts it.
    await _make_due(api, created["id"])
    up = ContactStarter(api.app.state.sessions, api.temporal, api.settings)
    # This sweep starts it, or the API's own sweep (every 2 s) was a moment quicker: either
    # way the workflow runs once (below), and no sweep starts it again.
    await up.sweep()
    described = await started(api.temporal.get_workflow_handle(created["id"]))
    assert described.status == WorkflowExecutionStatus.RUNNING
    mail = await api.mail.wait_for(
        lambda m: CUSTOMER in str(m["To"]) and "The house number seems" in text_of(m), timeout=20
    )
    assert created["support_id"] in text_of(mail) and link_in(mail)
    await up.close()
    await _outbox_gone(api, created["id"])
    assert await up.sweep() == 0, "nothing twice"
    read = (await api.client.get(f"/v1/customer-contacts/{created['id']}", headers=key)).json()
    assert read["status"] == "open" and len(read["messages"]) == 1


async def test_a_reply_before_the_contact_workflow_ever_started_goes_with_its_start(
    api: Api,
) -> None:
    key = await berlin_merchant(api)
    created = await _created_while_temporal_is_down(api, key)

    # The merchant writes again before the workflow ever ran: update-with-start.
    more = await api.client.post(
        f"/v1/customer-contacts/{created['id']}/messages",
        json={"body": "Any news about the house number?"},
        headers=key,
    )
    assert more.status_code == 200, more.text
    assert [(m["author_kind"], m["body"]) for m in more.json()["messages"]] == [
        ("merchant", "The house number seems to be missing.\nCould you tell us?"),
        ("merchant", "Any news about the house number?"),
    ]
    handle = api.temporal.get_workflow_handle(created["id"])
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    # The one workflow sends both: the first message with its link, then the reply.
    await api.mail.wait_for(
        lambda m: CUSTOMER in str(m["To"]) and "Any news about the house number?" in text_of(m),
        timeout=20,
    )
    assert _mails_with(api, "The house number seems to be missing.") == 1

    # Its start request is still queued (this process could not reach Temporal): the sweep
    # finds the workflow running and starts nothing twice.
    await _make_due(api, created["id"])
    up = ContactStarter(api.app.state.sessions, api.temporal, api.settings)
    await up.sweep()
    await up.close()
    await _outbox_gone(api, created["id"])
    assert (await handle.describe()).run_id == described.run_id
    read = (await api.client.get(f"/v1/customer-contacts/{created['id']}", headers=key)).json()
    assert len(read["messages"]) == 2


async def _count(api: Api, table: Any, *where: Any) -> int:
    async with api.app.state.sessions() as session:
        return int(
            (await session.exec(select(func.count()).select_from(table).where(*where))).one()
        )


async def test_a_retried_contact_and_a_retried_reply_apply_once(api: Api) -> None:
    key = await berlin_merchant(api)
    made = await order(api, key)
    body = contact(made["support_id"])

    create = key | {"Idempotency-Key": "contact-address-1"}
    first = await api.client.post("/v1/customer-contacts", json=body, headers=create)
    again = await api.client.post("/v1/customer-contacts", json=body, headers=create)
    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    assert again.content == first.content and again.headers[REPLAYED] == "true"
    assert REPLAYED not in first.headers
    contact_id = first.json()["id"]
    assert await _count(api, CustomerContact, CustomerContact.order_id == made["id"]) == 1
    listed = await api.client.get(
        "/v1/customer-contacts", params={"support_id": made["support_id"]}, headers=key
    )
    assert [c["id"] for c in listed.json()["data"]] == [contact_id]
    await started(api.temporal.get_workflow_handle(contact_id))

    path = f"/v1/customer-contacts/{contact_id}/messages"
    reply = key | {"Idempotency-Key": "reply-1"}
    text = {"body": "Could you check the house number?"}
    answered = await api.client.post(path, json=text, headers=reply)
    replayed = await api.client.post(path, json=text, headers=reply)
    assert (answered.status_code, replayed.status_code) == (200, 200), answered.text
    assert replayed.content == answered.content and replayed.headers[REPLAYED] == "true"
    assert len(answered.json()["messages"]) == 2

    # The first answer lost (an answer of 500 or more keeps nothing): the retry runs again,
    # and the key, also the Update's id, still applies the reply once.
    async with api.app.state.sessions() as session:
        await session.exec(delete(IdempotentRequest).where(col(IdempotentRequest.key) == "reply-1"))
        await session.commit()
    rerun = await api.client.post(path, json=text, headers=reply)
    assert rerun.status_code == 200, rerun.text
    assert REPLAYED not in rerun.headers
    assert [m["id"] for m in rerun.json()["messages"]] == [
        m["id"] for m in answered.json()["messages"]
    ]
    where = CustomerContactMessage.contact_id == contact_id
    assert await _count(api, CustomerContactMessage, where) == 2

    # The workflow e-mails in order: once a later reply has arrived, a second copy of the
    # retried one would have too.
    later = await api.client.post(path, json={"body": "Thanks in advance."}, headers=key)
    assert later.status_code == 200, later.text
    await api.mail.wait_for(
        lambda m: CUSTOMER in str(m["To"]) and "Thanks in advance." in text_of(m), timeout=20
    )
    assert _mails_with(api, "Could you check the house number?") == 1
    assert await _count(api, CustomerContactMessage, where) == 3


async def test_a_contact_whose_answer_was_lost_writes_to_the_customer_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await berlin_merchant(api)
    made = await order(api, key)
    body = contact(made["support_id"], body="Is the house number 12 or 21?")
    headers = key | {"Idempotency-Key": "contact-lost-answer"}
    await retried_after_a_lost_answer(api, monkeypatch, "/v1/customer-contacts", body, headers)
    assert await _count(api, CustomerContact, CustomerContact.order_id == made["id"]) == 1
    await api.mail.wait_for(
        lambda m: CUSTOMER in str(m["To"]) and "12 or 21" in text_of(m), timeout=20
    )
    await asyncio.sleep(1)  # a second contact's workflow would have e-mailed by now too
    assert _mails_with(api, "12 or 21") == 1


FORM_NONCE = re.compile(r'<input type="hidden" name="nonce" value="([^"]+)">')


async def test_the_customers_reply_form_sent_twice_adds_one_message(api: Api) -> None:
    key = await berlin_merchant(api)
    made = await order(api, key)
    created = await api.client.post(
        "/v1/customer-contacts", json=contact(made["support_id"]), headers=key
    )
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    mail = await api.mail.wait_for(lambda m: CUSTOMER in str(m["To"]), timeout=20)
    path = link_in(mail).removeprefix(api.settings.public_base_url)

    page = await api.client.get(path)
    nonce = FORM_NONCE.findall(page.text)
    assert len(nonce) == 1, "the reply form carries one nonce"
    form = {"nonce": nonce[0], "body": "It is Hauptstr. 5, sorry!"}
    for _ in range(2):  # a double click, or a resend after a page that said to send it again
        sent = await api.client.post(path, data=form)
        assert sent.status_code == 200, sent.text
    where = CustomerContactMessage.contact_id == contact_id
    assert await _count(api, CustomerContactMessage, where) == 2, "merchant's, and one reply"
    assert FORM_NONCE.findall(sent.text) != nonce, "the next form is a new one"

    # Temporal does not answer: the page keeps what was typed and the form's nonce.
    reachable = api.app.state.temporal
    api.app.state.temporal = await Client.connect(
        "127.0.0.1:1", lazy=True, data_converter=suite_converter()
    )
    form = {"nonce": FORM_NONCE.findall(sent.text)[0], "body": "Also: ring twice."}
    try:
        lost = await api.client.post(path, data=form)
    finally:
        api.app.state.temporal = reachable
    assert lost.status_code == 503, lost.text
    assert FORM_NONCE.findall(lost.text) == [form["nonce"]]
    for _ in range(2):
        assert (await api.client.post(path, data=form)).status_code == 200
    assert await _count(api, CustomerContactMessage, where) == 3


async def test_the_customer_page_refuses_the_eleventh_message_in_an_hour_and_mails_once(
    api: Api,
) -> None:
    # The customer's page cannot flood the merchant: 10 messages an hour per contact, the 11th
    # shown the page again with a 429 and nothing added; the merchant hears of the first at
    # once and of the others in one e-mail after PRINTFLOW_CONTACT_NOTIFY_INTERVAL.
    key = await berlin_merchant(api)
    made = await order(api, key)
    created = await api.client.post(
        "/v1/customer-contacts", json=contact(made["support_id"]), headers=key
    )
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    mail = await api.mail.wait_for(lambda m: CUSTOMER in str(m["To"]), timeout=20)
    path = link_in(mail).removeprefix(api.settings.public_base_url)
    page = await api.client.get(path)
    for n in range(1, 11):
        form = {"nonce": FORM_NONCE.findall(page.text)[0], "body": f"Message {n}"}
        page = await api.client.post(path, data=form)
        assert page.status_code == 200, page.text

    form = {"nonce": FORM_NONCE.findall(page.text)[0], "body": "Message 11"}
    refused = await api.client.post(path, data=form)

    assert refused.status_code == 429, refused.text
    assert "10 messages in the last hour" in refused.text and "Message 11" in refused.text
    where = CustomerContactMessage.contact_id == contact_id
    assert await _count(api, CustomerContactMessage, where) == 11, "merchant's and ten"
    await api.mail.wait_for(lambda m: "Your customer wrote" in str(m["Subject"]), timeout=20)
    await asyncio.sleep(1)
    told = [m for m in api.mail.messages if "Your customer wrote" in str(m["Subject"])]
    assert len(told) == 1, "one e-mail until the interval has passed"
