"""The team in the merchant portal: owners invite people by e-mail (a real SMTP sink), change
their roles and remove them; the last owner stays; a role's rights apply at once; another
merchant's people are a 404. Real parts: the API on the Temporal dev server, SQLite, the SMTP
sink."""

from __future__ import annotations

import html
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import select

from api.services import portal
from db.models import MerchantUser
from tests.cases.console import assert_page_headers
from tests.helpers.production import FullApi, full_api
from tests.portal.browser import (
    Person,
    Portal,
    Shop,
    csrf_of,
    link_in,
    member,
    nonce_in,
    set_password,
    shop,
)

__all__ = ["full_api"]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

INVITE = "/portal/team/invite"


def words(page: str) -> str:
    """The page's words, tags dropped and spaces folded: what a reader reads."""
    inline = re.sub(r"</?(a|code|em|small|span|strong|time)\b[^>]*>", "", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", inline)))


def someone(role: str = "support", name: str = "Sam Support") -> Person:
    return Person(f"{role}-{uuid.uuid4().hex[:8]}@shop.example", name, role)


async def user_of(api: FullApi, email: str) -> MerchantUser | None:
    async with api.app.state.sessions() as db:
        return await portal.user_by_email(db, email)


async def users_named(api: FullApi, of: Shop, email: str) -> list[MerchantUser]:
    async with api.app.state.sessions() as db:
        found = await db.exec(
            select(MerchantUser).where(
                MerchantUser.merchant_id == of.id, MerchantUser.email == email
            )
        )
        return list(found.all())


def done_of(response: httpx.Response) -> tuple[str, dict[str, list[str]]]:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    location = urlsplit(response.headers["location"])
    return location.path, parse_qs(location.query)


async def test_an_invited_teammate_signs_up_and_their_role_rules_what_they_may_open(
    full_api: FullApi,
) -> None:
    api = full_api
    mine = await shop(api)
    sam = someone()
    owner = await Portal.signed_in(api, mine.owner)
    try:
        page = await owner.get("/portal/team")
        assert page.status_code == 200
        assert_page_headers(page)
        said = words(page.text)
        assert f"{mine.owner.name} (you)" in said and mine.owner.email in said
        assert "Owner: everything, the team included" in said and "Yes: has a password" in said
        assert "<caption>" in page.text and '<th scope="col">' in page.text
        assert '<label for="invite-email">' in page.text and "<legend>" in page.text

        invited = await owner.submit(
            "/portal/team", INVITE, {"email": sam.email, "name": sam.name, "role": "support"}
        )
        path, query = done_of(invited)
        assert path == "/portal/team" and query["done"] == ["invited"]
        shown = await owner.get(invited.headers["location"])
        said = words(shown.text)
        assert f"{sam.name} is invited: an e-mail with a link to set a password went to" in said
        assert "Not yet: invited, the link works until" in said
        assert "Support: orders, tickets and customer messages" in said

        # The e-mail arrives; the link sets the password and signs them in.
        await api.mail.wait_for(lambda m: m["To"] == sam.email)
        assert (await set_password(api, link_in(api, sam.email, "invite"))).status_code == 303
        assert "Yes: has a password" in words((await owner.get("/portal/team")).text)
        teammate = await Portal.signed_in(api, sam)
        try:
            for path in ("/portal/developers", "/portal/team"):
                refused = await teammate.get(path)
                assert refused.status_code == 403, path
                assert "Your role does not include this" in refused.text
            sections = re.findall(r'<nav class="sections".*?</nav>', refused.text, re.S)
            assert sections and "Team" not in sections[0]

            # Made a developer: the developers' page opens at once; the team's still does not.
            user = await user_of(api, sam.email)
            assert user is not None
            changed = await owner.submit(
                "/portal/team", f"/portal/team/{user.id}/role", {"role": "developer"}
            )
            path, query = done_of(changed)
            assert query["done"] == ["role_changed"] and query["user"] == [user.id]
            said = words((await owner.get(changed.headers["location"])).text)
            assert f"{sam.name} is now Developer: API keys, webhooks" in said
            assert (await teammate.get("/portal/developers")).status_code == 200
            assert (await teammate.get("/portal/team")).status_code == 403

            # Removed: their session ends at once.
            page = await owner.get("/portal/team")
            assert f"Remove {sam.name}</button>" in page.text
            removed = await owner.submit("/portal/team", f"/portal/team/{user.id}/remove")
            path, query = done_of(removed)
            assert query["done"] == ["removed"]
            assert "They are no longer on the team" in words(
                (await owner.get(removed.headers["location"])).text
            )
            gone = await teammate.get("/portal/developers")
            assert gone.status_code == 303 and gone.headers["location"].startswith("/portal/login")
            assert await user_of(api, sam.email) is None
            assert (await teammate.sign_in(sam.email, sam.password)).status_code == 401
        finally:
            await teammate.close()
    finally:
        await owner.close()


async def test_an_invite_sent_twice_makes_one_user(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    dev = someone("developer", "Dana Dev")
    owner = await Portal.signed_in(api, mine.owner)
    try:
        page = await owner.get("/portal/team")
        fields = {
            "csrf": csrf_of(page.text),
            "nonce": nonce_in(page.text, INVITE),
            "email": dev.email,
            "name": dev.name,
            "role": "developer",
        }
        first = await owner.post(INVITE, fields)
        second = await owner.post(INVITE, fields)
        for answer in (first, second):
            path, query = done_of(answer)
            assert query["done"] == ["invited"]
        assert len(await users_named(api, mine, dev.email)) == 1
        said = words((await owner.get(second.headers["location"])).text)
        assert f"{dev.name} is invited" in said

        # Another form for the same address is refused in words: one account per address.
        other = await owner.submit(
            "/portal/team", INVITE, {"email": dev.email, "name": "Someone Else", "role": "support"}
        )
        assert other.status_code == 409
        assert "already has a printflow account" in words(other.text)
        assert f'value="{dev.email}"' in other.text
    finally:
        await owner.close()


async def test_an_invite_the_mail_server_did_not_take_is_sent_again(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    sam = someone()
    owner = await Portal.signed_in(api, mine.owner)
    try:
        await api.mail.stop()
        try:
            invited = await owner.submit(
                "/portal/team", INVITE, {"email": sam.email, "name": sam.name, "role": "support"}
            )
        finally:
            await api.mail.start()
        path, query = done_of(invited)
        assert query["done"] == ["invite_not_sent"]
        page = await owner.get(invited.headers["location"])
        said = words(page.text)
        assert "The invite e-mail was not sent" in said
        assert f"the mail server did not take the invite to {sam.email}" in said
        user = await user_of(api, sam.email)
        assert user is not None and user.password_hash is None

        resent = await owner.submit(invited.headers["location"], f"/portal/team/{user.id}/resend")
        path, query = done_of(resent)
        assert query["done"] == ["resent"]
        assert f"A new invite went to {sam.email}" in words(
            (await owner.get(resent.headers["location"])).text
        )
        await api.mail.wait_for(lambda m: m["To"] == sam.email)
        assert (await set_password(api, link_in(api, sam.email, "invite"))).status_code == 303

        # Signed up, they need no invite.
        page = await owner.get("/portal/team")
        late = await owner.post(
            f"/portal/team/{user.id}/resend", {"csrf": csrf_of(page.text), "nonce": "n" * 22}
        )
        assert late.status_code == 409 and "has already set a password" in words(late.text)
    finally:
        await owner.close()


async def test_the_last_owner_stays_and_bad_input_is_refused_in_words(full_api: FullApi) -> None:
    api = full_api
    mine = await shop(api)
    owner = await Portal.signed_in(api, mine.owner)
    try:
        me = await user_of(api, mine.owner.email)
        assert me is not None
        for action, fields in (
            (f"/portal/team/{me.id}/remove", {}),
            (f"/portal/team/{me.id}/role", {"role": "support"}),
        ):
            refused = await owner.submit("/portal/team", action, fields)
            assert refused.status_code == 409, action
            said = words(refused.text)
            assert "Nothing was changed" in said
            assert f"{mine.owner.name} is the team's only owner" in said
            assert "A team needs at least one owner" in said
        me = await user_of(api, mine.owner.email)
        assert me is not None and me.role == "owner"

        for fields, problem in (
            ({"email": "not an address", "name": "Nora", "role": "support"}, "E-mail address: "),
            ({"email": "nora@shop.example", "name": " ", "role": "support"}, "Fill in “Name”."),
            (
                {"email": "nora@shop.example", "name": "Nora", "role": "boss"},
                "Choose a role: owner, support or developer.",
            ),
        ):
            refused = await owner.submit("/portal/team", INVITE, fields)
            assert refused.status_code == 422, (fields, refused.text[:300])
            assert problem in words(refused.text)
            assert 'aria-invalid="true"' in refused.text
        assert await user_of(api, "nora@shop.example") is None
        bad_role = await owner.submit("/portal/team", f"/portal/team/{me.id}/role", {"role": "x"})
        assert bad_role.status_code == 422 and "Choose a role" in words(bad_role.text)

        # With a second owner, the first may step down, and then has no Team page.
        second = await member(api, mine, "owner", name="Otto Owner")
        assert "2 owners" in words((await owner.get("/portal/team")).text)
        stepped = await owner.submit(
            "/portal/team", f"/portal/team/{me.id}/role", {"role": "developer"}
        )
        assert stepped.status_code == 303
        assert (await owner.get("/portal/team")).status_code == 403
        otto = await Portal.signed_in(api, second)
        try:
            otto_me = await user_of(api, second.email)
            assert otto_me is not None
            # Otto removes himself? Not while he is the last owner.
            alone = await otto.submit("/portal/team", f"/portal/team/{otto_me.id}/remove")
            assert alone.status_code == 409
        finally:
            await otto.close()
    finally:
        await owner.close()


async def test_developers_have_no_team_page_and_other_shops_people_are_not_found(
    full_api: FullApi,
) -> None:
    api = full_api
    mine, other = await shop(api), await shop(api, name="Other Shop")
    theirs = await member(api, other, "support")
    their_user = await user_of(api, theirs.email)
    assert their_user is not None
    developer = await Portal.signed_in(api, await member(api, mine, "developer"))
    owner = await Portal.signed_in(api, mine.owner)
    try:
        refused = await developer.get("/portal/team")
        assert refused.status_code == 403 and "manage the team" in words(refused.text)
        invite = await developer.post(
            INVITE,
            {"csrf": csrf_of(refused.text), "email": "x@shop.example", "name": "X"},
        )
        assert invite.status_code == 403 and await user_of(api, "x@shop.example") is None

        page = await owner.get("/portal/team")
        assert theirs.email not in page.text
        fields = {"csrf": csrf_of(page.text), "nonce": "n" * 22, "role": "owner"}
        for action in ("role", "remove", "resend"):
            answer = await owner.post(f"/portal/team/{their_user.id}/{action}", fields)
            assert answer.status_code == 404, action
            assert "Not on your team" in words(answer.text)
        after = await user_of(api, theirs.email)
        assert after is not None and after.role == "support"
    finally:
        await developer.close()
        await owner.close()
