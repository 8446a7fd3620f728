"""A customer in a real browser (Debian's headless Chromium) opens the e-mailed conversation
link, reads the merchant's message and replies; the merchant sees the reply through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.mailsink import free_port
from tests.contacts.test_contacts_api import CUSTOMER, berlin_merchant, contact, order
from tests.helpers.api import Api, running_api
from tests.helpers.browser import BROWSER_MARKS, chromium, serving
from tests.helpers.contacts import link_in

pytestmark = BROWSER_MARKS


@pytest.fixture
async def served(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with (
        running_api(dev_env.client, database_url, tmp_path, base_url=base) as api,
        serving(api.app, port),
    ):
        yield api


async def test_a_customer_reads_and_replies_in_the_browser(served: Api) -> None:
    api = served
    key = await berlin_merchant(api)
    made = await order(api, key)
    created = await api.client.post(
        "/v1/customer-contacts",
        json=contact(made["support_id"], body="Is it <b>Hauptstr.</b> 5 or 7?"),
        headers=key,
    )
    assert created.status_code == 201, created.text
    mail = await api.mail.wait_for(lambda m: CUSTOMER in str(m["To"]), timeout=20)
    url = link_in(mail)

    async with chromium() as browser:
        page = await browser.new_page()
        blocked: list[str] = []
        page.on(
            "console",
            lambda m: blocked.append(m.text) if "Content Security" in m.text else None,
        )
        first = await page.goto(url)
        assert first is not None and first.status == 200
        text = await page.inner_text("main")
        assert "Is it <b>Hauptstr.</b> 5 or 7?" in text  # shown as text, not markup
        assert made["support_id"] in text
        await page.get_by_label("Your reply").fill("It is number 7.\nThanks!")
        await page.get_by_role("button", name="Send reply").click()
        await page.wait_for_selector("#sent")
        after = await page.inner_text("main")
        assert "It is number 7." in after and "your message is with Mug Shop" in after
        assert not blocked, blocked

    seen = (
        await api.client.get(f"/v1/customer-contacts/{created.json()['id']}", headers=key)
    ).json()
    assert seen["messages"][-1] == {**seen["messages"][-1], "author_kind": "customer"}
    assert seen["messages"][-1]["body"] == "It is number 7.\nThanks!"
    assert seen["sla_state"] == "on_track"
