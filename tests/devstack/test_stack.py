"""The process manager: processes start until ready, failures name the culprit, nothing survives.

The tests marked e2e start the real Temporal dev server (and the simulator once it exists);
worker and API are covered by the end-to-end suites that use ``Stack`` for the whole stack.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import httpx
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from devstack.stack import (
    REPO_ROOT,
    PortInUseError,
    SimulatorOptions,
    Stack,
    StackConfig,
    StackError,
)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


HAS_SIMULATOR = _importable("simulator.__main__")
HAS_API = _importable("api.main")


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for init counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(StackConfig.ephemeral(tmp_path / "data", stop_grace=5.0))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port somebody else holds (bound, not listening: connecting to it fails fast)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.mark.e2e
async def test_temporal_and_mail_sink_answer_and_leave_nothing_behind(stack: Stack) -> None:
    stack.start(only={"temporal", "smtp"})
    temporal_pid = stack.pids["temporal"]

    client = await Client.connect(stack.temporal_address)
    attributes = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert (
        attributes.custom_attributes["OrderStatus"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    )
    assert attributes.custom_attributes["CutoffAt"] == IndexedValueType.INDEXED_VALUE_TYPE_DATETIME
    assert attributes.custom_attributes["SlaDueAt"] == IndexedValueType.INDEXED_VALUE_TYPE_DATETIME
    assert attributes.custom_attributes["CaseStatus"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD

    await aiosmtplib.send(
        "Subject: hold\r\n\r\nOrder 1001 is on hold.\r\n",
        sender="printflow@localhost",
        recipients=["support@demo-shop.test"],
        hostname="127.0.0.1",
        port=stack.smtp_port,
    )
    assert (await stack.mail.wait_for(timeout=5))["Subject"] == "hold"
    assert list(stack.mail_dir.glob("*.eml")) == stack.mail.files
    assert (stack.log_dir / "temporal.log").exists()

    stack.stop()
    assert _gone(temporal_pid)
    assert stack.pids == {}
    assert not _accepts(stack.config.temporal_port)
    assert not _accepts(stack.smtp_port)


@pytest.mark.e2e
@pytest.mark.skipif(not HAS_SIMULATOR, reason="simulator not written yet (python -m simulator)")
async def test_simulator_starts_with_temporal_and_the_mail_sink(stack: Stack) -> None:
    stack.start(only={"temporal", "smtp", "simulator"})
    pids = stack.pids
    assert set(pids) == {"temporal", "simulator"}

    client = await Client.connect(stack.temporal_address)
    await client.workflow_service.get_system_info(GetSystemInfoRequest())
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{stack.simulator_url}/print-jobs")).status_code == 200

    stack.stop()
    assert all(_gone(pid) for pid in pids.values())
    assert not _accepts(stack.config.simulator_port)


@pytest.mark.e2e
@pytest.mark.skipif(
    not (HAS_SIMULATOR and HAS_API and (REPO_ROOT / "worker.py").exists()),
    reason="worker.py, api.main or the simulator is not written yet",
)
def test_the_whole_stack_starts_replaces_a_crashed_worker_and_stops(stack: Stack) -> None:
    stack.start()
    pids = stack.pids
    assert set(pids) == {"temporal", "simulator", "worker", "api"}

    merchant = stack.create_merchant("Test Shop", "support@test-shop.example")
    assert merchant["api_key"]
    # The demo agent's token signs in to the support console of the API process.
    agent = stack.create_agent("Test Agent", "agent@test-shop.example")
    with httpx.Client(base_url=stack.api_url) as console:
        form = console.get("/support/login")
        assert form.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        signed = console.post("/support/login", data={"csrf": csrf[1], "token": agent["token"]})
        assert signed.status_code == 303, signed.text
        assert "Signed in as Test Agent" in console.get("/support").text

    # Both took what they built at start-up out of the garbage collector's rounds.
    for name in ("api", "worker"):
        log = (stack.data_dir / "logs" / f"{name}.log").read_text()
        assert re.search(r"started: \d{5,} objects kept out of the garbage collector", log), name

    assert stack.kill_worker() == -signal.SIGKILL
    assert _gone(pids["worker"])
    stack.start_worker()  # returns once the new worker polls the task queue
    assert stack.pids["worker"] != pids["worker"]

    everything = stack.pids
    stack.stop()
    assert all(_gone(pid) for pid in everything.values())
    assert not any(_accepts(port) for port in (stack.config.api_port, stack.smtp_port))


@pytest.mark.e2e
def test_a_failed_start_names_the_process_and_stops_the_others(
    tmp_path: Path, taken_port: int
) -> None:
    stack = Stack(StackConfig.ephemeral(tmp_path, smtp_port=taken_port))

    with pytest.raises(StackError, match=rf"smtp did not start: .*{taken_port}"):
        stack.start(only={"temporal", "smtp"})

    # Temporal had started first; the failed start must not leave it running.
    assert stack.pids == {}
    assert not _accepts(stack.config.temporal_port)


def test_a_process_that_dies_while_starting_shows_its_log(tmp_path: Path, taken_port: int) -> None:
    stack = Stack(StackConfig.ephemeral(tmp_path, temporal_port=taken_port))

    with pytest.raises(StackError) as failure:
        stack.start(only={"temporal"})

    message = str(failure.value)
    assert message.startswith("temporal exited with status 1 while starting")
    assert "address already in use" in message  # the tail of temporal.log
    assert stack.pids == {}


def test_stop_kills_the_whole_process_group_even_when_sigterm_is_ignored(tmp_path: Path) -> None:
    stack = Stack(StackConfig.ephemeral(tmp_path, stop_grace=0.5))
    child_pid_file = tmp_path / "child.pid"
    # The shell and its child both ignore SIGTERM; the child would be orphaned by a plain kill.
    script = f'trap "" TERM; sleep 300 & echo $! > {child_pid_file}; wait'
    shell_pid = stack.start_process(
        "stubborn", ["sh", "-c", script], ready=child_pid_file.exists, timeout=10
    )
    child_pid = int(child_pid_file.read_text())

    stack.stop()

    assert _gone(shell_pid)
    assert _gone(child_pid)
    assert "sh -c" in (tmp_path / "logs" / "stubborn.log").read_text()


def test_kill_is_immediate_and_reports_the_signal(tmp_path: Path) -> None:
    stack = Stack(StackConfig.ephemeral(tmp_path))
    try:
        pid = stack.start_process("worker", ["sleep", "300"])
        assert stack.kill_worker() == -9
        assert _gone(pid)
        assert "worker" not in stack.pids
        with pytest.raises(StackError, match="worker is not running"):
            stack.kill_worker()
    finally:
        stack.stop()


def test_check_ports_names_the_taken_one(tmp_path: Path, taken_port: int) -> None:
    stack = Stack(StackConfig(data_dir=tmp_path, api_port=taken_port))
    with pytest.raises(PortInUseError, match=rf"^port {taken_port} \(API\) is already in use$"):
        stack.check_ports()
    stack.check_ports(only={"smtp"})  # only what is started counts


def test_apps_get_this_stacks_addresses_and_facilities(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "domain").mkdir(parents=True)
    facilities = [
        {"id": "berlin", "api_url": "http://127.0.0.1:8100"},
        {"id": "real", "api_url": "https://print.example.com"},
    ]
    (root / "domain" / "facilities.json").write_text(json.dumps(facilities))
    stack = Stack(StackConfig.ephemeral(tmp_path / "data", root=root, env={"PRINTFLOW_X": "1"}))

    ports = [
        stack.config.temporal_port,
        stack.config.api_port,
        stack.config.simulator_port,
        stack.smtp_port,
    ]
    assert 0 not in ports and len(set(ports)) == len(ports)
    env = stack.app_env()
    assert env["PRINTFLOW_TEMPORAL_ADDRESS"] == stack.temporal_address
    assert env["PRINTFLOW_DATABASE_URL"] == f"sqlite:///{tmp_path}/data/printflow.db"
    assert env["PRINTFLOW_ADMIN_TOKEN"] == stack.admin_token
    assert env["PRINTFLOW_SMTP_PORT"] == str(stack.smtp_port)
    assert env["PRINTFLOW_PUBLIC_BASE_URL"] == stack.api_url
    assert env["PRINTFLOW_X"] == "1"
    rewritten = json.loads(Path(env["PRINTFLOW_FACILITIES_FILE"]).read_text())
    assert [f["api_url"] for f in rewritten] == [stack.simulator_url, "https://print.example.com"]

    simulator_env = SimulatorOptions(printed_after=1.5).environment(stack.api_url)
    assert simulator_env["PRINTFLOW_SIM_PRINTED_AFTER"] == "1.5"
    assert simulator_env["PRINTFLOW_SIM_PRINTFLOW_URL"] == stack.api_url

    # On the default simulator port the bundled file is right as it is.
    assert Stack(StackConfig(data_dir=tmp_path / "d2", root=root)).facilities_file is None


def test_a_scaled_out_stack_names_its_apis_and_workers_each_api_on_its_own_port(
    tmp_path: Path,
) -> None:
    shared = "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dt_x"
    stack = Stack(
        StackConfig.ephemeral(tmp_path, apis=3, workers=2, env={"PRINTFLOW_DATABASE_URL": shared})
    )

    assert stack.api_names == ("api", "api-2", "api-3")
    assert stack.worker_names == ("worker", "worker-2")
    urls = [stack.api_url_of(name) for name in stack.api_names]
    assert urls[0] == stack.api_url and len(set(urls)) == 3
    assert stack.database_url == shared == stack.app_env()["PRINTFLOW_DATABASE_URL"]
    single = Stack(StackConfig.ephemeral(tmp_path / "one"))
    assert (single.api_names, single.worker_names) == (("api",), ("worker",))
