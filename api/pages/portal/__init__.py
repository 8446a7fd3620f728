"""``/portal``: the merchant portal, where a shop's team works on its orders, tickets and
customer messages, and manages API keys, webhooks and the team (docs/portal.md).

Server-rendered pages with plain forms, like the support console: ``common`` holds what every
page shares (sessions, roles, CSRF, nonces); each area is a module of its own.
"""

from fastapi import APIRouter

from api.pages.portal import auth, developers, messages, order_problems, orders, team, tickets

router = APIRouter()
for area in (auth, orders, order_problems, tickets, messages, developers, team):
    router.include_router(area.router)
