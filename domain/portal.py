"""Who may do what in the merchant portal (``/portal``, docs/portal.md): a merchant's users
have one role each, and each page and form needs one right.

- ``owner``: everything, the team included.
- ``support``: orders (seen and acted on), tickets and customer messages; no API keys or webhooks.
- ``developer``: API keys, webhooks, deliveries and the failed-request log; orders read-only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol


class Role(StrEnum):
    OWNER = "owner"
    SUPPORT = "support"
    DEVELOPER = "developer"


class Right(StrEnum):
    ORDERS_READ = "orders_read"
    ORDERS_ACT = "orders_act"
    TICKETS = "tickets"
    MESSAGES = "messages"
    DEVELOPERS = "developers"
    TEAM = "team"


RIGHTS: dict[Role, frozenset[Right]] = {
    Role.OWNER: frozenset(Right),
    Role.SUPPORT: frozenset({Right.ORDERS_READ, Right.ORDERS_ACT, Right.TICKETS, Right.MESSAGES}),
    Role.DEVELOPER: frozenset({Right.ORDERS_READ, Right.DEVELOPERS}),
}

# What a right is called on a 403 page and in the docs.
RIGHT_WORDS: dict[Right, str] = {
    Right.ORDERS_READ: "see orders",
    Right.ORDERS_ACT: "change orders",
    Right.TICKETS: "work with tickets",
    Right.MESSAGES: "write to customers",
    Right.DEVELOPERS: "manage API keys and webhooks",
    Right.TEAM: "manage the team",
}

ROLE_WORDS: dict[Role, str] = {
    Role.OWNER: "Owner: everything, the team included",
    Role.SUPPORT: "Support: orders, tickets and customer messages",
    Role.DEVELOPER: "Developer: API keys, webhooks and the request log; orders read-only",
}


def may(role: str, right: Right) -> bool:
    """Whether ``role`` (as stored; an unknown one may nothing) has ``right``."""
    try:
        return right in RIGHTS[Role(role)]
    except ValueError:
        return False


def customer_search_text(first_name: str, last_name: str, email: str | None) -> str:
    """What ``/portal/orders?q=`` matches a customer by: names and e-mail, lowercased."""
    return " ".join(p for p in (first_name, last_name, email or "") if p).lower()[:700]


class _Address(Protocol):
    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def country(self) -> str: ...


def search_columns(address: _Address) -> dict[str, Any]:
    """The orders read model's search columns for a shipping address."""
    return {
        "country": address.country,
        "customer": customer_search_text(address.first_name, address.last_name, address.email),
    }
