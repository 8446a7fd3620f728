"""The soak (``--soak MINUTES``): orders at half the create capacity for many minutes, and what
the processes do with their memory and latency meanwhile.

The create capacity is measured first as the latency step measures it (``orders.capacity``:
``--requests`` creates by ``--concurrency`` clients, until the processes are quiet again).
Then creates arrive at random (Poisson, ``common.poisson_arrivals``) at half that rate
(``--soak-rate`` sets another) for MINUTES minutes, each sent when it arrives whatever is in
flight (``orders.arriving``), for ``bench-soon``: a cutoff every 5 seconds, so every few
seconds a cutoff wave of the orders created since the last one goes to the facility while the
next creates arrive. The facility reports each job printed, shipped and delivered a second
apart (``REPORT_AFTER``), so each order's workflow closes on delivery as a real one does: what
Temporal holds stays the orders of the last few seconds, not every order of the soak.

Per minute (each create counted in the minute it was sent): creates, errors (any answer other
than 201/200, or a connection broken three times), create p50 and p99, and at the minute's end
the resident set (VmRSS) of the API, the worker, the Temporal dev server and the simulator, and
the share of the machine other processes used during the minute.

At the end, once every print job had time to arrive: every order at the facility exactly once
(the simulator's ``GET /print-jobs``: one job per order, none missing), and the verdicts:

- **errors**: none;
- **RSS flat**: for the API, the worker and Temporal, the per-minute RSS over the last 20
  minutes (the last two thirds of a shorter soak) stays within 10 % (highest ÷ lowest ≤ 1.1);
  the simulator is not judged: it is the test double of a facility and keeps every job and
  request it received, by design;
- **p99**: every minute's create p99 within the goal at this load (``CREATE_P99_MS``).

Beside the minutes, the creates by the second of the cutoff cycle they were sent in (0–1 s
after a cutoff, 1–2 s, …): whether the tail comes with the cutoff waves.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.service import RPCError

from bench.common import (
    SOON,
    SOON_PERIOD,
    Api,
    BenchError,
    cpu_used,
    machine_busy_seconds,
    order_body,
    percentile,
    poisson_arrivals,
    report_events,
    rss_mb,
    say,
    wait_submitted,
)
from bench.cost import Processes
from bench.orders import arriving, capacity

# The goals: the same create p99 as the goals' load of ``make bench``.
CREATE_P99_MS = 50.0
RSS_TOLERANCE = 0.10
RSS_WINDOW_MINUTES = 20
# Processes whose RSS is judged; the simulator's is shown only (it keeps every job).
ONCE_SHOWN = 10
# Seconds between the facility's reports of a job: printed, shipped, delivered.
REPORT_AFTER = 1.0
RUNNING_ORDERS = 'WorkflowType="OrderWorkflow" AND ExecutionStatus="Running"'
JUDGED = ("api", "worker", "temporal")
SHOWN = (*JUDGED, "simulator")


@dataclass(frozen=True)
class Sent:
    """One create: when it was sent (seconds after the soak began), how long it took, whether
    it was answered 201/200, and when it was sent in epoch seconds (cutoffs are multiples of
    the facility's period since the epoch)."""

    at: float
    seconds: float
    ok: bool
    wall: float = 0.0


def by_minute(sent: Sequence[Sent], minutes: int) -> list[dict[str, Any]]:
    """Creates, errors and the answered creates' p50/p99 (ms) of each minute, by the minute they
    were sent in (a create sent after the last minute counts in the last)."""
    buckets: list[list[Sent]] = [[] for _ in range(minutes)]
    for s in sent:
        buckets[min(minutes - 1, max(0, int(s.at // 60)))].append(s)
    rows = []
    for n, bucket in enumerate(buckets):
        answered = [s.seconds for s in bucket if s.ok]
        rows.append(
            {
                "minute": n + 1,
                "creates": len(bucket),
                "errors": sum(1 for s in bucket if not s.ok),
                "p50_ms": percentile(answered, 0.50) * 1000,
                "p99_ms": percentile(answered, 0.99) * 1000,
            }
        )
    return rows


def by_cycle(sent: Sequence[Sent], period: int = SOON_PERIOD) -> list[dict[str, Any]]:
    """The answered creates by the whole second after the last cutoff they were sent in (0 to
    ``period`` - 1): how many, and their p50/p99 (ms)."""
    buckets: list[list[float]] = [[] for _ in range(period)]
    for s in sent:
        if s.ok:
            buckets[min(period - 1, int(s.wall % period))].append(s.seconds)
    return [
        {
            "after_cutoff_s": n,
            "creates": len(b),
            "p50_ms": percentile(b, 0.50) * 1000,
            "p99_ms": percentile(b, 0.99) * 1000,
        }
        for n, b in enumerate(buckets)
    ]


def flat_window(minutes: int) -> int:
    """How many of the last minutes the RSS verdict looks at: 20, or the last two thirds of a
    soak shorter than 30 minutes (at least one)."""
    return max(1, min(RSS_WINDOW_MINUTES, (2 * minutes) // 3))


def rss_flat(values: Sequence[float], minutes: int | None = None) -> dict[str, Any]:
    """Whether per-minute RSS ``values`` stay within ``RSS_TOLERANCE`` over the window
    (``flat_window``): highest ÷ lowest − 1, the first and last value of the window, and the
    slope in MB a minute (least squares) for the trend."""
    window = list(values[-flat_window(minutes or len(values)) :])
    if not window:
        return {"window_minutes": 0, "spread": math.nan, "met": None}
    spread = max(window) / min(window) - 1
    return {
        "window_minutes": len(window),
        "first_mb": window[0],
        "last_mb": window[-1],
        "spread": spread,
        "slope_mb_per_minute": slope(window),
        "met": spread <= RSS_TOLERANCE,
    }


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against their index (per step); 0 for fewer than 2."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    return num / sum((x - mean_x) ** 2 for x in range(n))


def p99_verdict(rows: Sequence[dict[str, Any]], goal: float = CREATE_P99_MS) -> dict[str, Any]:
    """Every minute's create p99 within ``goal`` ms; the worst and the median minute's p99, and
    how many minutes missed it."""
    p99s = [r["p99_ms"] for r in rows if not math.isnan(r["p99_ms"])]
    if not p99s:
        return {"goal_ms": goal, "met": None}
    return {
        "goal_ms": goal,
        "worst_ms": max(p99s),
        "median_ms": percentile(p99s, 0.5),
        "minutes_over": sum(1 for p in p99s if p > goal),
        "met": max(p99s) <= goal,
    }


def once(order_ids: Sequence[str], jobs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Whether each order has exactly one print job at the facility: how many have none, how
    many more than one, and the first ``ONCE_SHOWN`` ids of each."""
    count = Counter(job["order_id"] for job in jobs)
    missing = [oid for oid in order_ids if count[oid] == 0]
    repeated = [oid for oid in order_ids if count[oid] > 1]
    return {
        "orders": len(order_ids),
        "missing": len(missing),
        "more_than_once": len(repeated),
        # The first few of each, to look their workflows up while the stack still runs.
        "missing_ids": missing[:ONCE_SHOWN],
        "more_than_once_ids": repeated[:ONCE_SHOWN],
        "met": not missing and not repeated,
    }


def verdicts(
    rows: Sequence[dict[str, Any]], rss: dict[str, list[float]], at_facility: dict[str, Any]
) -> dict[str, Any]:
    """The soak's goals from its minutes, the RSS series by process, and ``once``."""
    errors = sum(r["errors"] for r in rows)
    return {
        "errors": {"value": errors, "met": errors == 0},
        "rss_flat": {name: rss_flat(rss[name], len(rows)) for name in JUDGED if name in rss},
        "p99": p99_verdict(rows),
        "once": at_facility,
    }


async def print_jobs(simulator_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=120) as http:
        response = await http.get(f"{simulator_url}/print-jobs")
    response.raise_for_status()
    jobs: list[dict[str, Any]] = response.json()
    return jobs


async def explain(api: Api, temporal: Client, order_id: str) -> dict[str, Any]:
    """What the API shows and what the workflow holds for an order with no print job, read
    while the stack still runs: the read model's status, the workflow's status, its pending
    workflow task and activities (attempts, last failure) and its last events."""
    found: dict[str, Any] = {"order_id": order_id}
    try:
        shown, _ = await api.get(order_id)
        found["shown"] = {"status": shown["status"], "cutoff_at": shown.get("cutoff_at")}
    except (BenchError, httpx.HTTPError) as err:
        found["shown"] = str(err)[:300]
    handle = temporal.get_workflow_handle(order_id)
    try:
        described = await handle.describe()
    except RPCError as err:
        found["workflow"] = f"describe failed: {err}"
        return found
    raw = described.raw_description
    pending = raw.pending_activities
    task = raw.pending_workflow_task if raw.HasField("pending_workflow_task") else None
    events = [event async for event in handle.fetch_history_events()]
    found["workflow"] = {
        "status": described.status.name if described.status else None,
        "history_length": described.history_length,
        # A workflow task that timed out and waits again: its attempt counts the timeouts,
        # which the history shows once.
        "pending_workflow_task": (
            {"attempt": task.attempt, "state": task.state} if task is not None else None
        ),
        "pending_activities": [
            {
                "type": a.activity_type.name,
                "attempt": a.attempt,
                "last_failure": a.last_failure.message[:300],
            }
            for a in pending
        ],
        "last_events": [
            f"{e.event_id} {e.event_time.ToDatetime():%H:%M:%S.%f} {e.WhichOneof('attributes')}"
            for e in events[-12:]
        ],
    }
    return found


async def still_open(temporal: Client, within: float) -> int:
    """The order workflows still running once every order had ``within`` seconds to be delivered
    (0 as soon as none is)."""
    deadline = time.monotonic() + within
    while True:
        running = (await temporal.count_workflows(RUNNING_ORDERS)).count
        if running == 0 or time.monotonic() > deadline:
            return running
        await asyncio.sleep(5)


async def run(
    api: Api,
    temporal: Client,
    processes: Processes,
    *,
    minutes: int,
    rate: float | None,
    requests: int,
    concurrency: int,
    drain: Callable[[], Awaitable[Any]],
) -> dict[str, Any]:
    measured: dict[str, Any] | None = None
    if rate is None:
        say(f"soak: the create capacity, {requests} creates at {concurrency} clients ...")
        measured = await capacity(api, requests, concurrency, drain)
        rate = measured["sustained_per_second"] / 2
        await drain()
    await report_events(api.simulator_url, after=REPORT_AFTER)
    say(
        f"soak: creates at random at {rate:.1f}/s for {minutes} minutes, cutoffs every 5 s, "
        "each order run to delivered ..."
    )
    tag = uuid.uuid4().hex[:6]
    sent: list[Sent] = []
    ids: list[str] = []
    started = time.perf_counter()

    async def send(n: int) -> None:
        at, wall = time.perf_counter() - started, time.time()
        try:
            order = await api.create(order_body(f"S-{tag}-{n}", SOON, api))
        except (BenchError, httpx.HTTPError) as err:
            sent.append(Sent(at, time.perf_counter() - started - at, False, wall))
            say(f"  create failed: {str(err)[:200]}")
            return
        ids.append(order["id"])
        sent.append(Sent(at, api.created[order["id"]][1], True, wall))

    pids = processes.pids
    rss: dict[str, list[float]] = {name: [] for name in SHOWN}
    others: list[float] = []

    async def each_minute() -> None:
        cores = os.cpu_count() or 1
        cpu, machine = processes.read(), machine_busy_seconds()
        for n in range(1, minutes + 1):
            await asyncio.sleep(max(0.0, started + 60 * n - time.perf_counter()))
            for name in SHOWN:
                rss[name].append(rss_mb(pids[name])["rss_mb"])
            now, busy = processes.read(), machine_busy_seconds()
            ours = sum(cpu_used(cpu, now).values())
            others.append(max(0.0, busy - machine - ours) / (60 * cores))
            cpu, machine = now, busy
            done = [s for s in sent if (n - 1) * 60 <= s.at < n * 60]
            say(
                f"  minute {n}: {len(done)} creates, "
                f"{sum(1 for s in done if not s.ok)} errors, p99 "
                f"{percentile([s.seconds for s in done if s.ok], 0.99) * 1000:.0f} ms; RSS "
                + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rss.items())
                + f" MB; others {others[-1]:.0%}"
            )

    sampler = asyncio.create_task(each_minute())
    await arriving(poisson_arrivals(rate, minutes * 60, seed=200), send, started)
    await sampler
    say(f"soak: waiting for {len(ids)} print jobs at the facility ...")
    try:
        await wait_submitted(api.simulator_url, ids, within=300, every=5.0)
    except BenchError as err:
        say(f"  {err}")
    at_facility = once(ids, await print_jobs(api.simulator_url))
    at_facility["explained"] = [
        await explain(api, temporal, oid) for oid in at_facility["missing_ids"]
    ]
    for found in at_facility["explained"]:
        say(f"  no print job for {found['order_id']}: {found}")
    open_at_end = await still_open(temporal, within=120)
    say(f"soak: {open_at_end} workflows still open")
    rows = by_minute(sent, minutes)
    for row, n in zip(rows, range(minutes), strict=True):
        row["rss_mb"] = {name: rss[name][n] for name in SHOWN}
        row["others_share"] = others[n]
    return {
        "minutes": minutes,
        "rate_per_second": rate,
        "capacity": (
            {k: v for k, v in measured.items() if k != "ids"} if measured is not None else None
        ),
        "creates": len(sent),
        "resent": api.resent,
        "rate_limited": api.rate_limited,
        "open_at_end": open_at_end,
        "rows": rows,
        "by_cycle": by_cycle(sent),
        "goals": verdicts(rows, rss, at_facility),
    }


def _met(met: bool | None) -> str:
    return "–" if met is None else ("met" if met else "**not met**")


def table(soak: dict[str, Any]) -> str:
    """The per-minute markdown table and the verdicts under it."""
    lines = [
        f"soak: {soak['creates']} creates at random at {soak['rate_per_second']:.1f}/s for "
        f"{soak['minutes']} min to a facility with a cutoff every 5 s, each order run to "
        f"delivered ({soak.get('open_at_end', '?')} workflows still open at the end)"
        + (
            f" (half the capacity measured, {soak['capacity']['sustained_per_second']:.1f}/s)"
            if soak["capacity"]
            else ""
        ),
        "",
        "| minute | creates | errors | create p50 / p99 | RSS API / worker / Temporal / "
        "simulator | others |",
        "|---|---|---|---|---|---|",
    ]
    for r in soak["rows"]:
        m = r["rss_mb"]
        lines.append(
            f"| {r['minute']} | {r['creates']} | {r['errors']} | "
            f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms | "
            f"{m['api']:.0f} / {m['worker']:.0f} / {m['temporal']:.0f} / "
            f"{m['simulator']:.0f} MB | {r['others_share']:.0%} |"
        )
    lines += [
        "",
        "create p50 / p99 by the second after a cutoff it was sent in: "
        + ", ".join(
            f"{c['after_cutoff_s']}–{c['after_cutoff_s'] + 1} s: "
            f"{c['p50_ms']:.0f} / {c['p99_ms']:.0f} ms"
            for c in soak["by_cycle"]
        ),
    ]
    g = soak["goals"]
    lines += ["", "| goal | measured | |", "|---|---|---|"]
    lines.append(f"| 0 errors | {g['errors']['value']} | {_met(g['errors']['met'])} |")
    o = g["once"]
    lines.append(
        f"| every order at the facility exactly once | {o['orders']} orders, {o['missing']} "
        f"missing, {o['more_than_once']} more than once | {_met(o['met'])} |"
    )
    for name, f in g["rss_flat"].items():
        lines.append(
            f"| {name} RSS within {RSS_TOLERANCE:.0%} over the last {f['window_minutes']} "
            f"min | {f['first_mb']:.0f} → {f['last_mb']:.0f} MB, spread {f['spread']:.1%}, "
            f"{f['slope_mb_per_minute']:+.2f} MB/min | {_met(f['met'])} |"
        )
    p = g["p99"]
    if p["met"] is not None:
        lines.append(
            f"| create p99 ≤ {p['goal_ms']:.0f} ms every minute | worst {p['worst_ms']:.0f} ms, "
            f"median minute {p['median_ms']:.0f} ms, {p['minutes_over']} minutes over "
            f"| {_met(p['met'])} |"
        )
    return "\n".join(lines)
