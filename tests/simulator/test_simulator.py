"""The print facility simulator keeps the facility's side of the contract.

End-to-end tests lean on it to stage lost responses, rejections and production issues, so its
idempotency and its reporting back must be exact: these tests drive it in-process over ASGI and
let it report to a real HTTP receiver on a random local port.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from simulator.__main__ import build_config, parse_args
from simulator.app import create_app
from simulator.config import BUNDLED_FACILITIES, SimulatorConfig, SimulatorConfigError
from simulator.floor import Simulator, peak_per_window
from simulator.models import Tracking

TOKEN_A = "tok-berlin"
TOKEN_B = "tok-dallas"
TOKENS = {TOKEN_A: "fac_berlin", TOKEN_B: "fac_dallas"}
FAST = {
    "printed_after": 0.05,
    "shipped_after": 0.05,
    "delivered_after": 0.05,
    "retry_initial_backoff": 0.05,
}
REPO = Path(__file__).resolve().parents[2]


def auth(token: str = TOKEN_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def job_headers(order_id: str, token: str = TOKEN_A) -> dict[str, str]:
    return {**auth(token), "Idempotency-Key": order_id}


def job_body(order_id: str, facility_id: str = "fac_berlin") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "order_reference_id": f"ref-{order_id}",
        "facility_id": facility_id,
        "items": [
            {
                "item_reference_id": "item-1",
                "product_uid": "mug_11oz_white",
                "quantity": 2,
                "files": [{"type": "default", "url": "https://files.example/mug.png"}],
                "personalization": {"name": "Ada"},
            }
        ],
        "shipping_address": {"first_name": "Ada", "country": "DE", "post_code": "10115"},
        "something_new": {"printflow": "may add fields"},
    }


def new_order_id() -> str:
    return "ord_" + uuid.uuid4().hex[:12]


@asynccontextmanager
async def facility(**settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Simulator]]:
    """The simulator in-process, with its lifespan run so shutdown is exercised too."""
    app = create_app(SimulatorConfig(tokens=TOKENS, **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facility") as client:
            yield client, app.state.simulator


class Receiver:
    """printflow's ``POST /v1/production/events`` as the simulator sees it: a real server."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []  # every attempt, failed ones included
        self.fail_next = 0
        self.url = ""

    @property
    def accepted(self) -> list[dict[str, Any]]:
        return [post for post in self.posts if post["answered"] == 202]

    def types(self) -> list[str]:
        return [post["json"]["type"] for post in self.accepted]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/production/events")
        async def events(request: Request) -> JSONResponse:
            status = 202
            if self.fail_next > 0:
                self.fail_next -= 1
                status = 503
            self.posts.append(
                {
                    "json": await request.json(),
                    "authorization": request.headers.get("authorization"),
                    "answered": status,
                }
            )
            return JSONResponse({}, status_code=status)

        return app


@asynccontextmanager
async def receiver(port: int = 0) -> AsyncIterator[Receiver]:
    rec = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    rec.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(rec.app(), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started)
        yield rec
    finally:
        server.should_exit = True
        await task
        sock.close()


async def eventually(check: Callable[[], Any], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def submit(
    client: httpx.AsyncClient, order_id: str, token: str = TOKEN_A, **body: Any
) -> httpx.Response:
    payload = job_body(order_id, facility_id=TOKENS[token]) | body
    return await client.post("/print-jobs", json=payload, headers=job_headers(order_id, token))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- accepting print jobs ---------------------------------------------------------------------


async def test_same_key_twice_is_one_job() -> None:
    async with facility() as (client, _):
        order_id = new_order_id()
        first = await submit(client, order_id)
        second = await client.post(
            "/print-jobs", json={"anything": "else"}, headers=job_headers(order_id)
        )

        assert first.status_code == 201
        assert second.status_code == 200
        assert re.fullmatch(r"job_[0-9a-f]+", first.json()["job_id"])
        assert second.json() == first.json()
        jobs = (await client.get("/print-jobs")).json()
        assert len(jobs) == 1
        job = jobs[0]
        assert job["job_id"] == first.json()["job_id"]
        assert job["order_id"] == order_id
        assert job["facility_id"] == "fac_berlin"
        assert job["status"] == "accepted"
        assert job["attempts"] == 2
        assert job["request"] == job_body(order_id)  # the first body, extra fields kept
        assert job["received_at"]
        single = await client.get(f"/print-jobs/{job['job_id']}")
        assert single.json() == job
        assert (await client.get("/print-jobs/job_nope")).status_code == 404


async def test_concurrent_requests_with_one_key_create_one_job() -> None:
    async with facility() as (client, _):
        order_id = new_order_id()
        responses = await asyncio.gather(*(submit(client, order_id) for _ in range(20)))

        assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
        assert len({r.json()["job_id"] for r in responses}) == 1
        jobs = (await client.get("/print-jobs")).json()
        assert len(jobs) == 1
        assert jobs[0]["attempts"] == 20


async def test_unknown_or_missing_token_is_401() -> None:
    async with facility() as (client, _):
        order_id = new_order_id()
        for headers in (
            job_headers(order_id, token="stolen"),
            {"Idempotency-Key": order_id},
            {"Authorization": f"Basic {TOKEN_A}", "Idempotency-Key": order_id},
        ):
            response = await client.post("/print-jobs", json=job_body(order_id), headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"

        assert (await client.get("/print-jobs")).json() == []
        requests = (await client.get("/_control/requests")).json()
        assert [r["status"] for r in requests] == [401, 401, 401]
        assert {r["order_id"] for r in requests} == {order_id}


async def test_with_a_control_token_reading_jobs_and_the_controls_need_it() -> None:
    """What docker compose runs: the print jobs (addresses, e-mails) and ``/_control/*`` only
    with the control token; the print job API with a facility's token as ever; health open."""
    control = "ctl-" + uuid.uuid4().hex
    async with facility(control_token=control, **FAST) as (client, _):
        order_id = new_order_id()
        created = await submit(client, order_id)
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        guarded = [
            ("GET", "/print-jobs"),
            ("GET", f"/print-jobs/{job_id}"),
            ("GET", "/_control/requests"),
            ("GET", "/_control/config"),
            ("POST", "/_control/reset"),
        ]
        for method, path in guarded:
            for headers in ({}, auth(TOKEN_A), auth("wrong")):
                refused = await client.request(method, path, headers=headers)
                assert refused.status_code == 401, (method, path, headers, refused.text)
                assert refused.json()["error"]["code"] == "unauthorized"
                assert "Ada" not in refused.text
        jobs = await client.get("/print-jobs", headers=auth(control))
        assert [j["order_id"] for j in jobs.json()] == [order_id]
        config = await client.get("/_control/config", headers=auth(control))
        assert config.status_code == 200 and control not in config.text
        canceled = await client.post(f"/print-jobs/{job_id}/cancel", headers=auth(TOKEN_A))
        assert canceled.status_code == 200, canceled.text
        assert (await client.get("/healthz")).status_code == 200


def test_the_control_token_comes_from_the_environment() -> None:
    env = {"PRINTFLOW_SIM_TOKENS": json.dumps(TOKENS), "PRINTFLOW_SIM_CONTROL_TOKEN": "ctl"}
    assert SimulatorConfig.from_env(env).control_token == "ctl"
    empty = {**env, "PRINTFLOW_SIM_CONTROL_TOKEN": ""}
    assert SimulatorConfig.from_env(empty).control_token is None


async def test_missing_idempotency_key_is_400() -> None:
    async with facility() as (client, _):
        response = await client.post("/print-jobs", json=job_body(new_order_id()), headers=auth())

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "idempotency_key_required"
        assert (await client.get("/print-jobs")).json() == []


async def test_malformed_jobs_are_refused_without_a_job() -> None:
    async with facility() as (client, _):
        order_id = new_order_id()
        not_json = await client.post("/print-jobs", content=b"{nope", headers=job_headers(order_id))
        no_items = await submit(client, order_id, items=[])
        wrong_facility = await client.post(
            "/print-jobs",
            json=job_body(order_id, facility_id="fac_dallas"),
            headers=job_headers(order_id, TOKEN_A),
        )

        assert not_json.status_code == 400
        assert no_items.status_code == 422
        assert no_items.json()["error"]["details"]
        assert wrong_facility.status_code == 422
        assert wrong_facility.json()["error"]["code"] == "facility_mismatch"
        assert (await client.get("/print-jobs")).json() == []
        assert (await submit(client, order_id)).status_code == 201


async def test_fail_next_answers_the_staged_status_without_a_job() -> None:
    async with facility() as (client, _):
        staged = await client.post("/_control/fail-next", json={"status": 503, "count": 2})
        assert staged.status_code == 200
        order_id = new_order_id()

        statuses = [(await submit(client, order_id)).status_code for _ in range(3)]

        assert statuses == [503, 503, 201]
        jobs = (await client.get("/print-jobs")).json()
        assert len(jobs) == 1
        assert jobs[0]["attempts"] == 1
        requests = (await client.get("/_control/requests")).json()
        assert [(r["order_id"], r["idempotency_key"], r["status"]) for r in requests] == [
            (order_id, order_id, 503),
            (order_id, order_id, 503),
            (order_id, order_id, 201),
        ]
        assert requests[2]["job_id"] == jobs[0]["job_id"]


async def test_reject_order_answers_its_4xx_only_for_that_order() -> None:
    async with facility() as (client, _):
        rejected, fine = new_order_id(), new_order_id()
        staged = await client.post(
            "/_control/reject-order", json={"order_id": rejected, "status": 422}
        )
        assert staged.status_code == 200
        bad_status = await client.post(
            "/_control/reject-order", json={"order_id": rejected, "status": 503}
        )
        assert bad_status.status_code == 422  # only 4xx can be a rejection

        first = await submit(client, rejected)
        again = await submit(client, rejected)
        other = await submit(client, fine)

        assert (first.status_code, again.status_code) == (422, 422)
        assert first.json()["error"]["code"] == "order_rejected"
        assert other.status_code == 201
        assert [job["order_id"] for job in (await client.get("/print-jobs")).json()] == [fine]

        await client.delete(f"/_control/reject-order/{rejected}")
        assert (await submit(client, rejected)).status_code == 201


async def test_response_delay_records_the_job_before_answering() -> None:
    async with facility(response_delay=3) as (client, sim):
        order_id = new_order_id()
        pending = asyncio.create_task(submit(client, order_id))

        await eventually(lambda: len(sim.jobs) == 1, within=2.5)
        assert not pending.done()
        jobs = (await client.get("/print-jobs")).json()
        assert [job["order_id"] for job in jobs] == [order_id]
        response = await pending
        assert response.status_code == 201
        assert response.json()["job_id"] == jobs[0]["job_id"]


async def test_a_lost_answer_is_recovered_by_the_retry() -> None:
    """printflow gives up waiting (or crashes); its retry must get the job that already exists."""
    async with facility(response_delay=5) as (client, sim):
        order_id = new_order_id()
        pending = asyncio.create_task(submit(client, order_id))
        # The job is recorded, its answer still on the way: printflow stops waiting for it.
        await eventually(lambda: len(sim.jobs) == 1, within=4)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending

        await client.post("/_control/config", json={"response_delay": 0})
        retry = await submit(client, order_id)

        assert retry.status_code == 200
        (job,) = sim.jobs.values()
        assert retry.json()["job_id"] == job.job_id
        assert job.attempts == 2


# --- the rate limit ---------------------------------------------------------------------------


class Clock:
    """The rate limit's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_beyond_max_jobs_per_second_is_429_with_retry_after() -> None:
    async with facility(max_jobs_per_second=3) as (client, sim):
        sim.clock = clock = Clock()
        taken = [new_order_id() for _ in range(3)]
        assert [(await submit(client, o)).status_code for o in taken] == [201, 201, 201]

        refused_order = new_order_id()
        refused = await submit(client, refused_order)
        again = await submit(client, taken[0])  # a retry of a taken job is a request too

        for response in (refused, again):
            assert response.status_code == 429
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error"]["code"] == "rate_limited"
            assert response.json()["error"]["details"] == {"max_jobs_per_second": 3}
        assert sim.find_job_for_order(refused_order) is None
        assert sim.jobs[sim.job_by_key[taken[0]]].attempts == 1
        log = (await client.get("/_control/requests")).json()
        assert [(r["order_id"], r["status"]) for r in log[-2:]] == [
            (refused_order, 429),
            (taken[0], 429),
        ]
        assert log[-1]["facility_id"] == "fac_berlin" and log[-1]["job_id"] is None
        # The limit is per facility: another token is not slowed down by this one.
        assert (await submit(client, new_order_id(), token=TOKEN_B)).status_code == 201

        clock.now += 1.0  # the window (one second, the end included) slides past the three
        assert (await submit(client, refused_order)).status_code == 201
        assert sim.peak_per_second("fac_berlin") == 3
        rate = (await client.get("/_control/rate")).json()
        assert rate == {
            "max_jobs_per_second": 3,
            "facilities": {
                "fac_berlin": {"accepted": 4, "limited": 2, "peak_per_second": 3},
                "fac_dallas": {"accepted": 1, "limited": 0, "peak_per_second": 1},
            },
        }


async def test_the_window_slides_instead_of_resetting_each_second() -> None:
    """Two jobs at 0.0 s and one at 0.5 s with a limit of 3: the next fits at 1.0 s, not before."""
    async with facility(max_jobs_per_second=3) as (client, sim):
        sim.clock = clock = Clock()
        assert (await submit(client, new_order_id())).status_code == 201
        assert (await submit(client, new_order_id())).status_code == 201
        clock.now += 0.5
        assert (await submit(client, new_order_id())).status_code == 201
        clock.now += 0.25
        refused = await submit(client, new_order_id())
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        clock.now += 0.25  # the first two left the window; the third is still in it
        statuses = [(await submit(client, new_order_id())).status_code for _ in range(3)]
        assert statuses == [201, 201, 429]
        assert sim.peak_per_second("fac_berlin") == 3


async def test_no_limit_by_default_and_the_limit_changes_at_run_time() -> None:
    async with facility() as (client, sim):
        assert sim.config.max_jobs_per_second is None
        statuses = {(await submit(client, new_order_id())).status_code for _ in range(30)}
        assert statuses == {201}
        assert sim.peak_per_second("fac_berlin") == 30

        config = (await client.post("/_control/config", json={"max_jobs_per_second": 31})).json()
        assert config["max_jobs_per_second"] == 31
        assert (await submit(client, new_order_id())).status_code == 201
        assert (await submit(client, new_order_id())).status_code == 429
        lifted = await client.post("/_control/config", json={"max_jobs_per_second": None})
        assert lifted.json()["max_jobs_per_second"] is None
        assert (await submit(client, new_order_id())).status_code == 201
        bad = await client.post("/_control/config", json={"max_jobs_per_second": 0})
        assert bad.status_code == 422


def test_peak_per_window_counts_any_one_second() -> None:
    assert peak_per_window([]) == 0
    assert peak_per_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert peak_per_window([0.0, 0.1, 0.2, 5.0]) == 3
    assert peak_per_window([0.0, 1.0, 2.0, 3.0]) == 1
    assert peak_per_window([0.0, 0.4, 0.8, 1.2], window=0.5) == 2


# --- cancel / resume from printflow -----------------------------------------------------------


async def test_cancel_and_resume_are_recorded_and_need_the_facility_token() -> None:
    async with facility() as (client, _):
        job_id = (await submit(client, new_order_id())).json()["job_id"]

        assert (await client.post(f"/print-jobs/{job_id}/cancel")).status_code == 401
        other = await client.post(f"/print-jobs/{job_id}/cancel", headers=auth(TOKEN_B))
        assert other.status_code == 404
        resumed = await client.post(f"/print-jobs/{job_id}/resume", headers=auth())
        assert resumed.status_code == 200
        assert resumed.json()["status"] == "accepted"
        canceled = await client.post(
            f"/print-jobs/{job_id}/cancel", json={"reason": "customer"}, headers=auth()
        )
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled"
        assert canceled.json()["history"][-1]["detail"] == {"reason": "customer"}
        again = await client.post(f"/print-jobs/{job_id}/cancel", headers=auth())
        assert again.status_code == 200  # repeating an outcome is safe
        late = await client.post(f"/print-jobs/{job_id}/resume", headers=auth())
        assert late.status_code == 409
        job = (await client.get(f"/print-jobs/{job_id}")).json()
        assert job["status"] == "canceled"
        assert [a["action"] for a in job["history"]] == ["resume", "cancel"]


# --- reporting back ---------------------------------------------------------------------------


async def test_reports_printed_shipped_delivered_with_the_submitting_token() -> None:
    async with receiver() as rec:
        async with facility(report_events=True, printflow_url=rec.url + "/", **FAST) as (
            client,
            sim,
        ):
            order_id = new_order_id()
            assert (await submit(client, order_id, token=TOKEN_B)).status_code == 201

            await eventually(lambda: len(rec.accepted) == 3)
            assert rec.types() == ["printed", "shipped", "delivered"]
            assert {post["authorization"] for post in rec.posts} == {f"Bearer {TOKEN_B}"}
            events = [post["json"] for post in rec.posts]
            assert {event["order_id"] for event in events} == {order_id}
            assert len({uuid.UUID(event["event_id"]) for event in events}) == 3
            printed, shipped, delivered = events
            assert "tracking" not in printed and "tracking" not in delivered
            tracking = shipped["tracking"]
            assert tracking["carrier"] == "DHL"
            assert re.fullmatch(r"SIM\d+", tracking["tracking_code"])
            assert tracking["tracking_url"] == (
                f"https://tracking.example/{tracking['tracking_code']}"
            )
            (job,) = sim.jobs.values()
            await eventually(lambda: job.stage == "delivered")
            assert [e.status for e in job.events] == ["delivered"] * 3


async def test_a_jobs_state_is_told_to_its_facility_only() -> None:
    """``GET /print-jobs/{id}/state``: what printflow asks when reports stop coming. The
    facility's token, even with a control token set; another facility's job is a 404."""
    async with facility(control_token="ctl", **FAST) as (client, sim):
        order_id = new_order_id()
        job_id = (await submit(client, order_id)).json()["job_id"]
        path = f"/print-jobs/{job_id}/state"
        fresh = await client.get(path, headers=auth(TOKEN_A))
        assert fresh.status_code == 200, fresh.text
        assert fresh.json() == {
            "job_id": job_id,
            "order_id": order_id,
            "status": "accepted",
            "stage": None,
            "tracking": None,
        }
        (job,) = sim.jobs.values()
        job.stage = "shipped"
        job.tracking = Tracking(
            carrier="DHL", tracking_code="SIM1", tracking_url="https://tracking.example/SIM1"
        )
        shipped = (await client.get(path, headers=auth(TOKEN_A))).json()
        assert (shipped["stage"], shipped["tracking"]["tracking_code"]) == ("shipped", "SIM1")
        assert (await client.get(path, headers=auth(TOKEN_B))).status_code == 404
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=auth("ctl"))).status_code == 401


async def test_no_reporting_unless_switched_on() -> None:
    async with receiver() as rec:
        async with facility(printflow_url=rec.url, **FAST) as (client, sim):
            await submit(client, new_order_id())
            await asyncio.sleep(0.3)
            assert rec.posts == []
            assert not sim._tasks


async def test_a_failed_post_is_retried_with_the_same_event_id() -> None:
    async with receiver() as rec:
        rec.fail_next = 2
        async with facility(report_events=True, printflow_url=rec.url, **FAST) as (client, sim):
            await submit(client, new_order_id())

            await eventually(lambda: len(rec.accepted) == 3)
            first_three = rec.posts[:3]
            assert [post["answered"] for post in first_three] == [503, 503, 202]
            assert len({post["json"]["event_id"] for post in first_three}) == 1
            assert {post["json"]["type"] for post in first_three} == {"printed"}
            assert rec.types() == ["printed", "shipped", "delivered"]
            (job,) = sim.jobs.values()
            assert job.events[0].attempts == 3


async def test_a_connection_error_is_retried_until_printflow_is_up() -> None:
    port = free_port()
    async with facility(report_events=True, printflow_url=f"http://127.0.0.1:{port}", **FAST) as (
        client,
        sim,
    ):
        await submit(client, new_order_id())
        (job,) = sim.jobs.values()
        await eventually(lambda: bool(job.events) and job.events[0].attempts >= 2)
        assert job.events[0].status == "pending"
        sent_id = job.events[0].event_id

        async with receiver(port) as rec:
            await eventually(lambda: len(rec.accepted) == 3)
            assert rec.accepted[0]["json"]["event_id"] == sent_id


async def test_a_raised_issue_holds_the_sequence_until_resume() -> None:
    async with receiver() as rec:
        async with facility(
            report_events=True, printflow_url=rec.url, **(FAST | {"printed_after": 0.2})
        ) as (client, sim):
            order_id = new_order_id()
            job_id = (await submit(client, order_id)).json()["job_id"]

            raised = await client.post(
                "/_control/raise-issue",
                json={"order_id": order_id, "kind": "file_quality", "description": "blurry"},
            )
            assert raised.status_code == 202
            await eventually(lambda: len(rec.accepted) == 1)
            issue = rec.accepted[0]["json"]
            assert issue["type"] == "issue"
            assert issue["event_id"] == raised.json()["event_id"]
            assert issue["issue"] == {"kind": "file_quality", "description": "blurry"}
            assert rec.accepted[0]["authorization"] == f"Bearer {TOKEN_A}"
            assert sim.jobs[job_id].status == "on_hold"

            await asyncio.sleep(0.5)
            assert rec.types() == ["issue"]

            resumed = await client.post(f"/print-jobs/{job_id}/resume", headers=auth())
            assert resumed.json()["status"] == "accepted"
            await eventually(lambda: len(rec.accepted) == 4)
            assert rec.types() == ["issue", "printed", "shipped", "delivered"]


async def test_cancel_stops_the_sequence() -> None:
    async with receiver() as rec:
        async with facility(
            report_events=True, printflow_url=rec.url, **(FAST | {"shipped_after": 0.3})
        ) as (client, sim):
            job_id = (await submit(client, new_order_id())).json()["job_id"]
            await eventually(lambda: rec.types() == ["printed"])

            await client.post(f"/print-jobs/{job_id}/cancel", headers=auth())

            await eventually(lambda: not sim._tasks, within=1)  # woken, not left sleeping
            await asyncio.sleep(0.4)
            assert rec.types() == ["printed"]


async def test_cancel_during_a_hold_stops_the_sequence() -> None:
    async with receiver() as rec:
        async with facility(report_events=True, printflow_url=rec.url, **FAST) as (client, sim):
            order_id = new_order_id()
            job_id = (await submit(client, order_id)).json()["job_id"]
            await client.post("/_control/raise-issue", json={"order_id": order_id})
            await eventually(lambda: len(rec.accepted) >= 1)

            await client.post(f"/print-jobs/{job_id}/cancel", headers=auth())

            await eventually(lambda: not sim._tasks, within=1)
            assert "delivered" not in rec.types()
            issue_after_cancel = await client.post(
                "/_control/raise-issue", json={"order_id": order_id}
            )
            assert issue_after_cancel.status_code == 409


async def test_send_event_sends_any_event_now() -> None:
    async with receiver() as rec:
        async with facility(printflow_url=rec.url) as (client, _):
            order_id = new_order_id()
            await submit(client, order_id)
            event_id = str(uuid.uuid4())
            for _attempt in range(2):  # the same event twice: printflow must treat it as one
                sent = await client.post(
                    "/_control/send-event",
                    json={"order_id": order_id, "type": "returned", "event_id": event_id},
                )
                assert sent.status_code == 202
            await eventually(lambda: len(rec.accepted) == 2)
            assert {post["json"]["event_id"] for post in rec.accepted} == {event_id}
            unknown = await client.post(
                "/_control/send-event", json={"order_id": "ord_nope", "type": "printed"}
            )
            assert unknown.status_code == 404


async def test_shutdown_cancels_background_tasks() -> None:
    app = create_app(
        SimulatorConfig(tokens=TOKENS, report_events=True, printflow_url="http://127.0.0.1:9")
    )
    sim: Simulator = app.state.simulator
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facility") as client:
            await submit(client, new_order_id())
        tasks = list(sim._tasks)
        assert tasks
    assert all(task.done() for task in tasks)
    assert not sim._tasks


async def test_reset_forgets_everything() -> None:
    async with facility() as (client, sim):
        await client.post("/_control/fail-next", json={"count": 1})
        await client.post("/_control/config", json={"response_delay": 0.01})
        await submit(client, new_order_id())
        await submit(client, new_order_id())

        config = (await client.post("/_control/reset")).json()

        assert config["response_delay"] == 0
        assert config["facilities"] == ["fac_berlin", "fac_dallas"]
        assert TOKEN_A not in json.dumps(config)
        assert (await client.get("/print-jobs")).json() == []
        assert (await client.get("/_control/requests")).json() == []
        assert sim.fail_next.count == 0


# --- configuration ----------------------------------------------------------------------------


def write_facilities(path: Path) -> Path:
    path.write_text(
        json.dumps(
            [
                {"id": "fac_one", "api_token": "t1", "name": "One"},
                {"id": "fac_two", "api_token": "t2", "name": "Two"},
            ]
        )
    )
    return path


def test_config_from_env(tmp_path: Path) -> None:
    env = {
        "PRINTFLOW_FACILITIES_FILE": str(write_facilities(tmp_path / "f.json")),
        "PRINTFLOW_SIM_RESPONSE_DELAY": "1.5",
        "PRINTFLOW_SIM_REPORT_EVENTS": "true",
        "PRINTFLOW_SIM_PRINTFLOW_URL": "http://localhost:8000/",
        "PRINTFLOW_SIM_PRINTED_AFTER": "2",
        "PRINTFLOW_SIM_SHIPPED_AFTER": "3",
        "PRINTFLOW_SIM_DELIVERED_AFTER": "4",
        "PRINTFLOW_SIM_MAX_JOBS_PER_SECOND": "10",
    }

    config = SimulatorConfig.from_env(env)

    assert config.tokens == {"t1": "fac_one", "t2": "fac_two"}
    assert config.response_delay == 1.5
    assert config.report_events is True
    assert config.printflow_url == "http://localhost:8000"
    assert (config.printed_after, config.shipped_after, config.delivered_after) == (2, 3, 4)
    assert config.max_jobs_per_second == 10
    unlimited = SimulatorConfig.from_env(env | {"PRINTFLOW_SIM_MAX_JOBS_PER_SECOND": ""})
    assert unlimited.max_jobs_per_second is None
    override = SimulatorConfig.from_env(env | {"PRINTFLOW_SIM_TOKENS": '{"x": "fac_x"}'})
    assert override.tokens == {"x": "fac_x"}
    defaults = SimulatorConfig.from_env(
        {"PRINTFLOW_FACILITIES_FILE": env["PRINTFLOW_FACILITIES_FILE"]}
    )
    assert defaults.report_events is False and defaults.printflow_url is None
    assert defaults.response_delay == 0 and defaults.printed_after == 5
    assert defaults.max_jobs_per_second is None


def test_config_errors_are_explained(tmp_path: Path) -> None:
    with pytest.raises(SimulatorConfigError, match="not found"):
        SimulatorConfig.from_env({"PRINTFLOW_FACILITIES_FILE": str(tmp_path / "missing.json")})
    facilities = str(write_facilities(tmp_path / "f.json"))
    with pytest.raises(SimulatorConfigError, match="invalid"):
        SimulatorConfig.from_env(
            {"PRINTFLOW_FACILITIES_FILE": facilities, "PRINTFLOW_SIM_PRINTED_AFTER": "-1"}
        )
    with pytest.raises(SimulatorConfigError, match="max_jobs_per_second"):
        SimulatorConfig.from_env(
            {"PRINTFLOW_FACILITIES_FILE": facilities, "PRINTFLOW_SIM_MAX_JOBS_PER_SECOND": "0"}
        )


@pytest.mark.skipif(not BUNDLED_FACILITIES.exists(), reason="domain/facilities.json not there yet")
def test_bundled_facilities_are_the_default() -> None:
    config = SimulatorConfig.from_env({})
    assert config.tokens
    assert all(config.tokens.values())


def test_cli_flags_override_env(tmp_path: Path) -> None:
    env = {
        "PRINTFLOW_FACILITIES_FILE": str(write_facilities(tmp_path / "f.json")),
        "PRINTFLOW_SIM_RESPONSE_DELAY": "9",
        "PRINTFLOW_SIM_REPORT_EVENTS": "1",
        "PRINTFLOW_SIM_SHIPPED_AFTER": "7",
    }
    args = parse_args(
        [
            "--response-delay",
            "0.5",
            "--no-report-events",
            "--printflow-url",
            "http://api:8000",
            "--printed-after",
            "1",
            "--delivered-after",
            "3",
            "--max-jobs-per-second",
            "25",
        ]
    )

    config = build_config(args, env)

    assert config.response_delay == 0.5
    assert config.report_events is False
    assert config.printflow_url == "http://api:8000"
    assert (config.printed_after, config.shipped_after, config.delivered_after) == (1, 7, 3)
    assert config.max_jobs_per_second == 25
    assert config.tokens == {"t1": "fac_one", "t2": "fac_two"}


async def test_python_m_simulator_serves_print_jobs(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {
        "PRINTFLOW_FACILITIES_FILE": str(write_facilities(tmp_path / "f.json")),
        "PRINTFLOW_SIM_PORT": "1",  # the flag wins
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def up() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_async(up, within=15)
            order_id = new_order_id()
            response = await client.post(
                "/print-jobs",
                json=job_body(order_id, facility_id="fac_two"),
                headers={"Authorization": "Bearer t2", "Idempotency-Key": order_id},
            )
            assert response.status_code == 201
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(process.communicate(), 10)
    log = output.decode()
    # uvicorn shuts down cleanly, then re-raises the signal it caught.
    assert "Application shutdown complete" in log, log
    assert f"order={order_id}" in log
    assert f"fac_two -> 201 {response.json()['job_id']}" in log


async def wait_async(check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
