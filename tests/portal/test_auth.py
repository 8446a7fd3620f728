"""People, not keys: the portal's users sign in with e-mail and password, from an invite the
admin API made for the first owner; sessions end on the server; links work once; sign-in is
limited per address and per account. Real parts: the API on the Temporal dev server, SQLite and
PostgreSQL, a real SMTP sink."""

from __future__ import annotations

import asyncio

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from api.services import portal
from db.models import MerchantUser
from tests.cases.console import assert_page_headers
from tests.helpers.api import ADMIN_TOKEN
from tests.helpers.mail import text_of
from tests.helpers.production import FullApi, full_api
from tests.portal.browser import (
    PASSWORD,
    Portal,
    csrf_of,
    link_in,
    member,
    set_password,
    shop,
)

__all__ = ["full_api"]


async def test_the_admin_api_names_the_first_owner_who_sets_a_password_and_is_signed_in(
    full_api: FullApi,
) -> None:
    api = full_api
    response = await api.client.post(
        "/v1/admin/merchants",
        json={
            "name": "Mug Shop",
            "support_email": "help@mugs.example",
            "owner": {"email": "Olga@Mugs.Example", "name": "Olga Owner"},
        },
        headers={"X-Admin-Token": ADMIN_TOKEN},
    )
    assert response.status_code == 201, response.text
    url = response.json()["owner_invite_url"]
    assert url.startswith(api.settings.public_base_url + "/portal/invite/")
    # The same link is e-mailed to the owner (after the answer).
    await api.mail.wait_for(lambda m: str(m["To"]).lower() == "olga@mugs.example")
    mail = text_of(api.mail.messages[-1])
    assert url in mail and "7 days" in mail
    path = "/portal/" + url.split("/portal/", 1)[1]

    browser = Portal.of(api)
    try:
        form = await browser.get(path)
        assert form.status_code == 200 and "olga@mugs.example" in form.text
        assert_page_headers(form)
        short = await browser.post(path, {"csrf": csrf_of(form.text), "password": "short"})
        assert short.status_code == 422 and "at least 12 characters" in short.text
        done = await browser.post(path, {"csrf": csrf_of(short.text), "password": PASSWORD})
        assert done.status_code == 303 and done.headers["location"].startswith("/portal/orders")
        cookie = done.headers["set-cookie"]
        assert "pf_portal=" in cookie and "httponly" in cookie.lower()
        assert "samesite=strict" in cookie.lower()
        # The link worked once.
        assert (await browser.get(path)).status_code == 404
    finally:
        await browser.close()

    # The password is stored as an argon2 hash, the address lowercased.
    async with api.app.state.sessions() as db:
        user = await portal.user_by_email(db, "olga@mugs.example")
        assert user is not None and user.role == "owner"
        assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")


async def test_a_password_hashed_with_other_parameters_signs_in_and_is_stored_again(
    full_api: FullApi,
) -> None:
    """A hash kept from before the parameters changed (here the library's default: 64 MiB,
    three passes, four lanes) still verifies, and the sign-in stores it again with today's."""
    api = full_api
    mine = await shop(api)
    older = PasswordHash((Argon2Hasher(),)).hash(PASSWORD)
    async with api.app.state.sessions() as db:
        user = await portal.user_by_email(db, mine.owner.email)
        assert user is not None and user.password_hash is not None
        assert _parameters(user.password_hash) == "m=47104,t=1,p=1"
        user.password_hash = older
        db.add(user)
        await db.commit()
    browser = await Portal.signed_in(api, mine.owner)
    await browser.close()
    async with api.app.state.sessions() as db:
        user = await portal.user_by_email(db, mine.owner.email)
        assert user is not None and user.password_hash is not None
        assert user.password_hash != older
        assert _parameters(user.password_hash) == "m=47104,t=1,p=1"
        assert _parameters(older) != "m=47104,t=1,p=1"


def _parameters(argon2_hash: str) -> str:
    """``m=…,t=…,p=…`` of an encoded argon2 hash (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``)."""
    return argon2_hash.split("$")[3]


async def test_sign_out_ends_the_session_on_the_server_so_a_copied_cookie_stops_working(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    browser = await Portal.signed_in(api, mine.owner)
    try:
        assert (await browser.get("/portal")).headers["location"] == "/portal/orders"
        assert (await browser.get("/portal/login")).status_code == 303  # signed in: sent on
        copied = browser.http.cookies.get("pf_portal")
        assert copied
        out = await browser.submit("/portal/orders", "/portal/logout", nonce=False)
        assert out.status_code == 303 and out.headers["location"].endswith("signed_out=1")
    finally:
        await browser.close()

    thief = Portal.of(api)
    try:
        thief.http.cookies.set("pf_portal", copied)
        again = await thief.get("/portal/orders")
        assert again.status_code == 303 and again.headers["location"].startswith("/portal/login")
    finally:
        await thief.close()


async def test_a_wrong_password_is_a_401_and_too_many_pause_the_account_not_the_address(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    browser = Portal.of(api)
    try:
        wrong = await browser.sign_in(mine.owner.email, "not the password at all")
        assert wrong.status_code == 401
        assert "do not match an account" in wrong.text
        unknown = await browser.sign_in("nobody@shop.example", PASSWORD)
        assert unknown.status_code == 401 and "do not match an account" in unknown.text
        for _ in range(portal.ACCOUNT_FAILURES.amount - 1):
            assert (await browser.sign_in(mine.owner.email, "guess guess guess")).status_code == 401
        # The account's limit is spent: even the right password waits (or a reset).
        paused = await browser.sign_in(mine.owner.email, PASSWORD)
        assert paused.status_code == 429 and "reset your password" in paused.text
        # Another account behind the same address still signs in.
        other = await shop(api, name="Other Shop")
        assert (await browser.sign_in(other.owner.email, PASSWORD)).status_code == 303
    finally:
        await browser.close()


async def test_sign_in_without_the_forms_token_changes_nothing(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    browser = Portal.of(api)
    try:
        await browser.get("/portal/login")
        forged = await browser.post(
            "/portal/login", {"email": mine.owner.email, "password": PASSWORD, "csrf": "x"}
        )
        assert forged.status_code == 403 and "pf_portal=" not in forged.headers.get(
            "set-cookie", ""
        )
    finally:
        await browser.close()


async def test_a_password_reset_by_e_mail_works_once_and_ends_every_session(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    signed_in = await Portal.signed_in(api, mine.owner)
    browser = Portal.of(api)
    try:
        form = await browser.get("/portal/reset")
        asked = await browser.post(
            "/portal/reset", {"csrf": csrf_of(form.text), "email": mine.owner.email.upper()}
        )
        assert asked.status_code == 200 and "on its way" in asked.text
        # An unknown address gets the same answer, and no e-mail.
        nobody = await browser.post(
            "/portal/reset", {"csrf": csrf_of(form.text), "email": "nobody@shop.example"}
        )
        assert nobody.status_code == 200 and "on its way" in nobody.text
        await api.mail.wait_for(
            lambda m: m["To"] == mine.owner.email and "Reset" in str(m["Subject"])
        )
        assert not [m for m in api.mail.messages if m["To"] == "nobody@shop.example"]
        path = link_in(api, mine.owner.email, "reset")
        new_password = "a brand new passphrase"
        assert (await set_password(api, path, new_password)).status_code == 303
        assert (await browser.get(path)).status_code == 404  # used
        # The session made before the reset is over; the old password no longer works.
        over = await signed_in.get("/portal")
        assert over.status_code == 303 and over.headers["location"].startswith("/portal/login")
        assert (await browser.sign_in(mine.owner.email, PASSWORD)).status_code == 401
        assert (await browser.sign_in(mine.owner.email, new_password)).status_code == 303
    finally:
        await browser.close()
        await signed_in.close()


async def test_an_unknown_link_is_a_404_counted_as_a_failed_authentication(
    full_api: FullApi,
) -> None:
    browser = Portal.of(full_api)
    try:
        for path in ("/portal/invite/nope", "/portal/reset/" + "x" * 43):
            response = await browser.get(path)
            assert response.status_code == 404 and "does not work" in response.text
    finally:
        await browser.close()


async def test_a_removed_member_is_signed_out_at_once(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    tess = await member(api, mine, "support")
    browser = await Portal.signed_in(api, tess)
    try:
        assert (await browser.get("/portal")).status_code == 303
        async with api.app.state.sessions() as db:
            user = await portal.user_by_email(db, tess.email)
            assert isinstance(user, MerchantUser)
            await portal.remove(db, user)
        gone = await browser.get("/portal")
        assert gone.headers["location"].startswith("/portal/login")
    finally:
        await browser.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_owner_e_mail_that_has_an_account_refuses_the_merchant(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    response = await api.client.post(
        "/v1/admin/merchants",
        json={
            "name": "Second Shop",
            "support_email": "help@shop.example",
            "owner": {"email": mine.owner.email, "name": "Olga Again"},
        },
        headers={"X-Admin-Token": ADMIN_TOKEN},
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "owner"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_two_merchants_naming_one_owner_at_once_make_one_account(
    full_api: FullApi,
) -> None:
    """Both may pass the check before either commits: the unique address decides, and the
    second is the same 422 as a later one, never a 500."""
    api = full_api

    async def create(name: str) -> int:
        response = await api.client.post(
            "/v1/admin/merchants",
            json={
                "name": name,
                "support_email": "help@shop.example",
                "owner": {"email": "same@shop.example", "name": "Sam Same"},
            },
            headers={"X-Admin-Token": ADMIN_TOKEN},
        )
        return response.status_code

    statuses = sorted(await asyncio.gather(create("First Shop"), create("Second Shop")))
    assert statuses == [201, 422]
    async with api.app.state.sessions() as db:
        user = await portal.user_by_email(db, "same@shop.example")
        assert user is not None
