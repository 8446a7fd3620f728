"""The e-mail to the merchant when an order missed its ship-by promise: which order, the
promise it missed, when it should ship and arrive now, and where to follow it. The order
workflow decides when (``OrderWorkflow._watch_promise``); this activity only writes and sends.
"""

from __future__ import annotations

import logging

from temporalio import activity

from activities.mail import send_mail
from activities.personalization import format_expiry
from contracts.orders import DelayNotice
from integrations.mail import Mailer, render_email

log = logging.getLogger("printflow.delays")

SUBJECT = "Order {reference} is late – it will ship by {estimate}"


def subject_for(notice: DelayNotice) -> str:
    return SUBJECT.format(
        reference=notice.order_reference_id, estimate=format_expiry(notice.estimated_ships_by)
    )


class DelayActivities:
    def __init__(self, mailer: Mailer, public_base_url: str) -> None:
        self._mailer = mailer
        self._api = public_base_url.rstrip("/")

    @activity.defn
    async def send_delay_notice(self, notice: DelayNotice) -> None:
        message_id = await send_mail(
            self._mailer, notice.support_email, subject_for(notice), self.render(notice)
        )
        log.info("late e-mail for order %s sent as %s", notice.order_id, message_id)

    def render(self, notice: DelayNotice) -> tuple[str, str]:
        window = notice.delivery_estimate
        return render_email(
            "order_late",
            reference=notice.order_reference_id,
            order_id=notice.order_id,
            support_id=notice.support_id,
            facility=notice.facility_name,
            ships_by=format_expiry(notice.ships_by),
            estimated_ships_by=format_expiry(notice.estimated_ships_by),
            earliest=window.earliest.isoformat(),
            latest=window.latest.isoformat(),
            order_url=f"{self._api}/v1/orders/{notice.order_id}",
        )
