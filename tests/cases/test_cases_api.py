"""Support cases through the API, against real parts: the Temporal dev server with a worker,
SQLite and PostgreSQL, a real SMTP sink and a real webhook receiver.

Merchants open cases with their key; the support team answers with agent tokens; every change
goes through the case's workflow and is back in the read model when the API answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey

from api.relay import CaseStarter
from db.models import SupportCase, SupportCaseStart
from domain.business_time import add
from domain.cases import resolved_calendar
from domain.support import load_support
from tests.conftest import suite_converter
from tests.helpers.api import ADMIN_TOKEN, Api
from tests.helpers.api import started as workflow_started
from tests.helpers.polling import apoll
from tests.helpers.production import FullApi, full_api, tracking
from tests.orders.test_idempotency import retried_after_a_lost_answer

__all__ = ["full_api"]

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
SUPPORT = load_support()


def case_json(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "support_request",
        "category": "orders",
        "subject": "Where is my order?",
        "description": "Order SHOP-1 left a week ago.\nNo tracking since.",
    }
    body.update(overrides)
    return body


async def merchant(api: Api, plan: str = "free", **extra: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/admin/merchants",
        json={
            "name": f"{plan.title()} Shop",
            "support_email": "help@mugs.example.com",
            "plan": plan,
            **extra,
        },
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def agent(api: Api, role: str = "agent", name: str = "Sam Support") -> dict[str, Any]:
    first = name.split()[0].lower()
    response = await api.client.post(
        "/v1/admin/agents",
        json={"name": name, "email": f"{first}@printflow.test", "role": role},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def as_agent(who: dict[str, Any]) -> dict[str, str]:
    return {"X-Agent-Token": who["token"]}


async def open_case(api: Api, key: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await api.client.post("/v1/support/cases", json=case_json(**body), headers=key)
    assert response.status_code == 201, response.text
    return dict(response.json())


def due(target: str, start: str) -> datetime:
    """The deadline the support file gives ``target`` from ``start`` (an ISO instant)."""
    at = datetime.fromisoformat(start)
    kind, key = target.split(":")
    calendar = resolved_calendar(SUPPORT.calendar, at.date())
    return add(calendar, at, getattr(SUPPORT.targets[key], kind))


async def test_a_merchant_opens_a_case_and_its_workflow_runs_it(full_api: FullApi) -> None:
    api = full_api
    shop = await merchant(api)
    key = Api.auth(shop)
    case = await open_case(api, key)
    assert case["id"].startswith("case_") and case["number"] >= 1001
    assert (case["status"], case["priority"], case["channel"]) == ("open", "normal", "ticket")
    assert (case["queue"], case["assignee"]) == ("support", None)
    assert case["sla"]["state"] == "on_track"
    first_due = datetime.fromisoformat(case["sla"]["first_response_due_at"])
    assert first_due == due("first_response:normal", case["created_at"])
    assert [m["body"] for m in case["messages"]] == [
        "Order SHOP-1 left a week ago.\nNo tracking since."
    ]

    handle = api.temporal.get_workflow_handle(case["id"])
    described = await workflow_started(handle)
    attributes = described.typed_search_attributes
    assert attributes.get(SearchAttributeKey.for_keyword("CaseStatus")) == "open"
    assert attributes.get(SearchAttributeKey.for_keyword("MerchantId")) == shop["id"]
    assert attributes.get(SearchAttributeKey.for_datetime("SlaDueAt")) == first_due
    assert (
        await described.static_summary()
        == f"Case #{case['number']} of Free Shop: Where is my order?"
    )

    second = await open_case(api, key, subject="Invoice question", category="billing")
    assert second["number"] == case["number"] + 1

    read = await api.client.get(f"/v1/support/cases/{case['id']}", headers=key)
    assert read.status_code == 200 and read.json()["messages"] == case["messages"]
    other = Api.auth(await merchant(api))
    for path in (f"/v1/support/cases/{case['id']}", f"/v1/support/cases/{case['id']}/close"):
        call = api.client.get if path.endswith(case["id"]) else api.client.post
        response = await call(path, headers=other)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "case_not_found"


async def test_what_the_plan_includes_decides_channel_and_priority(full_api: FullApi) -> None:
    api = full_api
    free = Api.auth(await merchant(api, "free"))
    refused = await api.client.post(
        "/v1/support/cases",
        json=case_json(channel="callback", phone="+31 20 123 4567"),
        headers=free,
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "not_in_plan"
    growth = Api.auth(await merchant(api, "large_shop"))  # the legacy name of growth
    assert (
        await api.client.post(
            "/v1/support/cases",
            json=case_json(channel="callback", phone="+31 20 1"),
            headers=growth,
        )
    ).json()["error"]["code"] == "not_in_plan"
    quick = await open_case(api, growth, channel="chat")
    assert quick["priority"] == "priority"
    assert datetime.fromisoformat(quick["sla"]["first_response_due_at"]) == due(
        "first_response:priority", quick["created_at"]
    )

    premium = Api.auth(await merchant(api, "premium"))
    no_phone = await api.client.post(
        "/v1/support/cases", json=case_json(channel="callback"), headers=premium
    )
    assert no_phone.status_code == 422 and "phone" in no_phone.json()["error"]["message"]
    callback = await open_case(api, premium, channel="callback", phone="+31 20 123 4567")
    assert (callback["channel"], callback["priority"], callback["phone"]) == (
        "callback",
        "priority",
        "+31 20 123 4567",
    )
    assert datetime.fromisoformat(callback["sla"]["first_response_due_at"]) == due(
        "first_response:callback", callback["created_at"]
    )


async def test_a_parcel_complaint_needs_a_shipped_order_of_the_merchant_and_photos(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await merchant(api))
    order = await api.in_production(key)

    async def complain(**body: Any) -> Any:
        payload = case_json(type="parcel_complaint", category="shipments", **body)
        return await api.client.post("/v1/support/cases", json=payload, headers=key)

    damaged = {"kind": "damaged", "photo_urls": ["https://photos.example/box.jpg"]}
    missing = await complain(complaint=damaged)
    assert missing.status_code == 422 and "order_id" in missing.json()["error"]["message"]
    unshipped = await complain(order_id=order["id"], complaint=damaged)
    assert unshipped.status_code == 422
    assert unshipped.json()["error"]["code"] == "order_not_shipped"
    foreign = await complain(order_id="ord_someone_else", complaint=damaged)
    assert foreign.json()["error"]["code"] == "unknown_order"

    assert (await api.event(order["id"], "shipped", **tracking("PKG-1"))).status_code == 202
    await api.until(key, order["id"], lambda o: o["status"] == "shipped")
    no_photo = await complain(order_id=order["id"], complaint={"kind": "quality"})
    assert no_photo.status_code == 422 and "photo" in no_photo.json()["error"]["message"]
    lost = await complain(order_id=order["id"], complaint={"kind": "lost"})
    assert lost.status_code == 201, lost.text
    case = await complain(order_id=order["id"], complaint=damaged)
    assert case.status_code == 201, case.text
    body = case.json()
    assert body["order_id"] == order["id"] and body["type"] == "parcel_complaint"
    assert body["complaint"] == damaged
    # Somebody else's merchant cannot point at this order either.
    other = Api.auth(await merchant(api))
    stranger = await api.client.post(
        "/v1/support/cases",
        json=case_json(
            type="parcel_complaint", category="shipments", order_id=order["id"], complaint=damaged
        ),
        headers=other,
    )
    assert stranger.json()["error"]["code"] == "unknown_order"


async def test_the_support_team_answers_pauses_and_resolves_and_the_merchant_closes(
    full_api: FullApi,
) -> None:
    api = full_api
    shop = await api.hooked_merchant(plan="growth")
    key = Api.auth(shop)
    sam = await agent(api)
    kim = await agent(api, name="Kim Second")
    normal = await open_case(api, Api.auth(await merchant(api)), subject="Slow")
    case = await open_case(api, key, subject="Labels are cut off")

    # The queue: soonest due first (the growth merchant's priority target comes first).
    queue = await api.client.get("/v1/agent/cases", headers=as_agent(sam))
    assert queue.status_code == 200, queue.text
    ids = [c["id"] for c in queue.json()["data"]]
    assert ids.index(case["id"]) < ids.index(normal["id"])
    assert (await api.client.get("/v1/agent/cases")).status_code == 401

    answered = await api.client.post(
        f"/v1/agent/cases/{case['id']}/messages",
        json={
            "body": "Which printer profile do you use?\nA screenshot helps.",
            "waiting_on_merchant": True,
        },
        headers=as_agent(sam),
    )
    assert answered.status_code == 200, answered.text
    waiting = answered.json()
    assert (waiting["status"], waiting["sla"]["state"]) == ("waiting_on_merchant", "paused")
    assert waiting["sla"]["next_response_due_at"] is None
    assert [(m["author_kind"], m["author_name"]) for m in waiting["messages"]] == [
        ("merchant", None),
        ("agent", "Sam Support"),
    ]
    mail = await api.mail.wait_for(lambda m: f"[Case #{case['number']}]" in str(m["Subject"]))
    assert str(mail["To"]) == shop["support_email"] == "help@hooks.example.com"
    assert "A screenshot helps." in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    paused = await api.client.get("/v1/agent/cases?sla_state=paused", headers=as_agent(sam))
    assert [c["id"] for c in paused.json()["data"]] == [case["id"]]

    again = await api.client.post(
        f"/v1/support/cases/{case['id']}/messages",
        json={"body": "Profile 'Glossy A4'.", "attachments": ["https://files.example/s.png"]},
        headers=key,
    )
    assert again.status_code == 200, again.text
    reopened = again.json()
    assert (reopened["status"], reopened["sla"]["state"]) == ("open", "on_track")
    assert reopened["sla"]["next_response_due_at"] is not None
    assert reopened["messages"][-1]["attachments"] == ["https://files.example/s.png"]

    assigned = await api.client.post(
        f"/v1/agent/cases/{case['id']}/assign",
        json={"agent_id": kim["id"]},
        headers=as_agent(sam),
    )
    assert assigned.status_code == 200 and assigned.json()["assignee"] == kim["id"]
    nobody = await api.client.post(
        f"/v1/agent/cases/{case['id']}/assign",
        json={"agent_id": "agt_nobody"},
        headers=as_agent(sam),
    )
    assert nobody.status_code == 422 and nobody.json()["error"]["code"] == "unknown_agent"

    resolved = await api.client.post(f"/v1/agent/cases/{case['id']}/resolve", headers=as_agent(kim))
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["sla"]["state"]) == ("resolved", "met")
    twice = await api.client.post(f"/v1/agent/cases/{case['id']}/resolve", headers=as_agent(kim))
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "case_resolved"

    closed = await api.client.post(f"/v1/support/cases/{case['id']}/close", headers=key)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    handle = api.temporal.get_workflow_handle(case["id"])
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    late = await api.client.post(
        f"/v1/support/cases/{case['id']}/messages", json={"body": "one more"}, headers=key
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "case_closed"
    gone = await api.client.get("/v1/agent/cases", headers=as_agent(sam))
    assert case["id"] not in [c["id"] for c in gone.json()["data"]]

    # Every change reached the merchant's webhook, in order, as support_case.updated.
    def case_events(receiver: Any) -> list[dict[str, Any]]:
        return [
            r.payload for r in receiver.accepted() if r.payload["type"] == "support_case.updated"
        ]

    await api.receiver.wait_for(lambda r: len(case_events(r)) == 5)
    events = case_events(api.receiver)
    assert [e["data"]["changes"] for e in events] == [
        ["agent_reply"],
        ["merchant_message"],
        ["assigned"],
        ["resolved"],
        ["closed"],
    ]
    assert [e["data"]["case"]["status"] for e in events] == [
        "waiting_on_merchant",
        "open",
        "open",
        "resolved",
        "closed",
    ]
    assert all(e["data"]["case"]["id"] == case["id"] for e in events)


async def test_commercial_questions_of_a_premium_merchant_go_to_their_csm(
    full_api: FullApi,
) -> None:
    api = full_api
    cora = await agent(api, role="csm", name="Cora Success")
    shop = await merchant(api, "premium")
    patched = await api.client.patch(
        f"/v1/admin/merchants/{shop['id']}", json={"csm_agent_id": cora["id"]}, headers=ADMIN
    )
    assert patched.status_code == 200, patched.text
    key = Api.auth(shop)
    billing = await open_case(api, key, category="billing", subject="Invoice 42")
    assert (billing["queue"], billing["assignee"]) == ("csm", cora["id"])
    orders = await open_case(api, key, category="orders")
    assert (orders["queue"], orders["assignee"]) == ("support", None)
    mine = await api.client.get("/v1/agent/cases?queue=csm", headers=as_agent(cora))
    assert billing["id"] in [c["id"] for c in mine.json()["data"]]
    assert orders["id"] not in [c["id"] for c in mine.json()["data"]]
    growth = Api.auth(await merchant(api, "growth"))
    assert (await open_case(api, growth, category="billing"))["queue"] == "support"


async def test_lists_page_through_every_case_once(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await merchant(api))
    made = [(await open_case(api, key, subject=f"case {i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query = "/v1/support/cases?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.client.get(query, headers=key)).json()
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    waiting = await api.client.get("/v1/support/cases?status=waiting_on_merchant", headers=key)
    assert waiting.json()["data"] == []

    sam = await agent(api)
    queued: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "/v1/agent/cases?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.client.get(query, headers=as_agent(sam))).json()
        queued += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [c["id"] for c in queued]
    assert len(ids) == len(set(ids)) and set(made) <= set(ids)
    dues = [c["sla"]["first_response_due_at"] for c in queued]
    assert dues == sorted(dues)


@pytest.mark.parametrize(
    "field, value",
    [("subject", "two\nlines"), ("description", "NUL \x00 here"), ("request_ids", ["a\rb"])],
)
async def test_control_characters_are_refused_but_message_text_keeps_its_lines(
    full_api: FullApi, field: str, value: Any
) -> None:
    api = full_api
    key = Api.auth(await merchant(api))
    refused = await api.client.post(
        "/v1/support/cases", json=case_json(**{field: value}), headers=key
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "validation_error"
    async with api.app.state.sessions() as session:
        assert (await session.exec(select(SupportCase))).all() == []


async def failed_request(api: Api, key: dict[str, str], order_id: str) -> str:
    """A request that fails (404), once the request log holds it: its X-Request-Id."""
    failed = await api.client.get(f"/v1/orders/{order_id}", headers=key)
    assert failed.status_code == 404
    request_id = failed.headers["X-Request-Id"]

    async def logged() -> bool:
        answer = await api.client.get(f"/v1/requests/{request_id}", headers=key)
        return answer.status_code == 200

    await apoll(f"request {request_id} to reach the request log", logged)
    return request_id


async def test_a_case_links_the_merchants_own_failed_requests_and_drops_the_rest(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await merchant(api))
    other = Api.auth(await merchant(api))
    mine = await failed_request(api, key, "ord_missing")
    theirs = await failed_request(api, other, "ord_elsewhere")
    worked = await api.client.get("/v1/support/plan", headers=key)
    assert worked.status_code == 200
    sent = ["req_unknown", mine, theirs, worked.headers["X-Request-Id"]]
    case = await open_case(api, key, request_ids=sent)
    assert case["request_ids"] == [mine]
    assert [
        (r["request_id"], r["method"], r["route"], r["status"], r["error_code"])
        for r in case["requests"]
    ] == [(mine, "GET", "/v1/orders/{order_id}", 404, "order_not_found")]
    read = (await api.client.get(f"/v1/support/cases/{case['id']}", headers=key)).json()
    assert read["requests"] == case["requests"]
    sam = await agent(api)
    seen = await api.client.get(f"/v1/agent/cases/{case['id']}", headers=as_agent(sam))
    assert seen.json()["requests"] == case["requests"]


async def test_a_case_opened_while_temporal_is_unreachable_is_answered_and_started_later(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await merchant(api))
    unreachable = await Client.connect("127.0.0.1:1", lazy=True, data_converter=suite_converter())
    down = CaseStarter(api.app.state.sessions, unreachable, api.settings)
    api.app.state.case_starter = down
    case = await open_case(api, key)
    await down.close()
    async with api.app.state.sessions() as session:
        waiting = await session.get(SupportCaseStart, case["id"])
        assert waiting is not None and waiting.last_error, "kept, with the reason"
    # The merchant writes again before the workflow ever ran: update-with-start.
    api.app.state.case_starter = CaseStarter(api.app.state.sessions, api.temporal, api.settings)
    more = await api.client.post(
        f"/v1/support/cases/{case['id']}/messages",
        json={"body": "Any news?"},
        headers=key,
    )
    assert more.status_code == 200, more.text
    assert [m["body"] for m in more.json()["messages"]][-1] == "Any news?"
    described = await api.temporal.get_workflow_handle(case["id"]).describe()
    assert described.status == WorkflowExecutionStatus.RUNNING

    # And the sweep finds nothing left to start twice.
    up = CaseStarter(api.app.state.sessions, api.temporal, api.settings)
    async with api.app.state.sessions() as session:
        row = await session.get(SupportCaseStart, case["id"])
        if row is not None:
            row.due_at = datetime.now(UTC)
            await session.commit()
    await up.sweep()
    await up.close()
    async with api.app.state.sessions() as session:
        assert await session.get(SupportCaseStart, case["id"]) is None


async def test_a_case_is_made_once_when_its_answer_is_lost_or_fails_after_the_commit(
    full_api: FullApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = full_api
    key = {"X-API-Key": (await merchant(api))["api_key"]}

    async def cases_titled(subject: str) -> int:
        async with api.app.state.sessions() as session:
            query = select(SupportCase.id).where(SupportCase.subject == subject)
            return len((await session.exec(query)).all())

    headers = key | {"Idempotency-Key": "case-lost-answer"}
    body = case_json(subject="Lost answer")
    await retried_after_a_lost_answer(api, monkeypatch, "/v1/support/cases", body, headers)
    assert await cases_titled("Lost answer") == 1

    # Something fails after the commit: the 503 keeps no answer, and the retry runs again,
    # which finds the case the first run made.
    starter = api.app.state.case_starter
    start_soon = starter.start_soon

    def start_then_fail(case_id: str) -> None:
        start_soon(case_id)
        monkeypatch.setattr(starter, "start_soon", start_soon)
        raise ConnectionError("injected after the commit")

    monkeypatch.setattr(starter, "start_soon", start_then_fail)
    headers = key | {"Idempotency-Key": "case-after-commit"}
    body = case_json(subject="After the commit")
    failed = await api.client.post("/v1/support/cases", json=body, headers=headers)
    assert failed.status_code == 503, failed.text
    retried = await api.client.post("/v1/support/cases", json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    assert await cases_titled("After the commit") == 1
    await workflow_started(api.temporal.get_workflow_handle(retried.json()["id"]))
