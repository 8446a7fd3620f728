"""An agent in a real browser (Debian's headless Chromium) works a case in the console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.cases.test_cases_api import agent, as_agent, merchant, open_case
from tests.helpers.api import Api
from tests.helpers.browser import BROWSER_MARKS, CHROMIUM, api_served, browser
from tests.helpers.production import FullApi

pytestmark = BROWSER_MARKS

if Path(CHROMIUM).exists():
    from playwright.async_api import Browser
else:  # pragma: no cover - the module is skipped
    Browser = object  # type: ignore[misc,assignment]

__all__ = ["browser"]


@pytest.fixture
async def served(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FullApi, str]]:
    """The API with its worker, on a real socket at its PUBLIC_BASE_URL."""
    async with api_served(dev_env, database_url, tmp_path) as served:
        yield served


async def test_an_agent_signs_in_answers_a_case_waiting_on_the_merchant_and_resolves_it(
    served: tuple[FullApi, str], browser: Browser
) -> None:
    api, base = served
    sam = await agent(api)
    shop = await merchant(api, "growth", name="Poster Shop")
    case = await open_case(api, Api.auth(shop), subject="Colours look washed out")

    context = await browser.new_context()
    page = await context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)

    # Not signed in: the queue sends the agent to the sign-in form.
    first = await page.goto(f"{base}/support")
    assert first is not None and first.status == 200
    assert page.url == f"{base}/support/login"
    await page.get_by_label("Agent token").fill(sam["token"])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/support")
    [cookie] = [c for c in await context.cookies() if c["name"] == "pf_support"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/support"
    assert sam["token"] not in cookie["value"]

    # The queue: the case, its SLA state as a word on a coloured badge (the style arrived).
    row = page.locator(f"#case-{case['number']}")
    assert "Poster Shop" in await row.inner_text()
    badge = row.locator(".badge")
    assert await badge.inner_text() == "On track"
    assert await badge.evaluate("b => getComputedStyle(b).color") == "rgb(22, 101, 52)"

    await row.get_by_role("link", name="Colours look washed out").click()
    await page.wait_for_url(f"{base}/support/cases/{case['id']}")
    heading = page.get_by_role("heading", level=1)
    assert await heading.inner_text() == f"Case #{case['number']}: Colours look washed out"
    assert await page.locator("#fact-sla").inner_text() == "On track"

    await page.get_by_label("Your reply").fill("Which paper did you choose?\nMatte or glossy?")
    await page.get_by_label("Waiting on merchant").check()
    async with page.expect_response(lambda r: r.url.endswith("/reply")) as sent:
        await page.get_by_role("button", name="Send reply").click()
    assert (await sent.value).status == 303
    await page.wait_for_url(f"{base}/support/cases/{case['id']}?done=replied")
    assert "Your reply was sent" in await page.get_by_role("status").inner_text()
    thread = page.locator("ol.thread li")
    assert await thread.count() == 2
    last = await thread.nth(1).inner_text()
    assert "Sam Support (support team)" in last and "Matte or glossy?" in last
    assert await page.locator("#fact-sla").inner_text() == "Paused"
    assert await page.locator("#fact-status").inner_text() == "waiting on merchant"
    seen = await api.client.get(f"/v1/agent/cases/{case['id']}", headers=as_agent(sam))
    assert (seen.json()["status"], seen.json()["sla"]["state"]) == ("waiting_on_merchant", "paused")

    await page.get_by_role("button", name="Resolve").click()
    await page.wait_for_url(f"{base}/support/cases/{case['id']}?done=resolved")
    assert await page.locator("#fact-status").inner_text() == "resolved"
    assert await page.get_by_role("button", name="Resolve").count() == 0
    seen = await api.client.get(f"/v1/agent/cases/{case['id']}", headers=as_agent(sam))
    assert seen.json()["status"] == "resolved"

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{base}/support/login?signed_out=1")
    await page.goto(f"{base}/support")
    assert page.url.startswith(f"{base}/support/login")
    assert blocked == []
    await context.close()
