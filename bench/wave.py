"""The cutoff wave: N orders sharing one cutoff all go to the facility at once.

Orders: N orders for ``bench-wave``, whose cutoffs come every ``period`` seconds (aligned to
the epoch, as every ``every_seconds`` schedule is), created between two cutoffs so they share
the next one. Each waits on its timer; at the cutoff the N timers fire together and each
workflow submits its print job. Measured: seconds from the cutoff to the last print job
received by the facility simulator (its own timestamps, ``/_control/requests``).

Two bare waves, on the bare worker (printflow's worker settings), each N workflows with a timer
to the same moment:

- the fair limit, ``BareSubmit`` (bench/bare.py): then printflow's own print job submission,
  the same HTTP call to the same simulator through the same client, on a task queue of its
  own; measured exactly as the orders are (the simulator's timestamps);
- ``BareWave``: then one no-op activity that stamps when it ran: Temporal alone, with no call
  to make (information: what the call itself costs is the difference).

The ratio is bare / orders, from the fair limit: 1.0 means printflow drains a wave as fast as a
workflow that only makes the call printflow must make.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from bench.bare import BareSubmit, BareWave
from bench.baseline import closed_times
from bench.common import (
    WAVE,
    Api,
    BenchError,
    bounded,
    next_boundary,
    order_body,
    percentile,
    say,
    sleep_until,
    wait_submitted,
)
from contracts.orders import PrintJobItem, PrintJobRequest
from domain.orders import StoredAddress


def period_for(count: int) -> int:
    """Seconds between the wave facility's cutoffs: room to create ``count`` orders at 15/s."""
    return 30 * math.ceil((count / 15 + 10) / 30)


async def cutoff_ahead(period: int, needed: float) -> float:
    """The next cutoff at least ``needed`` seconds away, waiting for one to pass if need be."""
    now = time.time()
    cutoff = next_boundary(period, now)
    if cutoff - now < needed:
        say(f"waiting {cutoff - now:.0f} s for a cutoff to pass, so the wave gets a whole period")
        await sleep_until(cutoff + 0.05)
        cutoff = next_boundary(period, time.time())
    return cutoff


def _summary(offsets: list[float], lead: float) -> dict[str, Any]:
    offsets = sorted(offsets)
    return {
        "count": len(offsets),
        "lead_s": lead,
        "first_s": offsets[0],
        "p50_s": percentile(offsets, 0.5),
        "last_s": offsets[-1],
        "offsets": offsets,
    }


async def orders(
    api: Api, simulator_url: str, count: int, concurrency: int, period: int, creates_per_s: float
) -> dict[str, Any]:
    cutoff = await cutoff_ahead(period, count / max(creates_per_s, 1.0) * 1.5 + 5)
    tag = uuid.uuid4().hex[:6]
    made = await bounded(
        concurrency,
        (lambda i=i: api.create(order_body(f"W-{tag}-{i}", WAVE, api)) for i in range(count)),
    )
    lead = cutoff - time.time()
    want = datetime.fromtimestamp(cutoff, UTC)
    others = [o["id"] for o in made if datetime.fromisoformat(o["cutoff_at"]) != want]
    if others or lead < 1:
        raise BenchError(
            f"{len(others)} of {count} wave orders missed the shared cutoff "
            f"(created {lead:.1f} s before it); lower --wave or rerun on a quieter machine"
        )
    say(f"  {count} orders created {lead:.1f} s before their shared cutoff")
    arrived = await wait_submitted(simulator_url, [o["id"] for o in made], within=300 + lead)
    return _summary([at - cutoff for at in arrived.values()], lead) | {"ids": list(arrived)}


async def bare(
    client: Client,
    task_queue: str,
    count: int,
    concurrency: int,
    period: int,
    starts_per_s: float,
) -> dict[str, Any]:
    cutoff = await cutoff_ahead(period, count / max(starts_per_s, 1.0) * 1.5 + 5)
    prefix = f"bench-barewave-{uuid.uuid4().hex[:8]}-"
    ids = [f"{prefix}{i}" for i in range(count)]
    handles = await bounded(
        concurrency,
        (
            lambda wid=wid: client.start_workflow(
                BareWave.run, cutoff, id=wid, task_queue=task_queue
            )
            for wid in ids
        ),
    )
    lead = cutoff - time.time()
    if lead < 1:
        raise BenchError(f"bare wave started only {lead:.1f} s before its moment")
    say(f"  {count} bare workflows started {lead:.1f} s before their shared moment")
    await sleep_until(cutoff)
    await closed_times(client, "BenchBareWave", prefix, count, within=300)
    stamps = await bounded(concurrency, (lambda h=h: h.result() for h in handles))
    return _summary([float(s) - cutoff for s in stamps], lead)


def print_job(order_id: str, api: Api) -> PrintJobRequest:
    """The print job printflow's worker sends for a wave order (``OrderWorkflow._print_job``):
    the bench's order, its file with the sha256 of the bytes checked."""
    order = order_body(order_id, WAVE, api)
    sha256 = hashlib.sha256(order_id.encode()).hexdigest()
    return PrintJobRequest(
        order_id=order_id,
        order_reference_id=order["order_reference_id"],
        facility_id=WAVE,
        items=[
            PrintJobItem(
                item_reference_id=item["item_reference_id"],
                product_uid=item["product_uid"],
                quantity=item["quantity"],
                files=[{**f, "sha256": sha256} for f in item["files"]],
            )
            for item in order["items"]
        ],
        shipping_address=StoredAddress.model_validate(order["shipping_address"]),
    )


async def bare_submit(
    client: Client,
    task_queue: str,
    api: Api,
    count: int,
    concurrency: int,
    period: int,
    starts_per_s: float,
) -> dict[str, Any]:
    """The fair limit: N ``BareSubmit`` released at one moment; seconds from it to each print
    job received by the simulator."""
    cutoff = await cutoff_ahead(period, count / max(starts_per_s, 1.0) * 1.5 + 5)
    ids = [f"bench-baresubmit-{uuid.uuid4().hex[:8]}-{i}" for i in range(count)]
    await bounded(
        concurrency,
        (
            lambda wid=wid: client.start_workflow(
                BareSubmit.run, args=[cutoff, print_job(wid, api)], id=wid, task_queue=task_queue
            )
            for wid in ids
        ),
    )
    lead = cutoff - time.time()
    if lead < 1:
        raise BenchError(f"bare submissions started only {lead:.1f} s before their moment")
    say(f"  {count} bare submissions started {lead:.1f} s before their shared moment")
    arrived = await wait_submitted(api.simulator_url, ids, within=300 + lead)
    return _summary([at - cutoff for at in arrived.values()], lead)
