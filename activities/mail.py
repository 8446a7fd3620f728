"""E-mail from activities: ``integrations.mail`` renders and sends, and a message the mail
server refuses for good becomes the non-retryable ``MailRejected`` error the workflows react to
(``contracts.errors``); a relay that is down raises as it is, so Temporal retries the activity.
So does a server refusing our own sender or login (``MailConfigurationError``): that is our
setting to fix, never the merchant's problem; the worker's mailer raises its alert
(``activities.alerts``) before it raises.
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from contracts.errors import MAIL_REJECTED
from integrations.mail import Mailer, MailRejected, render_email


async def send_mail(mailer: Mailer, to: str, subject: str, body: tuple[str, str]) -> str:
    """Sends the (text, html) ``body`` to ``to``; returns the e-mail's Message-ID."""
    text, html = body
    try:
        return await mailer.send(to, subject, text, html)
    except MailRejected as err:
        raise ApplicationError(str(err), type=MAIL_REJECTED, non_retryable=True) from None


async def send_template(mailer: Mailer, to: str, subject: str, name: str, **context: Any) -> str:
    """Renders e-mail ``name`` with ``context`` and sends it (``send_mail``)."""
    return await send_mail(mailer, to, subject, render_email(name, **context))
