"""Hold e-mails to the merchant's support address: the hold itself, reminders, and the cancel.

Each says which order, what is wrong (in the facility's words, with what to check for that kind
of problem), what the merchant can do about it (the exact API calls) and by when. The order
workflow decides when to send which; this activity only writes and sends.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from temporalio import activity

from activities.mail import send_mail
from activities.personalization import format_expiry
from contracts.orders import HoldNotice
from db.models import Order
from domain.orders import HoldKind
from integrations.mail import Mailer, render_email

log = logging.getLogger("printflow.holds")

HOLD_SUBJECT = "Order {reference} is on hold – action required"
CANCELED_SUBJECT = "Order {reference} was canceled"


def subject_for(notice: HoldNotice) -> str:
    if notice.notice == "canceled":
        return CANCELED_SUBJECT.format(reference=notice.order_reference_id)
    subject = HOLD_SUBJECT.format(reference=notice.order_reference_id)
    return f"Reminder: {subject}" if notice.notice == "reminder" else subject


@dataclass(frozen=True)
class Problem:
    title: str  # one line: what kind of problem
    explanation: str  # what it means and what to look at
    checks: tuple[str, ...] = ()


PROBLEMS: dict[HoldKind, Problem] = {
    HoldKind.FILE_QUALITY: Problem(
        "a problem with the print files",
        "The print facility checked the files of this order and will not print them as they "
        "are. Please look at the files again before you decide:",
        (
            "spelling: names, dates and every other text on the product",
            "image quality: the resolution is high enough for the print size, nothing is blurry "
            "or pixelated",
            "cropping: nothing important is cut off at the edges or hidden in the bleed area",
        ),
    ),
    HoldKind.ADDRESS_INVALID: Problem(
        "the shipping address cannot be delivered to",
        "The carrier will not accept the shipping address as it is. Please check it with your "
        "customer and send the corrected address.",
    ),
    HoldKind.FACILITY_REJECTED: Problem(
        "the print facility refused the print job",
        "The facility did not accept the order for production. Please check the order's "
        "files and items, then release it again or cancel it.",
    ),
    HoldKind.NOTIFICATION_FAILED: Problem(
        "the personalization link could not be e-mailed",
        "Your mail server refused the e-mail with the personalization link for this order. "
        "Please check your support e-mail address with us; then send the link again (it also "
        "arrives on your webhook), or cancel the order.",
    ),
    HoldKind.FILE_ISSUE: Problem(
        "a print file that would not print well",
        "We checked the order's print files before production, and at least one of them would "
        "not print as you expect (what we found is below, file by file). The order is not "
        "printed until you answer, so a fix costs nothing:",
        (
            "resolution: export the design at the product's size with enough pixels for the dpi "
            "named below",
            "proportions: the file's shape must match the print area, or part of it is cut off",
            "PDFs: the page size must be the print area with its bleed",
        ),
    ),
    HoldKind.OTHER: Problem(
        "a problem reported by the print facility",
        "The print facility cannot go on with this order without your answer.",
    ),
}


def actions_for(notice: HoldNotice, api: str, items: list[str]) -> list[dict[str, Any]]:
    """The API calls that answer this hold, as the merchant can copy them."""
    order = f"{api}/v1/orders/{notice.order_id}"
    files_example = {
        item: [{"type": "default", "url": "https://…/corrected-file.pdf"}] for item in items[:3]
    }
    replace = {
        "title": "Replace the files and release the order",
        "method": "POST",
        "url": f"{order}/resolve-hold",
        "body": json.dumps({"action": "replace_files", "files": files_example}, ensure_ascii=False),
    }
    proceed = {
        "title": "Print it as it is",
        "method": "POST",
        "url": f"{order}/resolve-hold",
        "body": json.dumps({"action": "proceed"}),
    }
    address = {
        "title": "Send the corrected address (the order resumes at once)",
        "method": "PUT",
        "url": f"{order}/shipping-address",
        "body": "{the complete shipping address, as in the order}",
    }
    cancel = {
        "title": "Cancel the order",
        "method": "POST",
        "url": f"{order}/cancel",
        "body": json.dumps({"reason": "…"}, ensure_ascii=False),
    }
    if notice.kind is HoldKind.ADDRESS_INVALID:
        return [address, cancel]
    if notice.kind is HoldKind.NOTIFICATION_FAILED:
        return [{**proceed, "title": "Send a new personalization link"}, cancel]
    return [replace, proceed, cancel]


class HoldActivities:
    def __init__(self, mailer: Mailer, public_base_url: str, engine: AsyncEngine) -> None:
        self._mailer = mailer
        self._api = public_base_url.rstrip("/")
        self._engine = engine

    @activity.defn
    async def send_hold_notice(self, notice: HoldNotice) -> None:
        items, support_id = await self._order(notice.order_id)
        if notice.support_id is None:  # an order started before Support IDs: its row has one
            notice = notice.model_copy(update={"support_id": support_id})
        message_id = await send_mail(
            self._mailer, notice.support_email, subject_for(notice), self.render(notice, items)
        )
        log.info(
            "hold e-mail (%s) for order %s sent as %s", notice.notice, notice.order_id, message_id
        )

    def render(self, notice: HoldNotice, items: list[str]) -> tuple[str, str]:
        problem = PROBLEMS[notice.kind]
        context: dict[str, Any] = {
            "reference": notice.order_reference_id,
            "order_id": notice.order_id,
            "support_id": notice.support_id,
            "kind": notice.kind,
            "problem": problem,
            "description": notice.description,
            "reminder_number": notice.reminder_number if notice.notice == "reminder" else 0,
            "respond_by": format_expiry(notice.respond_by) if notice.respond_by else None,
            "actions": actions_for(notice, self._api, items or ["<item_reference_id>"]),
            "order_url": f"{self._api}/v1/orders/{notice.order_id}",
        }
        name = "hold_canceled" if notice.notice == "canceled" else "hold_notice"
        return render_email(name, **context)

    async def _order(self, order_id: str) -> tuple[list[str], str | None]:
        """The order's item ids, so the replace-files example names the real items, and the
        Support ID its row holds."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(Order.state, Order.support_id).where(Order.id == order_id)
                )
            ).first()
        if row is None:
            return [], None
        return [str(item["item_reference_id"]) for item in row[0].get("items", [])], row[1]
