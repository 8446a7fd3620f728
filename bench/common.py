"""What every measurement shares: the bench's facilities, the API client, percentiles, and what
the machine and the processes are doing (CPU, RSS) while we measure.

Three facilities, routed by the shipping country, all pointing at the stack's simulator:

- ``bench-fast`` (``DE``): a cutoff every second, so an order goes to the facility about a
  second after it is created (throughput, and orders that run to ``delivered``);
- ``bench-wave`` (``FR``): a cutoff every ``wave_period`` seconds, so a batch of orders created
  between two cutoffs shares one (the cutoff wave);
- ``bench-soon`` (``NL``): a cutoff every 5 seconds, so an order waits on a timer as every real
  order does, yet reaches ``delivered`` within seconds (history and actions);
- ``bench-far`` (any other country): one cutoff a day, twelve hours after the bench started, so
  its orders wait as a real order waits for tonight's cutoff (latency, memory, cancels).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

from devstack.__main__ import example_order
from devstack.config import REPO_ROOT

T = TypeVar("T")

FAST, WAVE, SOON, FAR = "bench-fast", "bench-wave", "bench-soon", "bench-far"
COUNTRY = {FAST: "DE", WAVE: "FR", SOON: "NL", FAR: "AT"}
SOON_PERIOD = 5  # seconds between bench-soon's cutoffs
# What the bench quotes (``POST /v1/quotes``): a product of domain/catalog.json.
QUOTE_PRODUCT = "mug_11oz_white"


def facilities(simulator_url: str, wave_period: int, far_at: datetime) -> list[dict[str, Any]]:
    """The facilities file the stack runs with (see the module docstring)."""

    def facility(fid: str, countries: list[str], schedule: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": fid,
            "name": fid.replace("-", " ").title(),
            "timezone": "UTC",
            "countries": countries,
            "api_url": simulator_url,
            "api_token": f"tok-{fid}",
            "schedule": schedule,
        }

    return [
        facility(FAST, [COUNTRY[FAST]], {"every_seconds": 1}),
        facility(WAVE, [COUNTRY[WAVE]], {"every_seconds": wave_period}),
        facility(SOON, [COUNTRY[SOON]], {"every_seconds": SOON_PERIOD}),
        facility(FAR, ["*"], {"daily": [far_at.strftime("%H:%M")]}),
    ]


def order_body(reference: str, facility: str, api: Api, **extra: Any) -> dict[str, Any]:
    """The example order, to ``facility``'s country, with the print file the stack serves (the
    simulator's sample), so each order pays for its preflight check as in production."""
    order = example_order(api.simulator_url)
    address = {**order["shipping_address"], "country": COUNTRY[facility]}
    return {**order, "order_reference_id": reference, "shipping_address": address, **extra}


def quote_body(facility: str = SOON) -> dict[str, Any]:
    """A quote request as docs/catalog.md has one: two of a product of the bundled catalog."""
    return {
        "shipping_address": {"country": COUNTRY[facility]},
        "items": [{"product_uid": QUOTE_PRODUCT, "quantity": 2}],
        "currency": "EUR",
    }


# -- statistics -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(seconds),
        "p50_ms": percentile(seconds, 0.50) * 1000,
        "p95_ms": percentile(seconds, 0.95) * 1000,
        "p99_ms": percentile(seconds, 0.99) * 1000,
        "max_ms": max(seconds) * 1000 if seconds else math.nan,
    }


async def bounded(limit: int, jobs: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Runs the jobs with at most ``limit`` at once (closed loop: a job starts when one ends)."""
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


def poisson_arrivals(rate: float, seconds: float, seed: int) -> list[float]:
    """Moments (seconds from the start, ascending, below ``seconds``) of arrivals at random at
    ``rate`` per second: exponential gaps, as independent clients arrive (a Poisson process)."""
    if rate <= 0:
        return []
    draw = random.Random(seed)
    moments: list[float] = []
    moment = draw.expovariate(rate)
    while moment < seconds:
        moments.append(moment)
        moment += draw.expovariate(rate)
    return moments


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the API ------------------------------------------------------------------------------------


class BenchError(RuntimeError):
    """A measurement could not be taken (an answer was wrong, or it took too long)."""


@dataclass
class Api:
    """The merchant's side of the API, as a shop's integration uses it."""

    http: httpx.AsyncClient
    # Many shops, not one: each merchant's key has its own rate limit (RATE_LIMIT, 20/s by
    # default), as in production; orders go round the keys and are read with their own.
    api_keys: list[str]
    # Where the orders' print files are served (the simulator's samples).
    simulator_url: str
    # Wall-clock time each create was sent and how long it took, by order id.
    created: dict[str, tuple[float, float]] = field(default_factory=dict)
    # Creates sent again after the connection broke (the answer never came).
    resent: int = 0
    # Requests answered 429 (the key's rate limit), waited out and sent again (``send``).
    rate_limited: int = 0

    # The key that created each order, by order id.
    owners: dict[str, str] = field(default_factory=dict)
    _turn: int = 0

    def _next_key(self) -> str:
        self._turn += 1
        return self.api_keys[self._turn % len(self.api_keys)]

    def headers(self, order_id: str | None = None) -> dict[str, str]:
        key = self.owners[order_id] if order_id is not None else self._next_key()
        return {"X-API-Key": key}

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The request's answer; a 429 is waited out (its ``Retry-After``) and the request
        sent again, as a shop's integration does, and counted (``rate_limited``)."""
        while True:
            response = await self.http.request(method, url, **kwargs)
            if response.status_code != 429:
                return response
            self.rate_limited += 1
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        sent_at = time.time()
        started = time.perf_counter()
        headers = self.headers()
        for attempt in range(3):
            try:
                response = await self.send("POST", "/v1/orders", json=body, headers=headers)
                break
            except httpx.TransportError:
                # As a shop's integration does: the same order again. The order reference makes
                # a create idempotent (the same body answers the order it created).
                if attempt == 2:
                    raise
                self.resent += 1
        took = time.perf_counter() - started
        if response.status_code not in (200, 201):
            raise BenchError(f"create answered {response.status_code}: {response.text[:300]}")
        order: dict[str, Any] = response.json()
        self.created[order["id"]] = (sent_at, took)
        self.owners[order["id"]] = headers["X-API-Key"]
        return order

    async def get(self, order_id: str) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        response = await self.send("GET", f"/v1/orders/{order_id}", headers=self.headers(order_id))
        took = time.perf_counter() - started
        if response.status_code != 200:
            raise BenchError(f"get answered {response.status_code}: {response.text[:300]}")
        return response.json(), took

    async def quote(self, body: dict[str, Any]) -> float:
        """``POST /v1/quotes`` with the next shop's key; how long it took."""
        started = time.perf_counter()
        response = await self.send("POST", "/v1/quotes", json=body, headers=self.headers())
        took = time.perf_counter() - started
        if response.status_code != 201:
            raise BenchError(f"quote answered {response.status_code}: {response.text[:300]}")
        return took

    async def cancel(self, order_id: str) -> float:
        started = time.perf_counter()
        response = await self.send(
            "POST",
            f"/v1/orders/{order_id}/cancel",
            headers=self.headers(order_id),
            json={"reason": "bench"},
        )
        took = time.perf_counter() - started
        if response.status_code != 200 or response.json().get("status") != "canceled":
            raise BenchError(f"cancel answered {response.status_code}: {response.text[:300]}")
        return took


def http_client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits)


async def report_events(simulator_url: str, after: float) -> None:
    """Has the simulator report every job printed, shipped and delivered, ``after`` seconds
    apart, so each order's workflow runs to ``delivered`` and closes."""
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{simulator_url}/_control/config",
            json={
                "report_events": True,
                "printed_after": after,
                "shipped_after": after,
                "delivered_after": after,
            },
        )
    response.raise_for_status()


async def submissions(simulator_url: str) -> dict[str, float]:
    """When the facility received each order's first accepted print job (epoch seconds)."""
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{simulator_url}/_control/requests")
    response.raise_for_status()
    first: dict[str, float] = {}
    for record in response.json():
        if record["order_id"] and 200 <= record["status"] < 300:
            at = datetime.fromisoformat(record["at"]).timestamp()
            first[record["order_id"]] = min(at, first.get(record["order_id"], at))
    return first


async def wait_submitted(
    simulator_url: str, order_ids: Iterable[str], within: float, every: float = 0.25
) -> dict[str, float]:
    """Polls the simulator until every order's print job arrived; their arrival times."""
    wanted = set(order_ids)
    deadline = time.monotonic() + within
    while True:
        seen = await submissions(simulator_url)
        got = {oid: seen[oid] for oid in wanted if oid in seen}
        if len(got) == len(wanted):
            return got
        if time.monotonic() > deadline:
            raise BenchError(
                f"only {len(got)} of {len(wanted)} print jobs arrived in {within:.0f} s"
            )
        await asyncio.sleep(every)


def next_boundary(period: int, after: float) -> float:
    """The first multiple of ``period`` seconds since the epoch after ``after`` (as cutoffs are)."""
    return (math.floor(after / period) + 1) * period


async def sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


# -- processes and the machine ------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a process (and of its waited-for children), in seconds."""
    try:
        fields = _proc_stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in first]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return {"rss_mb": values["VmRSS"], "peak_mb": values["VmHWM"]}


async def wait_quiet(pids: Iterable[int], within: float, busy_below: float = 0.05) -> float:
    """Waits until ``pids`` together use less than ``busy_below`` of one core over 2 s (or
    ``within`` seconds passed); returns the share they used in the last 2 s."""
    pids = list(pids)
    deadline = time.monotonic() + within
    while True:
        before = sum(cpu_seconds(pid) for pid in pids)
        await asyncio.sleep(2.0)
        share = (sum(cpu_seconds(pid) for pid in pids) - before) / 2.0
        if share < busy_below or time.monotonic() > deadline:
            return share


# CPU seconds by process name, each the sum over the pids of its group, by pid (a group can be
# several processes, and change between two readings: PostgreSQL's backends for our connections).
CpuReading = dict[str, dict[int, float]]


def read_cpu(groups: dict[str, Sequence[int]]) -> CpuReading:
    """Each group's processes' CPU seconds (user + system) now, by pid."""
    return {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()}


def cpu_used(before: CpuReading, after: CpuReading) -> dict[str, float]:
    """CPU seconds each group used between two readings. A process of ``after`` missing from
    ``before`` started in between (all its CPU counts); one that ended in between is lost."""
    used: dict[str, float] = {}
    for name, now in after.items():
        then = before.get(name, {})
        used[name] = sum(max(0.0, cpu - then.get(pid, 0.0)) for pid, cpu in now.items())
    return used


def per_operation(
    used: dict[str, float], idle: dict[str, float], seconds: float, operations: int
) -> dict[str, float]:
    """CPU milliseconds per operation, by process and summed (``total``): what each used in
    ``seconds`` less what it uses idle in as long (``idle``: CPU seconds per second), divided
    by the number of operations."""
    if operations <= 0:
        return {name: math.nan for name in [*used, "total"]}
    out = {
        name: max(0.0, cpu - idle.get(name, 0.0) * seconds) * 1000 / operations
        for name, cpu in used.items()
    }
    out["total"] = sum(out.values())
    return out


@dataclass
class CpuMeter:
    """CPU used by our process tree against the whole machine, between ``start`` and ``stop``:
    the machine is shared, so the report says how much of it others used meanwhile."""

    pids: dict[str, int]
    started: float = 0.0
    machine: float = 0.0
    ours: dict[str, float] = field(default_factory=dict)

    def _ours(self) -> dict[str, float]:
        usage = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        usage["bench"] = cpu_seconds(os.getpid())
        return usage

    def start(self) -> None:
        self.started, self.machine, self.ours = (
            time.monotonic(),
            machine_busy_seconds(),
            self._ours(),
        )

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started
        machine = machine_busy_seconds() - self.machine
        ours = {name: used - self.ours.get(name, 0.0) for name, used in self._ours().items()}
        total = sum(ours.values())
        cores = os.cpu_count() or 1
        return {
            "wall_s": wall,
            "cores": cores,
            "machine_busy_cpu_s": machine,
            "ours_cpu_s": total,
            "others_cpu_s": max(0.0, machine - total),
            "by_process_cpu_s": {k: round(v, 1) for k, v in sorted(ours.items())},
            "machine_busy_share": machine / (wall * cores) if wall else math.nan,
        }


def machine_info() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        "load_avg_at_start": [round(v, 2) for v in os.getloadavg()],
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": sorted(
            line[3:] for line in _git("status", "--porcelain", strip=False).splitlines() if line
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "bytecode": bytecode_cache(),
    }


def bytecode_cache() -> str:
    """Whether the workflow module's compiled bytecode is there to load: the workflow sandbox
    imports it afresh for every workflow it instantiates, and compiles it when it is not."""
    cached = Path(importlib.util.cache_from_source(str(REPO_ROOT / "workflows" / "orders.py")))
    writes = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    return f"{'present' if cached.exists() else 'absent'}, writing {writes}"


def _git(*args: str, strip: bool = True) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.strip() if strip else out


async def worker_metrics(port: int, names: Iterable[str]) -> dict[str, float]:
    """Sums of the worker's Prometheus metrics (Temporal SDK, ``temporal_*``) by name."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    wanted = set(names)
    sums = dict.fromkeys(wanted, 0.0)
    for line in response.text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            sums[name] += float(line.rsplit(" ", 1)[1])
    return sums


def far_cutoff_time(now: datetime | None = None) -> datetime:
    """Twelve hours from now, to the minute: a daily cutoff no bench run can reach."""
    moment = (now or datetime.now(UTC)) + timedelta(hours=12)
    return moment.replace(second=0, microsecond=0)


def dump_json(value: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 4)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), separators=(",", ":"), sort_keys=False)
