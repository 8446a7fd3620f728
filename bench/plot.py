"""The bench's two pictures (matplotlib, Agg: no display needed), written as PNG.

- ``bench-create-latency.png``: create latency (p50, p95, p99) against offered load: by number
  of concurrent clients (closed loop), and by creates per second, both those clients' and
  random arrivals at fixed rates (open loop);
- ``bench-wave.png``: print jobs submitted over time since the shared cutoff, printflow's
  orders against the bare workflows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CREATE_PNG = "bench-create-latency.png"
WAVE_PNG = "bench-wave.png"


def create_latency(
    sweep: list[dict[str, Any]], offered: list[dict[str, Any]], path: Path, subtitle: str
) -> Path:
    clients = [step["concurrency"] for step in sweep]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
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
    right.set_xlabel("creates per second (offered: random arrivals; clients: answered)")
    right.set_title("by load (numbers: concurrent clients)", fontsize=9)
    for axis in (left, right):
        axis.axhline(50, color="grey", linewidth=0.8, linestyle="-.", label="goal: p99 50 ms")
        axis.set_yscale("log")
        axis.set_ylabel("POST /v1/orders latency (ms)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    right.set_xlim(left=0)
    fig.suptitle(f"Create latency against offered load\n{subtitle}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def wave(orders: dict[str, Any], bare: dict[str, Any], path: Path, subtitle: str) -> Path:
    fig, axis = plt.subplots(figsize=(7, 4), layout="constrained")
    for label, data, color in (
        ("printflow orders: print job received", orders, "tab:blue"),
        ("bare workflows: activity run", bare, "tab:orange"),
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
