"""The customer's page at /p/{token}, reached through the link the merchant was e-mailed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.personalization import PersonalizationActivities
from contracts.orders import IssueLink
from db.engine import create_engine
from domain.orders import OrderState
from domain.personalization import pending_items
from integrations.mail import Mailer
from tests.personalization.conftest import (
    LINK,
    Page,
    Shop,
    link_in,
    path_of,
    personalized_order,
)

GOOD = {
    "mug-1.name": "  Ada  ",
    "mug-1.photo": "https://img.example/ada.png",
    "poster-1.greeting": "Happy birthday!",
}


async def _eventually(
    shop: Shop, merchant: dict[str, Any], order_id: str, pred: Any
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        order = await shop.order(merchant, order_id)
        if pred(order):
            return order
        assert asyncio.get_running_loop().time() < deadline, f"never happened; last: {order}"
        await asyncio.sleep(0.1)


def _assert_private(response: Any) -> None:
    """The URL is a credential: the page must not leak it onwards or be stored."""
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


async def test_the_emailed_link_opens_an_accessible_form_for_each_item_to_personalize(
    shop: Shop,
) -> None:
    merchant = await shop.merchant()
    _, path = await shop.order_with_link(merchant)

    response = await shop.client.get(path)

    assert response.status_code == 200, response.text
    _assert_private(response)
    page = Page(response.text)
    assert page.find("html", lang="en")
    assert "Mug Shop" in page.text
    # One section per item that takes personalization, with product and quantity.
    assert [page.texts[f"item{i}-title"] for i in (0, 1)] == ["mug_11oz_white", "poster_a3_matte"]
    assert "Quantity: 2" in page.text and "Quantity: 1" in page.text
    assert "tshirt_m_black" not in page.text

    name = page.control("mug-1.name")
    assert page.label_of(name) == "Name on the mug"
    assert name["type"] == "text" and "required" in name and name["maxlength"] == "20"
    hint = page.texts[f"{name['id']}-hint"]
    assert name["aria-describedby"] == f"{name['id']}-hint" and "20 characters" in hint

    photo = page.control("mug-1.photo")
    assert page.label_of(photo) == "Photo (optional)"
    assert photo["type"] == "url" and "required" not in photo

    greeting = page.control("poster-1.greeting")  # up to 300 characters: a text box
    assert page.find("textarea", name="poster-1.greeting") and greeting["maxlength"] == "300"
    assert page.find("button", type="submit")
    assert not page.find("script") and not page.find("link"), "nothing loads from elsewhere"


async def test_submitting_the_form_personalizes_the_order_once(shop: Shop) -> None:
    merchant = await shop.merchant()
    order, path = await shop.order_with_link(merchant)

    response = await shop.client.post(path, data=GOOD)

    assert response.status_code == 200, response.text
    _assert_private(response)
    page = Page(response.text)
    assert "Thank you!" in page.text and "on its way to production" in page.text
    assert "Ada" in page.text and "Happy birthday!" in page.text  # what they sent, shown back

    seen = await shop.order(merchant, order["id"])
    assert seen["status"] == "scheduled" and seen["cutoff_at"]
    items = {i["item_reference_id"]: i["personalization"] for i in seen["items"]}
    assert items["mug-1"]["status"] == "completed"
    assert items["mug-1"]["values"] == {"name": "Ada", "photo": "https://img.example/ada.png"}
    assert items["poster-1"]["values"] == {"greeting": "Happy birthday!"}
    assert items["shirt-1"] is None
    assert "personalization_completed" in [e["type"] for e in seen["events"]]

    again = await shop.client.get(path)
    assert again.status_code == 409
    assert "Already personalized" in Page(again.text).text
    resubmit = await shop.client.post(path, data={**GOOD, "mug-1.name": "Bob"})
    assert resubmit.status_code == 409
    assert (await shop.order(merchant, order["id"]))["items"][0]["personalization"]["values"][
        "name"
    ] == "Ada"


async def test_manual_approval_merchants_get_the_order_for_approval(shop: Shop) -> None:
    merchant = await shop.merchant(approval="manual")
    order, path = await shop.order_with_link(merchant)

    thanks = await shop.client.post(path, data=GOOD)
    assert thanks.status_code == 200
    assert "Mug Shop checks the order before it goes to print" in Page(thanks.text).text
    seen = await shop.order(merchant, order["id"])
    assert seen["status"] == "pending_approval"
    assert seen["allowed_actions"]["approve"] is True


async def test_invalid_input_comes_back_with_the_errors_and_what_was_typed(shop: Shop) -> None:
    merchant = await shop.merchant()
    order, path = await shop.order_with_link(merchant)

    typed = {
        "mug-1.name": "   ",
        "mug-1.photo": "ftp://img.example/<ada>.png",
        "poster-1.greeting": "Hi <b>you</b> & me",
    }
    response = await shop.client.post(path, data=typed)

    assert response.status_code == 422
    page = Page(response.text)
    assert page.texts["error-summary-title"].startswith("Please check")
    name, photo = page.control("mug-1.name"), page.control("mug-1.photo")
    for control, message in ((name, "This field is required"), (photo, "http:// or https://")):
        error_id = f"{control['id']}-error"
        assert message in page.texts[error_id]
        assert error_id in control["aria-describedby"].split()
        assert control["aria-invalid"] == "true"
        assert page.find("a", href=f"#{control['id']}"), "the summary links to the field"
    greeting = page.control("poster-1.greeting")
    assert "aria-invalid" not in greeting
    # What the customer typed is kept, and shown as text, never as markup.
    assert photo["value"] == "ftp://img.example/<ada>.png"
    assert greeting["value"] == "Hi <b>you</b> & me"
    assert "Hi &lt;b&gt;you&lt;/b&gt; &amp; me" in response.text
    assert (await shop.order(merchant, order["id"]))["status"] == "pending_personalization"

    fixed = await shop.client.post(path, data={**typed, "mug-1.name": "Ada", "mug-1.photo": ""})
    assert fixed.status_code == 200, fixed.text


async def test_unknown_and_malformed_tokens_get_a_not_found_page(shop: Shop) -> None:
    for path in ("/p/" + "A" * 43, "/p/short", "/p/" + "é" * 43):
        response = await shop.client.get(path)
        assert response.status_code == 404, path
        assert "Link not found" in Page(response.text).text
        assert (await shop.client.post(path, data=GOOD)).status_code == 404


async def test_a_canceled_order_says_so(shop: Shop) -> None:
    merchant = await shop.merchant()
    order, path = await shop.order_with_link(merchant)
    canceled = await shop.client.post(
        f"/v1/orders/{order['id']}/cancel", json={}, headers=shop.auth(merchant)
    )
    assert canceled.status_code == 200, canceled.text

    for response in (await shop.client.get(path), await shop.client.post(path, data=GOOD)):
        assert response.status_code == 409
        assert "This order was canceled" in Page(response.text).text


async def test_an_order_the_merchant_approved_without_personalization_takes_none(
    shop: Shop,
) -> None:
    merchant = await shop.merchant()
    order, path = await shop.order_with_link(merchant)
    approved = await shop.client.post(
        f"/v1/orders/{order['id']}/approve", headers=shop.auth(merchant)
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["items"][0]["personalization"]["status"] == "skipped"

    response = await shop.client.get(path)
    assert response.status_code == 409
    assert "no longer waits for personalization" in Page(response.text).text
    assert (await shop.client.post(path, data=GOOD)).status_code == 409


@pytest.mark.serial  # the second link, too, lives 3 s of the wall clock
@pytest.mark.parametrize("link_ttl", [timedelta(seconds=3)])
async def test_an_expired_link_is_replaced_by_a_new_email_and_shows_expired(shop: Shop) -> None:
    merchant = await shop.merchant()
    body = personalized_order()
    order, first = await shop.order_with_link(merchant, body)

    second_mail = await shop.link_mail(body["order_reference_id"], number=2)
    second = path_of(link_in(second_mail))
    assert second != first

    expired = await shop.client.get(first)
    assert expired.status_code == 410
    assert "This link has expired" in Page(expired.text).text
    assert (await shop.client.post(first, data=GOOD)).status_code == 410
    assert (await shop.order(merchant, order["id"]))["status"] == "pending_personalization"

    response = await shop.client.post(second, data=GOOD)
    assert response.status_code == 200, response.text


async def test_a_link_past_its_expiry_shows_expired_even_before_its_successor(shop: Shop) -> None:
    merchant = await shop.merchant()
    order, _ = await shop.order_with_link(merchant)
    row = await _order_state(shop, order["id"])
    # A link that expired a moment ago, before the workflow got round to replacing it.
    engine = create_engine(shop.settings.database_url)
    try:
        activities = PersonalizationActivities(
            engine, Mailer(shop.settings), shop.settings.public_base_url
        )
        await activities.issue_personalization_link(
            IssueLink(
                order_id=order["id"],
                merchant_id=merchant["id"],
                support_email=merchant["support_email"],
                order_reference_id=order["order_reference_id"],
                seq=99,
                expires_at=datetime.now(UTC) - timedelta(seconds=1),
                items=pending_items(row.items),
            )
        )
    finally:
        await engine.dispose()
    message = await shop.mail.wait_for(lambda m: "link 99" in str(m.get_body(("plain",))))
    response = await shop.client.get(path_of(link_in(message)))
    assert response.status_code == 410
    assert "This link has expired" in Page(response.text).text


async def test_a_link_completes_only_its_own_order(shop: Shop) -> None:
    merchant = await shop.merchant()
    first, first_path = await shop.order_with_link(merchant)
    second, second_path = await shop.order_with_link(merchant)

    assert (await shop.client.post(first_path, data=GOOD)).status_code == 200

    assert (await shop.order(merchant, second["id"]))["status"] == "pending_personalization"
    still_open = await shop.client.get(second_path)
    assert still_open.status_code == 200
    assert first["order_reference_id"] not in still_open.text
    assert second["order_reference_id"] in still_open.text


async def test_two_submissions_at_once_complete_the_order_once(shop: Shop) -> None:
    merchant = await shop.merchant()
    order, path = await shop.order_with_link(merchant)

    responses = await asyncio.gather(
        shop.client.post(path, data=GOOD),
        shop.client.post(path, data={**GOOD, "mug-1.name": "Bob"}),
    )

    assert sorted(r.status_code for r in responses) == [200, 409]
    winner = next(r for r in responses if r.status_code == 200)
    name = "Ada" if "Ada" in winner.text else "Bob"
    seen = await _eventually(shop, merchant, order["id"], lambda o: o["status"] == "scheduled")
    assert seen["items"][0]["personalization"]["values"]["name"] == name
    events = [e["type"] for e in seen["events"]]
    assert events.count("personalization_completed") == 1


async def test_every_link_in_the_mails_points_at_the_public_base_url(shop: Shop) -> None:
    merchant = await shop.merchant()
    body = personalized_order()
    await shop.order_with_link(merchant, body)
    message = await shop.link_mail(body["order_reference_id"])
    text = str(message.get_body(("plain",)))
    assert all(m.group(0).startswith("http://printflow.test/p/") for m in LINK.finditer(text))


async def _order_state(shop: Shop, order_id: str) -> OrderState:
    from db.models import Order

    async with shop.app.state.sessions() as session:
        row = await session.get(Order, order_id)
        assert row is not None
        return OrderState.model_validate(row.state)
