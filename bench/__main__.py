"""``make bench`` (``python -m bench``): printflow against Temporal alone, on this machine.

One process tree: a Temporal dev server (SQLite file, WAL), the facility simulator, printflow's
worker (``python worker.py``) and API (uvicorn), started by ``devstack.Stack`` exactly as
``make run`` starts them, with the same settings; plus a bare worker process for the baseline
with printflow's worker settings (``bench/bare_worker.py``). Only the facilities differ: three
of the bench's own, pointing at the simulator (``bench/common.py``); the simulator reports no
events back except for the orders that run to ``delivered``.

Beside them, the floor of an HTTP endpoint: a bare Starlette app under uvicorn on the same
database (``bench/bare_api.py``), started as the API is.

printflow's database is the stack's SQLite file, as with ``make run``; with ``--database
postgresql://…`` a fresh schema on that server (bench/database.py), dropped after the run. The
API and the worker migrate it when they start, as they always do. Temporal's dev server keeps
its own SQLite file either way.

In this order, each step left to settle before the next:

1. memory (bench/memory.py): worker RSS with N orders waiting for a far cutoff;
2. cost (bench/cost.py): CPU milliseconds per create, GET, cancel and order to the facility,
   by process, against the bare endpoint's insert and read and the bare workflow's;
3. baseline (bench/baseline.py): workflows of three no-op activities per second;
4. orders (bench/orders.py): orders per second from the API to the facility; ratio to 3;
5. the cutoff wave (bench/wave.py): bare (no-op, then the same print job submission), then
   orders; seconds from the cutoff to the last submission, and the ratio to the fair limit;
6. latency (bench/orders.py): create against 1/5/10/20/40 concurrent clients and random
   arrivals at ``--rates``, then the goals' load (creates arriving at random at half the
   capacity measured, with GETs and cancels), then get, quote (``POST /v1/quotes``) and cancel
   at ``--concurrency``;
7. history (bench/history.py): events and Temporal actions per order, to ``in_production``,
   to ``delivered``, and canceled.

With ``--soak MINUTES`` none of these: the soak (bench/soak.py), orders at half the create
capacity for that many minutes, with per minute the create p50/p99 and the processes' RSS.

Prints a markdown table and one JSON line (``--json``: only the line); writes three PNGs
(bench/plot.py) to ``--plots`` (docs/; on PostgreSQL their names end in ``-postgresql``).
Bounded: ``--budget`` seconds in all (1200; with ``--scale`` 3000), whatever happens the
processes are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench import baseline, cost, history, memory, orders, plot, soak, wave
from bench.common import (
    Api,
    CpuMeter,
    dump_json,
    facilities,
    far_cutoff_time,
    http_client,
    machine_info,
    rss_mb,
    say,
    wait_quiet,
)
from bench.database import PostgresSchema, postgres_base, postgres_schema
from devstack.config import REPO_ROOT, SimulatorOptions, StackConfig
from devstack.mailsink import free_port
from devstack.processes import http_status
from devstack.stack import Stack
from devstack.temporal import poller_identities
from runtime.settings import Settings, parse_payload_keys
from workflows.client import data_converter

PHASES = ("memory", "cost", "throughput", "wave", "latency", "history")
GOALS = {
    "get_cpu_ratio": ("CPU per GET / bare endpoint's read", "<=", 2.0),
    "create_cpu_ratio": ("CPU per create / bare endpoint's insert", "<=", 4.0),
    "order_cpu_ratio": ("CPU per order to the facility / bare workflow's", "<=", 1.5),
    "ratio": ("orders to the facility / bare", ">=", 0.9),
    "create_p99_ms": ("create p99 at half the create capacity (ms)", "<=", 50.0),
    "get_p99_ms": ("get p99 at that load (ms)", "<=", 20.0),
    "cancel_p99_ms": ("cancel p99 at that load (ms)", "<=", 150.0),
    "events_to_in_production": ("history events create to in_production", "<=", 20),
    "worker_rss_10k_mb": ("worker RSS with 10,000 waiting (MB)", "<=", 300.0),
    "wave_ratio": ("cutoff wave, bare submissions / orders", ">=", 0.8),
}


def _bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="printflow against a bare Temporal baseline on this machine (see "
        "docs/performance.md).",
    )
    parser.add_argument(
        "--orders", type=_bounded_int(10, 2000), default=300, help="orders and bare workflows"
    )
    parser.add_argument(
        "--concurrency", type=_bounded_int(1, 100), default=20, help="clients in flight (20)"
    )
    parser.add_argument(
        "--wave", type=_bounded_int(10, 2000), default=300, help="orders sharing a cutoff"
    )
    parser.add_argument(
        "--memory-orders", type=_bounded_int(10, 20000), default=1000, help="orders waiting"
    )
    parser.add_argument(
        "--scale", action="store_true", help="10,000 orders waiting for the memory measurement"
    )
    parser.add_argument(
        "--requests", type=_bounded_int(50, 5000), default=1000, help="creates, gets and quotes"
    )
    parser.add_argument("--cancels", type=_bounded_int(10, 2000), default=200)
    parser.add_argument(
        "--history", type=_bounded_int(1, 50), default=10, help="orders run to delivered"
    )
    parser.add_argument(
        "--levels", default="1,5,10,20,40", help="concurrent clients for the create sweep"
    )
    parser.add_argument(
        "--rates", default="10,20,40", help="offered creates per second for the open-loop sweep"
    )
    parser.add_argument(
        "--cost-ops",
        type=_bounded_int(20, 5000),
        default=300,
        help="operations per cost step, at the least (300)",
    )
    parser.add_argument(
        "--cost-seconds", type=float, default=10.0, help="seconds per cost step, at the least (10)"
    )
    parser.add_argument(
        "--mixed-seconds",
        type=float,
        default=orders.MIXED_SECONDS,
        help="seconds of the goals' offered load (30)",
    )
    parser.add_argument(
        "--database",
        help="run printflow on this PostgreSQL server (postgresql://…), in a fresh schema "
        "dropped after the run; default: the stack's SQLite file",
    )
    parser.add_argument(
        "--only", default=",".join(PHASES), help=f"phases to run, of {','.join(PHASES)}"
    )
    parser.add_argument(
        "--plots", type=Path, default=REPO_ROOT / "docs", help="where the PNGs go (docs/)"
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--budget", type=float, help="seconds in all (1200; --scale: 3000)")
    parser.add_argument(
        "--quick", action="store_true", help="small numbers everywhere: a smoke test"
    )
    parser.add_argument(
        "--soak",
        type=_bounded_int(1, 600),
        metavar="MINUTES",
        help="only the soak: orders at half the create capacity for MINUTES minutes "
        "(bench/soak.py); the capacity from --requests creates at --concurrency clients",
    )
    parser.add_argument(
        "--soak-rate",
        type=float,
        help="the soak's creates per second instead of half the capacity measured",
    )
    args = parser.parse_args(argv)
    if args.scale:
        args.memory_orders = 10_000
    if args.quick:
        args.orders, args.wave, args.requests, args.cancels = 30, 30, 100, 20
        args.memory_orders = min(args.memory_orders, 100)
        args.history = 2
        args.cost_ops, args.cost_seconds = 60, 3.0
        args.mixed_seconds = min(args.mixed_seconds, 8.0)
    if args.soak:
        args.only = ""
        # The capacity, the minutes, and the print jobs' arrival at the end.
        args.budget = args.budget or args.soak * 60.0 + 900.0
    elif args.soak_rate is not None:
        parser.error("--soak-rate goes with --soak")
    if args.soak_rate is not None and not 0.1 <= args.soak_rate <= 500:
        parser.error("--soak-rate must be between 0.1 and 500 per second")
    args.budget = args.budget or (3000.0 if args.scale else 1200.0)
    try:
        args.levels = sorted({int(v) for v in args.levels.split(",")})
    except ValueError:
        parser.error("--levels takes numbers, e.g. 1,5,10,20,40")
    if not all(1 <= v <= 100 for v in args.levels):
        parser.error("--levels must be between 1 and 100")
    try:
        args.rates = sorted({float(v) for v in args.rates.split(",") if v.strip()})
    except ValueError:
        parser.error("--rates takes numbers, e.g. 10,20,40")
    if not all(1 <= v <= 500 for v in args.rates):
        parser.error("--rates must be between 1 and 500 per second")
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := set(args.only) - set(PHASES):
        parser.error(f"unknown phases {sorted(unknown)}; known: {','.join(PHASES)}")
    if args.database:
        try:
            postgres_base(args.database)
        except Exception as err:  # noqa: BLE001 - any unparsable URL is the same mistake
            parser.error(f"--database: {err}")
    return args


async def measure(
    stack: Stack,
    bare_queue: str,
    bare_api_url: str,
    database: PostgresSchema | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    # The stack's keys: the bare worker encrypts as printflow's worker does.
    keys = parse_payload_keys(stack.config.env["PRINTFLOW_PAYLOAD_KEYS"])
    client = await Client.connect(
        stack.temporal_address, namespace=stack.namespace, data_converter=data_converter(keys)
    )
    # A shop per client at the most (each key has its own rate limit, as in production).
    shops = max([args.concurrency, *args.levels])
    merchants = [
        await asyncio.to_thread(stack.create_merchant, f"Bench {n}", f"bench{n}@example.com")
        for n in range(shops)
    ]
    pids = stack.pids
    worker = pids["worker"]
    busy_pids = [
        pids["worker"],
        pids["api"],
        pids["temporal"],
        pids["bare-worker"],
        pids["bare-api"],
    ]

    async def settle() -> None:
        await wait_quiet(busy_pids, within=30, busy_below=0.15)

    async def drain() -> None:
        """Until what the last step set off is done, however long that takes (5 minutes)."""
        await wait_quiet(busy_pids, within=300, busy_below=0.15)

    meter = CpuMeter(pids)
    meter.start()
    out: dict[str, Any] = {"worker_rss_idle_mb": rss_mb(worker)["rss_mb"]}
    conc = args.concurrency
    # Enough connections that open-loop arrivals never queue in the client.
    async with http_client(stack.api_url, max([100, conc, *args.levels])) as http:
        api = Api(http, [m["api_key"] for m in merchants], stack.simulator_url)
        if "memory" in args.only:
            say(f"memory: {args.memory_orders} orders waiting for a far cutoff ...")
            out["memory"] = await memory.run(
                api,
                client,
                worker,
                int(stack.config.env["PRINTFLOW_WORKER_METRICS_PORT"]),
                args.memory_orders,
                conc,
                within=args.budget,
            )
        if "cost" in args.only:
            await settle()
            say(
                f"cost: CPU per operation, {args.cost_ops}+ operations and "
                f"{args.cost_seconds:g}+ s a step at {cost.COST_CONCURRENCY} clients ..."
            )
            async with http_client(bare_api_url, cost.COST_CONCURRENCY) as bare_http:
                out["cost"] = await cost.run(
                    api,
                    bare_http,
                    client,
                    bare_queue,
                    cost.Processes(
                        dict(pids),
                        database.backends if database is not None else None,
                    ),
                    min_ops=args.cost_ops,
                    min_seconds=args.cost_seconds,
                )
        if "throughput" in args.only or "wave" in args.only:
            await settle()
            say(f"baseline: {args.orders} bare workflows of 3 no-op activities ...")
            out["baseline"] = await baseline.run(client, bare_queue, args.orders, conc)
            await settle()
            say(f"orders: {args.orders} orders through the API to the facility ...")
            out["orders"] = await orders.throughput(api, stack.simulator_url, args.orders, conc)
        if "wave" in args.only:
            period = wave.period_for(args.wave)
            await settle()
            say(f"wave: {args.wave} bare workflows released by one timer ...")
            out["wave_bare"] = await wave.bare(
                client,
                bare_queue,
                args.wave,
                conc,
                period,
                out["baseline"]["starts_per_second"],
            )
            await settle()
            say(f"wave: {args.wave} bare workflows submitting a print job at one moment ...")
            out["wave_fair"] = await wave.bare_submit(
                client,
                bare_queue,
                api,
                args.wave,
                conc,
                period,
                out["baseline"]["starts_per_second"],
            )
            await settle()
            say(f"wave: {args.wave} orders sharing one cutoff ...")
            out["wave_orders"] = await wave.orders(
                api,
                stack.simulator_url,
                args.wave,
                conc,
                period,
                out["orders"]["creates_per_second"],
            )
            out["wave_period_s"] = period
        if "latency" in args.only:
            say(f"latency: creates at {args.levels} clients, then get, quote, cancel at {conc} ...")
            out["latency"] = await orders.latency(
                api,
                concurrency=conc,
                requests=args.requests,
                cancels=args.cancels,
                levels=args.levels,
                rates=args.rates,
                settle=settle,
                drain=drain,
                mixed_seconds=args.mixed_seconds,
            )
        if args.soak:
            await settle()
            out["soak"] = await soak.run(
                api,
                client,
                cost.Processes(dict(pids), database.backends if database is not None else None),
                minutes=args.soak,
                rate=args.soak_rate,
                requests=args.requests,
                concurrency=conc,
                drain=drain,
            )
        out["creates_resent"] = api.resent
        out["rate_limited"] = api.rate_limited
        if "history" in args.only:
            await settle()
            say(f"history: {args.history} orders run to delivered ...")
            delivered = await history.delivered_sample(
                api, stack.simulator_url, client, args.history
            )
            found: dict[str, Any] = {
                "to_delivered": await history.measure(client, delivered),
            }
            # Orders that waited on a timer for their cutoff, as real orders do: the wave's.
            waited = out["wave_orders"]["ids"] if "wave_orders" in out else []
            if waited or "orders" in out:
                sample = waited or out["orders"]["ids"]
                found["to_in_production"] = await history.measure(
                    client, sample[:: max(1, len(sample) // 20)]
                )
            if "latency" in out:
                found["canceled"] = await history.measure(
                    client, out["latency"]["canceled_ids"][:10]
                )
            if "baseline" in out:
                found["bare"] = await history.measure(client, out["baseline"]["sample_ids"])
            out["history"] = found
    out["worker_rss_end"] = rss_mb(worker)
    out["cpu"] = meter.stop()
    return out


def _check(name: str, value: float | None) -> dict[str, Any]:
    label, op, goal = GOALS[name]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {"goal": f"{op} {goal}", "value": None, "met": None}
    met = value >= goal if op == ">=" else value <= goal
    return {"goal": f"{op} {goal}", "value": value, "met": met}


def summarize(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The one JSON object: every number, without the per-order lists."""
    s = Settings()
    result: dict[str, Any] = {
        "machine": raw["machine"],
        "settings": {
            "concurrency": args.concurrency,
            "orders": args.orders,
            "wave": args.wave,
            "memory_orders": args.memory_orders,
            "requests": args.requests,
            "cancels": args.cancels,
            "cost_ops": args.cost_ops,
            "cost_seconds": args.cost_seconds,
            "mixed_seconds": args.mixed_seconds,
            "soak_minutes": args.soak,
            "soak_rate": args.soak_rate,
            "worker_max_concurrent_activities": s.worker_max_concurrent_activities,
            "worker_max_concurrent_workflow_tasks": s.worker_max_concurrent_workflow_tasks,
            "worker_max_cached_workflows": s.worker_max_cached_workflows,
        },
        "seconds": raw["seconds"],
        "worker_rss_idle_mb": raw["worker_rss_idle_mb"],
        "worker_rss_end": raw["worker_rss_end"],
        "cpu": raw["cpu"],
        "creates_resent": raw["creates_resent"],
        "rate_limited": raw["rate_limited"],
    }
    goals: dict[str, Any] = {}
    if "cost" in raw:
        result["cost"] = raw["cost"]
        for kind in ("get", "create", "order"):
            goals[f"{kind}_cpu_ratio"] = _check(f"{kind}_cpu_ratio", raw["cost"]["ratios"][kind])
    if "baseline" in raw:
        b, o = raw["baseline"], raw["orders"]
        result["baseline"] = {k: v for k, v in b.items() if k != "sample_ids"}
        result["orders"] = {k: v for k, v in o.items() if k != "ids"}
        result["ratio"] = o["per_second"] / b["per_second"]
        goals["ratio"] = _check("ratio", result["ratio"])
    if "latency" in raw:
        lat = {k: v for k, v in raw["latency"].items() if k != "canceled_ids"}
        result["latency"] = lat
        for kind in ("create", "get", "cancel"):
            goals[f"{kind}_p99_ms"] = _check(f"{kind}_p99_ms", lat["mixed"][kind]["p99_ms"])
    if "history" in raw:
        result["history"] = raw["history"]
        if "to_in_production" in raw["history"]:
            goals["events_to_in_production"] = _check(
                "events_to_in_production", raw["history"]["to_in_production"]["events"]
            )
    if "memory" in raw:
        result["memory"] = raw["memory"]
        scaled = raw["memory"]["orders_waiting"] >= 10_000
        goals["worker_rss_10k_mb"] = _check(
            "worker_rss_10k_mb", raw["memory"]["rss_mb"] if scaled else None
        )
    if "wave_orders" in raw:
        wo, wb, wf = raw["wave_orders"], raw["wave_bare"], raw["wave_fair"]
        result["wave"] = {
            "period_s": raw["wave_period_s"],
            "orders": {k: v for k, v in wo.items() if k not in ("offsets", "ids")},
            "bare_submit": {k: v for k, v in wf.items() if k != "offsets"},
            "bare": {k: v for k, v in wb.items() if k != "offsets"},
            "ratio": wf["last_s"] / wo["last_s"],
            "noop_ratio": wb["last_s"] / wo["last_s"],
        }
        goals["wave_ratio"] = _check("wave_ratio", result["wave"]["ratio"])
    if "soak" in raw:
        result["soak"] = raw["soak"]
        g = raw["soak"]["goals"]
        goals["soak_errors"] = {
            "goal": "== 0",
            "value": g["errors"]["value"],
            "met": g["errors"]["met"],
        }
        goals["soak_once"] = {
            "goal": "each order one print job",
            "value": None,
            "met": g["once"]["met"],
        }
        goals["soak_rss_flat"] = {
            "goal": f"<= {soak.RSS_TOLERANCE} spread",
            "value": {k: v["spread"] for k, v in g["rss_flat"].items()},
            "met": all(v["met"] for v in g["rss_flat"].values()),
        }
        goals["soak_create_p99_ms"] = {
            "goal": f"<= {soak.CREATE_P99_MS} every minute",
            "value": g["p99"].get("worst_ms"),
            "met": g["p99"]["met"],
        }
    result["goals"] = goals
    return result


def _met(goal: dict[str, Any] | None) -> str:
    if not goal or goal["met"] is None:
        return "–"
    return "met" if goal["met"] else "**not met**"


def _cpu_ms(step: dict[str, Any]) -> str:
    """``12.3 ms (api 4.1, worker 3.0, …)`` with the processes that used any."""
    ms = step["cpu_ms"]
    parts = ", ".join(f"{k} {v:.2f}" for k, v in ms.items() if k != "total" and v >= 0.005)
    return f"{ms['total']:.2f} ms ({parts})"


def cost_rows(c: dict[str, Any], goals: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    n = c["concurrency"]

    def made(step: dict[str, Any]) -> str:
        others = step.get("machine_others_share")
        busy = f"; others used {others:.0%} of the machine" if others is not None else ""
        return f"{step['operations']} at {step['per_second']:.0f}/s{busy}"

    ratios = c["ratios"]
    return [
        (
            f"CPU per bare endpoint insert ({made(c['bare_insert'])}, {n} clients)",
            _cpu_ms(c["bare_insert"]),
            "",
            "",
        ),
        (f"CPU per bare endpoint read ({made(c['bare_get'])})", _cpu_ms(c["bare_get"]), "", ""),
        (f"CPU per create ({made(c['create'])})", _cpu_ms(c["create"]), "", ""),
        (
            "CPU ratio create / bare insert",
            f"{ratios['create']:.1f}×",
            "≤ 4×",
            _met(goals.get("create_cpu_ratio")),
        ),
        (f"CPU per GET ({made(c['get'])})", _cpu_ms(c["get"]), "", ""),
        (
            "CPU ratio GET / bare read",
            f"{ratios['get']:.1f}×",
            "≤ 2×",
            _met(goals.get("get_cpu_ratio")),
        ),
        (f"CPU per cancel ({made(c['cancel'])})", _cpu_ms(c["cancel"]), "", ""),
        (
            f"CPU per order, create to the facility ({made(c['order'])})",
            _cpu_ms(c["order"]),
            "",
            "",
        ),
        (
            f"CPU per bare workflow, start to close ({made(c['bare_workflow'])})",
            _cpu_ms(c["bare_workflow"]),
            "",
            "",
        ),
        (
            "CPU ratio order / bare workflow",
            f"{ratios['order']:.1f}×",
            "≤ 1.5×",
            _met(goals.get("order_cpu_ratio")),
        ),
    ]


def table(r: dict[str, Any]) -> str:
    m, goals = r["machine"], r["goals"]
    cpu = r["cpu"]
    rows: list[tuple[str, str, str, str]] = []
    if "cost" in r:
        rows += cost_rows(r["cost"], goals)
    if "baseline" in r:
        b, o = r["baseline"], r["orders"]
        rows += [
            (
                "bare baseline: workflows of 3 no-op activities, start to close",
                f"{b['per_second']:.1f}/s ({b['workflows']} in {b['seconds']:.1f} s)",
                "",
                "",
            ),
            (
                "orders, API create to print job at the facility",
                f"{o['per_second']:.1f}/s ({o['orders']} in {o['seconds']:.1f} s; "
                f"creates answered at {o['creates_per_second']:.0f}/s)",
                "",
                "",
            ),
            ("ratio orders / bare", f"{r['ratio']:.2f}", "≥ 0.9", _met(goals.get("ratio"))),
        ]
    if "latency" in r:
        lat = r["latency"]
        mix = lat["mixed"]
        rates = {
            "create": mix["offered_per_second"],
            "get": mix["get_per_second"],
            "cancel": mix["cancel_per_second"],
        }
        for kind, goal in (("create", "50"), ("get", "20"), ("cancel", "150")):
            x = mix[kind]
            rows.append(
                (
                    f"{kind}, random arrivals at {rates[kind]:.1f}/s, p50 / p95 / p99 "
                    f"({x['n']} requests)",
                    f"{x['p50_ms']:.0f} / {x['p95_ms']:.0f} / {x['p99_ms']:.0f} ms",
                    f"p99 ≤ {goal} ms",
                    _met(goals.get(f"{kind}_p99_ms")),
                )
            )
        rows.append(
            (
                "the load above: creates at half the create capacity",
                f"capacity {mix['capacity_per_second']:.1f} creates/s sustained "
                f"({lat['concurrency']} clients, until the work they set off was done; "
                f"answered at {lat['create']['per_second']:.0f}/s); "
                f"for {mix['seconds']:.0f} s, with GETs and cancels arriving alongside",
                "",
                "",
            )
        )
        for kind in ("create", "get", "cancel"):
            x = lat[kind]
            rows.append(
                (
                    f"{kind} at {lat['concurrency']} clients, p50 / p95 / p99 ({x['n']} requests)",
                    f"{x['p50_ms']:.0f} / {x['p95_ms']:.0f} / {x['p99_ms']:.0f} ms",
                    "",
                    "",
                )
            )
        q = lat["quote"]
        rows.append(
            (
                f"quote at {lat['concurrency']} clients, p50 / p95 / p99 ({q['n']} requests)",
                f"{q['p50_ms']:.0f} / {q['p95_ms']:.0f} / {q['p99_ms']:.0f} ms "
                f"at {q['per_second']:.0f}/s",
                "",
                "",
            )
        )
        rows.append(
            (
                "create p50 / p99 by clients (closed loop)",
                ", ".join(
                    f"{s['concurrency']}: {s['p50_ms']:.0f} / {s['p99_ms']:.0f} ms "
                    f"at {s['per_second']:.0f}/s"
                    for s in lat["sweep"]
                ),
                "",
                "",
            )
        )
        rows.append(
            (
                "create p50 / p99 by offered load (random arrivals)",
                ", ".join(
                    f"{s['offered_per_second']:.0f}/s: {s['p50_ms']:.0f} / {s['p99_ms']:.0f} ms"
                    for s in lat["offered"]
                ),
                "",
                "",
            )
        )
    if "history" in r:
        h = r["history"]
        for key, label in (
            ("to_in_production", "create → in_production"),
            ("to_delivered", "create → delivered"),
            ("canceled", "create → canceled (scheduled, by the API)"),
            ("bare", "bare baseline workflow"),
        ):
            if key in h:
                x = h[key]
                rows.append(
                    (
                        f"history events / Temporal actions, {label}",
                        f"{x['events']:.0f} / {x['actions']:.0f}",
                        "events ≤ 20" if key == "to_in_production" else "",
                        _met(goals.get("events_to_in_production"))
                        if key == "to_in_production"
                        else "",
                    )
                )
    if "memory" in r:
        mem = r["memory"]
        rows.append(
            (
                f"worker RSS: idle / {mem['orders_waiting']:,} orders waiting",
                f"{r['worker_rss_idle_mb']:.0f} / {mem['rss_mb']:.0f} MB with "
                f"{mem['cached_workflows']:.0f} in the worker's cache "
                f"(peak {r['worker_rss_end']['peak_mb']:.0f} MB over the run; "
                f"{mem['sampled_with_task_timeout']} of {mem['sampled']} sampled had a task "
                "time out)",
                "≤ 300 MB at 10,000",
                _met(goals.get("worker_rss_10k_mb"))
                if mem["orders_waiting"] >= 10_000
                else "– (`--scale`)",
            )
        )
    if "wave" in r:
        w = r["wave"]
        rows += [
            (
                f"cutoff wave: {w['orders']['count']} orders, cutoff to last submission",
                f"{w['orders']['last_s']:.1f} s (half by {w['orders']['p50_s']:.1f} s)",
                "",
                "",
            ),
            (
                f"cutoff wave: {w['bare_submit']['count']} bare workflows, timer to the same "
                "print job received",
                f"{w['bare_submit']['last_s']:.1f} s (half by {w['bare_submit']['p50_s']:.1f} s)",
                "",
                "",
            ),
            (
                "wave ratio bare submissions / orders",
                f"{w['ratio']:.2f}",
                "≥ 0.8",
                _met(goals.get("wave_ratio")),
            ),
            (
                f"cutoff wave: {w['bare']['count']} bare workflows, timer to a no-op activity",
                f"{w['bare']['last_s']:.1f} s (half by {w['bare']['p50_s']:.1f} s); "
                f"ratio to orders {w['noop_ratio']:.2f}",
                "",
                "",
            ),
        ]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}; "
        f"printflow on {m['database']}, Temporal's dev server on SQLite; "
        f"commit {m['commit']}{' + uncommitted changes' if m['dirty'] else ''}; {m['date']}; "
        f"workflow bytecode cache {m['bytecode']}",
        f"load: average {m['load_avg_at_start'][0]} at start; over the run the machine was "
        f"{cpu['machine_busy_share']:.0%} busy, other processes took "
        f"{cpu['others_cpu_s']:.0f} of {cpu['wall_s'] * cpu['cores']:.0f} CPU-seconds; "
        f"run took {r['seconds']:.0f} s",
        "",
        "| measurement | result | goal | |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    if "soak" in r:
        lines = [*lines[:2], "", soak.table(r["soak"])]
    return "\n".join(lines)


def write_plots(raw: dict[str, Any], r: dict[str, Any], where: Path) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    m = r["machine"]
    subtitle = (
        f"{m['cores']} cores; printflow on {m['database']}, Temporal's dev server on SQLite\n"
        f"{m['date'][:10]}, commit {m['commit']}"
    )
    # A PostgreSQL run's pictures beside the SQLite run's, not over them.
    suffix = "-postgresql" if m["database"].startswith("PostgreSQL") else ""
    written = []
    if "cost" in raw:
        written.append(plot.cost(raw["cost"], where / plot.named(plot.COST_PNG, suffix), subtitle))
    if "latency" in raw:
        lat = raw["latency"]
        written.append(
            plot.create_latency(
                lat["sweep"],
                lat["offered"],
                lat["mixed"],
                where / plot.named(plot.CREATE_PNG, suffix),
                subtitle,
            )
        )
    if "wave_orders" in raw:
        written.append(
            plot.wave(
                raw["wave_orders"],
                raw["wave_fair"],
                raw["wave_bare"],
                where / plot.named(plot.WAVE_PNG, suffix),
                subtitle,
            )
        )
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    machine = machine_info()
    with ExitStack() as scope:
        database: PostgresSchema | None = None
        if args.database:
            database = scope.enter_context(postgres_schema(args.database))
            machine["database"] = f"PostgreSQL {database.server_version()}"
            say(f"printflow's database: {database.shown}")
        else:
            machine["database"] = f"SQLite {sqlite3.sqlite_version} (a file, WAL)"
        raw = run_stack(args, database, started)
    if raw is None:
        return 1
    raw["machine"] = machine
    raw["seconds"] = time.monotonic() - started
    result = summarize(raw, args)
    if not args.no_plots:
        for path in write_plots(raw, result, args.plots):
            say(f"wrote {path}")
    if not args.json:
        print(table(result))
        print()
    print(dump_json(result))
    return 0


def run_stack(
    args: argparse.Namespace, database: PostgresSchema | None, started: float
) -> dict[str, Any] | None:
    """Starts the stack and the bench's own processes, measures, stops them; None when over
    the budget."""
    with tempfile.TemporaryDirectory(prefix="printflow-bench-") as tmp:
        facilities_file = Path(tmp) / "facilities.json"
        env = {
            # Its own metrics port: this machine may run `make run` on 9464 meanwhile.
            "PRINTFLOW_WORKER_METRICS_PORT": str(free_port("127.0.0.1")),
            # Encrypted payloads, as `make run` and production have them.
            "PRINTFLOW_PAYLOAD_KEYS": "bench:" + base64.b64encode(os.urandom(32)).decode(),
            # Every order's print file is fetched and checked, as in production (the
            # simulator serves it: ``bench.common.order_body``).
            "PRINTFLOW_PREFLIGHT": "on",
        }
        if database is not None:
            env["PRINTFLOW_DATABASE_URL"] = database.url
        config = StackConfig.ephemeral(
            Path(tmp) / "stack",
            facilities_file=facilities_file,
            simulator=SimulatorOptions(report_events=False),
            env=env,
        )
        stack = Stack(config)
        period = wave.period_for(args.wave)
        facilities_file.write_text(
            json.dumps(facilities(stack.simulator_url, period, far_cutoff_time()), indent=2)
        )
        say(f"starting the stack in {tmp} ...")
        with stack:
            bare_queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
            env = stack.app_env()
            env["PRINTFLOW_WORKER_METRICS_PORT"] = str(free_port("127.0.0.1"))
            stack.start_process(
                "bare-worker",
                [sys.executable, "-m", "bench.bare_worker", "--task-queue", bare_queue],
                ready=lambda: bool(
                    poller_identities(stack.temporal_address, stack.namespace, bare_queue)
                ),
                env=env,
            )
            bare_api_url = start_bare_api(stack)
            remaining = args.budget - (time.monotonic() - started)
            try:
                return asyncio.run(
                    asyncio.wait_for(
                        measure(stack, bare_queue, bare_api_url, database, args), remaining
                    )
                )
            except TimeoutError:
                print(
                    f"bench: over its budget of {args.budget:.0f} s; stopped. "
                    "Lower the numbers (see --help) or rerun on a quieter machine.",
                    file=sys.stderr,
                )
                return None


def start_bare_api(stack: Stack) -> str:
    """The bare endpoint (``bench/bare_api.py``) under uvicorn, started as the API is
    (``Stack.start_api``), on printflow's database; its URL."""
    host = stack.config.host
    port = free_port(host)
    url = f"http://{host}:{port}"
    stack.start_process(
        "bare-api",
        [sys.executable, "-m", "uvicorn", "bench.bare_api:app"]
        + ["--host", host, "--port", str(port)],
        ready=lambda: http_status(f"{url}/rows/none") == 404,
        env=stack.app_env(),
    )
    return url


if __name__ == "__main__":
    sys.exit(main())
