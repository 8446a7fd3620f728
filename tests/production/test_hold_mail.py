"""Nobody answers a hold: reminders, then the cancel, each e-mailed through real SMTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.holds import PROBLEMS, HoldActivities
from contracts.orders import HoldNotice
from domain.orders import HoldKind
from integrations.mail import Mailer
from runtime.settings import Settings
from tests.helpers.api import Api
from tests.helpers.production import full_api_running


async def test_an_unanswered_hold_is_reminded_then_canceled_and_the_merchant_told(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    async with full_api_running(
        dev_env,
        database_url,
        tmp_path,
        hold_reminder_interval=timedelta(seconds=1.5),
        hold_timeout=timedelta(seconds=4),
    ) as api:
        key = Api.auth(await api.merchant())
        order = await api.in_production(key, "SILENT-1")
        issue = {"kind": "other", "description": "the product is out of stock for a week"}
        assert (await api.event(order["id"], "issue", issue=issue)).status_code == 202

        canceled = await api.mail.wait_for(lambda m: "was canceled" in str(m["Subject"]), 30)
        mine = [m for m in api.mail.messages if "SILENT-1" in str(m["Subject"])]
        assert [str(m["Subject"]) for m in mine] == [
            "Order SILENT-1 is on hold – action required",
            "Reminder: Order SILENT-1 is on hold – action required",
            "Reminder: Order SILENT-1 is on hold – action required",
            "Order SILENT-1 was canceled",
        ]
        reminders = [m.get_body(("plain",)).get_content() for m in mine[1:3]]  # type: ignore[union-attr]
        assert "reminder 1" in reminders[0] and "reminder 2" in reminders[1]
        text = canceled.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "out of stock for a week" in text
        assert "Nothing will be printed or shipped" in text
        final = await api.until(key, order["id"], lambda o: o["status"] == "canceled")
        assert "no answer" in (final["cancel_reason"] or "")


@pytest.mark.parametrize("kind", list(HoldKind))
def test_every_kind_of_hold_has_a_mail_that_says_what_is_wrong_and_what_to_do(
    kind: HoldKind,
) -> None:
    notice = HoldNotice(
        order_id="ord_1",
        merchant_id="mer_1",
        order_reference_id="SHOP-1",
        support_email="help@shop.test",
        kind=kind,
        description="what the facility said",
        notice="hold",
        respond_by=datetime(2026, 12, 1, tzinfo=UTC),
    )
    holds = HoldActivities(Mailer(Settings()), "http://api", engine=None)  # type: ignore[arg-type]
    text, html = holds.render(notice, ["line-1"])
    assert PROBLEMS[kind].title in text and "what the facility said" in html
    assert "POST http://api/v1/orders/ord_1/cancel" in text
