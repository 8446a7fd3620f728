"""Print files checked before the cutoff, in the order workflow (time-skipping server), by the
real check activity against files the tests make and serve from a local HTTP server: a pass and
the print job naming the bytes checked, a failure held before the cutoff and fixed by
``replace_files``, ``proceed``, a cutoff that comes while a check runs, a server that answers
503 then the file, one that never does, and one design on many orders fetched once."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pypdf import PdfWriter
from temporalio.testing import WorkflowEnvironment

from activities.preflight import PreflightActivities
from contracts.orders import PersonalizationSubmission
from devstack.processes import TLS
from domain.catalog import load_catalog
from domain.facilities import StoredSchedule
from domain.orders import EventType, HoldKind, HoldResolution, OrderInput, Status
from integrations.files import FileFetcher
from runtime.settings import BUNDLED_CATALOG
from tests.helpers.file_server import FileServer
from tests.helpers.polling import eventually
from tests.helpers.workflows import (
    OSLO,
    Recorder,
    clear_of_a_cutoff,
    order_body,
    order_input,
    order_worker,
    replays,
    sleep_until,
    start,
    state_of,
    until,
    until_status,
)
from workflows.orders import OrderWorkflow
from workflows.preflight import CHECK_RETRY

MM = 72 / 25.4  # PDF points per millimetre
# A facility whose cutoffs come every ten minutes: a busy file server outlasts one quickly.
EVERY_TEN_MINUTES = OSLO.model_copy(update={"schedule": StoredSchedule(every_seconds=600)})


def pdf(width_mm: float, height_mm: float) -> bytes:
    """A one-page PDF of that page size."""
    writer = PdfWriter()
    writer.add_blank_page(width=width_mm * MM, height=height_mm * MM)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# poster_a3_matte: 297 × 420 mm with 3 mm bleed on every side.
GOOD = pdf(303, 426)
WRONG_SIZE = pdf(210, 297)


@pytest.fixture
async def checks() -> AsyncIterator[PreflightActivities]:
    async with httpx.AsyncClient(verify=TLS) as http:
        fetcher = FileFetcher(
            http, allow_private=True, max_bytes=5_000_000, timeout=timedelta(seconds=20)
        )
        yield PreflightActivities(
            fetcher, load_catalog(BUNDLED_CATALOG), cache_ttl=timedelta(hours=1)
        )


def _checked(inp: OrderInput, url: str, **changes: Any) -> OrderInput:
    """``inp`` with checks on and its one item's file at ``url``."""
    body = order_body(
        items=[
            {
                "item_reference_id": "poster-1",
                "product_uid": "poster_a3_matte",
                "quantity": 1,
                "files": [{"type": "default", "url": url}],
            }
        ]
    )
    return order_input(inp.received_at, body=body).model_copy(update={"preflight": "on", **changes})


def _events(rec: Recorder) -> list[str]:
    return [e.type for p in rec.projections for e in p.new_events]


async def test_a_good_file_passes_and_the_job_names_the_bytes_checked(
    env: WorkflowEnvironment, files: FileServer, checks: PreflightActivities
) -> None:
    rec = Recorder()
    url = files.file("/poster.pdf", GOOD)
    async with order_worker(env.client, rec, [checks.check_print_file]) as tq:
        now = await clear_of_a_cutoff(env)
        handle = await start(env.client, tq, _checked(order_input(now), url))
        state = await until(handle, lambda s: s.items[0].files[0].preflight.status != "pending")
        preflight = state.items[0].files[0].preflight
        assert preflight.status == "passed" and preflight.checks == []
        assert preflight.sha256 == hashlib.sha256(GOOD).hexdigest()
        assert preflight.bytes == len(GOOD) and preflight.type == "pdf"
        await eventually(
            "the files' check to be projected", lambda: EventType.FILES_CHECKED in _events(rec)
        )

        assert state.cutoff_at is not None
        await sleep_until(env, state.cutoff_at + timedelta(seconds=1))
        await until_status(handle, Status.IN_PRODUCTION)
        [job] = rec.jobs
        assert job.items[0].files == [
            {"type": "default", "url": url, "sha256": hashlib.sha256(GOOD).hexdigest()}
        ]


async def test_a_failing_file_holds_the_order_before_the_cutoff_until_it_is_replaced(
    env: WorkflowEnvironment, files: FileServer, checks: PreflightActivities
) -> None:
    rec = Recorder()
    url = files.file("/a4.pdf", WRONG_SIZE)
    async with order_worker(env.client, rec, [checks.check_print_file]) as tq:
        now = await clear_of_a_cutoff(env)
        handle = await start(env.client, tq, _checked(order_input(now), url))
        held = await until(handle, lambda s: s.status is Status.ON_HOLD)
        assert held.hold.kind is HoldKind.FILE_ISSUE and held.hold.resume_to is Status.SCHEDULED
        assert "item poster-1, file 1" in held.hold.description
        assert "page" in held.hold.description and "210.0 × 297.0 mm" in held.hold.description
        [check] = held.items[0].files[0].preflight.checks
        assert check.code == "page_size_mismatch"
        await eventually("the merchant's notice of the hold", lambda: rec.notices)
        assert [n.kind for n in rec.notices] == [HoldKind.FILE_ISSUE]

        # Past the cutoff it waits for the merchant: nothing reaches the facility.
        cutoff = held.cutoff_at
        await sleep_until(env, cutoff + timedelta(hours=1))
        assert rec.jobs == []

        fixed = files.file("/a3.pdf", GOOD)
        resolution = HoldResolution.model_validate(
            {"action": "replace_files", "files": {"poster-1": [{"type": "default", "url": fixed}]}}
        )
        answer = await handle.execute_update(OrderWorkflow.resolve_hold, resolution)
        assert answer.status is Status.SCHEDULED and answer.cutoff_at > cutoff
        state = await until(handle, lambda s: s.items[0].files[0].preflight.status == "passed")
        await sleep_until(env, state.cutoff_at + timedelta(seconds=1))
        await until_status(handle, Status.IN_PRODUCTION)
        [job] = rec.jobs
        assert job.items[0].files[0]["url"] == fixed
        assert job.items[0].files[0]["sha256"] == hashlib.sha256(GOOD).hexdigest()
        await replays(handle)


async def test_proceed_prints_the_failed_file_as_it_is(
    env: WorkflowEnvironment, files: FileServer, checks: PreflightActivities
) -> None:
    rec = Recorder()
    url = files.file("/a4.pdf", WRONG_SIZE)
    async with order_worker(env.client, rec, [checks.check_print_file]) as tq:
        handle = await start(
            env.client, tq, _checked(order_input(await clear_of_a_cutoff(env)), url)
        )
        await until(handle, lambda s: s.status is Status.ON_HOLD)
        await handle.execute_update(OrderWorkflow.resolve_hold, HoldResolution(action="proceed"))
        resolved = await eventually(
            "the projection of the hold's end", lambda: rec.details(EventType.HOLD_RESOLVED)
        )
        assert resolved[0]["files_printed_as_they_are"] == ["poster-1 file 1"]
        state = await state_of(handle)
        # Printed as it is, and still shown as what it is.
        assert state.items[0].files[0].preflight.status == "failed"
        assert state.items[0].files[0].preflight.proceeded
        assert state.hold is None
        await sleep_until(env, state.cutoff_at + timedelta(seconds=1))
        await until_status(handle, Status.IN_PRODUCTION)
        assert rec.jobs[0].items[0].files[0]["sha256"] == hashlib.sha256(WRONG_SIZE).hexdigest()


async def test_a_cutoff_that_comes_while_a_file_is_checked_moves_to_the_next(
    env: WorkflowEnvironment, files: FileServer, checks: PreflightActivities
) -> None:
    """The file's server is busy (503) past the cutoff: the check is still running, so the
    order waits for the next cutoff, and goes with it once the file has passed."""
    rec = Recorder()
    url = files.status("/busy.pdf", 503)
    async with order_worker(env.client, rec, [checks.check_print_file]) as tq:
        now = await env.get_current_time()
        # Patient: the server skips time while the check waits to be retried.
        inp = _checked(
            order_input(now, facility=EVERY_TEN_MINUTES), url, preflight_give_up=timedelta(days=7)
        )
        handle = await start(env.client, tq, inp)
        first = (await state_of(handle)).cutoff_at
        assert first is not None
        await sleep_until(env, first + timedelta(seconds=1))

        waiting = await until(handle, lambda s: s.cutoff_at > first)
        assert waiting.status is Status.SCHEDULED
        assert waiting.items[0].files[0].preflight.status == "pending"
        assert rec.jobs == []
        postponed = await eventually(
            "the postponement to be projected", lambda: rec.details(EventType.CUTOFF_POSTPONED)
        )
        # The timeline says why, and until when (the projection may be a step behind).
        assert all(d["cutoff_at"] > first.isoformat() for d in postponed)
        assert all("still being checked" in d["reason"] for d in postponed)

        files.file("/busy.pdf", GOOD)
        await env.sleep(CHECK_RETRY.maximum_interval + timedelta(seconds=1))  # the next attempt
        ready = await until(handle, lambda s: s.items[0].files[0].preflight.status == "passed")
        if ready.status is Status.SCHEDULED:
            await sleep_until(env, ready.cutoff_at + timedelta(seconds=1))
        await until_status(handle, Status.IN_PRODUCTION)
        assert len(rec.jobs) == 1
        await replays(handle)


async def test_a_server_that_answers_503_is_asked_again_until_it_has_the_file(
    env: WorkflowEnvironment, files: FileServer, checks: PreflightActivities
) -> None:
    rec = Recorder()
    url = files.status("/busy.pdf", 503)
    async with order_worker(env.client, rec, [checks.check_print_file]) as tq:
        inp = _checked(
            order_input(await clear_of_a_cutoff(env)), url, preflight_give_up=timedelta(days=7)
        )
        handle = await start(env.client, tq, inp)
        await until(handle, lambda s: len(files.hits) >= 2)
        assert (await state_of(handle)).items[0].files[0].preflight.status == "pending"
        files.file("/busy.pdf", GOOD)
        await env.sleep(CHECK_RETRY.maximum_interval + timedelta(seconds=1))  # the next attempt
        state = await until(handle, lambda s: s.items[0].files[0].preflight.status != "pending")
        assert state.items[0].files[0].preflight.status == "passed"
        assert state.hold is None
        await eventually(
            "the files' check to be projected", lambda: EventType.FILES_CHECKED in _events(rec)
        )


async def test_a_file_still_unreachable_when_the_order_gives_up_holds_it(
    env: WorkflowEnvironment, files: FileServer, checks: PreflightActivities
) -> None:
    rec = Recorder()
    url = files.status("/down.pdf", 503)
    async with order_worker(env.client, rec, [checks.check_print_file]) as tq:
        inp = _checked(
            order_input(await clear_of_a_cutoff(env)), url, preflight_give_up=timedelta(seconds=3)
        )
        handle = await start(env.client, tq, inp)
        held = await until(handle, lambda s: s.status is Status.ON_HOLD)
        [check] = held.items[0].files[0].preflight.checks
        assert check.code == "file_unreachable"
        assert "503" in check.message
        assert held.hold.kind is HoldKind.FILE_ISSUE


async def test_one_design_on_many_orders_is_downloaded_once(
    env: WorkflowEnvironment, files: FileServer, checks: PreflightActivities
) -> None:
    rec = Recorder()
    url = files.file("/design.pdf", GOOD, etag='"v1"')
    async with order_worker(env.client, rec, [checks.check_print_file]) as tq:
        now = await clear_of_a_cutoff(env)
        handles = [
            await start(
                env.client,
                tq,
                _checked(order_input(now), url).model_copy(update={"order_id": f"ord_many_{n}"}),
            )
            for n in range(5)
        ]
        for handle in handles:
            await until(handle, lambda s: s.items[0].files[0].preflight.status == "passed")
    downloads = [
        h
        for h, headers in zip(files.hits, files.headers, strict=True)
        if "if-none-match" not in headers
    ]
    assert downloads == ["/design.pdf"]
    assert len(files.hits) == 5  # the others asked whether it changed (304)


async def test_a_customer_image_is_checked_after_personalization(
    env: WorkflowEnvironment, files: FileServer, checks: PreflightActivities
) -> None:
    """The customer's photo is not a print file with a print area, but it must be an image a
    printer can read: random bytes hold the order before the cutoff, naming the field."""
    rec = Recorder()
    poster = files.file("/poster.pdf", GOOD)
    photo = files.file("/photo.jpg", b"not an image at all", content_type="image/jpeg")
    body = order_body(
        items=[
            {
                "item_reference_id": "poster-1",
                "product_uid": "poster_a3_matte",
                "quantity": 1,
                "files": [{"type": "default", "url": poster}],
                "personalization": {
                    "fields": [
                        {"name": "photo", "label": "Your photo", "type": "image_url"},
                        {"name": "caption", "label": "Caption", "type": "text"},
                    ]
                },
            }
        ]
    )
    async with order_worker(env.client, rec, [checks.check_print_file]) as tq:
        now = await clear_of_a_cutoff(env)
        inp = order_input(now, body=body).model_copy(update={"preflight": "on"})
        handle = await start(env.client, tq, inp)
        await env.sleep(timedelta(minutes=16))  # the link is e-mailed after 15 minutes
        linked = await until(handle, lambda s: s.link_id is not None)
        answer = await handle.execute_update(
            OrderWorkflow.complete_personalization,
            PersonalizationSubmission(
                link_id=linked.link_id, values={"poster-1": {"photo": photo, "caption": "Hi"}}
            ),
        )
        assert answer.status is Status.SCHEDULED
        held = await until(handle, lambda s: s.status is Status.ON_HOLD)
        item = held.items[0]
        assert set(item.image_checks) == {"photo"}  # text values are not fetched
        [check] = item.image_checks["photo"].checks
        assert check.code == "unsupported_file_type"
        assert held.hold.kind is HoldKind.FILE_ISSUE
        assert "item poster-1, customer image 'photo'" in held.hold.description
        assert item.files[0].preflight.status == "passed"
        assert rec.jobs == []

        answer = await handle.execute_update(
            OrderWorkflow.resolve_hold, HoldResolution(action="proceed")
        )
        state = await state_of(handle)
        assert state.items[0].image_checks["photo"].proceeded
        await sleep_until(env, state.cutoff_at + timedelta(seconds=1))
        await until_status(handle, Status.IN_PRODUCTION)
