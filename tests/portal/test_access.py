"""Who may open what, for every route of the portal: read from the app's own routes, so a new
page without a rule here fails this test.

- signed out, every page and form sends the browser to the sign-in page;
- a role without a route's right gets the 403 page (for forms too, before anything is looked at);
- another merchant's order, ticket, message, delivery or user is a 404 for a role that has the
  right — never a 403, never a change.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from domain.portal import Right, may
from tests.cases.test_cases_api import open_case
from tests.contacts.test_contacts_api import contact
from tests.helpers.api import order_json
from tests.helpers.production import FullApi, full_api
from tests.helpers.routes import api_routes
from tests.portal.browser import Portal, Shop, csrf_of, member, shop

__all__ = ["full_api"]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# The pages anyone may open: signing in, the links e-mailed to set a password.
PUBLIC = re.compile(r"^/portal(/login|/logout|/reset(/\{token\})?|/invite/\{token\})?$")


def right_of(method: str, path: str) -> Right:
    """The right a portal route needs: the rule each page module applies, written once more."""
    if path.startswith(("/portal/orders", "/portal/needs-you")):
        if method == "GET":
            return Right.ORDERS_READ
        return Right.MESSAGES if path.endswith("/contact") else Right.ORDERS_ACT
    for prefix, right in (
        ("/portal/tickets", Right.TICKETS),
        ("/portal/messages", Right.MESSAGES),
        ("/portal/developers", Right.DEVELOPERS),
        ("/portal/team", Right.TEAM),
    ):
        if path.startswith(prefix):
            return right
    raise AssertionError(f"no rule for {method} {path}: add one to this test")


def portal_routes(api: FullApi) -> list[tuple[str, str]]:
    found = sorted(
        (method, route.path)
        for route in api_routes(api.app.routes)
        if route.path.startswith("/portal")
        for method in route.methods or ()
        if method in ("GET", "POST")
    )
    assert len(found) > 20, found
    return found


async def theirs(api: FullApi, other: Shop) -> dict[str, str]:
    """Ids of another merchant's things, by the path parameter names the portal uses."""
    created = await api.client.post("/v1/orders", json=order_json(), headers=other.key)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    case = await open_case(api, other.key, order_id=order_id)
    made = await api.client.post(
        "/v1/customer-contacts", json=contact(created.json()["support_id"]), headers=other.key
    )
    assert made.status_code == 201, made.text
    user = await member(api, other, "support")
    async with api.app.state.sessions() as db:
        from api.services import portal

        found = await portal.user_by_email(db, user.email)
        assert found is not None
    return {
        "order_id": order_id,
        "case_id": case["id"],
        "contact_id": made.json()["id"],
        "user_id": found.id,
        "event_id": "whe_" + "0" * 32,
    }


def fill(path: str, ids: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in ids, f"no value for {{{name}}} in {path}: add one to theirs()"
        return ids[name]

    return re.sub(r"\{([a-z_]+)\}", one, path)


async def test_every_portal_route_is_guarded_by_its_right_and_scoped_to_the_merchant(
    full_api: FullApi,
) -> None:
    api = full_api
    mine, other = await shop(api), await shop(api, name="Other Shop")
    ids = await theirs(api, other)
    before = await their_things(api, other, ids)
    people = {
        "owner": mine.owner,
        "support": await member(api, mine, "support"),
        "developer": await member(api, mine, "developer"),
    }
    stranger = Portal.of(api)
    browsers = {role: await Portal.signed_in(api, person) for role, person in people.items()}
    try:
        checked = 0
        for method, template in portal_routes(api):
            if PUBLIC.match(template):
                continue
            right = right_of(method, template)
            path = fill(template, ids)

            # Signed out: the sign-in page, for pages and forms alike.
            answer = await (stranger.get(path) if method == "GET" else stranger.post(path, {}))
            assert answer.status_code == 303, (method, template, answer.status_code)
            assert answer.headers["location"].startswith("/portal/login"), (method, template)

            for role, browser in browsers.items():
                home = await browser.get("/portal/orders")
                fields: dict[str, Any] = {"csrf": csrf_of(home.text), "nonce": "n" * 22}
                answer = await (
                    browser.get(path) if method == "GET" else browser.post(path, fields)
                )
                if not may(role, right):
                    assert answer.status_code == 403, (role, method, template, answer.text[:300])
                    assert "Your role does not include this" in answer.text
                elif any(f"{{{n}}}" in template for n in ids):
                    assert answer.status_code == 404, (role, method, template, answer.text[:300])
                else:
                    assert answer.status_code < 500, (role, method, template, answer.text[:300])
                checked += 1
        assert checked > 50
    finally:
        await stranger.close()
        for browser in browsers.values():
            await browser.close()

    # Nothing of the other merchant changed: its order, ticket, message, key and team are as
    # they were before every form was sent at them.
    assert await their_things(api, other, ids) == before


async def their_things(api: FullApi, other: Shop, ids: dict[str, str]) -> dict[str, Any]:
    """What another merchant has, as its API key and its team list show it."""
    read = {
        "order": f"/v1/orders/{ids['order_id']}",
        "case": f"/v1/support/cases/{ids['case_id']}",
        "contact": f"/v1/customer-contacts/{ids['contact_id']}",
    }
    seen: dict[str, Any] = {}
    for name, path in read.items():
        answer = await api.client.get(path, headers=other.key)  # the key still works, too
        assert answer.status_code == 200, answer.text
        seen[name] = answer.json()
    async with api.app.state.sessions() as db:
        from api.services import portal

        seen["team"] = sorted((u.id, u.role) for u in await portal.team(db, other.id))
    return seen
