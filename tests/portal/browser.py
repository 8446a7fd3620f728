"""The merchant portal (``/portal``) as a browser without JavaScript uses it: a cookie jar of
its own per person, forms posted with the CSRF token (and the nonce) the page carries.

``shop(api)`` makes a merchant with an owner who has set their password; ``member(api, shop,
role)`` adds a signed-up teammate; ``Portal.signed_in(api, person)`` opens a browser signed in.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from api.services import portal
from db.engine import utcnow
from domain.portal import Role
from tests.helpers.api import ADMIN_TOKEN, Api
from tests.helpers.mail import text_of

CSRF = re.compile(r'<input type="hidden" name="csrf" value="([^"]+)">')
NONCE = re.compile(r'<input type="hidden" name="nonce" value="([^"]+)">')
PASSWORD = "correct horse battery staple"


def csrf_of(html: str) -> str:
    tokens = set(CSRF.findall(html))
    assert len(tokens) == 1, f"expected one CSRF token on the page, found {tokens}"
    return tokens.pop()


def nonce_in(html: str, action: str) -> str:
    """The nonce of the form that posts to ``action``."""
    form = re.search(r'<form[^>]*action="' + re.escape(action) + r'"[^>]*>(.*?)</form>', html, re.S)
    assert form is not None, f"no form posts to {action}"
    found = NONCE.search(form.group(1))
    assert found is not None, f"the form to {action} has no nonce"
    return found.group(1)


@dataclass
class Person:
    email: str
    name: str
    role: str
    password: str = PASSWORD


@dataclass
class Shop:
    """A merchant as the admin API made it (``api_key`` and all) and its owner."""

    merchant: dict[str, Any]
    owner: Person

    @property
    def id(self) -> str:
        return str(self.merchant["id"])

    @property
    def key(self) -> dict[str, str]:
        return Api.auth(self.merchant)


@dataclass
class Portal:
    """One person's browser: its own cookies, talking to the API's app over ASGI."""

    http: httpx.AsyncClient

    @classmethod
    def of(cls, api: Api) -> Portal:
        return cls(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=api.app), base_url=api.settings.public_base_url
            )
        )

    @classmethod
    async def signed_in(cls, api: Api, person: Person) -> Portal:
        browser = cls.of(api)
        response = await browser.sign_in(person.email, person.password)
        assert response.status_code == 303, response.text
        return browser

    async def close(self) -> None:
        await self.http.aclose()

    async def sign_in(self, email: str, password: str) -> httpx.Response:
        form = await self.http.get("/portal/login")
        assert form.status_code == 200, form.text
        return await self.http.post(
            "/portal/login",
            data={"csrf": csrf_of(form.text), "email": email, "password": password},
        )

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path)

    async def submit(
        self, page: str, action: str, fields: dict[str, Any] | None = None, *, nonce: bool = True
    ) -> httpx.Response:
        """Opens ``page`` and sends its form to ``action`` with ``fields``, as a person would:
        with the page's CSRF token and that form's nonce."""
        shown = await self.http.get(page)
        assert shown.status_code == 200, shown.text
        data: dict[str, Any] = {"csrf": csrf_of(shown.text), **(fields or {})}
        if nonce:
            data.setdefault("nonce", nonce_in(shown.text, action))
        return await self.http.post(action, data=data)

    async def post(self, action: str, fields: dict[str, Any]) -> httpx.Response:
        """A form sent as it is: the caller supplies the CSRF token (or leaves it out)."""
        return await self.http.post(action, data=fields)


def link_in(api: Api, to: str, purpose: str) -> str:
    """The path of the newest ``/portal/{purpose}/…`` link e-mailed to ``to``."""
    mails = [m for m in api.mail.messages if m["To"] == to]
    assert mails, f"no e-mail to {to}"
    found = re.findall(
        r"https?://[^\s]+(/portal/" + purpose + r"/[A-Za-z0-9_-]+)", text_of(mails[-1])
    )
    assert found, f"no {purpose} link in the e-mail to {to}"
    return str(found[-1])


async def set_password(api: Api, path: str, password: str = PASSWORD) -> httpx.Response:
    """Opens an invite or reset link in a fresh browser and sets the password."""
    browser = Portal.of(api)
    try:
        form = await browser.http.get(path)
        assert form.status_code == 200, form.text
        return await browser.http.post(
            path, data={"csrf": csrf_of(form.text), "password": password}
        )
    finally:
        await browser.close()


async def shop(api: Api, name: str = "Poster Shop", **extra: Any) -> Shop:
    """A merchant whose owner accepted the invite the admin API answered with."""
    owner = Person(f"owner-{uuid.uuid4().hex[:8]}@shop.example", "Olga Owner", "owner")
    response = await api.client.post(
        "/v1/admin/merchants",
        json={
            "name": name,
            "support_email": "help@shop.example",
            "owner": {"email": owner.email, "name": owner.name},
            **extra,
        },
        headers={"X-Admin-Token": ADMIN_TOKEN},
    )
    assert response.status_code == 201, response.text
    merchant = dict(response.json())
    path = "/portal/" + merchant["owner_invite_url"].split("/portal/", 1)[1]
    assert (await set_password(api, path, owner.password)).status_code == 303
    return Shop(merchant, owner)


async def member(api: Api, of: Shop, role: Role | str, name: str = "Tess Teammate") -> Person:
    """A teammate of ``role`` who used their invite (made by the service the Team page uses)."""
    person = Person(f"{role}-{uuid.uuid4().hex[:8]}@shop.example", name, str(role))
    async with api.app.state.sessions() as db:
        _, token = await portal.invite(db, of.id, person.email, person.name, Role(role), utcnow())
    assert (await set_password(api, f"/portal/invite/{token}")).status_code == 303
    return person
