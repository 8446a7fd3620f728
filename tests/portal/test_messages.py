"""Customer messages in the merchant portal: the shop's conversations with its customers, read
and answered in the browser through the same service and workflow Update as
``/v1/customer-contacts``. Real parts: the API and a worker on the Temporal dev server, SQLite,
a real SMTP sink; the customer answers on their ``/c/{token}`` page from the e-mail."""

from __future__ import annotations

import re
from typing import Any

import pytest

from api.services import contacts
from tests.cases.console import assert_page_headers
from tests.contacts.test_contacts_api import CUSTOMER, contact
from tests.helpers.api import order_json
from tests.helpers.contacts import link_in
from tests.helpers.mail import text_of
from tests.helpers.polling import apoll
from tests.helpers.production import FullApi, full_api
from tests.portal.browser import Portal, Shop, csrf_of, member, nonce_in, shop

__all__ = ["full_api"]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def words(html: str) -> str:
    """The page's words, tags dropped and spaces folded: what a reader reads."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def row_of(html: str, contact_id: str) -> str:
    found = re.search(r'<tr id="contact-' + contact_id + r'">(.*?)</tr>', html, re.S)
    assert found, f"no row for {contact_id}"
    return words(found.group(1))


async def contact_of(api: FullApi, of: Shop, contact_id: str) -> dict[str, Any]:
    got = await api.client.get(f"/v1/customer-contacts/{contact_id}", headers=of.key)
    assert got.status_code == 200, got.text
    return dict(got.json())


async def started_contact(api: FullApi, of: Shop) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order of ``of`` and a contact about it, made through the JSON API."""
    made = await api.client.post("/v1/orders", json=order_json(), headers=of.key)
    assert made.status_code == 201, made.text
    created = await api.client.post(
        "/v1/customer-contacts", json=contact(made.json()["support_id"]), headers=of.key
    )
    assert created.status_code == 201, created.text
    return dict(made.json()), dict(created.json())


async def test_the_customer_replies_and_the_shop_answers_in_the_portal(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    tess = await member(api, mine, "support")
    order, made = await started_contact(api, mine)
    contact_id = made["id"]
    browser = await Portal.signed_in(api, tess)
    try:
        # Nothing owed yet: the shop had the last word.
        listing = await browser.get("/portal/messages")
        assert listing.status_code == 200
        assert_page_headers(listing)
        row = row_of(listing.text, contact_id)
        assert "About your delivery address" in row and "Address problem" in row
        assert order["order_reference_id"] in row and order["support_id"] in row
        assert "Nothing owed" in row and "None: you had the last word" in row
        assert f'href="/portal/orders/{order["id"]}"' in listing.text

        # The customer answers from the link in their e-mail.
        mail = await api.mail.wait_for(lambda m: CUSTOMER in str(m["To"]), timeout=20)
        path = link_in(mail).removeprefix(api.settings.public_base_url)
        answered = await api.client.post(path, data={"body": "It is Hauptstr. 5, sorry!"})
        assert answered.status_code == 200, answered.text

        async def awaiting() -> str | None:
            shown = await browser.get("/portal/messages")
            row = row_of(shown.text, contact_id)
            return row if "waiting for your reply" in row else None

        row = await apoll("the contact awaiting the shop's reply", awaiting)
        assert "Customer waiting for your reply" in row and "Reply by" in row
        listing = await browser.get("/portal/messages")
        assert "1 customer is waiting for your reply" in words(listing.text)
        due = (await contact_of(api, mine, contact_id))["reply_due_at"]
        assert due is not None
        assert f'<time datetime="{due.replace("Z", "+00:00")}"' in listing.text

        page = f"/portal/messages/{contact_id}"
        thread = await browser.get(page)
        assert thread.status_code == 200
        shown = words(thread.text)
        assert "The customer" in shown and "It is Hauptstr. 5, sorry!" in shown
        assert "The house number seems to be missing." in shown
        assert "the customer is waiting for your reply" in shown

        # The policy holds for replies: a substitute offer is refused, in words, typed text kept.
        swap = await browser.submit(
            page, f"{page}/reply", {"body": "Would you accept a different colour?"}
        )
        assert swap.status_code == 422, swap.text[:500]
        assert "Nothing was changed" in swap.text and "substitute" in swap.text
        assert "Would you accept a different colour?</textarea>" in swap.text
        empty = await browser.submit(page, f"{page}/reply", {"body": " "})
        assert empty.status_code == 422 and "Write a reply before sending it." in empty.text

        # The reply, sent twice with the same nonce (a double click): once, e-mailed once.
        form = await browser.get(page)
        fields = {
            "csrf": csrf_of(form.text),
            "nonce": nonce_in(form.text, f"{page}/reply"),
            "body": "Thank you, we fixed the address.",
        }
        sent = await browser.post(f"{page}/reply", fields)
        assert sent.status_code == 303 and sent.headers["location"] == f"{page}?done=replied"
        assert (await browser.post(f"{page}/reply", fields)).status_code == 303
        after = await browser.get(sent.headers["location"])
        assert "Your reply was sent to the customer." in after.text
        assert "Answered in time" in words(after.text)

        await api.mail.wait_for(
            lambda m: CUSTOMER in str(m["To"]) and "we fixed the address" in text_of(m)
        )
        seen = await contact_of(api, mine, contact_id)
        assert [m["author_kind"] for m in seen["messages"]] == ["merchant", "customer", "merchant"]
        assert seen["messages"][-1]["body"] == "Thank you, we fixed the address."
        assert seen["sla_state"] == "met" and seen["reply_due_at"] is None
        row = row_of((await browser.get("/portal/messages")).text, contact_id)
        assert "waiting for your reply" not in row and "Customer not waiting" in row
        assert "Answered in time" in row
    finally:
        await browser.close()
    told = [m for m in api.mail.messages if "we fixed the address" in text_of(m)]
    assert len(told) == 1, [m["Subject"] for m in told]


async def test_another_merchants_conversation_is_not_found(full_api: FullApi) -> None:
    api = full_api
    mine, other = await shop(api), await shop(api, name="Other Shop")
    _, theirs = await started_contact(api, other)
    browser = await Portal.signed_in(api, mine.owner)
    try:
        page = f"/portal/messages/{theirs['id']}"
        missing = await browser.get(page)
        assert missing.status_code == 404 and "Customer message not found" in missing.text
        listing = await browser.get("/portal/messages")
        assert theirs["id"] not in listing.text and "No conversations" in listing.text
        answer = await browser.post(
            f"{page}/reply",
            {"csrf": csrf_of(listing.text), "nonce": "n" * 22, "body": "Hello from elsewhere"},
        )
        assert answer.status_code == 404
        seen = await contact_of(api, other, theirs["id"])
        assert [m["author_kind"] for m in seen["messages"]] == ["merchant"]
        # Without the page's token, nothing is looked at.
        forged = await browser.post(f"{page}/reply", {"csrf": "x", "body": "hi"})
        assert forged.status_code == 403
    finally:
        await browser.close()


async def test_a_reply_whose_answer_was_lost_is_sent_again_once(
    full_api: FullApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = full_api
    mine = await shop(api)
    _, made = await started_contact(api, mine)
    page = f"/portal/messages/{made['id']}"
    browser = await Portal.signed_in(api, mine.owner)
    real = contacts.merchant_reply

    async def reply_then_fail(*args: Any, **kwargs: Any) -> Any:
        await real(*args, **kwargs)
        raise RuntimeError("the answer was lost")

    try:
        shown = await browser.get(page)
        fields = {
            "csrf": csrf_of(shown.text),
            "nonce": nonce_in(shown.text, f"{page}/reply"),
            "body": "One more detail: the parcel ships Monday.",
        }
        monkeypatch.setattr(contacts, "merchant_reply", reply_then_fail)
        lost = await browser.post(f"{page}/reply", fields)
        assert lost.status_code == 503
        assert "The change may not have been made" in lost.text
        assert nonce_in(lost.text, f"{page}/reply") == fields["nonce"]
        assert "the parcel ships Monday.</textarea>" in lost.text
        monkeypatch.setattr(contacts, "merchant_reply", real)
        assert (await browser.post(f"{page}/reply", fields)).status_code == 303
        seen = await contact_of(api, mine, made["id"])
        assert [m["body"] for m in seen["messages"]].count(fields["body"]) == 1
    finally:
        await browser.close()
