"""Developers in the merchant portal: the API key and the webhook secret rotated in the browser
(shown once, rotated once however often the form is sent), the webhook URL set and refused in
the API's words, the webhook deliveries with "Redeliver", and the failed requests found by their
``X-Request-Id``. Real parts: the API and a worker on the Temporal dev server, SQLite, a real
webhook receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from api.pages.portal import developers
from db.engine import utcnow
from db.models import Merchant
from integrations.webhooks import verify_signature
from tests.cases.console import assert_page_headers
from tests.helpers.production import FullApi, full_api
from tests.portal.browser import Portal, Shop, csrf_of, member, nonce_in, shop

__all__ = ["full_api"]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

NEW_KEY = re.compile(r'<code class="secret" id="new-key">(pf_[A-Za-z0-9_-]+)</code>')
NEW_SECRET = re.compile(r'<code class="secret" id="new-secret">(whsec_[A-Za-z0-9_-]+)</code>')


def words(page: str) -> str:
    """The page's words, tags dropped and spaces folded: what a reader reads."""
    inline = re.sub(r"</?(a|code|em|small|span|strong|time)\b[^>]*>", "", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", inline)))


def form_of(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the form that posts to ``action``, as the browser sends them."""
    opening = r'<form[^>]*action="' + re.escape(action) + r'"[^>]*>(.*?)</form>'
    found = re.search(opening, page, re.S)
    assert found is not None, f"no form posts to {action}"
    fields = re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', found.group(1))
    return dict(fields)


async def orders_with(api: FullApi, key: str) -> int:
    answer = await api.client.get("/v1/orders", headers={"X-API-Key": key})
    return answer.status_code


async def merchant_row(api: FullApi, merchant_id: str) -> Merchant:
    async with api.app.state.sessions() as db:
        found = await db.get(Merchant, merchant_id)
        assert found is not None
        return found


async def test_a_rotated_key_is_shown_once_works_at_once_and_the_old_one_until_the_overlap(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    old = mine.merchant["api_key"]
    browser = await Portal.signed_in(api, mine.owner)
    try:
        page = await browser.get("/portal/developers")
        assert page.status_code == 200
        assert_page_headers(page)
        said = words(page.text)
        assert f"{old[:10]}…" in said and old not in page.text
        assert "one API key at a time" in said and "The first was made with your shop" in said
        assert "keeps working for 24 hours" in said
        assert "no longer works: only the current key does" in said
        form = form_of(page.text, "/portal/developers/rotate-key")
        assert form["expected_prefix"] == old[:10]

        rotated = await browser.post("/portal/developers/rotate-key", form)
        # The answer itself shows the key: no redirect, nothing in a URL, nothing cached.
        assert rotated.status_code == 200, rotated.text[:500]
        assert_page_headers(rotated)
        found = NEW_KEY.search(rotated.text)
        assert found is not None, rotated.text[:2000]
        new = found.group(1)
        assert new != old and new.startswith("pf_")
        said = words(rotated.text)
        assert "Your new API key: copy it now" in said and "only time it is shown" in said
        assert f"The key it replaces ({old[:10]}…) works until" in said
        assert f"{new[:10]}…" in said

        # Both keys work: the new one at once, the old one through the overlap.
        assert await orders_with(api, new) == 200
        assert await orders_with(api, old) == 200

        # The same form sent again (a double click, a reload) does not rotate again.
        again = await browser.post("/portal/developers/rotate-key", form)
        assert again.status_code == 409, again.text[:500]
        said = words(again.text)
        assert "Already rotated" in said and "The new key was shown once" in said
        assert NEW_KEY.search(again.text) is None
        assert "ends the key before the current one at once" in said
        assert await orders_with(api, old) == 200, "a second rotation would have retired it"
        assert await orders_with(api, new) == 200

        # The page now names the new key and until when the old one works; it never shows a key.
        page = await browser.get("/portal/developers")
        said = words(page.text)
        assert f"{new[:10]}…" in said and "still works until" in said
        assert new not in page.text and old not in page.text

        # Two sends of one form at the same moment rotate once, too.
        form = form_of(page.text, "/portal/developers/rotate-key")
        answers = await asyncio.gather(
            browser.post("/portal/developers/rotate-key", form),
            browser.post("/portal/developers/rotate-key", form),
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        shown = [NEW_KEY.search(a.text) for a in answers]
        newest = next(m.group(1) for m in shown if m is not None)
        assert await orders_with(api, newest) == 200
        assert await orders_with(api, new) == 200  # the one before it, in its overlap
        assert await orders_with(api, old) == 401  # rotated out: only two keys ever work

        # The overlap over, the replaced key is refused.
        async with api.app.state.sessions() as db:
            await db.exec(
                update(Merchant)
                .where(col(Merchant.id) == mine.id)
                .values(previous_api_key_valid_until=utcnow() - timedelta(seconds=1))
            )
            await db.commit()
        assert await orders_with(api, new) == 401
        assert await orders_with(api, newest) == 200

        # A form that does not say which key it was shown with rotates nothing.
        page = await browser.get("/portal/developers")
        action = "/portal/developers/rotate-key"
        bare = await browser.post(
            action, {"csrf": csrf_of(page.text), "nonce": nonce_in(page.text, action)}
        )
        assert bare.status_code == 422 and "nothing was rotated" in words(bare.text)
        assert await orders_with(api, newest) == 200
    finally:
        await browser.close()


async def test_the_webhook_url_is_set_refused_in_the_apis_words_and_cleared(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    browser = await Portal.signed_in(api, await member(api, mine, "developer"))
    action = "/portal/developers/webhook-url"
    try:
        page = await browser.get("/portal/developers")
        assert "Your shop has none: no events are sent" in words(page.text)
        assert "Stop sending webhooks" not in page.text

        # Tests allow private addresses (WEBHOOK_ALLOW_PRIVATE): what is still refused is
        # anything but http(s).
        for url in ("ftp://hooks.example.com/printflow", "not a url"):
            refused = await browser.submit(
                "/portal/developers", action, {"webhook_url": url, "action": "save"}
            )
            assert refused.status_code == 422, refused.text[:500]
            said = words(refused.text)
            assert "Nothing was changed" in said and "The webhook URL must be an https URL." in said
            assert f'value="{url}"' in refused.text and 'aria-invalid="true"' in refused.text
        empty = await browser.submit("/portal/developers", action, {"webhook_url": " "})
        assert empty.status_code == 422 and "Type the webhook URL" in words(empty.text)
        assert (await merchant_row(api, mine.id)).webhook_url is None

        saved = await browser.submit(
            "/portal/developers",
            action,
            {"webhook_url": "https://hooks.example.com/printflow", "action": "save"},
        )
        assert saved.status_code == 303
        assert saved.headers["location"] == "/portal/developers?done=webhook_url_set"
        assert_page_headers(saved)
        assert (await merchant_row(api, mine.id)).webhook_url == (
            "https://hooks.example.com/printflow"
        )
        page = await browser.get(saved.headers["location"])
        said = words(page.text)
        assert "The webhook URL is saved" in said and "Events are sent there now" in said
        assert 'value="https://hooks.example.com/printflow"' in page.text

        cleared = await browser.submit(
            "/portal/developers", action, {"webhook_url": "", "action": "clear"}
        )
        assert cleared.headers["location"] == "/portal/developers?done=webhook_url_cleared"
        assert (await merchant_row(api, mine.id)).webhook_url is None
        assert "Webhooks are off" in words((await browser.get(cleared.headers["location"])).text)
    finally:
        await browser.close()


async def test_a_rotated_webhook_secret_is_shown_once_and_both_sign_through_the_overlap(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api, webhook_url=api.receiver.url)
    old = mine.merchant["webhook_secret"]
    browser = await Portal.signed_in(api, mine.owner)
    action = "/portal/developers/rotate-webhook-secret"
    try:
        page = await browser.get("/portal/developers")
        assert old not in page.text
        form = form_of(page.text, action)
        assert form["expected_secret"] == developers.fingerprint(old)
        assert developers.fingerprint(old) in page.text

        rotated = await browser.post(action, form)
        assert rotated.status_code == 200, rotated.text[:500]
        assert_page_headers(rotated)
        found = NEW_SECRET.search(rotated.text)
        assert found is not None, rotated.text[:2000]
        new = found.group(1)
        assert new != old
        said = words(rotated.text)
        assert "Your new webhook secret: copy it now" in said and "two signatures" in said
        assert developers.fingerprint(new) in rotated.text

        again = await browser.post(action, form)
        assert again.status_code == 409 and "Already rotated" in words(again.text)
        assert NEW_SECRET.search(again.text) is None
        assert (await merchant_row(api, mine.id)).webhook_secret == new

        # A webhook now carries a signature by each secret.
        api.receiver.secret = new
        await api.in_production(mine.key)
        await api.receiver.wait_for(lambda r: len(r.accepted()) == 1)
        sent = api.receiver.accepted()[0]
        assert verify_signature(old, sent.body, sent.timestamp, sent.signature)
        assert verify_signature(new, sent.body, sent.timestamp, sent.signature)
        assert "also carries a signature by the secret before it" in words(
            (await browser.get("/portal/developers")).text
        )
    finally:
        await browser.close()


async def failed_request(api: FullApi, of: Shop, request_id: str | None = None) -> str:
    headers = {**of.key, **({"X-Request-Id": request_id} if request_id else {})}
    answer = await api.client.get("/v1/orders/ord_nope", headers=headers)
    assert answer.status_code == 404
    return answer.headers["x-request-id"]


async def test_failed_requests_are_listed_and_found_by_their_request_id(
    full_api: FullApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = full_api
    mine, other = await shop(api), await shop(api, name="Other Shop")
    theirs = await failed_request(api, other)
    wanted = await failed_request(api, mine)
    browser = await Portal.signed_in(api, await member(api, mine, "developer"))
    try:
        for _ in range(50):
            page = await browser.get("/portal/developers")
            if wanted in page.text:
                break
            await asyncio.sleep(0.1)
        said = words(page.text)
        assert f"{wanted} GET /v1/orders/{{order_id}} 404 order_not_found" in said
        assert theirs not in page.text
        assert '<table id="failed-requests"' in page.text and "<caption>" in page.text

        found = await browser.get(f"/portal/developers?request_id={wanted}")
        assert found.status_code == 200
        said = words(found.text)
        assert f"Failed requests with X-Request-Id {wanted}" in said
        assert "Show all failed requests" in said

        # Another shop's request, or one never made, is not found; a malformed id is a 422.
        for missing in (theirs, "req_never_made"):
            page = await browser.get(f"/portal/developers?request_id={missing}")
            assert page.status_code == 200
            assert "No failed request of your shop has the X-Request-Id" in words(page.text)
            assert '<table id="failed-requests"' not in page.text
        bad = await browser.get("/portal/developers?request_id=not%20an%20id!")
        assert bad.status_code == 422 and "An X-Request-Id is 1 to 100 characters" in words(
            bad.text
        )

        # Cursor pages, newest first.
        monkeypatch.setattr(developers, "REQUESTS_SHOWN", 1)
        newer = await failed_request(api, mine, "mine-2")
        for _ in range(50):
            first = await browser.get("/portal/developers")
            if newer in first.text:
                break
            await asyncio.sleep(0.1)
        assert newer in first.text and wanted not in first.text
        next_url = re.search(r'<a href="([^"]+requests_cursor=[^"]+)" rel="next">', first.text)
        assert next_url is not None
        second = await browser.get(html.unescape(next_url.group(1)))
        assert wanted in second.text and "(continued)" in second.text
        assert "First page" in second.text
        broken = await browser.get("/portal/developers?requests_cursor=nope")
        assert broken.status_code == 400 and newer in broken.text
        assert "That page of failed requests does not exist" in words(broken.text)
    finally:
        await browser.close()


async def deliveries_until(browser: Portal, wanted: Any) -> str:
    for _ in range(100):
        page = await browser.get("/portal/developers")
        if wanted(page.text):
            return page.text
        await asyncio.sleep(0.1)
    raise AssertionError(words(page.text)[:3000])


async def test_deliveries_are_listed_per_event_and_redelivered(
    full_api: FullApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = full_api
    mine = await shop(api, webhook_url=api.receiver.url)
    api.receiver.secret = mine.merchant["webhook_secret"]
    order = await api.in_production(mine.key)
    await api.receiver.wait_for(lambda r: len(r.accepted()) == 1)
    event_id = api.receiver.accepted_ids()[0]
    browser = await Portal.signed_in(api, mine.owner)
    try:
        page = await deliveries_until(browser, lambda text: "Delivered" in text)
        row = re.search(r'<tr id="event-' + re.escape(event_id) + r'">(.*?)</tr>', page, re.S)
        assert row is not None
        said = words(row.group(1))
        assert "order.status_updated" in said and "Delivered" in said and "HTTP 200" in said
        assert f'href="/portal/orders/{order["id"]}"' in row.group(1)
        assert re.search(r"<td>1</td>", row.group(1)), "one attempt"
        assert "<time datetime=" in row.group(1)

        action = f"/portal/developers/deliveries/{event_id}/redeliver"
        redone = await browser.submit("/portal/developers", action)
        assert redone.status_code == 303
        assert redone.headers["location"] == "/portal/developers?done=redelivered"
        await api.receiver.wait_for(lambda r: len(r.attempts_of(event_id)) == 2)
        first, second = api.receiver.attempts_of(event_id)
        assert first.body == second.body and second.verified
        page = await deliveries_until(
            browser,
            lambda text: re.search(
                r'<tr id="event-' + re.escape(event_id) + r'">.*?<td>2</td>', text, re.S
            ),
        )
        assert "The event is queued to be sent again" in words(
            (await browser.get(redone.headers["location"])).text
        )

        # Cursor pages of events, newest first.
        assert (await api.event(order["id"], "printed")).status_code == 202
        await api.receiver.wait_for(lambda r: len(r.accepted()) == 3)
        monkeypatch.setattr(developers, "EVENTS_SHOWN", 1)
        first_page = await browser.get("/portal/developers")
        assert event_id not in first_page.text
        next_url = re.search(r'<a href="([^"]+events_cursor=[^"]+)" rel="next">', first_page.text)
        assert next_url is not None
        second_page = await browser.get(html.unescape(next_url.group(1)))
        assert f'id="event-{event_id}"' in second_page.text
        broken = await browser.get("/portal/developers?events_cursor=nope")
        assert broken.status_code == 400 and "That page of webhook events" in words(broken.text)

        # An unknown event is a 404; without a webhook URL, nothing can be redelivered.
        unknown = await browser.submit(
            "/portal/developers",
            "/portal/developers/webhook-url",
            {"webhook_url": "", "action": "clear"},
        )
        assert unknown.status_code == 303
        page = await browser.get("/portal/developers")
        assert "/redeliver" not in page.text, "no Redeliver button without a webhook URL"
        fields = {"csrf": csrf_of(page.text), "nonce": "n" * 22}
        nowhere = await browser.post(action, fields)
        assert nowhere.status_code == 409
        assert "Your shop has no webhook URL" in words(nowhere.text)
        missing = await browser.post("/portal/developers/deliveries/whe_nope/redeliver", fields)
        assert missing.status_code == 404 and "Webhook event not found" in words(missing.text)
    finally:
        await browser.close()


async def test_support_may_not_open_developers(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    browser = await Portal.signed_in(api, await member(api, mine, "support"))
    try:
        page = await browser.get("/portal/developers")
        assert page.status_code == 403 and "manage API keys and webhooks" in words(page.text)
        refused = await browser.post(
            "/portal/developers/rotate-key",
            {"csrf": csrf_of(page.text), "expected_prefix": mine.merchant["api_key"][:10]},
        )
        assert refused.status_code == 403
        assert await orders_with(api, mine.merchant["api_key"]) == 200
        assert (await merchant_row(api, mine.id)).previous_api_key_hash is None
    finally:
        await browser.close()
