"""A shop's team in a real browser (Debian's headless Chromium): the owner signs in, finds an
order by Support ID, cancels one before its cutoff and is refused after another's, fixes a file
problem by replacing the file, opens a ticket and reads the agent's reply, answers a customer,
rotates the API key, and invites a teammate as support who then cannot open Developers.

axe-core checks every page visited (no serious or critical violation); with
``PRINTFLOW_SCREENSHOTS=docs/portal`` the main pages are kept for docs/portal.md.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.cases.test_cases_api import agent, as_agent
from tests.contacts.test_contacts_api import contact
from tests.helpers.accessibility import assert_accessible, screenshot
from tests.helpers.api import TEST_FACILITIES, order_json
from tests.helpers.browser import BROWSER_MARKS, CHROMIUM, api_served, browser
from tests.helpers.mail import text_of
from tests.helpers.production import FullApi
from tests.portal.browser import PASSWORD, Shop, link_in, shop

pytestmark = BROWSER_MARKS

if Path(CHROMIUM).exists():
    from playwright.async_api import Browser, Page
else:  # pragma: no cover - the module is skipped
    Browser = Page = object  # type: ignore[misc,assignment]

__all__ = ["browser"]

# Orders to Norway go to a facility whose cutoff comes every 6 seconds: long enough to open the
# order page before it, short enough to wait for it.
FACILITIES = [
    *TEST_FACILITIES,
    {
        "id": "oslo",
        "name": "Oslo",
        "timezone": "Europe/Oslo",
        "countries": ["NO"],
        "api_url": TEST_FACILITIES[0]["api_url"],
        "api_token": "tok-oslo",
        "schedule": {"every_seconds": 6},
    },
]


@pytest.fixture
async def served(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FullApi, str]]:
    """The API with its worker, on a real socket at its PUBLIC_BASE_URL."""
    async with api_served(dev_env, database_url, tmp_path, facilities=FACILITIES) as served:
        yield served


async def signed_in(browser: Browser, base: str, email: str, **context: Any) -> Page:
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(base + "/portal/orders")
    assert page.url.startswith(base + "/portal/login"), "signed out, a page asks to sign in"
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(base + "/portal/orders")
    return page


async def seen(page: Page, name: str | None = None) -> None:
    """Every page visited passes axe; the main ones are kept as screenshots."""
    await assert_accessible(page, page.url)
    if name is not None:
        await screenshot(page, name)


async def create(api: FullApi, mine: Shop, reference: str, country: str = "DE") -> dict[str, Any]:
    made = await api.client.post(
        "/v1/orders", json=order_json(reference, country=country), headers=mine.key
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


async def cancel_in_page(page: Page) -> Any:
    await page.get_by_label("Why").select_option("duplicate")
    async with page.expect_navigation() as sent:
        await page.get_by_role("button", name="Cancel the order").click()
    return await sent.value


async def test_the_owner_finds_cancels_is_refused_after_the_cutoff_and_fixes_a_file(
    served: tuple[FullApi, str], browser: Browser
) -> None:
    api, base = served
    mine = await shop(api)
    keep = await create(api, mine, "SHOP-1001")
    await create(api, mine, "SHOP-1002")

    page = await signed_in(browser, base, mine.owner.email)
    await seen(page, "orders")
    login = await (await browser.new_context()).new_page()
    await login.goto(base + "/portal/login")
    await seen(login, "login")

    # Found by the Support ID as a customer reads it out: lower case, with spaces.
    spoken = " ".join(keep["support_id"].lower())
    await page.get_by_label("Search").fill(spoken)
    await page.get_by_role("button", name="Show orders").click()
    await page.get_by_role("link", name="SHOP-1001").click()
    await page.wait_for_url(f"{base}/portal/orders/{keep['id']}")
    await seen(page, "order")

    # Before the cutoff: canceled, and the API says so.
    answer = await cancel_in_page(page)
    assert answer.status == 200
    assert "canceled" in (await page.locator("main").inner_text()).lower()
    await seen(page)
    order = await api.order(mine.key, keep["id"])
    assert (order["status"], order["cancel_reason_code"]) == ("canceled", "duplicate")

    # Opened before its cutoff, sent after it: refused in words, and not canceled.
    late = await create(api, mine, "SHOP-2001", country="NO")
    await page.goto(f"{base}/portal/orders/{late['id']}")
    assert await page.get_by_role("button", name="Cancel the order").is_visible()
    await api.until(mine.key, late["id"], lambda o: o["status"] == "in_production", within=30)
    answer = await cancel_in_page(page)
    assert answer.status == 409
    text = await page.locator("main").inner_text()
    assert "Nothing was changed" in text and "production" in text
    await seen(page, "order-refused")
    assert (await api.order(mine.key, late["id"]))["status"] == "in_production"
    # Shown again, the page says why it can no longer change and offers no cancel.
    await page.goto(f"{base}/portal/orders/{late['id']}")
    assert "can no longer be canceled" in await page.locator("main").inner_text()
    assert await page.get_by_role("button", name="Cancel the order").count() == 0

    # A file problem from the facility: on "needs you", fixed by replacing the file.
    held = await api.in_production(mine.key, "SHOP-3001")
    issue = {"kind": "file_quality", "description": "the photo is 72 dpi; it will print blurry"}
    assert (await api.event(held["id"], "issue", issue=issue)).status_code == 202
    await api.until(mine.key, held["id"], lambda o: o["status"] == "on_hold")
    await page.goto(base + "/portal/needs-you")
    await seen(page, "needs-you")
    await page.get_by_role("link", name="SHOP-3001").first.click()
    await page.wait_for_url(f"{base}/portal/orders/{held['id']}")
    await seen(page)
    sharp = "https://files.example/sharp-300dpi.png"
    await page.get_by_label(re.compile(r"New URL of file 1")).fill(sharp)
    await page.get_by_role("button", name="Use the new files").click()
    await page.wait_for_url(re.compile(r".*done=.*"))
    await seen(page)
    fixed = await api.until(mine.key, held["id"], lambda o: o["status"] != "on_hold")
    assert fixed["hold"] is None
    assert [f["url"] for f in fixed["items"][0]["files"]] == [sharp]


async def test_the_owner_opens_a_ticket_reads_the_reply_and_answers_a_customer(
    served: tuple[FullApi, str], browser: Browser
) -> None:
    api, base = served
    mine = await shop(api, plan="growth")
    sam = await agent(api)
    page = await signed_in(browser, base, mine.owner.email)

    await page.get_by_role("link", name="Tickets").click()
    await seen(page, "tickets")
    await page.get_by_role("link", name=re.compile("New ticket")).click()
    await seen(page, "ticket-new")
    await page.locator("input[name=category]").first.check()
    await page.get_by_label("Subject").fill("Colours look washed out")
    await page.get_by_label("Your message").fill("The reds of order SHOP-1 came out pink.")
    await page.get_by_role("button", name="Send the ticket").click()
    await page.wait_for_url(re.compile(r".*/portal/tickets/case_[^?]+\?done=opened"))
    case_id = page.url.split("/portal/tickets/")[1].split("?")[0]

    reply = "Which printer profile do you use? A screenshot helps."
    answered = await api.client.post(
        f"/v1/agent/cases/{case_id}/messages",
        json={"body": reply, "waiting_on_merchant": True},
        headers=as_agent(sam),
    )
    assert answered.status_code == 200, answered.text
    await page.goto(f"{base}/portal/tickets/{case_id}")
    assert reply in await page.locator("main").inner_text()
    await seen(page, "ticket")

    # A customer message, answered from the portal; the customer gets the e-mail.
    order = await create(api, mine, "SHOP-4001")
    made = await api.client.post(
        "/v1/customer-contacts", json=contact(order["support_id"]), headers=mine.key
    )
    assert made.status_code == 201, made.text
    await page.get_by_role("link", name="Customer messages").click()
    await seen(page, "messages")
    await page.get_by_role("link", name="About your delivery address").click()
    await page.get_by_label("Your reply").fill("Please send us the house number.")
    await page.get_by_role("button", name="Send the reply").click()
    await page.wait_for_url(re.compile(r".*done=.*"))
    await seen(page)
    customer = order_json("x")["shipping_address"]["email"]
    await api.mail.wait_for(
        lambda m: m["To"] == customer and "house number" in text_of(m), timeout=20
    )


async def test_the_owner_rotates_the_key_and_a_support_teammate_cannot_open_developers(
    served: tuple[FullApi, str], browser: Browser
) -> None:
    api, base = served
    mine = await shop(api)
    page = await signed_in(browser, base, mine.owner.email)

    await page.get_by_role("link", name="Developers").click()
    await seen(page, "developers")
    await page.get_by_role("button", name="Rotate the API key").click()
    new_key = (await page.locator("#new-key").inner_text()).strip()
    assert new_key.startswith("pf_") and new_key != mine.merchant["api_key"]
    await seen(page)
    works = await api.client.get("/v1/orders", headers={"X-API-Key": new_key})
    assert works.status_code == 200

    await page.get_by_role("link", name="Team").click()
    await page.get_by_label("E-mail address").fill("tess@shop.example")
    await page.get_by_label("Name").fill("Tess Teammate")
    await page.get_by_label("Role", exact=True).select_option("support")
    await page.get_by_role("button", name="Send the invite").click()
    await page.wait_for_url(re.compile(r".*/portal/team.*"))
    await seen(page, "team")
    await api.mail.wait_for(lambda m: m["To"] == "tess@shop.example", timeout=20)

    tess = await (await browser.new_context()).new_page()
    await tess.goto(base + link_in(api, "tess@shop.example", "invite"))
    await seen(tess, "invite")
    await tess.get_by_label("Password").fill(PASSWORD)
    await tess.get_by_role("button", name=re.compile("Set the password")).click()
    await tess.wait_for_url(re.compile(r".*/portal/orders.*"))
    await seen(tess)
    # Support has no Developers section, and its address is the 403 page.
    assert await tess.get_by_role("link", name="Developers").count() == 0
    answer = await tess.goto(base + "/portal/developers")
    assert answer is not None and answer.status == 403
    assert "Your role does not include this" in await tess.locator("main").inner_text()
    await seen(tess)


async def test_the_orders_read_on_a_phone(served: tuple[FullApi, str], browser: Browser) -> None:
    api, base = served
    mine = await shop(api)
    for n in range(3):
        await create(api, mine, f"SHOP-50{n}")
    page = await signed_in(browser, base, mine.owner.email, viewport={"width": 390, "height": 844})
    await seen(page, "orders-phone")
    # Nothing is wider than the screen: the table scrolls inside its box, the page does not.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
