"""The bench's three pictures (matplotlib, Agg: no display needed), written as PNG.

- ``bench-cost.png``: CPU milliseconds per operation, by process, printflow's operations
  beside their floors (the bare endpoint's insert and read, the bare workflow);
- ``bench-create-latency.png``: create latency (p50, p95, p99) against offered load: by number
  of concurrent clients (closed loop), and by creates per second, both those clients' and
  random arrivals at fixed rates and at the goals' load (open loop);
- ``bench-wave.png``: print jobs submitted over time since the shared cutoff, printflow's
  orders against the bare workflows (the same submission, and a no-op activity).

A PostgreSQL run's names end in ``-postgresql`` (``named``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CREATE_PNG = "bench-create-latency.png"
WAVE_PNG = "bench-wave.png"
COST_PNG = "bench-cost.png"
# The processes in the cost picture, in this order, and their colours.
PROCESS_COLOURS = {
    "api": "tab:blue",
    "bare-api": "tab:cyan",
    "worker": "tab:orange",
    "bare-worker": "tab:brown",
    "temporal": "tab:green",
    "simulator": "tab:purple",
    "database": "tab:red",
}
COST_STEPS = (
    ("bare_insert", "bare insert"),
    ("create", "create"),
    ("bare_get", "bare read"),
    ("get", "GET"),
    ("cancel", "cancel"),
    ("bare_workflow", "bare workflow"),
    ("order", "order to the facility"),
)


def named(name: str, suffix: str) -> str:
    """``bench-wave.png`` with ``-postgresql``: ``bench-wave-postgresql.png``."""
    stem, dot, ext = name.rpartition(".")
    return f"{stem}{suffix}{dot}{ext}"


def cost(data: dict[str, Any], path: Path, subtitle: str) -> Path:
    steps = [(key, label) for key, label in COST_STEPS if key in data]
    fig, axis = plt.subplots(figsize=(9, 4.6), layout="constrained")
    rows = range(len(steps))
    left = [0.0] * len(steps)
    for process, colour in PROCESS_COLOURS.items():
        widths = [data[key]["cpu_ms"].get(process, 0.0) for key, _ in steps]
        if any(widths):
            axis.barh(rows, widths, left=left, color=colour, label=process)
            left = [a + b for a, b in zip(left, widths, strict=True)]
    for row, (key, _) in enumerate(steps):
        axis.annotate(
            f"{data[key]['cpu_ms']['total']:.1f} ms",
            (left[row], row),
            textcoords="offset points",
            xytext=(4, -3),
            fontsize=8,
        )
    axis.set_yticks(list(rows), [label for _, label in steps])
    axis.invert_yaxis()
    axis.set_xlabel("CPU milliseconds per operation (user + system, all processes)")
    axis.set_xlim(right=max(left) * 1.15 if left else 1)
    axis.grid(True, axis="x", alpha=0.3)
    axis.legend(fontsize=8, loc="upper right")
    ratios = data["ratios"]
    axis.set_title(
        f"Cost per operation: GET {ratios['get']:.1f}× its floor, create "
        f"{ratios['create']:.1f}×, order {ratios['order']:.1f}×\n{subtitle}",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def create_latency(
    sweep: list[dict[str, Any]],
    offered: list[dict[str, Any]],
    mixed: dict[str, Any],
    path: Path,
    subtitle: str,
) -> Path:
    clients = [step["concurrency"] for step in sweep]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
        left.plot(clients, [step[key] for step in sweep], style, label=key.removesuffix("_ms"))
    left.set_xscale("log")
    left.set_xticks(clients, [str(c) for c in clients])
    left.set_xlabel("concurrent clients, closed loop (each sends when answered)")
    left.set_title("by concurrent clients", fontsize=9)

    rate = [step["per_second"] for step in sweep]
    right.plot(rate, [s["p50_ms"] for s in sweep], "o-", color="tab:blue", label="p50, clients")
    right.plot(rate, [s["p99_ms"] for s in sweep], "^:", color="tab:blue", label="p99, clients")
    for step in sweep:
        right.annotate(
            f"{step['concurrency']}",
            (step["per_second"], step["p99_ms"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
            color="tab:blue",
        )
    if offered:
        load = [step["offered_per_second"] for step in offered]
        right.plot(
            load, [s["p50_ms"] for s in offered], "o-", color="tab:red", label="p50, offered"
        )
        right.plot(
            load, [s["p99_ms"] for s in offered], "^:", color="tab:red", label="p99, offered"
        )
    create = mixed["create"]
    for key, marker in (("p50_ms", "o"), ("p99_ms", "^")):
        right.plot(
            [mixed["offered_per_second"]],
            [create[key]],
            marker,
            color="black",
            markersize=8,
            label=f"{key.removesuffix('_ms')}, the goals' load (with GETs, cancels)",
        )
    right.set_xlabel("creates per second (offered: random arrivals; clients: answered)")
    right.set_title("by load (numbers: concurrent clients)", fontsize=9)
    for axis in (left, right):
        axis.axhline(50, color="grey", linewidth=0.8, linestyle="-.", label="goal: p99 50 ms")
        axis.set_yscale("log")
        axis.set_ylabel("POST /v1/orders latency (ms)")
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    # Beside the panel: its points reach every corner.
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    right.set_xlim(left=0)
    fig.suptitle(f"Create latency against offered load\n{subtitle}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def wave(
    orders: dict[str, Any],
    submit: dict[str, Any],
    bare: dict[str, Any],
    path: Path,
    subtitle: str,
) -> Path:
    fig, axis = plt.subplots(figsize=(8, 4.4), layout="constrained")
    for label, data, color in (
        ("printflow orders: print job received", orders, "tab:blue"),
        ("bare workflows: the same print job received", submit, "tab:green"),
        ("bare workflows: no-op activity run", bare, "tab:orange"),
    ):
        offsets = data["offsets"]
        axis.step(
            [0.0, *offsets],
            range(len(offsets) + 1),
            where="post",
            label=f"{label} (last at {data['last_s']:.1f} s)",
            color=color,
        )
    axis.set_xlabel("seconds since the cutoff")
    axis.set_ylabel("submitted")
    axis.set_xlim(left=0)
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right")
    axis.set_title(f"The cutoff wave draining\n{subtitle}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
