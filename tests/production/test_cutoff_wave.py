"""A cutoff wave: every order of a facility is due at the same instant, and the facility gets
them at its ``max_jobs_per_second``, not all in the same second.

Real parts, in-process: the API, the worker and the per-facility workers as ``python worker.py``
wires them (``worker.facility_workers``), the dev server, a database, and the simulator
enforcing the same limit as a strict partner would (429 beyond it in any one second). Forty
orders share one cutoff at a facility limited to ten jobs a second.

What Temporal guarantees, measured on the dev server: its limit is a token bucket per task
queue partition (4 by default, each with a quarter of the rate and a burst of
``ceil(rate / 4)``), full when the wave begins. So the wave opens with about one second's worth
at once, then goes on at the rate: the first second can carry up to ``4 * ceil(10 / 4) + 10 =
22`` requests (measured: 17 to 19, then 10 in any later second when the facility never refuses).
The facility answers the excess 429 and printflow retries it. Without the limit (one run, for
comparison) the same wave sent 34 in its first second, 44 were refused, and it took 8 s to
drain instead of about 5.5 s.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from simulator.floor import Simulator, peak_per_window
from tests.helpers.api import FACILITY_URL, Api, order_json, running_api

ORDERS = 40
LIMIT = 10
PERIOD = 8  # seconds between the facility's cutoffs: room to create every order before one
PARTITIONS = 4  # the dev server's task queue partitions, each with its own token bucket
MOST_SENT_IN_ONE_SECOND = PARTITIONS * math.ceil(LIMIT / PARTITIONS) + LIMIT
WAVE = {
    "id": "wave",
    "name": "Wave",
    "timezone": "UTC",
    "countries": ["*"],
    "api_url": FACILITY_URL,
    "api_token": "tok-wave",
    "schedule": {"every_seconds": PERIOD},
    "max_jobs_per_second": LIMIT,
}


async def _just_after_a_cutoff() -> None:
    """Waits until a cutoff has just passed, so every order created now shares the next one."""
    await asyncio.sleep(PERIOD - time.time() % PERIOD + 0.05)


async def _create_wave(api: Api, key: dict[str, str]) -> tuple[list[str], datetime]:
    await _just_after_a_cutoff()
    created = await asyncio.gather(
        *(
            api.client.post("/v1/orders", json=order_json(country="DE"), headers=key)
            for _ in range(ORDERS)
        )
    )
    assert all(r.status_code == 201 for r in created), [r.text for r in created]
    cutoffs = {r.json()["cutoff_at"] for r in created}
    assert len(cutoffs) == 1, f"the orders straddle a cutoff: {cutoffs}"
    cutoff = datetime.fromisoformat(cutoffs.pop())
    assert cutoff > datetime.now(UTC), "creating the orders took past their cutoff"
    return [r.json()["id"] for r in created], cutoff


async def _in_production(api: Api, key: dict[str, str], ids: list[str]) -> list[dict[str, Any]]:
    return [
        await api.until(key, order_id, lambda o: o["status"] == "in_production", within=30)
        for order_id in ids
    ]


@pytest.mark.serial  # a rate per second of the wall clock: alone on the machine (tests/run.py)
async def test_a_cutoff_wave_reaches_the_facility_at_its_rate(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    async with running_api(
        dev_env.client,
        database_url,
        tmp_path,
        facilities=[WAVE],
        simulator_config={"max_jobs_per_second": LIMIT},
    ) as api:
        key = api.auth(await api.merchant())
        ids, cutoff = await _create_wave(api, key)

        orders = await _in_production(api, key, ids)

        # Every order went to production once, with the one job the facility holds for it.
        sim: Simulator = api.simulator.state.simulator
        assert sorted(job.order_id for job in sim.jobs.values()) == sorted(ids)
        job_of = {job.order_id: job.job_id for job in sim.jobs.values()}
        for order in orders:
            assert order["job_id"] == job_of[order["id"]]
            assert [e["type"] for e in order["events"]].count("in_production") == 1

        # The facility never took more than its limit in any one second, and what reached its
        # door at all (429s included) is what Temporal's token buckets let through.
        taken_peak = sim.peak_per_second("wave")
        sent = sorted(r.at.timestamp() for r in sim.requests)
        sent_peak = peak_per_window(sent)
        refused = sum(r.status == 429 for r in sim.requests)
        first = min(job.received_at for job in sim.jobs.values())
        last = max(job.received_at for job in sim.jobs.values())
        print(
            f"\ncutoff wave: {ORDERS} orders, limit {LIMIT}/s; taken at most {taken_peak} in "
            f"one second; sent at most {sent_peak} in one second, {len(sent)} requests, "
            f"{refused} answered 429; first job {(first - cutoff).total_seconds():.2f} s after "
            f"the cutoff, the last {(last - cutoff).total_seconds():.2f} s after it "
            f"(drained in {(last - first).total_seconds():.2f} s)"
        )
        assert taken_peak <= LIMIT
        assert sent_peak <= MOST_SENT_IN_ONE_SECOND
