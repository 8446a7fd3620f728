"""``make run``: the whole printflow stack on this machine, until Ctrl-C.

State lives under ``.data/`` (SQLite databases, e-mails, logs, the admin token, the payload
key, the demo merchant and the demo support agent), so a second run finds the orders, the
token, the API key and the agent token of the first, and still reads the histories it wrote.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from devstack.processes import TLS
from devstack.stack import REPO_ROOT, PortInUseError, Stack, StackConfig, StackError
from simulator.samples import GOOD as GOOD_SAMPLE
from simulator.samples import LOW_RESOLUTION as LOW_RESOLUTION_SAMPLE

DEMO_MERCHANT = {"name": "Demo Shop", "support_email": "support@demo-shop.example"}
DEMO_AGENT = {"name": "Demo Agent", "email": "agent@printflow.example"}
DEMO_OWNER = {"email": "owner@demo-shop.example", "name": "Dana Demo"}

EXAMPLE_ORDER = {
    "order_reference_id": "demo-1",
    "shipping_address": {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "address_line_1": "Unter den Linden 1",
        "city": "Berlin",
        "post_code": "10117",
        "country": "DE",
        "email": "ada@example.com",
    },
    "items": [
        {
            "item_reference_id": "item-1",
            "product_uid": "poster-a3",
            "quantity": 1,
            "files": [{"type": "default", "url": "https://example.com/poster.pdf"}],
        }
    ],
}


def example_order(simulator_url: str, sample: str = GOOD_SAMPLE) -> dict[str, Any]:
    """``EXAMPLE_ORDER`` with a print file the stack serves (the simulator's samples), so the
    preflight check can fetch it: ``poster-a3.pdf`` passes, ``poster-a3-72dpi.png`` does not."""
    items: list[dict[str, Any]] = EXAMPLE_ORDER["items"]  # type: ignore[assignment]
    file = {"type": "default", "url": f"{simulator_url}/samples/{sample}"}
    return {**EXAMPLE_ORDER, "items": [{**items[0], "files": [file]}]}


# Dev cutoffs: every facility goes to production this often, so a demo order moves within
# minutes yet leaves time to cancel or re-address it. `make run SCHEDULE=real` keeps the
# facilities' real schedules (midnight, twice a day in peak season).
DEV_CUTOFF_SECONDS = 120


def _dev_facilities(data_dir: Path) -> Path | None:
    if os.environ.get("PRINTFLOW_DEV_SCHEDULE", "fast") == "real":
        return None
    facilities = json.loads((REPO_ROOT / "domain" / "facilities.json").read_text())
    for facility in facilities:
        facility["schedule"] = {"every_seconds": DEV_CUTOFF_SECONDS}
    path = data_dir / "facilities.dev.json"
    path.write_text(json.dumps(facilities, indent=2) + "\n")
    return path


def main() -> int:
    data_dir = REPO_ROOT / ".data"
    data_dir.mkdir(exist_ok=True)
    _log_mail_to_console()
    facilities = _dev_facilities(data_dir)
    ui_port = StackConfig.ui_port
    stack = Stack(
        StackConfig(
            data_dir=data_dir,
            admin_token=_admin_token(data_dir),
            facilities_file=facilities,
            ui_codec=True,
            env={
                "PRINTFLOW_PAYLOAD_KEYS": _payload_keys(data_dir),
                "PRINTFLOW_CODEC_CORS_ORIGINS": (
                    f"http://localhost:{ui_port},http://127.0.0.1:{ui_port}"
                ),
            },
        )
    )
    try:
        stack.check_ports()
    except PortInUseError as error:
        print(f"devstack: {error}; is an earlier `make run` still running?", file=sys.stderr)
        return 1

    # SIGTERM ends the run like Ctrl-C does, through the orderly stop below; SIGINT is set too,
    # because a shell starting us in the background would have left it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    print(f"Starting printflow (logs in {_show(stack.log_dir)}/) ...", flush=True)
    try:
        stack.start()
    except StackError as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130  # start() has stopped what it had started

    status = 0
    try:
        merchant = _demo_merchant(stack, data_dir)
        agent = _demo_agent(stack, data_dir)
        print(_banner(stack, merchant, agent), flush=True)
        while True:
            exited = stack.exited()
            if exited:
                name, code = next(iter(exited.items()))
                print(
                    f"devstack: {name} exited with status {code}; stopping everything. "
                    f"Last lines of {_show(stack.log_path(name))}:\n{stack.log_tail(name)}",
                    file=sys.stderr,
                )
                status = 1
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the orderly stop short; it is bounded by the grace period.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nStopping printflow ...", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return status


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _log_mail_to_console() -> None:
    """One line per e-mail the sink receives, so a developer sees it arrive."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s [mail] %(message)s", "%H:%M:%S"))
    mail_logger = logging.getLogger("devstack.mailsink")
    mail_logger.addHandler(handler)
    mail_logger.setLevel(logging.INFO)


def _admin_token(data_dir: Path) -> str:
    """Generated once and kept in .data/admin-token, so scripts and bookmarks keep working."""
    path = data_dir / "admin-token"
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    _write_private(path, token + "\n")
    return token


def _payload_keys(data_dir: Path) -> str:
    """``PRINTFLOW_PAYLOAD_KEYS`` of this machine's stack: one key, generated once and kept in
    .data/payload-keys, so a restart still reads what earlier runs encrypted. An environment
    that sets the variable wins (to try a rotation: ``PRINTFLOW_PAYLOAD_KEYS=new:…,dev:…``)."""
    if os.environ.get("PRINTFLOW_PAYLOAD_KEYS", "").strip():
        return os.environ["PRINTFLOW_PAYLOAD_KEYS"]
    path = data_dir / "payload-keys"
    if path.exists():
        keys = path.read_text().strip()
        if keys:
            return keys
    keys = "dev:" + base64.b64encode(secrets.token_bytes(32)).decode()
    _write_private(path, keys + "\n")
    return keys


def _demo_merchant(stack: Stack, data_dir: Path) -> dict[str, Any] | None:
    """The demo merchant of an earlier run if its key still works, else a new one."""
    path = data_dir / "demo-merchant.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and saved.get("api_key") and _key_works(stack, saved["api_key"]):
        return saved
    try:
        merchant = stack.create_merchant(**DEMO_MERCHANT, owner=DEMO_OWNER)
        password = secrets.token_urlsafe(12)
        stack.accept_invite(merchant["owner_invite_url"], password)
        merchant["owner_password"] = password
    except StackError as error:
        print(f"devstack: no demo merchant: {error}", file=sys.stderr)
        return None
    _write_private(path, json.dumps(merchant, indent=2) + "\n")
    return merchant


def _demo_agent(stack: Stack, data_dir: Path) -> dict[str, Any] | None:
    """The demo support agent of an earlier run if its token still works, else a new one."""
    path = data_dir / "demo-agent.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and saved.get("token") and _agent_token_works(stack, saved["token"]):
        return saved
    try:
        agent = stack.create_agent(**DEMO_AGENT)
    except StackError as error:
        print(f"devstack: no demo agent: {error}", file=sys.stderr)
        return None
    _write_private(path, json.dumps(agent, indent=2) + "\n")
    return agent


def _agent_token_works(stack: Stack, token: str) -> bool:
    """False only when the API rejects the token (a new database, a deactivated agent)."""
    try:
        response = httpx.get(
            f"{stack.api_url}/v1/agent/me",
            headers={"X-Agent-Token": token},
            timeout=10.0,
            verify=TLS,
        )
    except httpx.HTTPError:
        return True
    return response.status_code != 401


def _key_works(stack: Stack, api_key: str) -> bool:
    """False only when the API rejects the key (e.g. .data/printflow.db was deleted)."""
    try:
        response = httpx.get(
            f"{stack.api_url}/v1/orders",
            params={"limit": 1},
            headers={"X-API-Key": api_key},
            timeout=10.0,
            verify=TLS,
        )
    except httpx.HTTPError:
        return True
    return response.status_code not in (401, 403)


def _write_private(path: Path, text: str) -> None:
    """Secrets are readable by their owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def _show(path: Path) -> str:
    """A path relative to the working directory when it is below it (shorter to read)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _banner(
    stack: Stack, merchant: dict[str, Any] | None, agent: dict[str, Any] | None = None
) -> str:
    config = stack.config
    api = f"http://localhost:{config.api_port}"
    api_key = merchant.get("api_key") if merchant else None
    key_line = (
        f"{DEMO_MERCHANT['name']} <{DEMO_MERCHANT['support_email']}>, API key {api_key}"
        if api_key
        else "not available (see the message above)"
    )
    owner_password = merchant.get("owner_password") if merchant else None
    owner_line = (
        f"{DEMO_OWNER['email']}, password {owner_password}"
        if owner_password
        else "not available (see the message above)"
    )
    agent_token = agent.get("token") if agent else None
    agent_line = (
        f"{DEMO_AGENT['name']}, token {agent_token}"
        if agent_token
        else "not available (see the message above)"
    )

    def curl(order: dict[str, Any]) -> str:
        return (
            f"curl -s -X POST {api}/v1/orders -H 'X-API-Key: {api_key or '<api key>'}' "
            f"-H 'Content-Type: application/json' -d '{json.dumps(order)}'"
        )

    files = stack.simulator_url
    held = example_order(files, LOW_RESOLUTION_SAMPLE) | {"order_reference_id": "demo-72dpi"}
    return "\n".join(
        [
            "",
            "printflow is running. Ctrl-C stops everything.",
            "",
            f"  Temporal Web UI     http://localhost:{config.ui_port}",
            f"  API                 {api}   (docs: {api}/docs)",
            f"  Facility simulator  http://localhost:{config.simulator_port}",
            f"  Temporal server     localhost:{config.temporal_port}",
            f"  E-mails             {_show(stack.mail_dir)}/   (SMTP on port {config.smtp_port})",
            f"  Logs                {_show(stack.log_dir)}/",
            f"  Admin token         {stack.admin_token}   (header X-Admin-Token)",
            f"  Payload codec       {stack.codec_url}   (encrypted payloads in the Web UI: sign "
            "in there with the admin token, then turn on 'Include cross-origin credentials' in "
            "the UI's codec settings)",
            f"  Metrics token       {stack.metrics_token}   ({api}/metrics, Authorization: Bearer)",
            f"  Demo merchant       {key_line}",
            f"  Merchant portal     {api}/portal   (sign in as the demo owner)",
            f"  Demo owner          {owner_line}",
            f"  Support console     {api}/support   (sign in with the demo agent's token)",
            f"  Demo agent          {agent_line}",
            f"  Cutoffs             {_schedule_line(config.facilities_file)}",
            "",
            "Create an order (its print file, served by the simulator, passes the checks):",
            f"  {curl(example_order(files))}",
            "",
            "One whose file has 72 dpi: held (file_issue) before the cutoff, with an e-mail:",
            f"  {curl(held)}",
            "",
        ]
    )


def _schedule_line(facilities: Path | None) -> str:
    if facilities is None:
        return "the facilities' real schedules (domain/facilities.json)"
    return (
        f"every {DEV_CUTOFF_SECONDS // 60} minutes at every facility "
        "(`make run SCHEDULE=real` for the real ones)"
    )


if __name__ == "__main__":
    sys.exit(main())
