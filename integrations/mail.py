"""E-mail: templates rendered to a plain-text and an HTML part, sent over real SMTP.

Every e-mail printflow sends goes through ``Mailer.send``; its content comes from
``render_email(name, ...)``, which reads ``integrations/templates/{name}.txt.j2`` and
``{name}.html.j2``. HTML templates are autoescaped; plain-text ones are not (there is nothing
to escape in text, and escaping would show ``&amp;``).

A relay that is down or slow raises aiosmtplib's own errors (asking again later may work); a
message the server refuses for good, or one that cannot be built, raises ``MailRejected``.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from runtime.settings import Settings

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Long enough for a slow relay, short enough that a dead one fails the send well before the
# caller's own time-out (an activity's start-to-close), so the caller can try again.
SMTP_TIMEOUT_SECONDS = 30.0


class MailRejected(Exception):
    """The mail server refused the message for good (a 5xx answer), or it cannot be built: no
    retry would change it, a person has to."""


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,  # a missing variable is a bug, not an empty line in an e-mail
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates ship with the code; no stat() per e-mail
    )


def render_email(name: str, **context: Any) -> tuple[str, str]:
    """The (text, html) bodies of e-mail ``name``, rendered with ``context``."""
    env = _environment()
    text = env.get_template(f"{name}.txt.j2").render(**context)
    html = env.get_template(f"{name}.html.j2").render(**context)
    return text, html


class Mailer:
    """Sends multipart/alternative e-mails through the SMTP server in the settings."""

    def __init__(self, settings: Settings) -> None:
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._username = settings.smtp_username
        # Kept as SecretStr until the moment of login, so no repr or log line can show it.
        self._password = settings.smtp_password
        self._starttls = settings.smtp_starttls
        self._from = settings.mail_from
        _, _, domain = self._from.rpartition("@")
        # make_msgid() without a domain asks DNS for our FQDN, which blocks the event loop.
        self._msgid_domain = domain.strip("> ") or "printflow.invalid"

    async def send(self, to: str, subject: str, text: str, html: str) -> str:
        """Sends one e-mail and returns its Message-ID.

        A relay that is down or slow raises as it is (asking again later may work); a message
        the server refuses for good (a 5xx answer) or one that cannot be built raises
        ``MailRejected``.
        """
        try:
            message = self._message(to, subject, text, html)
        except ValueError as err:  # e.g. a line break in a header
            raise MailRejected(f"the e-mail to {to} cannot be built: {err}") from None
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password.get_secret_value() if self._password else None,
                start_tls=self._starttls,
                timeout=SMTP_TIMEOUT_SECONDS,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            codes = sorted({r.code for r in err.recipients})
            if all(code >= 500 for code in codes):
                raise MailRejected(f"the mail server refused {to} ({codes})") from None
            raise
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPSenderRefused) as err:
            if err.code >= 500:
                raise MailRejected(f"the mail server refused the message ({err.code})") from None
            raise
        return str(message["Message-ID"])

    def _message(self, to: str, subject: str, text: str, html: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message_id = make_msgid(domain=self._msgid_domain)
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message
