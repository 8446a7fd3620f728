"""The support team's console at /support, over HTTP against real parts: the API and its worker
on the Temporal dev server, SQLite and PostgreSQL, a real SMTP sink.

Every change made through the console goes through the case's workflow: the tests read the
result back through the agents' JSON API, not through the page alone.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.cases.console import Console, assert_page_headers, csrf_of
from tests.cases.test_cases_api import (
    ADMIN,
    agent,
    as_agent,
    failed_request,
    merchant,
    open_case,
)
from tests.conftest import suite_converter
from tests.helpers.api import Api, order_json
from tests.helpers.production import FullApi, full_api, full_api_running
from tests.personalization.conftest import Page

__all__ = ["full_api"]


@pytest.fixture
async def browser_of(full_api: FullApi) -> AsyncIterator[Any]:
    """Opens a console per agent (own cookies); all are closed at the end."""
    opened: list[Console] = []

    def open_one() -> Console:
        opened.append(Console.of(full_api))
        return opened[-1]

    yield open_one
    for one in opened:
        await one.close()


async def signed_in(api: Api, browser_of: Any, who: dict[str, Any]) -> Console:
    console = browser_of()
    response = await console.sign_in(who["token"])
    assert response.status_code == 303, response.text
    return console


async def agent_case(api: Api, who: dict[str, Any], case_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/agent/cases/{case_id}", headers=as_agent(who))
    assert response.status_code == 200, response.text
    return dict(response.json())


def set_cookie(response: Any, name: str) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return str(header)


def queue_numbers(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="case-(\d+)">', html)]


async def test_an_agent_signs_in_with_their_token_and_gets_a_session_not_the_token(
    full_api: FullApi, browser_of: Any
) -> None:
    api = full_api
    sam = await agent(api)
    console = browser_of()

    # Not signed in: every console page sends the agent to the sign-in form.
    for path in ("/support", "/support/cases/case_x"):
        away = await console.http.get(path)
        assert away.status_code == 303 and away.headers["location"].startswith("/support/login")
        assert_page_headers(away)
    assert (await console.http.get("/support/cases/case_x")).headers[
        "location"
    ] == "/support/login?next=%2Fsupport%2Fcases%2Fcase_x"

    form = await console.page("/support/login")
    page = Page(form.text)
    token_input = page.find("input", name="token")[0]
    assert token_input["type"] == "password" and page.label_of(token_input) == "Agent token"
    csrf = csrf_of(form.text)

    # A wrong token, and the token of a deactivated agent: the form again, 401, a clear error.
    wrong = await console.http.post("/support/login", data={"csrf": csrf, "token": "pfagt_no"})
    assert wrong.status_code == 401
    assert_page_headers(wrong)
    assert "not valid" in Page(wrong.text).text and 'role="alert"' in wrong.text
    assert "pf_support=" not in wrong.headers.get("set-cookie", "")
    gone = await agent(api, name="Gone Agent")
    off = await api.client.post(f"/v1/admin/agents/{gone['id']}/deactivate", headers=ADMIN)
    assert off.status_code == 200, off.text
    inactive = await console.http.post(
        "/support/login", data={"csrf": csrf, "token": gone["token"]}
    )
    assert inactive.status_code == 401

    signed = await console.http.post(
        "/support/login", data={"csrf": csrf, "token": f"  {sam['token']} "}
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/support"
    assert_page_headers(signed)
    cookie = set_cookie(signed, "pf_support")
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/support" in flags
    assert "max-age=43200" in flags
    assert "secure" not in flags  # PUBLIC_BASE_URL is http here
    value = cookie.split(";")[0].removeprefix("pf_support=")
    assert sam["token"] not in value and sam["token"][6:30] not in value

    queue = await console.page("/support")
    assert "Signed in as Sam Support" in Page(queue.text).text

    # A forged or altered session is no session.
    other = browser_of()
    sid, agent_id, expires, signature = value.split(".")
    forged = f"{sid}.{gone['id']}.{expires}.{signature}"
    other.http.cookies.set("pf_support", forged, path="/support")
    assert (await other.http.get("/support")).status_code == 303

    # Signing out needs the form's token; then the session is gone from the browser.
    refused = await console.http.post("/support/logout", data={})
    assert refused.status_code == 403
    assert (await console.http.get("/support")).status_code == 200
    out = await console.submit("/support", "/support/logout")
    assert out.status_code == 303 and out.headers["location"] == "/support/login?signed_out=1"
    assert "max-age=0" in set_cookie(out, "pf_support").lower()
    assert (await console.http.get("/support")).status_code == 303


async def test_a_deactivated_agents_session_ends_at_once(
    full_api: FullApi, browser_of: Any
) -> None:
    api = full_api
    kim = await agent(api, name="Kim Leaving")
    console = await signed_in(api, browser_of, kim)
    await console.page("/support")
    off = await api.client.post(f"/v1/admin/agents/{kim['id']}/deactivate", headers=ADMIN)
    assert off.status_code == 200
    assert (await console.http.get("/support")).status_code == 303


async def test_the_cookie_is_secure_when_the_console_is_served_over_https(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with full_api_running(
        dev_env, f"sqlite:///{tmp_path / 'https.db'}", tmp_path, base_url="https://console.test"
    ) as api:
        sam = await agent(api)
        console = Console.of(api)
        try:
            signed = await console.sign_in(sam["token"])
            assert signed.status_code == 303
            assert "secure" in [
                p.strip().lower() for p in set_cookie(signed, "pf_support").split(";")
            ]
            assert (await console.http.get("/support")).status_code == 200
        finally:
            await console.close()


async def test_forms_without_this_sessions_csrf_token_are_refused_and_change_nothing(
    full_api: FullApi, browser_of: Any
) -> None:
    api = full_api
    sam, kim = await agent(api), await agent(api, name="Kim Other")
    case = await open_case(api, Api.auth(await merchant(api)))
    console = await signed_in(api, browser_of, sam)
    other = await signed_in(api, browser_of, kim)
    theirs = csrf_of((await other.page("/support")).text)
    ours = csrf_of((await console.page("/support")).text)
    assert theirs != ours

    for action, fields in (
        ("reply", {"body": "Sneaky reply", "waiting_on_merchant": "yes"}),
        ("assign", {}),
        ("resolve", {}),
    ):
        path = f"/support/cases/{case['id']}/{action}"
        for token in (None, "", theirs, ours[:-2] + "xx"):
            data = dict(fields) | ({"csrf": token} if token is not None else {})
            refused = await console.http.post(path, data=data)
            assert refused.status_code == 403, (action, token, refused.text)
            assert_page_headers(refused)
            assert "Nothing was changed" in Page(refused.text).text
    seen = await agent_case(api, sam, case["id"])
    assert (seen["status"], seen["assignee"], len(seen["messages"])) == ("open", None, 1)

    # The sign-in form too: its token belongs to the browser that loaded the form.
    fresh = browser_of()
    await fresh.http.get("/support/login")
    stranger = browser_of()
    their_form = csrf_of((await stranger.http.get("/support/login")).text)
    for token in (None, their_form):
        data = {"token": sam["token"]} | ({"csrf": token} if token else {})
        refused = await fresh.http.post("/support/login", data=data)
        assert refused.status_code == 403
        assert "pf_support=" not in refused.headers.get("set-cookie", "")
    assert (await fresh.http.get("/support")).status_code == 303
    # And with no cookie at all (a form posted from another site).
    bare = browser_of()
    lone = await bare.http.post("/support/login", data={"csrf": their_form, "token": sam["token"]})
    assert lone.status_code == 403


async def test_the_queue_shows_cases_soonest_due_first_with_filters_and_pages(
    full_api: FullApi, browser_of: Any
) -> None:
    api = full_api
    sam = await agent(api)
    cora = await agent(api, role="csm", name="Cora Success")
    free = Api.auth(await merchant(api, "free", name="Slow Shop"))
    growth = Api.auth(await merchant(api, "growth", name="Fast Shop"))
    premium_shop = await merchant(api, "premium", name="Big Shop")
    patch = await api.client.patch(
        f"/v1/admin/merchants/{premium_shop['id']}",
        json={"csm_agent_id": cora["id"]},
        headers=ADMIN,
    )
    assert patch.status_code == 200, patch.text
    slow = await open_case(api, free, subject="Slow one")
    fast = await open_case(api, growth, subject="Fast one")
    commercial = await open_case(api, Api.auth(premium_shop), subject="Invoice", category="billing")
    console = await signed_in(api, browser_of, sam)

    queue = await console.page("/support")
    numbers = queue_numbers(queue.text)
    assert numbers.index(fast["number"]) < numbers.index(slow["number"])
    page = Page(queue.text)
    row = page.texts[f"case-{fast['number']}"]
    assert "Fast one" in row and "Fast Shop" in row and "growth / priority" in row
    assert "open" in row and "On track" in row and re.search(r"in \d+ (day|hour|minute)", row)
    assert 'class="badge sla-on_track"' in queue.text
    assert page.find("select", id="queue") and page.label_of(page.find("select", id="queue")[0])
    assert '<th scope="col">Due</th>' in queue.text

    support_only = queue_numbers((await console.page("/support?queue=support")).text)
    assert commercial["number"] not in support_only and fast["number"] in support_only
    assert queue_numbers((await console.page("/support?queue=csm")).text) == [commercial["number"]]
    assert queue_numbers((await console.page("/support?queue=mine")).text) == []
    assigned = await console.submit(
        f"/support/cases/{slow['id']}", f"/support/cases/{slow['id']}/assign"
    )
    assert assigned.status_code == 303
    assert queue_numbers((await console.page("/support?queue=mine")).text) == [slow["number"]]

    replied = await console.submit(
        f"/support/cases/{fast['id']}",
        f"/support/cases/{fast['id']}/reply",
        {"body": "Which file?", "waiting_on_merchant": "yes"},
    )
    assert replied.status_code == 303
    paused = await console.page("/support?sla_state=paused")
    assert queue_numbers(paused.text) == [fast["number"]]
    assert "Paused" in Page(paused.text).texts[f"case-{fast['number']}"]
    assert fast["number"] not in queue_numbers(
        (await console.page("/support?sla_state=on_track")).text
    )
    assert (await console.http.get("/support?queue=nobody")).status_code == 400
    assert (await console.http.get("/support?cursor=not-a-cursor")).status_code == 400

    # Pages of one: each case once, in the queue's order, by the "Next page" links.
    everything = queue_numbers((await console.page("/support")).text)
    seen, path = [], "/support?limit=1"
    while path:
        response = await console.page(path)
        seen += queue_numbers(response.text)
        found = re.search(r'<a href="([^"]+)" rel="next">', response.text)
        path = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == everything and len(seen) == 3


async def test_reply_assign_and_resolve_change_the_case_through_its_workflow(
    full_api: FullApi, browser_of: Any
) -> None:
    api = full_api
    shop = await merchant(api, "growth", name="Label Shop")
    key = Api.auth(shop)
    sam = await agent(api)
    case = await open_case(api, key, subject="Labels are cut off")
    console = await signed_in(api, browser_of, sam)
    path = f"/support/cases/{case['id']}"

    page = Page((await console.page(path)).text)
    assert f"Case #{case['number']}: Labels are cut off" in page.text
    assert "Order SHOP-1 left a week ago." in page.text and "Label Shop (merchant)" in page.text
    assert page.texts["fact-status"] == "open" and page.texts["fact-sla"] == "On track"
    body = page.find("textarea", name="body")[0]
    assert page.label_of(body) == "Your reply" and "required" in body
    waiting_box = page.find("input", name="waiting_on_merchant")[0]
    assert page.label_of(waiting_box) == "Waiting on merchant"

    # An empty reply is refused on the page; nothing reaches the case.
    empty = await console.submit(path, f"{path}/reply", {"body": "   "})
    assert empty.status_code == 422 and "Write a reply" in Page(empty.text).text

    replied = await console.submit(
        path,
        f"{path}/reply",
        {"body": "Which printer profile?\nA screenshot helps.", "waiting_on_merchant": "yes"},
    )
    assert replied.status_code == 303 and replied.headers["location"] == f"{path}?done=replied"
    after = Page((await console.page(replied.headers["location"])).text)
    assert "Your reply was sent" in after.text and "Sam Support (support team)" in after.text
    assert "A screenshot helps." in after.text
    assert (after.texts["fact-status"], after.texts["fact-sla"]) == (
        "waiting on merchant",
        "Paused",
    )
    seen = await agent_case(api, sam, case["id"])
    assert (seen["status"], seen["sla"]["state"]) == ("waiting_on_merchant", "paused")
    assert seen["messages"][-1]["body"] == "Which printer profile?\nA screenshot helps."
    mail = await api.mail.wait_for(lambda m: f"[Case #{case['number']}]" in str(m["Subject"]))
    assert str(mail["To"]) == shop["support_email"]

    assigned = await console.submit(path, f"{path}/assign")
    assert assigned.status_code == 303
    assert Page((await console.page(path)).text).texts["fact-assignee"] == "Sam Support"
    assert (await agent_case(api, sam, case["id"]))["assignee"] == sam["id"]

    resolved = await console.submit(path, f"{path}/resolve")
    assert resolved.status_code == 303
    done = Page((await console.page(path)).text)
    assert (done.texts["fact-status"], done.texts["fact-sla"]) == ("resolved", "Met")
    assert (await agent_case(api, sam, case["id"]))["status"] == "resolved"

    # A refusal of the workflow is a message on the page, with the API's status.
    page_csrf = csrf_of((await console.page(path)).text)
    twice = await console.http.post(f"{path}/resolve", data={"csrf": page_csrf})
    assert twice.status_code == 409
    assert_page_headers(twice)
    assert 'role="alert"' in twice.text and "Nothing was changed" in Page(twice.text).text

    closed = await api.client.post(f"/v1/support/cases/{case['id']}/close", headers=key)
    assert closed.status_code == 200
    late = await console.http.post(
        f"{path}/reply", data={"csrf": page_csrf, "body": "One more thing"}
    )
    assert late.status_code == 409 and "closed" in Page(late.text).text
    assert "One more thing" not in [
        m["body"] for m in (await agent_case(api, sam, case["id"]))["messages"]
    ]
    assert not Page((await console.page(path)).text).find("textarea", name="body")

    missing = await console.page("/support/cases/case_nope", status=404)
    assert "Case not found" in Page(missing.text).text
    unknown = await console.http.post(f"{path}/delete", data={"csrf": page_csrf})
    assert unknown.status_code == 404 and "no such form" in Page(unknown.text).text


async def test_a_change_temporal_never_answers_is_not_shown_as_refused(
    full_api: FullApi, browser_of: Any
) -> None:
    # Temporal cannot be reached: the reply may or may not reach the case later, so the page must
    # not say "Nothing was changed" as it does for a refusal; what was typed stays in the form.
    api = full_api
    sam = await agent(api)
    case = await open_case(api, Api.auth(await merchant(api)))
    console = await signed_in(api, browser_of, sam)
    path = f"/support/cases/{case['id']}"
    reachable = api.app.state.temporal
    api.app.state.temporal = await Client.connect(
        "127.0.0.1:1", lazy=True, data_converter=suite_converter()
    )
    try:
        lost = await console.submit(path, f"{path}/reply", {"body": "Checking with print."})
    finally:
        api.app.state.temporal = reachable
    assert lost.status_code == 503
    page = Page(lost.text)
    assert "The change may not have been made" in page.text
    assert "Nothing was changed" not in page.text
    assert page.control("body")["value"] == "Checking with print."


async def test_hostile_strings_render_as_text(full_api: FullApi, browser_of: Any) -> None:
    api = full_api
    script = '<script>alert("subject")</script>'
    image = '"><img src=x onerror=alert(1)>'
    shop = await merchant(api, name='<b onmouseover="x()">Evil</b> & Co')
    mallory = await agent(api, name="Mal <i>Agent</i>")
    case = await open_case(
        api,
        Api.auth(shop),
        subject=script,
        description=f"{image}\n<a href='javascript:alert(2)'>click</a> &amp;",
    )
    console = await signed_in(api, browser_of, mallory)
    path = f"/support/cases/{case['id']}"
    replied = await console.submit(
        path, f"{path}/reply", {"body": "<style>*{display:none}</style>"}
    )
    assert replied.status_code == 303

    for response in (await console.page("/support"), await console.page(path)):
        html = response.text
        for raw in ("<script", "<img", "<b ", "<i>", "<a href='javascript", "<style>*"):
            assert raw not in html, raw
        assert "&lt;script&gt;alert(&#34;subject&#34;)&lt;/script&gt;" in html
        text = Page(html).text
        assert script in text and '<b onmouseover="x()">Evil</b> & Co' in text
        assert "Mal <i>Agent</i>" in text
    page_text = Page((await console.page(path)).text).text
    assert (
        image in page_text
        and "&amp;" in page_text
        and "<style>*{display:none}</style>" in page_text
    )


async def test_the_case_page_shows_the_linked_order_and_the_merchants_failed_requests(
    full_api: FullApi, browser_of: Any
) -> None:
    api = full_api
    key = Api.auth(await merchant(api, name="Order Shop"))
    created = await api.client.post("/v1/orders", json=order_json("SHOP-77"), headers=key)
    assert created.status_code == 201, created.text
    order = created.json()
    failed = await failed_request(api, key, "ord_missing")
    case = await open_case(api, key, order_id=order["id"], request_ids=[failed])
    console = await signed_in(api, browser_of, await agent(api))

    response = await console.page(f"/support/cases/{case['id']}")
    page = Page(response.text)
    assert page.texts["order-id"] == order["id"] and "SHOP-77" in page.text
    assert page.texts["order-status"] == order["status"].replace("_", " ")
    assert not page.find("a", href=f"/v1/orders/{order['id']}")  # shown, not linked
    requests = page.texts["requests-table"]
    for part in (failed, "GET /v1/orders/{order_id}", "404", "order_not_found"):
        assert part in requests, part
    assert "No order linked." not in page.text


NONCE = re.compile(r'<input type="hidden" name="nonce" value="([^"]+)">')


async def test_a_form_sent_twice_changes_the_case_once(full_api: FullApi, browser_of: Any) -> None:
    """Each page's forms carry a nonce, the Update's id: a double click, or a resend after a
    page that said the change may not have been made, replies once."""
    api = full_api
    sam = await agent(api)
    case = await open_case(api, Api.auth(await merchant(api)))
    console = await signed_in(api, browser_of, sam)
    path = f"/support/cases/{case['id']}"
    shown = (await console.page(path)).text
    nonces = set(NONCE.findall(shown))
    assert len(nonces) == 1, nonces
    nonce = nonces.pop()
    form = {"csrf": csrf_of(shown), "nonce": nonce, "body": "Sent twice?"}

    first = await console.http.post(f"{path}/reply", data=form)
    again = await console.http.post(f"{path}/reply", data=form)
    assert (first.status_code, again.status_code) == (303, 303), again.text
    bodies = [m["body"] for m in (await agent_case(api, sam, case["id"]))["messages"]]
    assert bodies.count("Sent twice?") == 1, bodies
    assert NONCE.findall((await console.page(path)).text)[0] != nonce, "a new page, a new form"

    # Temporal does not answer: the page says so and keeps the form's nonce for the resend.
    reachable = api.app.state.temporal
    api.app.state.temporal = await Client.connect(
        "127.0.0.1:1", lazy=True, data_converter=suite_converter()
    )
    shown = (await console.page(path)).text
    form = {"csrf": csrf_of(shown), "nonce": NONCE.findall(shown)[0], "body": "Once more"}
    try:
        lost = await console.http.post(f"{path}/reply", data=form)
    finally:
        api.app.state.temporal = reachable
    assert lost.status_code == 503, lost.text
    assert NONCE.findall(lost.text) == [form["nonce"]] * len(NONCE.findall(lost.text))
    for _ in range(2):
        resent = await console.http.post(f"{path}/reply", data=form)
        assert resent.status_code == 303, resent.text
    bodies = [m["body"] for m in (await agent_case(api, sam, case["id"]))["messages"]]
    assert bodies.count("Once more") == 1, bodies
