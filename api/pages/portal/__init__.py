"""``/portal``: the merchant portal, where a shop's team works on its orders, tickets and
customer messages, and manages API keys, webhooks and the team (docs/portal.md).

Server-rendered pages with plain forms, like the support console: ``common`` holds what the
pages share (sessions, roles, CSRF, nonces, running a form's change); each area is a module of
its own (``order_words``: what the order page and the forms for an order's problems both say).
Their templates share ``portal/_macros.html``.
"""

from fastapi import APIRouter

from api.pages.portal import auth, developers, messages, order_problems, orders, team, tickets

router = APIRouter()
for area in (auth, orders, order_problems, tickets, messages, developers, team):
    router.include_router(area.router)
