"""The e-mail a merchant gets when an order misses its ship-by promise, through real SMTP."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from activities.delays import DelayActivities
from contracts.orders import DelayNotice
from devstack.mailsink import MailSink
from domain.orders import DeliveryEstimate
from integrations.mail import Mailer
from runtime.settings import Settings


async def test_the_late_mail_says_which_promise_was_missed_and_the_new_dates(
    tmp_path: Path,
) -> None:
    notice = DelayNotice(
        order_id="ord_1",
        merchant_id="mer_1",
        order_reference_id="SHOP-<b>1</b>",
        support_email="help@shop.test",
        support_id="PF-7KQ2M9XR",
        facility_name="Oslo",
        ships_by=datetime(2026, 12, 8, 23, 0, tzinfo=UTC),
        estimated_ships_by=datetime(2026, 12, 9, 23, 0, tzinfo=UTC),
        delivery_estimate=DeliveryEstimate(earliest=date(2026, 12, 12), latest=date(2026, 12, 17)),
    )
    async with MailSink(tmp_path / "mail", port=0) as mail:
        settings = Settings(smtp_host=mail.host, smtp_port=mail.port)
        await DelayActivities(Mailer(settings), "https://api.example").send_delay_notice(notice)
        sent = await mail.wait_for(lambda m: "is late" in str(m["Subject"]), 10)

    assert str(sent["To"]) == "help@shop.test"
    assert str(sent["Subject"]) == (
        "Order SHOP-<b>1</b> is late – it will ship by Wednesday, 9 December 2026, 23:00 UTC"
    )
    text = sent.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = sent.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Tuesday, 8 December 2026, 23:00 UTC" in text
    assert "between 2026-12-12 and 2026-12-17" in text
    assert "PF-7KQ2M9XR" in text and "GET https://api.example/v1/orders/ord_1" in text
    # The merchant's reference is text in the HTML part, never markup.
    assert "SHOP-&lt;b&gt;1&lt;/b&gt;" in html and "<b>1</b>" not in html
