"""E-mail: templates rendered to a plain-text and an HTML part, sent over real SMTP.

Every e-mail printflow sends goes through ``Mailer.send``; its content comes from
``render_email(name, ...)``, which reads ``integrations/templates/{name}.txt.j2`` and
``{name}.html.j2``. HTML templates are autoescaped; plain-text ones are not (there is nothing
to escape in text, and escaping would show ``&amp;``).

A relay that is down or slow raises aiosmtplib's own errors (asking again later may work); a
message the server refuses for good (a 5xx to the recipient or the message), or one that cannot
be built, raises ``MailRejected``. A server refusing *us* (a 5xx to our ``MAIL FROM``, 530
authentication required, 535 authentication failed) is our configuration, not the message:
it raises ``MailConfigurationError`` naming the setting to fix, after telling the mailer's
``alerts`` (``ConfigurationAlertSink``); it is never ``MailRejected``, so retrying goes on
until the setting is fixed and no merchant's order is held for it.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from runtime.settings import Settings

log = logging.getLogger("printflow.mail")

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Long enough for a slow relay, short enough that a dead one fails the send well before the
# caller's own time-out (an activity's start-to-close), so the caller can try again.
SMTP_TIMEOUT_SECONDS = 30.0


# Codes by which a server refuses the client rather than a message: authentication required,
# authentication failed.
AUTH_CODES = frozenset({530, 535})
SENDER_SETTING = (
    "PRINTFLOW_MAIL_FROM (and PRINTFLOW_SMTP_USERNAME/PASSWORD, if the relay takes this "
    "sender only from an authenticated user)"
)
LOGIN_SETTING = "PRINTFLOW_SMTP_USERNAME/PRINTFLOW_SMTP_PASSWORD (and PRINTFLOW_SMTP_STARTTLS)"
ALERT = "mail"


class MailRejected(Exception):
    """The mail server refused the message for good (a 5xx answer to the recipient or the
    message), or it cannot be built: no retry would change it, a person has to."""


class MailConfigurationError(Exception):
    """The mail server refuses our sender or our login: ``setting`` must be fixed, and the
    message can then go as it is (retry)."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class ConfigurationAlertSink(Protocol):
    """Hears of our own configuration refused (``activities.alerts.ConfigurationAlerts``)."""

    async def refused(self, what: str, setting: str, message: str) -> None: ...

    async def ok(self, what: str) -> None: ...


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

    def __init__(self, settings: Settings, alerts: ConfigurationAlertSink | None = None) -> None:
        self._alerts = alerts
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
        ``MailRejected``; our sender or login refused raises ``MailConfigurationError``.
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
            if set(codes) <= AUTH_CODES:
                raise await self._refused_us(LOGIN_SETTING, f"authentication ({codes})") from None
            if all(code >= 500 for code in codes):
                raise MailRejected(f"the mail server refused {to} ({codes})") from None
            raise
        except aiosmtplib.SMTPAuthenticationError as err:
            raise await self._refused_us(LOGIN_SETTING, f"our login ({err.code})") from None
        except aiosmtplib.SMTPSenderRefused as err:
            if err.code in AUTH_CODES:
                raise await self._refused_us(LOGIN_SETTING, f"our sender ({err.code})") from None
            if err.code >= 500:
                raise await self._refused_us(SENDER_SETTING, f"our sender ({err.code})") from None
            raise
        except aiosmtplib.SMTPResponseException as err:
            if err.code in AUTH_CODES:
                raise await self._refused_us(
                    LOGIN_SETTING, f"authentication ({err.code})"
                ) from None
            if isinstance(err, aiosmtplib.SMTPRecipientRefused) and err.code >= 500:
                raise MailRejected(f"the mail server refused the message ({err.code})") from None
            raise
        if self._alerts is not None:
            await self._alerts.ok(ALERT)
        return str(message["Message-ID"])

    async def _refused_us(self, setting: str, what: str) -> MailConfigurationError:
        message = f"the mail server {self._host}:{self._port} refused {what}"
        if self._alerts is not None:
            await self._alerts.refused(ALERT, setting, message)
        else:
            log.error("configuration error: %s; fix %s", message, setting)
        return MailConfigurationError(message, setting)

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
