"""The facility client (``integrations.facility``) against a facility that answers over HTTP, and
what its answers become for the activities that call it (``activities.facility``): a refusal is
non-retryable ``FacilityRejected``, a facility that cannot take the call now a plain error, and
one refusing our token (401, 403) a plain error too, with a configuration alert.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.alerts import FRESH_FOR, ConfigurationAlerts, active_alerts
from activities.facility import FacilityActivities
from contracts.errors import FACILITY_REJECTED
from contracts.orders import FacilityOutcome, JobQuery, PrintJobItem, PrintJobRequest
from domain.facilities import Facilities, Facility
from integrations.facility import (
    FacilityClient,
    FacilityRejected,
    FacilityUnauthorized,
    FacilityUnavailable,
)
from tests.helpers.workflows import OSLO, order_body

TOKEN = "tok-oslo-secret"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeFacility:
    """A facility's API that answers each path with the status it is told (default 200)."""

    answers: dict[str, int] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    body: dict[str, Any] | None = None  # a 2xx answer's body (default: a new job's)

    async def handle(self, request: Request) -> Response:
        self.seen.append(
            Seen(request.method, request.url.path, dict(request.headers), await request.body())
        )
        status = self.answers.get(f"{request.method} {request.url.path}", 200)
        if status >= 400:
            return PlainTextResponse("x" * 600 if status == 422 else "no", status_code=status)
        return JSONResponse(self.body or {"job_id": "job-77"}, status_code=status)


def _job(order_id: str = "ord_1") -> PrintJobRequest:
    body = order_body()
    return PrintJobRequest(
        order_id=order_id,
        order_reference_id=body.order_reference_id,
        facility_id=OSLO.id,
        items=[
            PrintJobItem(
                item_reference_id=i.item_reference_id,
                product_uid=i.product_uid,
                quantity=i.quantity,
                files=[f.model_dump(mode="json") for f in i.files],
            )
            for i in body.items
        ],
        shipping_address=body.shipping_address,
    )


FACILITY = Facility(
    **OSLO.model_dump() | {"api_url": "http://facility.test/api/"},
    countries=["NO"],
    api_token=TOKEN,
)


@asynccontextmanager
async def _facility() -> AsyncIterator[tuple[FakeFacility, httpx.AsyncClient]]:
    fake = FakeFacility()
    routes = [Route("/{path:path}", fake.handle, methods=["GET", "POST", "PUT"])]
    transport = httpx.ASGITransport(app=Starlette(routes=routes))
    async with httpx.AsyncClient(transport=transport) as http:
        yield fake, http


async def test_a_submission_is_authenticated_idempotent_and_returns_the_job_id() -> None:
    async with _facility() as (fake, http):
        job_id = await FacilityClient(FACILITY, http).submit(_job("ord_42"))
    assert job_id == "job-77"
    [seen] = fake.seen
    assert (seen.method, seen.path) == ("POST", "/api/print-jobs")
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["idempotency-key"] == "ord_42"
    assert PrintJobRequest.model_validate_json(seen.body) == _job("ord_42")


@pytest.mark.parametrize("status", [500, 503, 408, 429])
async def test_a_facility_that_cannot_take_the_job_now_is_unavailable(status: int) -> None:
    async with _facility() as (fake, http):
        fake.answers["POST /api/print-jobs"] = status
        with pytest.raises(FacilityUnavailable) as raised:
            await FacilityClient(FACILITY, http).submit(_job())
    assert raised.value.status_code == status
    assert str(raised.value) == f"facility oslo answered {status} to the print job"


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_token_is_our_configuration_not_a_refusal_of_the_job(status: int) -> None:
    async with _facility() as (fake, http):
        fake.answers["POST /api/print-jobs"] = status
        with pytest.raises(FacilityUnauthorized) as raised:
            await FacilityClient(FACILITY, http).submit(_job())
    assert not isinstance(raised.value, FacilityRejected)
    assert str(raised.value) == f"facility oslo refused our api_token ({status}) to the print job"


@pytest.mark.parametrize("status", [400, 404, 409, 422])
async def test_any_other_4xx_is_a_refusal_with_the_start_of_the_answer(status: int) -> None:
    async with _facility() as (fake, http):
        fake.answers["POST /api/print-jobs"] = status
        with pytest.raises(FacilityRejected) as raised:
            await FacilityClient(FACILITY, http).submit(_job())
    refusal = raised.value
    assert refusal.status_code == status
    if status == 422:  # a long answer is cut at 500 characters
        assert refusal.body == "x" * 500 + "…"
    assert str(refusal) == f"facility oslo refused the print job ({status}): {refusal.body}"


async def test_a_canceled_job_is_neither_replaced_nor_resumed_but_cannot_be_canceled() -> None:
    async with _facility() as (fake, http):
        client = FacilityClient(FACILITY, http)
        assert await client.replace("job-9", _job()) and await client.resume("job-9")
        fake.answers |= {"PUT /api/print-jobs/job-9": 409, "POST /api/print-jobs/job-9/resume": 409}
        assert not await client.replace("job-9", _job())
        assert not await client.resume("job-9")
        fake.answers["POST /api/print-jobs/job-9/cancel"] = 409
        with pytest.raises(FacilityRejected, match=r"refused cancel \(409\)"):
            await client.cancel("job-9")
    assert all(s.headers["authorization"] == f"Bearer {TOKEN}" for s in fake.seen)
    assert all("idempotency-key" not in s.headers for s in fake.seen)


# -- what the activities make of it -------------------------------------------------------------


async def _run(http: httpx.AsyncClient, call: str, arg: Any) -> Any:
    activities = FacilityActivities(Facilities([FACILITY]), http)
    return await ActivityEnvironment().run(getattr(activities, call), arg)


async def test_the_activity_raises_a_refusal_as_non_retryable_facility_rejected() -> None:
    async with _facility() as (fake, http):
        fake.answers["POST /api/print-jobs"] = 400
        with pytest.raises(ApplicationError) as raised:
            await _run(http, "submit_print_job", _job())
    error = raised.value
    assert error.type == FACILITY_REJECTED and error.non_retryable
    assert error.message == "facility oslo refused the print job (400): no"
    assert error.details == ({"status_code": 400, "body": "no"},)


async def test_the_activity_raises_an_unavailable_facility_as_a_plain_retryable_error() -> None:
    async with _facility() as (fake, http):
        fake.answers["POST /api/print-jobs"] = 503
        with pytest.raises(RuntimeError, match="^facility oslo answered 503 to the print job$"):
            await _run(http, "submit_print_job", _job())
        fake.answers["POST /api/print-jobs"] = 200
        assert (await _run(http, "submit_print_job", _job())).job_id == "job-77"


async def test_a_resume_replaces_the_held_job_first_and_a_canceled_job_ends_quietly() -> None:
    resume = FacilityOutcome(facility_id="oslo", job_id="job-9", outcome="resume", job=_job())
    async with _facility() as (fake, http):
        await _run(http, "notify_facility", resume)
        assert [(s.method, s.path) for s in fake.seen] == [
            ("PUT", "/api/print-jobs/job-9"),
            ("POST", "/api/print-jobs/job-9/resume"),
        ]
        fake.answers |= {"PUT /api/print-jobs/job-9": 409, "POST /api/print-jobs/job-9/resume": 409}
        await _run(http, "notify_facility", resume)  # nothing left to resume: no error
        fake.answers["POST /api/print-jobs/job-9/cancel"] = 404
        cancel = FacilityOutcome(facility_id="oslo", job_id="job-9", outcome="cancel")
        with pytest.raises(ApplicationError) as raised:
            await _run(http, "notify_facility", cancel)
    assert raised.value.non_retryable and raised.value.message == (
        "facility oslo refused cancel (404): no"
    )


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_token_is_retried_with_an_alert_that_the_next_success_clears(
    status: int, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = ConfigurationAlerts(engine)
    async with _facility() as (fake, http):
        activities = FacilityActivities(Facilities([FACILITY]), http, alerts)
        fake.answers["POST /api/print-jobs"] = status
        for _ in range(2):  # each attempt refreshes the one alert
            with pytest.raises(RuntimeError) as raised:
                await ActivityEnvironment().run(activities.submit_print_job, _job())
            assert not isinstance(raised.value, ApplicationError), "Temporal must retry it"
        [alert] = await active_alerts(engine)
        assert alert.what == "facility:oslo"
        assert alert.setting == "api_token of facility oslo in PRINTFLOW_FACILITIES_FILE"
        assert f"({status})" in alert.message and TOKEN not in alert.message
        logged = [r.getMessage() for r in caplog.records if r.name == "printflow.configuration"]
        assert len(logged) == 2 and "PRINTFLOW_FACILITIES_FILE" in logged[0]
        assert "facility oslo" in logged[0]

        fake.answers["POST /api/print-jobs"] = 200  # the token is fixed
        assert (await ActivityEnvironment().run(activities.submit_print_job, _job())).job_id
    assert await active_alerts(engine) == []


async def test_an_alert_nobody_refreshes_stops_counting(engine: AsyncEngine) -> None:
    await ConfigurationAlerts(engine).refused("mail", "PRINTFLOW_MAIL_FROM", "refused")
    assert [a.what for a in await active_alerts(engine)] == ["mail"]
    later = datetime.now(UTC) + FRESH_FOR + timedelta(seconds=1)
    assert await active_alerts(engine, now=later) == []


async def test_the_job_state_is_asked_with_our_token() -> None:
    async with _facility() as (fake, http):
        fake.body = {
            "job_id": "job-9",
            "status": "accepted",
            "stage": "shipped",
            "tracking": {"carrier": "DHL", "tracking_code": "P1", "tracking_url": None},
            "something": "new",
        }
        state = await _run(
            http, "fetch_print_job_state", JobQuery(facility_id="oslo", job_id="job-9")
        )
        assert (state.stage, state.tracking.tracking_code) == ("shipped", "P1")
        [seen] = fake.seen
        assert (seen.method, seen.path) == ("GET", "/api/print-jobs/job-9/state")
        assert seen.headers["authorization"] == f"Bearer {TOKEN}"
        fake.answers["GET /api/print-jobs/job-9/state"] = 404
        with pytest.raises(ApplicationError) as raised:
            await _run(http, "fetch_print_job_state", JobQuery(facility_id="oslo", job_id="job-9"))
    assert raised.value.type == FACILITY_REJECTED
