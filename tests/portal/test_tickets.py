"""Tickets in the merchant portal: the shop's support cases, opened, read and answered in the
browser through the same services as ``/v1/support/cases``. Real parts: the API and a worker on
the Temporal dev server, SQLite, a real SMTP sink; the support team answers through its API."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from api.services import cases
from tests.cases.console import assert_page_headers
from tests.cases.test_cases_api import agent, as_agent, open_case
from tests.helpers.api import order_json
from tests.helpers.production import FullApi, full_api
from tests.portal.browser import Portal, Shop, csrf_of, member, nonce_in, shop

__all__ = ["full_api"]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def ticket(**overrides: str) -> dict[str, str]:
    fields = {
        "category": "orders",
        "channel": "ticket",
        "subject": "Mug arrived chipped",
        "description": "The customer sent a photo.\nWhat now?",
        "order": "",
        "phone": "",
    }
    fields.update(overrides)
    return fields


async def cases_of(api: FullApi, of: Shop) -> list[dict[str, Any]]:
    listed = await api.client.get("/v1/support/cases", headers=of.key)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["data"])


async def case_of(api: FullApi, of: Shop, case_id: str) -> dict[str, Any]:
    got = await api.client.get(f"/v1/support/cases/{case_id}", headers=of.key)
    assert got.status_code == 200, got.text
    return dict(got.json())


def case_id_in(response: httpx.Response, done: str) -> str:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    location = response.headers["location"]
    found = re.fullmatch(r"/portal/tickets/(case_[0-9a-f]+)\?done=" + done, location)
    assert found, response.headers["location"]
    return found.group(1)


def text_of_page(html: str) -> str:
    """The page's words, tags dropped and spaces folded: what a reader reads."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_the_new_ticket_form_offers_what_the_plan_includes(full_api: FullApi) -> None:
    api = full_api
    free, premium = await shop(api), await shop(api, name="Premium Shop", plan="premium")
    free_browser = await Portal.signed_in(api, free.owner)
    premium_browser = await Portal.signed_in(api, premium.owner)
    try:
        form = await free_browser.get("/portal/tickets/new")
        assert form.status_code == 200
        assert_page_headers(form)
        assert 'value="ticket"' in form.text and 'value="chat"' in form.text
        assert 'value="callback"' not in form.text and 'name="phone"' not in form.text
        assert "callback is not in the free plan" in form.text
        for category in ("orders", "shipments", "integration", "account", "billing"):
            assert f'name="category" value="{category}"' in form.text
        listing = text_of_page((await free_browser.get("/portal/tickets")).text)
        assert "What your plan includes" in listing and "Free plan" in listing
        assert "A first answer within 8 working hours" in listing
        assert "Phone callback Not included" in listing
        assert "+ New ticket" in listing

        form = await premium_browser.get("/portal/tickets/new")
        assert 'value="callback"' in form.text and 'name="phone"' in form.text
        listing = text_of_page((await premium_browser.get("/portal/tickets")).text)
        assert "Premium plan" in listing and "A first answer within 2 working hours" in listing
        assert "Phone callback Included: a first call within 1 working hour" in listing

        # A callback on the free plan, sent anyway: the API's refusal, in words.
        refused = await free_browser.submit(
            "/portal/tickets/new", "/portal/tickets", ticket(channel="callback", phone="+31 20")
        )
        assert refused.status_code == 403, refused.text[:500]
        assert "Nothing was changed" in refused.text and "does not include callback" in refused.text
        assert await cases_of(api, free) == []

        # Premium: a callback needs the phone number; with it, the case says so.
        no_phone = await premium_browser.submit(
            "/portal/tickets/new", "/portal/tickets", ticket(channel="callback")
        )
        assert no_phone.status_code == 422
        assert "A callback needs the phone number to call." in no_phone.text
        assert 'id="phone-error"' in no_phone.text and "Mug arrived chipped" in no_phone.text
        called = await premium_browser.submit(
            "/portal/tickets/new",
            "/portal/tickets",
            ticket(channel="callback", phone="+31 20 123 4567", category="billing"),
        )
        case = await case_of(api, premium, case_id_in(called, "opened"))
        assert (case["channel"], case["phone"], case["category"]) == (
            "callback",
            "+31 20 123 4567",
            "billing",
        )
        assert case["priority"] == "priority"
    finally:
        await free_browser.close()
        await premium_browser.close()


async def test_a_ticket_opened_in_the_portal_is_the_apis_case_once_however_often_sent(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    tess = await member(api, mine, "support")
    made = await api.client.post("/v1/orders", json=order_json(), headers=mine.key)
    assert made.status_code == 201, made.text
    order = made.json()
    browser = await Portal.signed_in(api, tess)
    try:
        # A field missing: the form again, 422, the first error in words, what was typed kept.
        empty = await browser.submit(
            "/portal/tickets/new", "/portal/tickets", ticket(subject="   ")
        )
        assert empty.status_code == 422
        assert "Fill in “Subject”" in empty.text and 'aria-invalid="true"' in empty.text
        assert "The customer sent a photo.\nWhat now?</textarea>" in empty.text
        assert 'value="orders" required checked' in empty.text
        unknown = await browser.submit(
            "/portal/tickets/new", "/portal/tickets", ticket(order="SHOP-NOPE")
        )
        assert unknown.status_code == 422 and "SHOP-NOPE" in unknown.text
        assert await cases_of(api, mine) == []

        # Sent twice with the same nonce (a double click): one ticket.
        form = await browser.get("/portal/tickets/new")
        fields = {
            "csrf": csrf_of(form.text),
            "nonce": nonce_in(form.text, "/portal/tickets"),
            **ticket(category="shipments", channel="chat", order=order["support_id"].lower()),
        }
        first = await browser.post("/portal/tickets", fields)
        again = await browser.post("/portal/tickets", fields)
        case_id = case_id_in(first, "opened")
        assert case_id_in(again, "opened") == case_id
        listed = await cases_of(api, mine)
        assert [c["id"] for c in listed] == [case_id]
        assert (listed[0]["category"], listed[0]["channel"]) == ("shipments", "chat")
        assert listed[0]["order_id"] == order["id"]
        assert listed[0]["subject"] == "Mug arrived chipped"

        shown = await browser.get(first.headers["location"])
        assert shown.status_code == 200
        assert_page_headers(shown)
        words = text_of_page(shown.text)
        assert "Your ticket is open" in words and "Ticket #" in words
        assert "Shipments and deliveries" in words and "Live chat" in words
        assert "The customer sent a photo." in words and "Poster Shop (your shop)" in words
        assert f'href="/portal/orders/{order["id"]}"' in shown.text
        assert "On track" in words and "<time datetime=" in shown.text

        # The order by its reference works as well; the list shows both, newest first.
        by_reference = await browser.submit(
            "/portal/tickets/new",
            "/portal/tickets",
            ticket(subject="Second question", order=order["order_reference_id"]),
        )
        second = await case_of(api, mine, case_id_in(by_reference, "opened"))
        assert second["order_id"] == order["id"]
        listing = await browser.get("/portal/tickets")
        assert listing.status_code == 200
        assert listing.text.index("Second question") < listing.text.index("Mug arrived chipped")
        assert "On track" in listing.text and "<caption>" in listing.text
    finally:
        await browser.close()


async def test_the_support_team_answers_and_the_merchant_replies_and_closes_in_the_portal(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    sam = await agent(api)
    browser = await Portal.signed_in(api, mine.owner)
    try:
        opened = await browser.submit("/portal/tickets/new", "/portal/tickets", ticket())
        case_id = case_id_in(opened, "opened")
        page = f"/portal/tickets/{case_id}"

        answered = await api.client.post(
            f"/v1/agent/cases/{case_id}/messages",
            json={"body": "Which order number is it?", "waiting_on_merchant": True},
            headers=as_agent(sam),
        )
        assert answered.status_code == 200, answered.text
        shown = text_of_page((await browser.get(page)).text)
        assert "Sam Support (printflow support)" in shown and "Which order number is it?" in shown
        assert "The support team is waiting for your answer" in shown
        assert "Paused: waiting for you" in shown

        # An empty reply changes nothing.
        empty = await browser.submit(page, f"{page}/reply", {"body": "  "})
        assert empty.status_code == 422 and "Fill in “Your message”" in empty.text
        assert len((await case_of(api, mine, case_id))["messages"]) == 2

        replied = await browser.submit(page, f"{page}/reply", {"body": "It is SHOP-1.\nThanks!"})
        assert replied.status_code == 303
        assert replied.headers["location"] == f"{page}?done=replied"
        case = await case_of(api, mine, case_id)
        assert [m["author_kind"] for m in case["messages"]] == ["merchant", "agent", "merchant"]
        assert case["messages"][-1]["body"] == "It is SHOP-1.\nThanks!"
        assert case["status"] == "open" and case["sla"]["next_response_due_at"] is not None
        after = await browser.get(replied.headers["location"])
        assert "Your message was added to the ticket." in after.text

        # Sent again with the same nonce: the message once.
        form = await browser.get(page)
        fields = {
            "csrf": csrf_of(form.text),
            "nonce": nonce_in(form.text, f"{page}/reply"),
            "body": "One more thing.",
        }
        assert (await browser.post(f"{page}/reply", fields)).status_code == 303
        assert (await browser.post(f"{page}/reply", fields)).status_code == 303
        bodies = [m["body"] for m in (await case_of(api, mine, case_id))["messages"]]
        assert bodies.count("One more thing.") == 1

        # Closing asks to be sure, then closes; a closed ticket takes no replies.
        unsure = await browser.submit(page, f"{page}/close", {})
        assert unsure.status_code == 422 and "close this ticket for good" in unsure.text
        closed = await browser.submit(page, f"{page}/close", {"confirm": "yes"})
        assert closed.status_code == 303 and closed.headers["location"] == f"{page}?done=closed"
        assert (await case_of(api, mine, case_id))["status"] == "closed"
        final = await browser.get(closed.headers["location"])
        assert "The ticket is closed." in final.text and "This ticket is closed" in final.text
        assert f'action="{page}/reply"' not in final.text

        # A reply from a page shown before the close: the API's 409, in words.
        late = await browser.post(
            f"{page}/reply",
            {"csrf": csrf_of(final.text), "nonce": "late-reply-nonce-0001", "body": "Hello?"},
        )
        assert late.status_code == 409, late.text[:500]
        assert "Nothing was changed" in late.text and "The case is closed" in late.text
        assert "Hello?" in late.text
    finally:
        await browser.close()


async def test_another_merchants_ticket_is_not_found_and_a_developer_may_not(
    full_api: FullApi,
) -> None:
    api = full_api
    mine, other = await shop(api), await shop(api, name="Other Shop")
    theirs = await open_case(api, other.key, subject="Their own question")
    dev = await member(api, mine, "developer")
    owner = await Portal.signed_in(api, mine.owner)
    developer = await Portal.signed_in(api, dev)
    try:
        page = f"/portal/tickets/{theirs['id']}"
        missing = await owner.get(page)
        assert missing.status_code == 404 and "Ticket not found" in missing.text
        assert "Their own question" not in missing.text
        home = await owner.get("/portal/tickets")
        assert "Their own question" not in home.text
        for action in ("reply", "close"):
            answer = await owner.post(
                f"{page}/{action}",
                {"csrf": csrf_of(home.text), "nonce": "n" * 22, "body": "hi", "confirm": "yes"},
            )
            assert answer.status_code == 404, (action, answer.text[:300])
        case = await case_of(api, other, theirs["id"])
        assert case["status"] == "open" and len(case["messages"]) == 1

        for path in ("/portal/tickets", "/portal/tickets/new", "/portal/messages"):
            refused = await developer.get(path)
            assert refused.status_code == 403, path
            assert "Your role does not include this" in refused.text
        nav = await developer.get("/portal/orders")
        assert 'href="/portal/tickets"' not in nav.text
    finally:
        await owner.close()
        await developer.close()


async def test_the_ticket_list_pages_with_a_cursor(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    for n in range(22):
        await open_case(api, mine.key, subject=f"Question number {n}")
    browser = await Portal.signed_in(api, mine.owner)
    try:
        first = await browser.get("/portal/tickets")
        assert "Question number 21" in first.text and "Question number 1<" not in first.text
        found = re.search(r'href="(/portal/tickets\?cursor=[^"]+)" rel="next"', first.text)
        assert found, "no next page link"
        second = await browser.get(found.group(1).replace("&amp;", "&"))
        assert second.status_code == 200
        assert "Question number 1<" in second.text and "Question number 0<" in second.text
        assert 'rel="next"' not in second.text and "First page" in second.text
        bad = await browser.get("/portal/tickets?cursor=nonsense")
        assert bad.status_code == 400 and "Cannot show this page" in bad.text
    finally:
        await browser.close()


async def test_an_answer_lost_after_the_change_keeps_the_form_so_a_resend_changes_once(
    full_api: FullApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = full_api
    mine = await shop(api)
    browser = await Portal.signed_in(api, mine.owner)
    real_create, real_message = cases.create_case, cases.merchant_message

    async def create_then_fail(*args: Any, **kwargs: Any) -> Any:
        await real_create(*args, **kwargs)
        raise RuntimeError("the answer was lost")

    async def message_then_fail(*args: Any, **kwargs: Any) -> Any:
        await real_message(*args, **kwargs)
        raise RuntimeError("the answer was lost")

    try:
        form = await browser.get("/portal/tickets/new")
        nonce = nonce_in(form.text, "/portal/tickets")
        fields = {"csrf": csrf_of(form.text), "nonce": nonce, **ticket()}
        monkeypatch.setattr(cases, "create_case", create_then_fail)
        lost = await browser.post("/portal/tickets", fields)
        assert lost.status_code == 503
        assert "The change may not have been made" in lost.text
        assert "did not answer just now" in lost.text
        assert nonce_in(lost.text, "/portal/tickets") == nonce  # a resend is the same ticket
        assert "Mug arrived chipped" in lost.text
        monkeypatch.setattr(cases, "create_case", real_create)
        case_id = case_id_in(await browser.post("/portal/tickets", fields), "opened")
        assert [c["id"] for c in await cases_of(api, mine)] == [case_id]

        page = f"/portal/tickets/{case_id}"
        shown = await browser.get(page)
        fields = {
            "csrf": csrf_of(shown.text),
            "nonce": nonce_in(shown.text, f"{page}/reply"),
            "body": "Any news?",
        }
        monkeypatch.setattr(cases, "merchant_message", message_then_fail)
        lost = await browser.post(f"{page}/reply", fields)
        assert lost.status_code == 503 and "did not answer just now" in lost.text
        assert nonce_in(lost.text, f"{page}/reply") == fields["nonce"]
        assert "Any news?</textarea>" in lost.text
        monkeypatch.setattr(cases, "merchant_message", real_message)
        assert (await browser.post(f"{page}/reply", fields)).status_code == 303
        bodies = [m["body"] for m in (await case_of(api, mine, case_id))["messages"]]
        assert bodies.count("Any news?") == 1
    finally:
        await browser.close()
