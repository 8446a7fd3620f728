"""The portal's orders: the list with its search and filters, "needs you", the order page and
its forms, which are the API's own changes (the same workflow Updates, the same refusals).
Real parts: the API and its worker on the Temporal dev server, the facility simulator, SQLite
(and PostgreSQL for the search); results read back through the JSON API."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from api.services import orders
from tests.cases.console import assert_page_headers
from tests.contacts.test_contacts_api import contact
from tests.helpers.api import order_json
from tests.helpers.contacts import link_in
from tests.helpers.polling import apoll
from tests.helpers.production import FullApi, full_api
from tests.portal.browser import Portal, Shop, csrf_of, member, nonce_in, shop

__all__ = ["full_api"]

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ORDER_ROW = re.compile(r'<tr id="order-(ord_[0-9a-f]+)">')


async def create(api: FullApi, owner: Shop, **fields: Any) -> dict[str, Any]:
    """An order sent through the JSON API with the shop's key."""
    created = await api.client.post("/v1/orders", json=order_json(**fields), headers=owner.key)
    assert created.status_code == 201, created.text
    return dict(created.json())


def listed(page: httpx.Response) -> list[str]:
    """The order ids the list shows, in its order."""
    assert page.status_code == 200, page.text
    return ORDER_ROW.findall(page.text)


def address(**changes: str) -> dict[str, str]:
    fields = {
        "first_name": "Erika",
        "last_name": "Mustermann",
        "company": "",
        "address_line_1": "Unter den Linden 1",
        "address_line_2": "",
        "city": "Berlin",
        "state": "",
        "post_code": "10117",
        "country": "DE",
        "email": "erika@example.com",
        "phone": "",
    }
    fields.update(changes)
    return fields


# ---------------------------------------------------------------------------- the list


async def test_search_finds_an_order_by_support_id_as_typed_customer_e_mail_and_reference(
    full_api: FullApi,
) -> None:
    api = full_api
    mine, other = await shop(api), await shop(api, name="Other Shop")
    erika = await create(api, mine)
    jonas = await create(
        api,
        mine,
        shipping_address={
            **order_json()["shipping_address"],
            "first_name": "Jonas",
            "last_name": "Weber",
            "email": "Jonas.Weber@Post.example",
        },
    )
    referenced = await create(api, mine, reference="SUMMER-2025_01")
    # Another shop's order with the same customer never shows.
    theirs = await create(api, other)
    browser = await Portal.signed_in(api, mine.owner)
    try:
        everything = await browser.get("/portal/orders")
        assert_page_headers(everything)
        assert listed(everything) == [referenced["id"], jonas["id"], erika["id"]]
        assert theirs["id"] not in everything.text

        # A Support ID as a customer reads it out: lower case, spaces around and inside.
        support_id = jonas["support_id"]
        typed = f"  {support_id[:6].lower()} {support_id[6:].lower()} "
        by_support_id = await browser.http.get("/portal/orders", params={"q": typed})
        assert listed(by_support_id) == [jonas["id"]]
        assert support_id in by_support_id.text and "Jonas Weber" in by_support_id.text

        # Part of the customer's e-mail address, any case.
        by_email = await browser.http.get("/portal/orders", params={"q": "WEBER@post"})
        assert listed(by_email) == [jonas["id"]]
        # Part of the name: every order of Erika (this shop's only).
        by_name = await browser.http.get("/portal/orders", params={"q": "erika muster"})
        assert listed(by_name) == [referenced["id"], erika["id"]]

        # The reference, exactly; its "_" is no wildcard, and "%" matches nothing.
        by_reference = await browser.http.get("/portal/orders", params={"q": "SUMMER-2025_01"})
        assert listed(by_reference) == [referenced["id"]]
        assert listed(await browser.http.get("/portal/orders", params={"q": "SUMMER-2025"})) == []
        wildcard = await browser.http.get("/portal/orders", params={"q": "%"})
        assert listed(wildcard) == [] and "No order matches these filters" in wildcard.text
    finally:
        await browser.close()


@SQLITE
async def test_status_country_and_created_filters(full_api: FullApi) -> None:
    api = full_api
    # Far east of UTC: the days a person picks are the shop's, not UTC's.
    mine = await shop(api, timezone="Pacific/Kiritimati")
    german = await create(api, mine)
    american = await create(api, mine, country="US")
    canceled = await create(api, mine)
    cancel = await api.client.post(
        f"/v1/orders/{canceled['id']}/cancel", json={"reason_code": "duplicate"}, headers=mine.key
    )
    assert cancel.status_code == 200, cancel.text
    browser = await Portal.signed_in(api, mine.owner)
    try:
        by_status = await browser.http.get("/portal/orders", params={"status": "canceled"})
        assert listed(by_status) == [canceled["id"]]
        assert 'value="canceled" selected' in by_status.text  # the filter stays chosen
        scheduled = await browser.http.get("/portal/orders", params={"status": "scheduled"})
        assert listed(scheduled) == [american["id"], german["id"]]

        by_country = await browser.http.get("/portal/orders", params={"country": "us"})
        assert listed(by_country) == [american["id"]]

        created = datetime.fromisoformat(german["created_at"])
        day = created.astimezone(ZoneInfo("Pacific/Kiritimati")).date()
        that_day = {"created_from": day.isoformat(), "created_to": day.isoformat()}
        assert len(listed(await browser.http.get("/portal/orders", params=that_day))) == 3
        before = {"created_to": (day - timedelta(days=1)).isoformat()}
        assert listed(await browser.http.get("/portal/orders", params=before)) == []
        after = {"created_from": (day + timedelta(days=1)).isoformat()}
        assert listed(await browser.http.get("/portal/orders", params=after)) == []
        both = {**that_day, "country": "DE", "status": "scheduled"}
        assert listed(await browser.http.get("/portal/orders", params=both)) == [german["id"]]

        # Filters that make no sense: the page, saying why, with a 400 (never a 500).
        bad_date = await browser.http.get("/portal/orders", params={"created_from": "31/12/2025"})
        assert bad_date.status_code == 400
        assert "Created from" in bad_date.text and "is not a date" in bad_date.text
        assert 'value="31/12/2025"' in bad_date.text  # kept in the form to correct
        assert not ORDER_ROW.findall(bad_date.text)
        for params, words in (
            ({"country": "XX"}, "is not a country code"),
            ({"status": "lost"}, "choose one of the statuses"),
            ({"created_from": "2025-03-02", "created_to": "2025-03-01"}, "on or before"),
            ({"created_to": "0001-01-01"}, "choose a day from"),
            ({"limit": "0"}, "a number from 1 to 100"),
            ({"cursor": "not-a-cursor"}, "start again from the first page"),
        ):
            bad = await browser.http.get("/portal/orders", params=params)
            assert bad.status_code == 400, (params, bad.status_code)
            assert words in bad.text, (params, bad.text[:2000])
    finally:
        await browser.close()


@SQLITE
async def test_the_list_pages_with_a_cursor_and_keeps_its_filters(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    made = [await create(api, mine) for _ in range(3)]
    american = await create(api, mine, country="US")
    newest_first = [o["id"] for o in reversed(made)]
    browser = await Portal.signed_in(api, mine.owner)
    try:
        first = await browser.http.get("/portal/orders", params={"country": "DE", "limit": "2"})
        assert listed(first) == newest_first[:2]
        found = re.search(r'<a href="([^"]+)" rel="next">', first.text)
        assert found is not None
        next_url = found.group(1).replace("&amp;", "&")
        assert "country=DE" in next_url and "limit=2" in next_url and "cursor=" in next_url
        second = await browser.get(next_url)
        assert listed(second) == newest_first[2:]
        assert american["id"] not in second.text
        assert 'rel="next"' not in second.text and "First page" in second.text
    finally:
        await browser.close()


# ---------------------------------------------------------------------------- the order page


@SQLITE
async def test_another_shops_order_is_a_404_to_see_and_to_cancel_and_nothing_changes(
    full_api: FullApi,
) -> None:
    api = full_api
    mine, other = await shop(api), await shop(api, name="Other Shop")
    theirs = await create(api, other)
    browser = await Portal.signed_in(api, mine.owner)
    try:
        seen = await browser.get(f"/portal/orders/{theirs['id']}")
        assert seen.status_code == 404 and "Order not found" in seen.text
        assert theirs["order_reference_id"] not in seen.text
        unknown = await browser.get("/portal/orders/ord_nothing")
        assert unknown.status_code == 404
        home = await browser.get("/portal/orders")
        canceled = await browser.post(
            f"/portal/orders/{theirs['id']}/cancel",
            {"csrf": csrf_of(home.text), "nonce": "n" * 22, "reason_code": "duplicate"},
        )
        assert canceled.status_code == 404 and "Order not found" in canceled.text
    finally:
        await browser.close()
    assert (await api.order(other.key, theirs["id"]))["status"] == "scheduled"


@SQLITE
async def test_a_developer_sees_the_order_without_forms_and_cannot_cancel_it(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    order = await create(api, mine)
    developer = await member(api, mine, "developer")
    browser = await Portal.signed_in(api, developer)
    try:
        page = await browser.get(f"/portal/orders/{order['id']}")
        assert page.status_code == 200, page.text
        assert order["order_reference_id"] in page.text and order["support_id"] in page.text
        assert "can see this order but not change it" in page.text
        assert "<form" in page.text  # sign-out, nothing else
        for action in ("cancel", "address", "approve"):
            assert f'action="/portal/orders/{order["id"]}/{action}"' not in page.text
        refused = await browser.post(
            f"/portal/orders/{order['id']}/cancel",
            {"csrf": csrf_of(page.text), "nonce": "n" * 22, "reason_code": "duplicate"},
        )
        assert refused.status_code == 403 and "Your role does not include this" in refused.text
    finally:
        await browser.close()
    assert (await api.order(mine.key, order["id"]))["status"] == "scheduled"


@SQLITE
async def test_the_order_page_shows_items_files_promise_timeline_and_deliveries(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    order = await create(api, mine, reference="PAGE-1")
    browser = await Portal.signed_in(api, mine.owner)
    try:
        page = await browser.get(f"/portal/orders/{order['id']}")
        assert page.status_code == 200, page.text
        assert_page_headers(page)
        text = page.text
        assert "<h1>Order PAGE-1</h1>" in text
        assert "Scheduled" in text and order["support_id"] in text
        assert "Erika Mustermann" in text and "Unter den Linden 1" in text
        assert "mug_11oz_white" in text
        assert 'href="https://files.example/mug.png" rel="noopener noreferrer"' in text
        assert "Order received" in text  # the timeline, in words
        assert 'id="fact-cutoff"' in text and 'id="fact-ships-by"' in text
        assert "You can cancel or change this order until" in text
        assert "No webhook deliveries for this order" in text
        # Each time is a <time> with its instant.
        assert f'<time datetime="{order["created_at"].replace("Z", "+00:00")}' in text
        # The forms of the order's allowed actions: cancel and address; not approve.
        assert f'action="/portal/orders/{order["id"]}/cancel"' in text
        assert f'action="/portal/orders/{order["id"]}/address"' in text
        assert f'action="/portal/orders/{order["id"]}/approve"' not in text
        assert 'for="address-city"' in text and 'for="cancel-reason-code"' in text
        assert "<script" not in text
    finally:
        await browser.close()


# ---------------------------------------------------------------------------- the forms


@SQLITE
async def test_cancel_before_the_cutoff_sent_twice_cancels_once_with_its_reason(
    full_api: FullApi,
) -> None:
    api = full_api
    # Its webhooks go to this test's receiver: the page lists their deliveries.
    mine = await shop(api, webhook_url=api.receiver.url)
    api.receiver.secret = mine.merchant["webhook_secret"]
    order = await create(api, mine)
    support = await member(api, mine, "support")
    browser = await Portal.signed_in(api, support)
    path = f"/portal/orders/{order['id']}"
    try:
        page = await browser.get(path)
        fields = {
            "csrf": csrf_of(page.text),
            "nonce": nonce_in(page.text, f"{path}/cancel"),
            "reason_code": "inventory_shortage",
            "reason": "The last mug broke",
        }
        first = await browser.post(f"{path}/cancel", fields)
        assert first.status_code == 303, first.text
        assert first.headers["location"] == f"{path}?done=canceled"
        # The same form again (a double click, a resend): the same Update, no error.
        again = await browser.post(f"{path}/cancel", fields)
        assert again.status_code == 303, again.text
        shown = await browser.get(first.headers["location"])
        assert shown.status_code == 200
        assert "The order was canceled." in shown.text
        assert "This order was canceled" in shown.text and "Out of stock" in shown.text
        assert f'action="{path}/cancel"' not in shown.text

        async def delivered() -> str | None:
            page = await browser.get(path)
            table = re.search(r'<table id="deliveries">.*?</table>', page.text, re.S)
            return table.group(0) if table and "order.status_updated" in table.group(0) else None

        deliveries = await apoll("the cancel's webhook on the order page", delivered)
        assert "Delivered" in deliveries and "HTTP 200" in deliveries
    finally:
        await browser.close()
    after = await api.order(mine.key, order["id"])
    assert after["status"] == "canceled"
    assert after["cancel_reason_code"] == "inventory_shortage"
    assert after["cancel_reason"] == "The last mug broke"
    assert [e["type"] for e in after["events"]].count("canceled") == 1


@SQLITE
async def test_a_cancel_without_an_answer_is_a_503_and_its_resend_cancels_once(
    full_api: FullApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = full_api
    mine = await shop(api)
    order = await create(api, mine)
    browser = await Portal.signed_in(api, mine.owner)
    path = f"/portal/orders/{order['id']}"
    real = orders.update_order

    async def silent(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the workflow service went away")

    try:
        page = await browser.get(path)
        nonce = nonce_in(page.text, f"{path}/cancel")
        fields = {"csrf": csrf_of(page.text), "nonce": nonce, "reason_code": "duplicate"}
        monkeypatch.setattr(orders, "update_order", silent)
        lost = await browser.post(f"{path}/cancel", fields)
        assert lost.status_code == 503, lost.text
        assert "The change may not have been made" in lost.text
        assert "check the order, then try again" in lost.text
        # The form shown again is the same change: its nonce kept, its reason still chosen.
        assert nonce_in(lost.text, f"{path}/cancel") == nonce
        assert 'value="duplicate" selected' in lost.text
        assert (await api.order(mine.key, order["id"]))["status"] == "scheduled"

        monkeypatch.setattr(orders, "update_order", real)
        resent = await browser.post(f"{path}/cancel", {**fields, "csrf": csrf_of(lost.text)})
        assert resent.status_code == 303, resent.text
    finally:
        await browser.close()
    after = await api.order(mine.key, order["id"])
    assert after["status"] == "canceled" and after["cancel_reason_code"] == "duplicate"
    assert [e["type"] for e in after["events"]].count("canceled") == 1


@SQLITE
async def test_cancel_without_a_reason_is_a_422_that_keeps_the_note(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    order = await create(api, mine)
    browser = await Portal.signed_in(api, mine.owner)
    path = f"/portal/orders/{order['id']}"
    try:
        answer = await browser.submit(path, f"{path}/cancel", {"reason": "changed my mind"})
        assert answer.status_code == 422
        assert "Choose why the order is canceled." in answer.text
        assert "changed my mind</textarea>" in answer.text
        assert 'aria-invalid="true"' in answer.text
    finally:
        await browser.close()
    assert (await api.order(mine.key, order["id"]))["status"] == "scheduled"


@SQLITE
async def test_cancel_after_the_cutoff_is_a_409_page_and_the_order_goes_on(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    # Reykjavik cuts off every 2 seconds: the order reaches production at once.
    order = await api.in_production(mine.key)
    browser = await Portal.signed_in(api, mine.owner)
    path = f"/portal/orders/{order['id']}"
    try:
        page = await browser.get(path)
        assert "This order went to production on" in page.text
        assert "it can no longer be canceled or changed" in page.text
        assert f'action="{path}/cancel"' not in page.text
        # A page opened before the cutoff, sent after it.
        refused = await browser.post(
            f"{path}/cancel",
            {"csrf": csrf_of(page.text), "nonce": "s" * 22, "reason_code": "customer_request"},
        )
        assert refused.status_code == 409, refused.text
        assert "Nothing was changed" in refused.text
        assert "This order went to production: it can no longer be canceled" in refused.text
    finally:
        await browser.close()
    after = await api.order(mine.key, order["id"])
    assert after["status"] == "in_production" and after["cancel_reason_code"] is None


@SQLITE
async def test_fixing_the_address_changes_it_in_the_api_and_reroutes_the_order(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    order = await create(api, mine)
    assert order["facility"]["id"] == "berlin"
    browser = await Portal.signed_in(api, mine.owner)
    path = f"/portal/orders/{order['id']}"
    try:
        # A field left empty: 422, the field named, what was typed kept.
        missing = await browser.submit(
            path, f"{path}/address", address(city="", address_line_1="Broadway 1")
        )
        assert missing.status_code == 422
        assert "City: fill this in." in missing.text
        assert 'value="Broadway 1"' in missing.text
        assert 'id="address-city" name="city" value=""' in missing.text

        moved = await browser.submit(
            path,
            f"{path}/address",
            address(
                address_line_1="350 Fifth Avenue",
                city="New York",
                state="NY",
                post_code="10118",
                country="US",
                phone="+1 212 555 0100",
            ),
        )
        assert moved.status_code == 303, moved.text
        assert moved.headers["location"] == f"{path}?done=address"
        shown = await browser.get(moved.headers["location"])
        assert "The shipping address was changed." in shown.text
        assert "350 Fifth Avenue" in shown.text
    finally:
        await browser.close()
    after = await api.order(mine.key, order["id"])
    assert after["shipping_address"]["address_line_1"] == "350 Fifth Avenue"
    assert after["shipping_address"]["country"] == "US"
    assert after["shipping_address"]["phone"] == "+1 212 555 0100"
    # The same re-routing as the API's: a US address goes to Newark.
    assert after["facility"]["id"] == "newark"


@SQLITE
async def test_approve_and_needs_you(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api, approval="manual")
    waiting = await create(api, mine, reference="WAITING-1")
    assert waiting["status"] == "pending_approval"
    # An order of its own approval, at Reykjavik: in production, then the facility cannot ship.
    held = await api.in_production(mine.key, "HELD-1", approval="auto")
    reported = await api.event(
        held["id"],
        "issue",
        issue={"kind": "address_invalid", "description": "No such street in Reykjavik"},
    )
    assert reported.status_code < 300, reported.text
    await api.until(mine.key, held["id"], lambda o: o["status"] == "on_hold")
    browser = await Portal.signed_in(api, mine.owner)
    try:
        needs = await browser.get("/portal/needs-you")
        assert needs.status_code == 200, needs.text
        rows = re.findall(r'<tr class="need-([a-z]+)">(.*?)</tr>', needs.text, re.S)
        kinds = {kind: row for kind, row in rows}
        assert set(kinds) == {"approval", "hold"}, rows
        assert f'href="/portal/orders/{waiting["id"]}"' in kinds["approval"]
        assert "Waiting for approval" in kinds["approval"]
        assert f'href="/portal/orders/{held["id"]}"' in kinds["hold"]
        assert "cannot ship to the address" in kinds["hold"]
        assert "No such street in Reykjavik" in kinds["hold"]
        assert "Fix the shipping address" in kinds["hold"]
        # Newest problem first: the hold came after the order waiting for approval.
        assert [kind for kind, _ in rows] == ["hold", "approval"]

        path = f"/portal/orders/{waiting['id']}"
        approved = await browser.submit(path, f"{path}/approve")
        assert approved.status_code == 303, approved.text
        shown = await browser.get(approved.headers["location"])
        assert "The order was approved." in shown.text
        after = await api.order(mine.key, waiting["id"])
        assert after["status"] == "scheduled"
        assert "approved" in [e["type"] for e in after["events"]]

        # Approved, it needs the shop no more.
        later = await apoll(
            "the approved order to leave needs-you",
            lambda: _without(browser, waiting["id"]),
        )
        assert f'href="/portal/orders/{held["id"]}"' in later
    finally:
        await browser.close()


async def _without(browser: Portal, order_id: str) -> str | None:
    page = await browser.get("/portal/needs-you")
    return page.text if f"/portal/orders/{order_id}" not in page.text else None


@SQLITE
async def test_needs_you_lists_a_customer_waiting_for_a_reply_until_the_shop_answers(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api, timezone="Europe/Berlin", country="DE")
    order = await create(api, mine)
    made = await api.client.post(
        "/v1/customer-contacts", json=contact(order["support_id"]), headers=mine.key
    )
    assert made.status_code == 201, made.text
    contact_id = made.json()["id"]
    mail = await api.mail.wait_for(lambda m: "erika@example.com" in str(m["To"]), timeout=20)
    customer_page = link_in(mail).removeprefix(api.settings.public_base_url)
    developer = await member(api, mine, "developer")
    owner = await Portal.signed_in(api, mine.owner)
    dev = await Portal.signed_in(api, developer)
    link = f'href="/portal/messages/{contact_id}"'
    try:
        # The shop had the last word: nothing waits for it.
        assert link not in (await owner.get("/portal/needs-you")).text
        replied = await api.client.post(customer_page, data={"body": "It is Hauptstr. 5."})
        assert replied.status_code == 200, replied.text

        async def waiting() -> str | None:
            page = await owner.get("/portal/needs-you")
            rows = re.findall(r'<tr class="need-message">(.*?)</tr>', page.text, re.S)
            return rows[0] if rows and link in rows[0] else None

        row = await apoll("the customer's reply on needs-you", waiting)
        assert "Customer waiting" in row and "About your delivery address" in row
        assert order["order_reference_id"] in row and "Reply by" in row
        # A role that cannot write to customers is not sent there.
        seen = await dev.get("/portal/needs-you")
        assert seen.status_code == 200 and link not in seen.text

        answer = await api.client.post(
            f"/v1/customer-contacts/{contact_id}/messages",
            json={"body": "Thank you, updated!"},
            headers=mine.key,
        )
        assert answer.status_code == 200, answer.text
        assert link not in (await owner.get("/portal/needs-you")).text
    finally:
        await owner.close()
        await dev.close()
