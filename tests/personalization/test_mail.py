"""Mailer and templates against a real SMTP server (aiosmtpd, through MailSink), and what a
refusal becomes for the activities that send (``activities.mail``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from activities.mail import send_mail
from contracts.errors import MAIL_REJECTED
from devstack.mailsink import MailSink, free_port
from integrations.mail import MailConfigurationError, Mailer, MailRejected, render_email
from runtime.settings import Settings
from tests.personalization.conftest import html_part, text_part


def _settings(sink_port: int, **overrides: object) -> Settings:
    return Settings(smtp_host="127.0.0.1", smtp_port=sink_port, **overrides)  # type: ignore[arg-type]


async def test_an_email_arrives_as_text_and_html_alternatives(mail: MailSink) -> None:
    mailer = Mailer(_settings(mail.port, mail_from="orders@printflow.example"))
    subject = "Order Ü-17: personalization needed — link to forward to your customer"
    message_id = await mailer.send(
        "help@mugs.example.com",
        subject,
        "Plain: https://pf.example/p/abc\n",
        '<p>HTML: <a href="https://pf.example/p/abc">link</a></p>',
    )

    received = await mail.wait_for(lambda m: m["Message-ID"] == message_id, timeout=5)
    assert received["Subject"] == subject  # non-ASCII survives the trip
    assert received["From"] == "orders@printflow.example"
    assert received["To"] == "help@mugs.example.com"
    assert received["Date"] and received["Auto-Submitted"] == "auto-generated"
    assert message_id.endswith("@printflow.example>")
    assert received.get_content_type() == "multipart/alternative"
    assert text_part(received).splitlines() == ["Plain: https://pf.example/p/abc"]
    assert '<a href="https://pf.example/p/abc">' in html_part(received)


async def test_smtp_login_uses_the_configured_credentials(mail: MailSink) -> None:
    mailer = Mailer(
        _settings(mail.port, smtp_username="printflow", smtp_password=SecretStr("s3cret-pw"))
    )
    assert "s3cret-pw" not in repr(vars(mailer))
    message_id = await mailer.send("a@shop.example", "with login", "text", "<p>html</p>")
    received = await mail.wait_for(lambda m: m["Message-ID"] == message_id, timeout=5)
    assert "s3cret-pw" not in received.as_string()


async def test_an_unreachable_server_fails_the_send_at_once() -> None:
    mailer = Mailer(_settings(free_port()))  # nothing listens there
    started = time.monotonic()
    with pytest.raises((aiosmtplib.SMTPException, OSError)):
        await mailer.send("a@shop.example", "lost", "text", "<p>html</p>")
    assert time.monotonic() - started < 5


async def test_starttls_required_is_never_downgraded_to_plain_text(mail: MailSink) -> None:
    # The sink offers no STARTTLS: with SMTP_STARTTLS on, nothing may go out unencrypted.
    mailer = Mailer(_settings(mail.port, smtp_starttls=True))
    with pytest.raises(aiosmtplib.SMTPException):
        await mailer.send("a@shop.example", "must not arrive", "text", "<p>html</p>")
    assert all(m["Subject"] != "must not arrive" for m in mail.messages)


def test_html_templates_escape_and_text_templates_do_not() -> None:
    text, html = render_email(
        "personalization_link",
        reference="<b>R&D</b>",
        order_id="ord_1",
        support_id="PF-7KQ2M9XR",
        url="https://pf.example/p/tok?a=1&b=2",
        expires="Tuesday, 9 June 2026, 14:05 UTC",
        seq=1,
        items=[
            {
                "item_reference_id": "mug-1",
                "product_uid": "mug",
                "quantity": 2,
                "fields": [{"label": "Name <first>", "describe": "text, required"}],
            }
        ],
    )
    assert "<b>R&D</b>" in text and "https://pf.example/p/tok?a=1&b=2" in text
    assert "<b>" not in html and "&lt;b&gt;R&amp;D&lt;/b&gt;" in html
    assert 'href="https://pf.example/p/tok?a=1&amp;b=2"' in html
    assert "Name &lt;first&gt;" in html


def test_a_missing_template_variable_is_an_error_not_a_blank() -> None:
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        render_email("personalization_link", reference="R-1")


class _RefusingHandler:
    """An SMTP server that knows no such mailbox (550) or is over its quota for now (452)."""

    def __init__(self, code: str) -> None:
        self.code = code

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        return self.code


@pytest.mark.parametrize(
    ("answer", "final"),
    [("550 5.1.1 no such mailbox", True), ("452 4.2.2 mailbox full, try later", False)],
)
async def test_a_refused_recipient_is_final_only_when_the_server_says_so(
    answer: str, final: bool
) -> None:
    port = free_port()
    server = Controller(_RefusingHandler(answer), hostname="127.0.0.1", port=port)
    server.start()
    try:
        mailer = Mailer(_settings(port))
        with pytest.raises(Exception) as sent:
            await mailer.send("gone@shop.test", "Order 1", "text", "<p>html</p>")
        with pytest.raises(Exception) as sent_by_activity:
            await send_mail(mailer, "gone@shop.test", "Order 1", ("text", "<p>html</p>"))
    finally:
        server.stop()
    error, activity_error = sent.value, sent_by_activity.value
    if final:  # no retry changes it: the order goes on hold for a person
        assert isinstance(error, MailRejected) and "550" in str(error)
        assert isinstance(activity_error, ApplicationError) and activity_error.non_retryable
        assert activity_error.type == MAIL_REJECTED and activity_error.message == str(error)
    else:  # a plain error: Temporal retries it
        assert not isinstance(error, MailRejected)
        assert not isinstance(activity_error, ApplicationError)
        assert type(activity_error) is type(error)


async def test_a_header_that_cannot_be_built_is_refused_for_good(mail: MailSink) -> None:
    mailer = Mailer(_settings(mail.port))
    with pytest.raises(MailRejected):
        await mailer.send("a@shop.test", "Order X\nBcc: b@evil.test", "t", "h")
    with pytest.raises(ApplicationError) as raised:
        await send_mail(mailer, "a@shop.test", "Order X\nBcc: b@evil.test", ("t", "h"))
    assert raised.value.non_retryable and raised.value.type == MAIL_REJECTED
    assert mail.messages == []


class _SenderRefusingHandler:
    """An SMTP server refusing our ``MAIL FROM`` with ``refuse`` while it is set, then taking
    the mail like any relay."""

    def __init__(self, refuse: str | None) -> None:
        self.refuse = refuse
        self.refused = 0
        self.received: list[bytes] = []

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook name)
        self, server: object, session: object, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse is not None:
            self.refused += 1
            return self.refuse
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        content = envelope.content
        self.received.append(content if isinstance(content, bytes) else str(content).encode())
        return "250 Message accepted for delivery"


@dataclass
class _Alerts:
    """What the mailer tells its alert sink (``activities.alerts.ConfigurationAlerts``)."""

    refusals: list[tuple[str, str, str]] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)

    async def refused(self, what: str, setting: str, message: str) -> None:
        self.refusals.append((what, setting, message))

    async def ok(self, what: str) -> None:
        self.cleared.append(what)


@pytest.mark.parametrize(
    ("answer", "setting"),
    [
        ("550 5.7.1 sender not allowed", "PRINTFLOW_MAIL_FROM"),
        ("553 5.7.1 sender address rejected: not owned by user", "PRINTFLOW_MAIL_FROM"),
        ("530 5.7.0 authentication required", "PRINTFLOW_SMTP_USERNAME"),
    ],
)
async def test_our_sender_refused_is_a_configuration_error_retried_never_mail_rejected(
    answer: str, setting: str
) -> None:
    port = free_port()
    handler = _SenderRefusingHandler(answer)
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    alerts = _Alerts()
    try:
        mailer = Mailer(_settings(port), alerts=alerts)
        with pytest.raises(MailConfigurationError) as sent:
            await mailer.send("help@shop.test", "Order 1", "text", "<p>html</p>")
        with pytest.raises(Exception) as sent_by_activity:
            await send_mail(mailer, "help@shop.test", "Order 1", ("text", "<p>html</p>"))
        assert setting in sent.value.setting
        # Not MailRejected and not an ApplicationError: Temporal retries it, no order is held.
        assert not isinstance(sent_by_activity.value, MailRejected | ApplicationError)
        assert [what for what, _, _ in alerts.refusals] == ["mail", "mail"]
        assert setting in alerts.refusals[0][1] and answer[:3] in alerts.refusals[0][2]

        handler.refuse = None  # the setting is fixed: the same mail goes out
        await mailer.send("help@shop.test", "Order 1", "text", "<p>html</p>")
    finally:
        server.stop()
    assert len(handler.received) == 1 and alerts.cleared == ["mail"]


async def test_our_login_refused_is_a_configuration_error() -> None:
    def refuse_login(*_: object) -> AuthResult:
        return AuthResult(success=False, handled=False)

    port = free_port()
    server = Controller(
        _SenderRefusingHandler(None),
        hostname="127.0.0.1",
        port=port,
        authenticator=refuse_login,
        auth_require_tls=False,
    )
    server.start()
    try:
        mailer = Mailer(
            _settings(port, smtp_username="printflow", smtp_password=SecretStr("rotated"))
        )
        with pytest.raises(MailConfigurationError) as sent:
            await mailer.send("help@shop.test", "Order 1", "text", "<p>html</p>")
    finally:
        server.stop()
    assert "535" in str(sent.value) and "PRINTFLOW_SMTP_PASSWORD" in sent.value.setting
