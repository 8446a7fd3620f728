"""A customer in a real browser (Debian's headless Chromium) follows the e-mailed link."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devstack.mailsink import free_port
from tests.helpers.browser import BROWSER_MARKS, CHROMIUM, browser, serving
from tests.personalization.conftest import Shop, link_in

pytestmark = BROWSER_MARKS

if Path(CHROMIUM).exists():
    from playwright.async_api import Browser, Page
else:  # pragma: no cover - the module is skipped
    Browser = Page = object  # type: ignore[misc,assignment]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def public_base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def served(shop: Shop, port: int) -> AsyncIterator[Shop]:
    """The shop's app on a real socket (its lifespan already runs in the shop fixture)."""
    async with serving(shop.app, port):
        yield shop


__all__ = ["browser"]


async def test_a_customer_personalizes_the_order_from_the_emailed_link(
    served: Shop, browser: Browser
) -> None:
    shop = served
    merchant = await shop.merchant()
    order, _ = await shop.order_with_link(merchant)
    url = link_in(await shop.link_mail(order["order_reference_id"]))

    page = await browser.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)

    first = await page.goto(url)
    assert first is not None and first.status == 200
    assert await page.get_by_role("heading", level=1).inner_text() == "Personalize your order"
    # The style arrived despite the strict CSP (it carries the nonce): the button is blue.
    button = page.get_by_role("button", name="Send personalization")
    assert await button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(29, 78, 216)"

    # The browser itself refuses an empty required field: nothing is sent.
    await button.click()
    name = page.get_by_label("Name on the mug")
    assert await name.evaluate("el => el.validationMessage") != ""
    assert page.url == url

    # The server refuses what the browser lets through, and keeps what was typed.
    await name.fill("Ada")
    await page.get_by_label("Photo").fill("ftp://img.example/ada.png")
    await page.get_by_label("Greeting").fill("Happy birthday,\nAda!")
    async with page.expect_response(url) as refused:
        await button.click()
    assert (await refused.value).status == 422
    alert = page.get_by_role("alert")
    assert "Photo: Enter a full web address" in await alert.inner_text()
    photo = page.get_by_label("Photo")
    assert await photo.get_attribute("aria-invalid") == "true"
    assert await name.input_value() == "Ada"
    assert await page.get_by_label("Greeting").input_value() == "Happy birthday,\nAda!"

    # Follow the error summary's link to the field, fix it, send.
    await alert.get_by_role("link").click()
    await photo.fill("https://img.example/ada.png")
    async with page.expect_response(url) as accepted:
        await page.get_by_role("button", name="Send personalization").click()
    assert (await accepted.value).status == 200
    assert await page.get_by_role("heading", level=1).inner_text() == "Thank you!"
    assert "Happy birthday," in await page.locator("main").inner_text()

    seen = await shop.order(merchant, order["id"])
    assert seen["status"] == "scheduled"
    assert seen["items"][0]["personalization"]["values"]["name"] == "Ada"

    reopened = await page.goto(url)
    assert reopened is not None and reopened.status == 409
    assert await page.get_by_role("heading", level=1).inner_text() == "Already personalized"
    assert blocked == []
