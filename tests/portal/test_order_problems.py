"""The order page's forms for an order's problems: answering a hold (as it is, or with new
files), reporting a problem with what arrived (a reprint with its claim), and writing to the
customer within the contact policy. Each is the API's own change (the same service, the same
workflow Update or creation reference), so a double submit changes things once and a refusal
is said in words with the API's status. Real parts: the API and its worker on the Temporal dev
server, the facility simulator, SQLite and a real SMTP sink; results read through the JSON API."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.cases.console import assert_page_headers
from tests.helpers.api import order_json
from tests.helpers.mail import text_of
from tests.helpers.production import FullApi, full_api, tracking
from tests.portal.browser import Portal, Shop, csrf_of, member, nonce_in, shop

__all__ = ["full_api"]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CUSTOMER = "erika@example.com"

ITEMS = [
    {
        "item_reference_id": "mug",
        "product_uid": "mug_11oz_white",
        "quantity": 1,
        "files": [{"type": "default", "url": "https://files.example/mug.png"}],
    },
    {
        "item_reference_id": "poster",
        "product_uid": "poster_a3",
        "quantity": 2,
        "files": [
            {"type": "default", "url": "https://files.example/poster.pdf"},
            {"type": "back", "url": "https://files.example/poster-back.pdf"},
        ],
    },
]


async def held(api: FullApi, owner: Shop, kind: str, description: str) -> dict[str, Any]:
    """An order in production that the facility put on hold with an issue of ``kind``."""
    order = await api.in_production(owner.key, items=ITEMS)
    issue = {"kind": kind, "description": description}
    assert (await api.event(order["id"], "issue", issue=issue)).status_code == 202
    return await api.until(owner.key, order["id"], lambda o: o["status"] == "on_hold")


async def delivered(api: FullApi, owner: Shop) -> dict[str, Any]:
    order = await api.in_production(owner.key, items=ITEMS)
    oid = order["id"]
    assert (await api.event(oid, "printed")).status_code == 202
    await api.until(owner.key, oid, lambda o: o["status"] == "printed")
    assert (await api.event(oid, "shipped", **tracking("PKG1"))).status_code == 202
    await api.until(owner.key, oid, lambda o: o["status"] == "shipped")
    assert (await api.event(oid, "delivered")).status_code == 202
    return await api.until(owner.key, oid, lambda o: o["status"] == "delivered")


async def scheduled(api: FullApi, owner: Shop) -> dict[str, Any]:
    """An order at Berlin, which prints at midnight: it stays scheduled for the test."""
    created = await api.client.post("/v1/orders", json=order_json(), headers=owner.key)
    assert created.status_code == 201, created.text
    return dict(created.json())


def form_of(html: str, action: str, marker: str = "") -> str:
    """The form posting to ``action`` that contains ``marker``."""
    for form in re.findall(
        r'<form[^>]*action="' + re.escape(action) + r'"[^>]*>.*?</form>', html, re.S
    ):
        if marker in form:
            return str(form)
    raise AssertionError(f"no form to {action} with {marker!r}")


def nonce_of_form(html: str, action: str, marker: str) -> str:
    found = re.search(r'name="nonce" value="([^"]+)"', form_of(html, action, marker))
    assert found is not None
    return found.group(1)


def assert_labelled(html: str, section: str) -> None:
    """Every field of the section with id ``section`` has a label naming it, and every group
    of choices a legend."""
    found = re.search(r'<section[^>]*id="' + section + r'".*?</section>', html, re.S)
    assert found is not None, f"no section #{section}"
    part = found.group(0)
    for tag, attrs in re.findall(r"<(input|textarea|select)\b([^>]*)>", part):
        if 'type="hidden"' in attrs:
            continue
        ident = re.search(r'id="([^"]+)"', attrs)
        assert ident is not None, f"a {tag} without an id in #{section}: {attrs}"
        assert f'<label for="{ident.group(1)}"' in part or (
            f'<label class="inline" for="{ident.group(1)}"' in part
        ), f"no label for #{ident.group(1)}"
    assert part.count("<fieldset") == part.count("<legend")
    assert "<script" not in part and "style=" not in part


def problem_of(page: httpx.Response) -> str:
    found = re.search(r'<div class="alert" role="alert"[^>]*>(.*?)</div>', page.text, re.S)
    assert found is not None, page.text[:2000]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def unescape(html: str) -> str:
    return html.replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&")


# ---------------------------------------------------------------------------- holds


async def test_a_file_problem_is_fixed_by_replacing_a_file_through_the_portal(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    order = await held(api, mine, "file_quality", "the back of the poster is 72 dpi")
    oid = order["id"]
    page = f"/portal/orders/{oid}"
    action = f"/portal/orders/{oid}/resolve-hold"
    browser = await Portal.signed_in(api, mine.owner)
    try:
        shown = await browser.get(page)
        assert shown.status_code == 200, shown.text
        assert_page_headers(shown)
        assert "Answer the hold" in shown.text and "Print it as it is" in shown.text
        assert_labelled(shown.text, "hold")
        replace = form_of(shown.text, action, 'value="replace_files"')
        # A field for each file of each item, saying which file it replaces.
        for name in ("file-0-0", "file-1-0", "file-1-1"):
            assert f'name="{name}"' in replace
        assert "https://files.example/poster-back.pdf" in replace
        nonce = nonce_of_form(shown.text, action, 'value="replace_files"')
        assert nonce != nonce_of_form(shown.text, action, 'value="proceed"')

        # Nothing given, or not a web address: the page again, saying which field; no change.
        empty = await browser.post(
            action, {"csrf": csrf_of(shown.text), "nonce": nonce, "resolution": "replace_files"}
        )
        assert empty.status_code == 422
        assert "at least one file" in problem_of(empty)
        wrong = await browser.post(
            action,
            {
                "csrf": csrf_of(shown.text),
                "nonce": nonce,
                "resolution": "replace_files",
                "file-1-1": "files.example/sharp-back.pdf",
            },
        )
        assert wrong.status_code == 422
        assert "Item poster, file 2" in problem_of(wrong) and "https://" in problem_of(wrong)
        assert 'id="file-1-1-error"' in wrong.text and 'aria-invalid="true"' in wrong.text
        assert 'value="files.example/sharp-back.pdf"' in wrong.text  # as it was typed
        assert (await api.order(mine.key, oid))["status"] == "on_hold"

        fields = {
            "csrf": csrf_of(wrong.text),
            "nonce": nonce,
            "resolution": "replace_files",
            "file-1-1": "https://files.example/sharp-back.pdf",
        }
        done = await browser.post(action, fields)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{page}?done=files_replaced"
        assert_page_headers(done)
        # Sent twice (the same nonce): the same answer, applied once.
        again = await browser.post(action, fields)
        assert again.status_code == 303, again.text

        after = await browser.get(done.headers["location"])
        assert "The files were replaced" in after.text
    finally:
        await browser.close()

    resumed = await api.until(mine.key, oid, lambda o: o["status"] == "in_production")
    assert resumed["hold"] is None
    files = {i["item_reference_id"]: [f["url"] for f in i["files"]] for i in resumed["items"]}
    assert files == {
        "mug": ["https://files.example/mug.png"],
        "poster": ["https://files.example/poster.pdf", "https://files.example/sharp-back.pdf"],
    }
    answered = [e for e in resumed["events"] if e["type"] == "hold_resolved"]
    assert len(answered) == 1
    assert answered[0]["detail"]["action"] == "replace_files"
    assert answered[0]["detail"]["items"] == ["poster"]


async def test_proceed_answers_a_hold_once_and_an_answered_hold_is_refused_in_words(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    order = await held(api, mine, "other", "the ink of this colour runs out until Monday")
    oid = order["id"]
    page, action = f"/portal/orders/{oid}", f"/portal/orders/{oid}/resolve-hold"
    browser = await Portal.signed_in(api, mine.owner)
    try:
        shown = await browser.get(page)
        nonce = nonce_of_form(shown.text, action, 'value="proceed"')
        fields = {"csrf": csrf_of(shown.text), "nonce": nonce, "resolution": "proceed"}
        done = await browser.post(action, fields)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{page}?done=hold_answered"
        assert (await browser.post(action, fields)).status_code == 303  # the same Update
        resumed = await api.until(mine.key, oid, lambda o: o["status"] == "in_production")
        assert [
            e["detail"]["action"] for e in resumed["events"] if e["type"] == "hold_resolved"
        ] == ["proceed"]
        after = await browser.get(done.headers["location"])
        assert "The hold is answered" in after.text
        assert 'value="proceed"' not in after.text  # no hold, nothing to answer

        # The page shown before the answer, sent again with a new nonce: the workflow refuses.
        stale = await browser.post(action, {**fields, "nonce": "s" * 22})
        assert stale.status_code == 409
        assert "not on hold any more" in problem_of(stale)
        assert "Nothing was changed" in stale.text
    finally:
        await browser.close()


async def test_an_address_hold_points_to_the_address_form_not_to_proceed(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    order = await held(api, mine, "address_invalid", "post code 999 does not exist in Iceland")
    browser = await Portal.signed_in(api, mine.owner)
    try:
        shown = await browser.get(f"/portal/orders/{order['id']}")
        assert shown.status_code == 200
        section = re.search(r'<section[^>]*id="hold".*?</section>', shown.text, re.S)
        assert section is not None
        assert 'href="#address"' in section.group(0) and 'href="#cancel"' in section.group(0)
        assert "/resolve-hold" not in section.group(0)
    finally:
        await browser.close()


# ---------------------------------------------------------------------------- reprints


async def test_a_problem_with_a_delivered_order_is_reprinted_with_its_claim_once(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    original = await delivered(api, mine)
    oid = original["id"]
    page, action = f"/portal/orders/{oid}", f"/portal/orders/{oid}/reorder"
    browser = await Portal.signed_in(api, mine.owner)
    try:
        shown = await browser.get(page)
        assert shown.status_code == 200 and "Report a problem" in shown.text
        assert_labelled(shown.text, "reorder")
        form = form_of(shown.text, action)
        for reason in ("damaged", "defective", "misprint", "lost"):
            assert f'name="reason" value="{reason}"' in form
        assert "Damaged on the way" in form and "Photos of what arrived are needed" in form
        nonce = nonce_in(shown.text, action)
        report = {
            "csrf": csrf_of(shown.text),
            "nonce": nonce,
            "items": ["poster"],
            "reason": "damaged",
            "description": "The poster tube was crushed;\nboth posters are creased.",
        }

        # Damaged without photos, a photo that is no web address, no item: said in words.
        no_photo = await browser.post(action, report)
        assert no_photo.status_code == 422
        assert "needs at least one photo" in problem_of(no_photo)
        assert 'id="reorder-photos-error"' in no_photo.text
        assert "both posters are creased" in no_photo.text  # the description kept
        bad_photo = await browser.post(
            action, {**report, "photo_urls": "https://photos.example/1.jpg\n\nnot a url"}
        )
        assert bad_photo.status_code == 422
        assert "line 2" in problem_of(bad_photo) and "not a url" in unescape(bad_photo.text)
        no_item = await browser.post(
            action, {**report, "items": [], "photo_urls": "https://photos.example/1.jpg"}
        )
        assert no_item.status_code == 422 and "at least one item" in problem_of(no_item)
        # An item the order does not have (a page of another order): the service's own 422.
        unknown = await browser.post(
            action, {**report, "items": ["nope"], "photo_urls": "https://photos.example/1.jpg"}
        )
        assert unknown.status_code == 422
        assert "nope" in problem_of(unknown) and "mug, poster" in problem_of(unknown)
        assert 'id="reorder-items-error"' in unknown.text
        claims = await api.client.get(f"/v1/claims?order_id={oid}", headers=mine.key)
        assert claims.json()["data"] == []

        photos = "https://photos.example/1.jpg\r\n https://photos.example/2.jpg \r\n"
        sent = {**report, "photo_urls": photos}
        done = await browser.post(action, sent)
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        found = re.fullmatch(r"/portal/orders/(ord_[0-9a-f]+)\?done=reordered", location)
        assert found is not None, location
        reprint_id = found.group(1)
        assert reprint_id != oid
        # Sent twice (the same nonce): the same claim and reprint.
        again = await browser.post(action, sent)
        assert again.status_code == 303 and again.headers["location"] == location

        reprint_page = await browser.get(location)
        assert reprint_page.status_code == 200
        assert "filed as a claim" in reprint_page.text
    finally:
        await browser.close()

    claims = (await api.client.get(f"/v1/claims?order_id={oid}", headers=mine.key)).json()
    assert len(claims["data"]) == 1
    claim = claims["data"][0]
    assert claim["new_order_id"] == reprint_id and claim["original_order_id"] == oid
    assert claim["reason"] == "damaged" and claim["item_reference_ids"] == ["poster"]
    assert claim["description"] == "The poster tube was crushed; both posters are creased."
    assert claim["photo_urls"] == ["https://photos.example/1.jpg", "https://photos.example/2.jpg"]
    reprint = await api.order(mine.key, reprint_id)
    assert reprint["reorder_of"] == oid
    assert [i["item_reference_id"] for i in reprint["items"]] == ["poster"]
    assert (await api.order(mine.key, oid))["reorders"] == [reprint_id]


async def test_an_order_not_produced_offers_no_report_and_refuses_one(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    order = await scheduled(api, mine)
    browser = await Portal.signed_in(api, mine.owner)
    try:
        page = f"/portal/orders/{order['id']}"
        shown = await browser.get(page)
        assert shown.status_code == 200 and 'id="reorder"' not in shown.text
        sent = await browser.post(
            f"{page}/reorder",
            {
                "csrf": csrf_of(shown.text),
                "nonce": "r" * 22,
                "items": ["line-1"],
                "reason": "misprint",
                "description": "wrong colours",
            },
        )
        assert sent.status_code == 409
        assert "Only an order that was printed, shipped" in problem_of(sent)
    finally:
        await browser.close()


# ---------------------------------------------------------------------------- the customer


async def test_writing_to_the_customer_for_a_reason_that_fits_sends_one_e_mail(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    order = await scheduled(api, mine)
    oid, sid = order["id"], order["support_id"]
    page, action = f"/portal/orders/{oid}", f"/portal/orders/{oid}/contact"
    support = await member(api, mine, "support")
    browser = await Portal.signed_in(api, support)
    try:
        shown = await browser.get(page)
        assert shown.status_code == 200 and "Write to the customer" in shown.text
        assert_labelled(shown.text, "contact")
        form = form_of(shown.text, action)
        # Only what fits a scheduled order: its address.
        assert re.findall(r'name="reason" value="([a-z_]+)"', form) == ["invalid_address"]
        nonce = nonce_in(shown.text, action)
        message = {
            "csrf": csrf_of(shown.text),
            "nonce": nonce,
            "reason": "invalid_address",
            "subject": "Your delivery address",
            "body": "The house number seems to be missing.\nCould you tell us?",
        }

        # A reason that does not fit (a page shown before the order changed): the policy's 409.
        late = await browser.post(action, {**message, "reason": "delivery_delay"})
        assert late.status_code == 409
        said = problem_of(late)
        assert "“Delivery delay” is for a shipped order" in said and "scheduled" in said
        assert "What fits it now: Address problem" in said and "Nothing was sent" in said
        # A substitute offered: the policy's 422, naming the phrase, the message kept.
        offer = await browser.post(
            action, {**message, "body": "We can send you a similar mug instead."}
        )
        assert offer.status_code == 422
        assert "another product" in problem_of(offer) and "similar mug instead" in problem_of(offer)
        assert 'id="contact-body-error"' in offer.text
        assert "We can send you a similar mug instead." in offer.text
        # An empty message: said before anything is asked.
        empty = await browser.post(action, {**message, "body": "  "})
        assert empty.status_code == 422 and "Fill in “Your message”" in problem_of(empty)
        listed = await api.client.get(f"/v1/customer-contacts?support_id={sid}", headers=mine.key)
        assert listed.json()["data"] == []

        done = await browser.post(action, message)
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        found = re.fullmatch(r"/portal/messages/(con_[0-9a-f]+)\?done=sent", location)
        assert found is not None, location
        # Sent twice (the same nonce): the same conversation.
        again = await browser.post(action, message)
        assert again.status_code == 303 and again.headers["location"] == location
        thread = await browser.get(location)
        assert thread.status_code == 200
        assert "e-mailed to the customer" in thread.text
        assert "The house number seems to be missing." in thread.text
    finally:
        await browser.close()

    listed = await api.client.get(f"/v1/customer-contacts?support_id={sid}", headers=mine.key)
    contacts = listed.json()["data"]
    assert [c["id"] for c in contacts] == [found.group(1)]
    assert contacts[0]["reason"] == "invalid_address"
    assert contacts[0]["subject"] == "Your delivery address"
    mail = await api.mail.wait_for(
        lambda m: CUSTOMER in str(m["To"]) and "The house number seems" in text_of(m), timeout=20
    )
    assert "Could you tell us?" in text_of(mail)
    assert len([m for m in api.mail.messages if CUSTOMER in str(m["To"])]) == 1


async def test_a_customer_who_canceled_is_not_written_to(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    order = await scheduled(api, mine)
    oid = order["id"]
    canceled = await api.client.post(
        f"/v1/orders/{oid}/cancel", json={"reason_code": "customer_request"}, headers=mine.key
    )
    assert canceled.status_code == 200, canceled.text
    browser = await Portal.signed_in(api, mine.owner)
    try:
        shown = await browser.get(f"/portal/orders/{oid}")
        assert "canceled this order themselves" in shown.text
        assert f'action="/portal/orders/{oid}/contact"' not in shown.text
        sent = await browser.post(
            f"/portal/orders/{oid}/contact",
            {
                "csrf": csrf_of(shown.text),
                "nonce": "c" * 22,
                "reason": "invalid_address",
                "subject": "Your order",
                "body": "Was the address wrong?",
            },
        )
        assert sent.status_code == 409
        assert "canceled this order themselves" in problem_of(sent)
    finally:
        await browser.close()
    listed = await api.client.get(
        f"/v1/customer-contacts?support_id={order['support_id']}", headers=mine.key
    )
    assert listed.json()["data"] == []


# ---------------------------------------------------------------------------- who may


async def test_a_developer_gets_the_403_page_and_another_shops_order_is_a_404(
    full_api: FullApi,
) -> None:
    api = full_api
    mine, other = await shop(api), await shop(api, name="Other Shop")
    order = await held(api, mine, "other", "a question from the facility")
    oid = order["id"]
    theirs = await scheduled(api, other)
    forms = {
        "resolve-hold": {"resolution": "proceed"},
        "reorder": {"items": ["mug"], "reason": "lost", "description": "never arrived"},
        "contact": {"reason": "invalid_address", "subject": "Hello", "body": "Your address?"},
    }

    developer = await Portal.signed_in(api, await member(api, mine, "developer"))
    try:
        shown = await developer.get(f"/portal/orders/{oid}")
        assert shown.status_code == 200
        for path in forms:
            assert f'action="/portal/orders/{oid}/{path}"' not in shown.text
        for path, fields in forms.items():
            answer = await developer.post(
                f"/portal/orders/{oid}/{path}",
                {"csrf": csrf_of(shown.text), "nonce": "d" * 22, **fields},
            )
            assert answer.status_code == 403, (path, answer.text[:300])
            assert "Your role does not include this" in answer.text
    finally:
        await developer.close()
    assert (await api.order(mine.key, oid))["status"] == "on_hold"

    owner = await Portal.signed_in(api, mine.owner)
    try:
        home = await owner.get("/portal/orders")
        for path, fields in forms.items():
            answer = await owner.post(
                f"/portal/orders/{theirs['id']}/{path}",
                {"csrf": csrf_of(home.text), "nonce": "o" * 22, **fields},
            )
            assert answer.status_code == 404, (path, answer.text[:300])
            assert "Order not found" in answer.text
    finally:
        await owner.close()
    listed = await api.client.get(
        f"/v1/customer-contacts?support_id={theirs['support_id']}", headers=other.key
    )
    assert listed.json()["data"] == []
