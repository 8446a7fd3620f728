"""Personalization against real parts: the API and a worker on the Temporal dev server, a real
database (SQLite and PostgreSQL), and a real SMTP server (MailSink) that receives the links.

Orders e-mail their first link a second after they arrive (instead of 15 minutes), so a test
goes from ``POST /v1/orders`` to the customer's page the way a merchant would: through the mail.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.mailsink import MailSink
from tests.helpers.api import Api, order_json, running_api

LINK = re.compile(r"https?://[^\s\"'<>]+/p/([A-Za-z0-9_-]+)")

MUG_FIELDS = [
    {
        "name": "name",
        "label": "Name on the mug",
        "type": "text",
        "max_length": 20,
        "required": True,
    },
    {"name": "photo", "label": "Photo", "type": "image_url"},
]
POSTER_FIELDS = [{"name": "greeting", "label": "Greeting", "type": "text", "max_length": 300}]


def personalized_order(reference: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A mug and a poster to personalize, and a T-shirt that needs nothing."""
    files = [{"type": "default", "url": "https://files.example/print.png"}]
    items = [
        {
            "item_reference_id": "mug-1",
            "product_uid": "mug_11oz_white",
            "quantity": 2,
            "files": files,
            "personalization": {"fields": MUG_FIELDS},
        },
        {
            "item_reference_id": "poster-1",
            "product_uid": "poster_a3_matte",
            "quantity": 1,
            "files": files,
            "personalization": {"fields": POSTER_FIELDS},
        },
        {
            "item_reference_id": "shirt-1",
            "product_uid": "tshirt_m_black",
            "quantity": 1,
            "files": files,
        },
    ]
    return order_json(reference or f"P-{uuid.uuid4().hex[:8]}", items=items, **overrides)


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None, "the e-mail has no text/plain part"
    return str(part.get_content())


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None, "the e-mail has no text/html part"
    return str(part.get_content())


def link_in(message: EmailMessage) -> str:
    """The personalization link in the e-mail's text part (the HTML part must agree)."""
    found = LINK.findall(text_part(message))
    assert len(set(found)) == 1, f"expected one link, found {found}"
    [url] = LINK.finditer(text_part(message))
    assert f'href="{url.group(0)}"' in html_part(message)
    return url.group(0)


def path_of(url: str) -> str:
    return urlsplit(url).path


@dataclass
class Shop(Api):
    """The API, its worker and the merchant's mailbox."""

    async def link_mail(self, reference: str, number: int = 1) -> EmailMessage:
        """The e-mail carrying link ``number`` of order ``reference``."""

        def matches(m: EmailMessage) -> bool:
            if reference not in str(m["Subject"]):
                return False
            later = f"This is link {number} for this order"
            return (later in text_part(m)) if number > 1 else ("This is link" not in text_part(m))

        return await self.mail.wait_for(matches, timeout=20)

    async def order_with_link(
        self, merchant: dict[str, Any], body: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], str]:
        """Places a personalized order and returns it with the path of its e-mailed link."""
        body = body or personalized_order()
        created = await self.client.post("/v1/orders", json=body, headers=self.auth(merchant))
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "pending_personalization"
        message = await self.link_mail(body["order_reference_id"])
        return created.json(), path_of(link_in(message))

    async def order(self, merchant: dict[str, Any], order_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/orders/{order_id}", headers=self.auth(merchant))
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def link_ttl() -> timedelta:
    """How long links live; a test parametrizes it to watch one expire."""
    return timedelta(hours=1)


@pytest.fixture
def public_base_url() -> str:
    """Where links point; the browser test serves the app there for real."""
    return "http://printflow.test"


@pytest.fixture
async def mail() -> AsyncIterator[MailSink]:
    async with MailSink(port=0) as sink:
        yield sink


@pytest.fixture
async def shop(
    dev_env: WorkflowEnvironment,
    database_url: str,
    tmp_path: Path,
    link_ttl: timedelta,
    public_base_url: str,
) -> AsyncIterator[Shop]:
    async with running_api(
        dev_env.client,
        database_url,
        tmp_path,
        base_url=public_base_url,
        personalization_email_delay=timedelta(seconds=1),
        personalization_link_ttl=link_ttl,
    ) as api:
        yield Shop(**{f.name: getattr(api, f.name) for f in fields(api)})


# ---------------------------------------------------------------------------- reading pages


_VOID = frozenset({"input", "meta", "br", "link", "img", "hr"})


class Page(HTMLParser):
    """Just enough of an HTML page to check what a customer and a screen reader get."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        # Text inside elements: by their id, and "label:<for>" for labels.
        self.texts: dict[str, str] = {}
        self._stack: list[tuple[str, str | None]] = []
        self._collecting: dict[str, list[str]] = {}
        self._all: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        if tag in _VOID:
            return
        key = values.get("id") or (f"label:{values['for']}" if values.get("for") else None)
        self._stack.append((tag, key))
        if key:
            self._collecting[key] = []

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, key = self._stack.pop()
            if key:
                self.texts[key] = " ".join("".join(self._collecting.pop(key)).split())
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self._all.append(data)
        for chunks in self._collecting.values():
            chunks.append(data)

    @property
    def text(self) -> str:
        return " ".join("".join(self._all).split())

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        """Elements by tag and attributes (``for_`` for ``for``)."""
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def control(self, name: str) -> dict[str, str]:
        """The input or textarea named ``name``; a textarea's text is its ``value``."""
        inputs = self.find("input", name=name)
        areas = [
            {**a, "value": self.texts.get(a["id"], "")} for a in self.find("textarea", name=name)
        ]
        found = inputs + areas
        assert len(found) == 1, f"expected one control named {name!r}, found {found}"
        return found[0]

    def label_of(self, control: dict[str, str]) -> str:
        assert len(self.find("label", for_=control["id"])) == 1, control
        return self.texts[f"label:{control['id']}"]
