"""``python -m simulator``: runs the print facility simulator with uvicorn.

Configuration comes from ``PRINTFLOW_SIM_*`` (see ``SimulatorConfig.from_env``); flags given on
the command line win, so ``make run`` can pass ports and URLs explicitly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import uvicorn

from simulator.app import create_app
from simulator.config import SimulatorConfig, SimulatorConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8100


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Every option defaults to None so that only flags actually given override the env."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Local print facility simulator for printflow."
    )
    parser.add_argument("--host", help=f"bind address (env PRINTFLOW_SIM_HOST, {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, help=f"port (env PRINTFLOW_SIM_PORT, default {DEFAULT_PORT})"
    )
    parser.add_argument("--response-delay", type=float, help="seconds before answering a job")
    parser.add_argument("--printflow-url", help="base URL of printflow's API for events")
    parser.add_argument(
        "--report-events",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="post printed/shipped/delivered back to printflow",
    )
    parser.add_argument("--printed-after", type=float, help="seconds from job to printed")
    parser.add_argument("--shipped-after", type=float, help="seconds from printed to shipped")
    parser.add_argument("--delivered-after", type=float, help="seconds from shipped to delivered")
    parser.add_argument(
        "--max-jobs-per-second",
        type=int,
        help="print jobs per facility taken in any one second; beyond it 429 (default: no limit)",
    )
    parser.add_argument("--facilities-file", help="facilities JSON whose api_tokens are accepted")
    parser.add_argument("--log-level", default="info", help="debug, info, warning …")
    return parser.parse_args(argv)


def build_config(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> SimulatorConfig:
    """The env configuration with the given flags laid over it."""
    env = dict(os.environ if environ is None else environ)
    if args.facilities_file:
        env["PRINTFLOW_FACILITIES_FILE"] = args.facilities_file
    config = SimulatorConfig.from_env(env)
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "response_delay",
            "printflow_url",
            "report_events",
            "printed_after",
            "shipped_after",
            "delivered_after",
            "max_jobs_per_second",
        )
        if getattr(args, name) is not None
    }
    return SimulatorConfig.model_validate({**config.model_dump(), **overrides})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = build_config(args)
    except SimulatorConfigError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    host = args.host or os.environ.get("PRINTFLOW_SIM_HOST") or DEFAULT_HOST
    port = (
        args.port
        if args.port is not None
        else int(os.environ.get("PRINTFLOW_SIM_PORT") or DEFAULT_PORT)
    )
    logging.getLogger("printflow.simulator").info(
        "facility simulator on http://%s:%d for %s; events %s",
        host,
        port,
        ", ".join(sorted(set(config.tokens.values()))) or "no facility",
        f"to {config.printflow_url}" if config.report_events and config.printflow_url else "off",
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level=args.log_level.lower())
    return 0


if __name__ == "__main__":
    sys.exit(main())
