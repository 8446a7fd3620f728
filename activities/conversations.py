"""What the activities of support cases and customer contacts share: both are conversations
whose workflow projects a versioned row with write-once messages (``activities.read_model``),
queues webhooks after the transaction, and e-mails the people in it, with links to the API.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.mail import send_template
from integrations.mail import Mailer

if TYPE_CHECKING:
    from activities.webhooks.emitter import WebhookEmitter


class ConversationActivities:
    """The clients a conversation's activities use: the database, the mailer, the public base
    URL of the API (for links in e-mails) and, when wired, the webhook emitter."""

    what: str  # "case", "contact": the e-mail templates' prefix and the logs' word
    log: logging.Logger

    def __init_subclass__(cls, *, what: str, logger: str) -> None:
        super().__init_subclass__()
        cls.what = what
        cls.log = logging.getLogger(logger)

    def __init__(
        self,
        engine: AsyncEngine,
        mailer: Mailer,
        public_base_url: str,
        webhooks: WebhookEmitter | None = None,
    ) -> None:
        self._engine = engine
        self._mailer = mailer
        self._api = public_base_url.rstrip("/")
        self._webhooks = webhooks

    async def _mail(
        self, conversation_id: str, kind: str, to: str, subject: str, context: dict[str, Any]
    ) -> None:
        """Sends e-mail ``kind`` of the conversation (template ``{what}_{kind}``)."""
        template = f"{self.what}_{kind}"
        message_id = await send_template(self._mailer, to, subject, template, **context)
        self.log.info("%s %s: %s e-mail sent as %s", self.what, conversation_id, kind, message_id)
