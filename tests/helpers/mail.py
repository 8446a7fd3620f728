"""Reading the e-mails the SMTP sink received."""

from __future__ import annotations

from email.message import EmailMessage


def text_of(message: EmailMessage) -> str:
    """The e-mail's text/plain part, with plain newlines."""
    part = message.get_body(("plain",))
    assert part is not None, "the e-mail has no text/plain part"
    return str(part.get_content()).replace("\r\n", "\n")
