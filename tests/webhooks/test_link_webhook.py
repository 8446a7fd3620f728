"""A merchant can forward personalization links automatically: the webhook carries the link."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.webhooks.emitter import LINK_ISSUED
from tests.helpers.api import Api, order_json
from tests.helpers.production import full_api_running

PERSONALIZED = [
    {
        "item_reference_id": "mug",
        "product_uid": "mug_11oz_white",
        "quantity": 1,
        "files": [{"type": "default", "url": "https://files.example/mug.png"}],
        "personalization": {
            "fields": [{"name": "name", "label": "Name on the mug", "type": "text"}]
        },
    }
]


async def test_the_link_in_the_webhook_is_the_one_in_the_email_and_it_works(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    async with full_api_running(
        dev_env, database_url, tmp_path, personalization_email_delay=timedelta(seconds=0.5)
    ) as api:
        key = Api.auth(await api.hooked_merchant())
        created = await api.client.post(
            "/v1/orders", json=order_json("LINK-1", items=PERSONALIZED), headers=key
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "pending_personalization"

        mail = await api.mail.wait_for(lambda m: "LINK-1" in str(m["Subject"]), timeout=20)
        text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        emailed = re.search(r"http://api/p/\S+", text)
        assert emailed is not None

        def link_heard(r: object) -> bool:
            return LINK_ISSUED in [x.payload["type"] for x in api.receiver.accepted()]

        await api.receiver.wait_for(link_heard, timeout=20)
        event = next(r for r in api.receiver.accepted() if r.payload["type"] == LINK_ISSUED)
        assert event.verified
        link = event.payload["data"]["personalization_link"]
        assert link["url"] == emailed.group(0)
        assert datetime.fromisoformat(link["expires_at"]) > datetime.fromisoformat(
            event.payload["created_at"]
        )
        assert event.payload["data"]["order"]["id"] == created.json()["id"]
        # The token travels in the link only: the event id does not reveal it.
        token = link["url"].rsplit("/", 1)[1]
        assert token not in event.payload["id"]

        page = await api.client.get(link["url"].removeprefix("http://api"))
        assert page.status_code == 200 and "Name on the mug" in page.text
