"""What a facility reports through ``POST /v1/production/events``, and what merchants then see.

Real dev server, real database (SQLite and PostgreSQL), real worker; events are posted with the
facility's token; webhooks go to a real receiver that verifies every signature.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    SignalWorkflowInput,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.webhooks.emitter import ON_HOLD, SHIPMENT_CREATED, STATUS_UPDATED
from api.services.production import pass_recorded
from db.models import ProductionEvent
from tests.helpers.api import Api, order_json
from tests.helpers.polling import apoll
from tests.helpers.production import TOKENS, FullApi, tracking


async def _events_stored(api: FullApi, order_id: str) -> int:
    async with api.app.state.sessions() as session:
        query = select(func.count()).select_from(ProductionEvent)
        result = await session.exec(query.where(ProductionEvent.order_id == order_id))
        return int(result.one())


async def _stored(api: FullApi, event_id: str) -> ProductionEvent:
    async with api.app.state.sessions() as session:
        query = select(ProductionEvent).where(ProductionEvent.event_id == event_id)
        return (await session.exec(query)).one()


async def _reports_signaled(api: FullApi, order_id: str) -> int:
    """How many facility reports the order's workflow history holds, repeats included."""
    history = await api.temporal.get_workflow_handle(order_id).fetch_history()
    return sum(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and e.workflow_execution_signaled_event_attributes.signal_name == "facility_event"
        for e in history.events
    )


class _Signals(Interceptor):
    """The API's signals to workflows, on a real client, as Temporal answers them when it is
    down (``refuse``: UNAVAILABLE), when it rejects the signals to one workflow (``reject``:
    INVALID_ARGUMENT) or slow (``hold``: each waits for ``release``)."""

    def __init__(
        self, *, refuse: bool = False, reject: str | None = None, hold: bool = False
    ) -> None:
        self.refuse = refuse
        self.reject = reject
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        signals = self

        class Outbound(OutboundInterceptor):
            async def signal_workflow(self, input: SignalWorkflowInput) -> None:
                if signals.refuse:
                    raise RPCError("the service is unavailable", RPCStatusCode.UNAVAILABLE, b"")
                if input.id == signals.reject:
                    raise RPCError("history too large", RPCStatusCode.INVALID_ARGUMENT, b"")
                signals.waiting.set()
                await signals.release.wait()
                await super().signal_workflow(input)

        return Outbound(next)


@asynccontextmanager
async def _signals(api: FullApi, signals: _Signals) -> AsyncIterator[_Signals]:
    """The API process signals through ``signals`` meanwhile."""
    reachable = api.app.state.temporal
    api.app.state.temporal = Client(**{**reachable.config(), "interceptors": [signals]})
    try:
        yield signals
    finally:
        signals.release.set()
        api.app.state.temporal = reachable


async def test_printed_two_packages_and_delivered_reach_the_order_and_its_webhooks(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await api.hooked_merchant())
    order = await api.in_production(key, "EVT-1")
    oid = order["id"]

    printed = await api.event(oid, "printed")
    assert (printed.status_code, printed.json()) == (202, {"accepted": True, "duplicate": False})
    await api.until(key, oid, lambda o: o["status"] == "printed")
    assert (await api.event(oid, "shipped", **tracking("PKG1"))).status_code == 202
    assert (await api.event(oid, "shipped", **tracking("PKG2"))).status_code == 202
    shipped = await api.until(key, oid, lambda o: len(o["shipments"]) == 2)
    assert shipped["status"] == "shipped"
    assert [s["tracking_code"] for s in shipped["shipments"]] == ["PKG1", "PKG2"]
    assert shipped["shipments"][0]["tracking_url"] == "https://tracking.example/PKG1"
    assert (await api.event(oid, "delivered")).status_code == 202
    done = await api.until(key, oid, lambda o: o["status"] == "delivered")
    types = [e["type"] for e in done["events"]]
    assert types[-5:] == ["in_production", "printed", "shipment", "shipment", "delivered"]
    assert done["allowed_actions"]["reorder"] is True

    # The merchant's receiver heard all of it, in order, each request signed.
    def heard_all(r: object) -> bool:
        return "delivered" in [x.payload["data"].get("status") for x in api.receiver.accepted()]

    await api.receiver.wait_for(heard_all)
    received = [r.payload for r in api.receiver.accepted()]
    assert all(r.verified for r in api.receiver.requests)
    ids = [p["id"] for p in received]
    assert len(ids) == len(set(ids)), "each event once"
    statuses = [p["data"]["status"] for p in received if p["type"] == STATUS_UPDATED]
    assert statuses == ["in_production", "printed", "shipped", "delivered"]
    shipments = [p["data"]["shipment"] for p in received if p["type"] == SHIPMENT_CREATED]
    assert [s["tracking_code"] for s in shipments] == ["PKG1", "PKG2"]
    assert {p["data"]["order"]["id"] for p in received} == {oid}
    assert received[-1]["data"]["order"]["status"] == "delivered"


async def test_a_missing_or_wrong_token_is_401_and_nothing_is_recorded(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    order = await api.in_production(key)
    body = {"event_id": "e-" + uuid.uuid4().hex, "order_id": order["id"], "type": "printed"}
    for headers in (
        {},
        {"Authorization": "Bearer not-a-facility"},
        {"Authorization": f"Basic {TOKENS['reykjavik']}"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "pf_whatever"},
    ):
        response = await api.client.post("/v1/production/events", json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert TOKENS["reykjavik"] not in response.text
    # Without a valid token a caller learns nothing, not even that the body is invalid.
    bad = await api.client.post("/v1/production/events", json={"nope": 1})
    assert bad.status_code == 401
    assert await _events_stored(api, order["id"]) == 0
    assert (await api.order(key, order["id"]))["status"] == "in_production"


async def test_another_facilitys_order_or_an_unknown_order_is_404(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    order = await api.in_production(key)
    other = await api.event(order["id"], "printed", facility="berlin")
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "order_not_found"
    unknown = await api.event("ord_" + uuid.uuid4().hex, "printed")
    assert unknown.status_code == 404
    assert await _events_stored(api, order["id"]) == 0
    assert (await api.order(key, order["id"]))["status"] == "in_production"


async def test_a_repeated_event_id_is_a_no_op(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    order = await api.in_production(key)
    body = {"event_id": "dup-" + uuid.uuid4().hex, "order_id": order["id"], "type": "printed"}
    auth = {"Authorization": f"Bearer {TOKENS['reykjavik']}"}
    first = await api.client.post("/v1/production/events", json=body, headers=auth)
    again = await api.client.post("/v1/production/events", json=body, headers=auth)
    assert first.json() == {"accepted": True, "duplicate": False}
    assert (again.status_code, again.json()) == (202, {"accepted": True, "duplicate": True})
    seen = await api.until(key, order["id"], lambda o: o["status"] == "printed")
    assert [e["type"] for e in seen["events"]].count("printed") == 1
    assert await _events_stored(api, order["id"]) == 1

    # The same id for another order is no retry: refusing it beats silently dropping it.
    second = await api.in_production(key)
    clash = await api.client.post(
        "/v1/production/events", json={**body, "order_id": second["id"]}, headers=auth
    )
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "event_id_conflict"


async def test_a_report_temporal_did_not_take_is_kept_and_passed_by_the_retry(
    full_api: FullApi,
) -> None:
    """The insert commits before the signal, so a 503 leaves the event recorded but not passed:
    the facility's retry with the same event_id passes it, once; later repeats signal nothing."""
    api = full_api
    key = Api.auth(await api.merchant())
    order = await api.in_production(key)
    oid = order["id"]
    body = {"event_id": "lost-" + uuid.uuid4().hex, "order_id": oid, "type": "printed"}
    auth = {"Authorization": f"Bearer {TOKENS['reykjavik']}"}
    async with _signals(api, _Signals(refuse=True)):
        refused = await api.client.post("/v1/production/events", json=body, headers=auth)
    assert refused.status_code == 503, refused.text
    assert "retry with the same event_id" in refused.json()["error"]["message"]
    kept = await _stored(api, body["event_id"])
    assert (kept.order_id, kept.passed_at) == (oid, None)
    assert (await api.order(key, oid))["status"] == "in_production"
    assert await _reports_signaled(api, oid) == 0

    retried = await api.client.post("/v1/production/events", json=body, headers=auth)
    assert (retried.status_code, retried.json()) == (202, {"accepted": True, "duplicate": True})
    assert (await _stored(api, body["event_id"])).passed_at is not None
    printed = await api.until(key, oid, lambda o: o["status"] == "printed")
    assert [e["type"] for e in printed["events"]].count("printed") == 1

    for _ in range(3):
        again = await api.client.post("/v1/production/events", json=body, headers=auth)
        assert again.json() == {"accepted": True, "duplicate": True}
    assert await _reports_signaled(api, oid) == 1
    assert await _events_stored(api, oid) == 1


async def test_reports_whose_facility_gave_up_are_passed_by_the_sweep(full_api: FullApi) -> None:
    """A report Temporal refused whose facility never retried: the API's sweep passes it, to an
    open order as a signal and to a closed one as a timeline entry, each once."""
    api = full_api
    key = Api.auth(await api.merchant())
    running = await api.in_production(key)
    created = await api.client.post("/v1/orders", json=order_json(country="DE"), headers=key)
    closed = created.json()["id"]
    canceled = await api.client.post(f"/v1/orders/{closed}/cancel", json={}, headers=key)
    assert canceled.status_code == 200, canceled.text
    await api.temporal.get_workflow_handle(closed).result()
    async with _signals(api, _Signals(refuse=True)):
        assert (await api.event(running["id"], "printed")).status_code == 503
        assert (await api.event(closed, "printed", facility="berlin")).status_code == 503
    sessions = api.app.state.sessions

    assert await pass_recorded(sessions, api.temporal) == 0  # not a minute old yet
    assert await pass_recorded(sessions, api.temporal, older_than=timedelta(0)) == 2
    assert await pass_recorded(sessions, api.temporal, older_than=timedelta(0)) == 0
    await api.until(key, running["id"], lambda o: o["status"] == "printed")
    assert await _reports_signaled(api, running["id"]) == 1
    order = await api.order(key, closed)
    assert order["status"] == "canceled"
    assert [e["type"] for e in order["events"]].count("event_ignored") == 1


async def test_a_report_temporal_rejects_does_not_hold_up_the_sweep(
    full_api: FullApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Temporal rejecting the signals to one order (not down: every other order takes them)
    leaves that report for the next sweep, with an error in the log, and passes the rest."""
    api = full_api
    key = Api.auth(await api.merchant())
    stuck, fine = await api.in_production(key), await api.in_production(key)
    async with _signals(api, _Signals(refuse=True)):
        assert (await api.event(stuck["id"], "printed")).status_code == 503
        assert (await api.event(fine["id"], "printed")).status_code == 503
    sessions = api.app.state.sessions
    async with _signals(api, _Signals(reject=stuck["id"])):
        with caplog.at_level(logging.ERROR, logger="printflow.api.production"):
            temporal = api.app.state.temporal
            assert await pass_recorded(sessions, temporal, older_than=timedelta(0)) == 1
    await api.until(key, fine["id"], lambda o: o["status"] == "printed")
    assert (await api.order(key, stuck["id"]))["status"] == "in_production"
    [logged] = [r.getMessage() for r in caplog.records if stuck["id"] in r.getMessage()]
    assert "Temporal rejected its signal" in logged and "next sweep" in logged
    # Once Temporal takes it, the next sweep passes it.
    assert await pass_recorded(sessions, api.temporal, older_than=timedelta(0)) == 1
    await api.until(key, stuck["id"], lambda o: o["status"] == "printed")


async def test_orders_are_taken_while_a_report_waits_for_temporal(full_api: FullApi) -> None:
    """A report does not hold the database while its signal waits for Temporal: on SQLite its
    write transaction would hold the whole file, and an order created meanwhile would wait."""
    api = full_api
    key = Api.auth(await api.merchant())
    order = await api.in_production(key)
    async with _signals(api, _Signals(hold=True)) as held:
        report = asyncio.create_task(api.event(order["id"], "printed"))
        await asyncio.wait_for(held.waiting.wait(), 30)
        created = await asyncio.wait_for(
            api.client.post("/v1/orders", json=order_json("WHILE-HELD"), headers=key), 30
        )
        assert created.status_code == 201, created.text
        assert not report.done()
        held.release.set()
        assert (await report).status_code == 202
    await api.until(key, order["id"], lambda o: o["status"] == "printed")


async def test_two_facilities_may_use_the_same_event_id(full_api: FullApi) -> None:
    """Each facility numbers its own events: Berlin's report is not Reykjavik's duplicate."""
    api = full_api
    key = Api.auth(await api.merchant())
    at_reykjavik = await api.in_production(key)
    created = await api.client.post("/v1/orders", json=order_json(country="DE"), headers=key)
    assert created.status_code == 201, created.text
    at_berlin = created.json()["id"]
    event_id = "evt-" + uuid.uuid4().hex[:8]
    for facility, order_id in (("reykjavik", at_reykjavik["id"]), ("berlin", at_berlin)):
        body = {"event_id": event_id, "order_id": order_id, "type": "printed"}
        auth = {"Authorization": f"Bearer {TOKENS[facility]}"}
        answer = await api.client.post("/v1/production/events", json=body, headers=auth)
        assert (answer.status_code, answer.json()) == (
            202,
            {"accepted": True, "duplicate": False},
        ), (facility, answer.text)
        again = await api.client.post("/v1/production/events", json=body, headers=auth)
        assert again.json() == {"accepted": True, "duplicate": True}
        assert await _events_stored(api, order_id) == 1


async def test_invalid_events_get_the_validation_envelope(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    order = await api.in_production(key)
    oid = order["id"]
    for extra, field in (
        ({"type": "shipped"}, ""),  # no tracking
        ({"type": "issue"}, ""),  # no issue
        ({"type": "exploded"}, "type"),
        ({"type": "issue", "issue": {"kind": "weather", "description": "rain"}}, "issue.kind"),
        ({"type": "printed", "event_id": ""}, "event_id"),
    ):
        body = {"event_id": "e-" + uuid.uuid4().hex, "order_id": oid, **extra}
        response = await api.client.post(
            "/v1/production/events",
            json=body,
            headers={"Authorization": f"Bearer {TOKENS['reykjavik']}"},
        )
        assert response.status_code == 422, (extra, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert any(d["field"].startswith(field) for d in error["details"]), error
    assert await _events_stored(api, oid) == 0


async def test_an_event_that_does_not_fit_is_on_the_timeline_and_changes_nothing(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    order = await api.in_production(key)
    oid = order["id"]
    early = await api.event(oid, "delivered")  # delivered before it was even shipped
    assert early.status_code == 202
    seen = await api.until(key, oid, lambda o: o["events"][-1]["type"] == "event_ignored")
    assert seen["status"] == "in_production"
    assert seen["events"][-1]["detail"]["event"] == "delivered"
    # The order goes on as if nothing happened.
    assert (await api.event(oid, "printed")).status_code == 202
    await api.until(key, oid, lambda o: o["status"] == "printed")


async def test_an_event_for_a_closed_order_is_kept_and_the_status_stays(full_api: FullApi) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json(country="DE"), headers=key)
    oid = created.json()["id"]
    canceled = await api.client.post(f"/v1/orders/{oid}/cancel", json={}, headers=key)
    assert canceled.status_code == 200, canceled.text
    await api.temporal.get_workflow_handle(oid).result()  # the workflow has closed

    late = await api.event(oid, "printed", facility="berlin", event_id="late-" + oid)
    assert late.status_code == 202 and late.json()["duplicate"] is False
    repeated = await api.event(oid, "printed", facility="berlin", event_id="late-" + oid)
    assert repeated.json() == {"accepted": True, "duplicate": True}
    order = await api.order(key, oid)
    assert order["status"] == "canceled"
    last = order["events"][-1]
    assert last["type"] == "event_ignored"
    assert last["detail"]["event"] == "printed" and "canceled" in last["detail"]["why"]
    again = await api.event(oid, "shipped", facility="berlin", **tracking("LATE"))
    assert again.status_code == 202
    order = await api.order(key, oid)
    assert [e["type"] for e in order["events"]][-2:] == ["event_ignored", "event_ignored"]
    assert order["shipments"] == [] and order["status"] == "canceled"


async def test_an_issue_holds_the_order_mails_the_merchant_and_a_new_address_resumes_it(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await api.hooked_merchant())
    order = await api.in_production(key, "HOLD-ADDR")
    oid = order["id"]
    issue = {"kind": "address_invalid", "description": "post code 999 does not exist in Iceland"}
    assert (await api.event(oid, "issue", issue=issue)).status_code == 202
    held = await api.until(key, oid, lambda o: o["status"] == "on_hold")
    assert held["hold"]["kind"] == "address_invalid"
    assert held["allowed_actions"]["update_address"] is True

    mail = await api.mail.wait_for(lambda m: "HOLD-ADDR" in str(m["Subject"]), timeout=20)
    assert mail["Subject"] == "Order HOLD-ADDR is on hold – action required"
    assert mail["To"] == "help@hooks.example.com"
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "post code 999 does not exist in Iceland" in text
    assert f"PUT http://api/v1/orders/{oid}/shipping-address" in text
    assert f"POST http://api/v1/orders/{oid}/cancel" in text
    assert "Please answer by" in text

    await api.receiver.wait_for(
        lambda r: ON_HOLD in [x.payload["type"] for x in r.accepted()], timeout=20
    )
    hold_event = next(r.payload for r in api.receiver.accepted() if r.payload["type"] == ON_HOLD)
    assert hold_event["data"]["hold"] == issue

    fixed = order["shipping_address"] | {"post_code": "101"}
    response = await api.client.put(f"/v1/orders/{oid}/shipping-address", json=fixed, headers=key)
    assert response.status_code == 200, response.text
    resumed = await api.until(key, oid, lambda o: o["status"] == "in_production")
    assert resumed["shipping_address"]["post_code"] == "101" and resumed["hold"] is None
    # The facility prints and ships what it holds: the fixed address, received before the resume.
    job = await _facility_job(api, resumed["job_id"], "resume")
    assert job["request"]["shipping_address"]["post_code"] == "101"
    assert [a["action"] for a in job["history"]][-2:] == ["replace", "resume"]


async def test_a_file_problem_mail_says_what_to_check_and_replacing_files_releases(
    full_api: FullApi,
) -> None:
    api = full_api
    key = Api.auth(await api.merchant())
    order = await api.in_production(key, "HOLD-FILE")
    oid = order["id"]
    issue = {"kind": "file_quality", "description": "the photo is 72 dpi; it will print blurry"}
    assert (await api.event(oid, "issue", issue=issue)).status_code == 202
    mail = await api.mail.wait_for(lambda m: "HOLD-FILE" in str(m["Subject"]), timeout=20)
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "72 dpi" in text and "72 dpi" in html
    for check in ("spelling", "image quality", "cropping"):
        assert check in text
    assert f"POST http://api/v1/orders/{oid}/resolve-hold" in text
    assert '"action": "replace_files"' in text and '"line-1"' in text  # the order's own item
    assert '"action": "proceed"' in text

    files = {"line-1": [{"type": "default", "url": "https://files.example/sharp.png"}]}
    response = await api.client.post(
        f"/v1/orders/{oid}/resolve-hold",
        json={"action": "replace_files", "files": files},
        headers=key,
    )
    assert response.status_code == 200, response.text
    resumed = await api.until(key, oid, lambda o: o["status"] == "in_production")
    assert resumed["items"][0]["files"][0]["url"] == "https://files.example/sharp.png"
    job = await _facility_job(api, resumed["job_id"], "resume")
    assert job["request"]["items"][0]["files"] == files["line-1"]
    assert [a["action"] for a in job["history"]][-2:] == ["replace", "resume"]


async def _facility_job(api: FullApi, job_id: str, last_action: str) -> dict[str, Any]:
    """The facility's job once its newest recorded action is ``last_action``."""

    async def fetch() -> dict[str, Any] | None:
        job: dict[str, Any] = await api.facility(f"/print-jobs/{job_id}")
        history = job.get("history") or [{}]
        return job if history[-1].get("action") == last_action else None

    found: dict[str, Any] = await apoll(f"job {job_id} to be {last_action}d", fetch)
    return found
