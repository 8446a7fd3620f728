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

Scaled out (``StackConfig(apis=2, workers=2)``, with ``PRINTFLOW_DATABASE_URL`` in ``env`` for a
database they share, such as PostgreSQL), the stack runs the API processes "api", "api-2", …,
each on a port of its own (``stack.api_url_of("api-2")``), and the workers "worker",
"worker-2", …; any of them is killed with ``stack.kill(name)`` and started again with
``stack.start_api(name)`` (on the same port) or ``stack.start_worker(name)``.

Each process writes to ``<data dir>/logs/<name>.log``; a failed start quotes the end of it.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import sys
from collections.abc import Collection, Iterable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from devstack.config import (
    DEFAULT_SIMULATOR_PORT,
    REPO_ROOT,
    PortInUseError,
    SimulatorOptions,
    StackConfig,
    StackError,
    redirect_facilities,
)
from devstack.mailsink import MailSink, free_port
from devstack.processes import (
    TLS,
    ProcessManager,
    ReadyCheck,
    http_status,
    port_free,
    port_open,
)
from devstack.temporal import (
    SEARCH_ATTRIBUTES,
    dev_server_command,
    poller_identities,
    run_temporal_cli,
    temporal_cli,
)

# Names that lived here before configuration, processes and the Temporal CLI had modules.
__all__ = [
    "DEFAULT_SIMULATOR_PORT",
    "PROCESSES",
    "REPO_ROOT",
    "SEARCH_ATTRIBUTES",
    "PortInUseError",
    "ReadyCheck",
    "SimulatorOptions",
    "Stack",
    "StackConfig",
    "StackError",
    "free_port",
    "temporal_cli",
]

# Start order; stop runs in reverse.
PROCESSES: tuple[str, ...] = ("temporal", "smtp", "simulator", "worker", "api")


class Stack(ProcessManager):
    """Starts, watches and stops printflow's processes on one machine.

    ``with Stack(config) as stack:`` starts everything and stops it on exit; ``start(only=...)``
    starts a subset (names in ``PROCESSES``; "api" and "worker" start every one of
    ``api_names`` and ``worker_names``). Synchronous by design: it is a process manager, and
    callers in an event loop only use it in fixtures.
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
        # Each API process's port, kept across its restarts: "api" on api_port, the others free.
        self._api_ports = {
            name: self.config.api_port if name == "api" else free_port(host)
            for name in _names("api", self.config.apis)
        }
        super().__init__(
            cwd=self.config.root,
            log_dir=self.data_dir / "logs",
            default_env=self.app_env,
            ready_timeout=self.config.ready_timeout,
            stop_grace=self.config.stop_grace,
        )
        self.admin_token = config.admin_token or secrets.token_urlsafe(32)
        # /metrics answers only with it (Authorization: Bearer); printed by make run.
        self.metrics_token = secrets.token_urlsafe(32)
        self.mail = MailSink(self.data_dir / "mail", host=host, port=self.config.smtp_port)
        self._smtp_log: logging.Handler | None = None
        self._facilities_copy: Path | None = None

    # -- addresses ------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

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
    def api_names(self) -> tuple[str, ...]:
        """The API processes' names: "api", "api-2", … (``StackConfig.apis``)."""
        return tuple(self._api_ports)

    @property
    def worker_names(self) -> tuple[str, ...]:
        """The workers' names: "worker", "worker-2", … (``StackConfig.workers``)."""
        return _names("worker", self.config.workers)

    def api_url_of(self, name: str) -> str:
        """The address of the API process ``name`` (``api_url`` is that of "api")."""
        return f"http://{self.config.host}:{self._api_ports[name]}"

    @property
    def codec_url(self) -> str:
        """The API's codec endpoint as a browser on this machine reaches it (the Web UI's)."""
        return f"http://localhost:{self.config.api_port}/codec"

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
        """``PRINTFLOW_DATABASE_URL`` from ``StackConfig.env``, else the data dir's SQLite file."""
        return self.config.env.get("PRINTFLOW_DATABASE_URL") or (
            f"sqlite:///{self.data_dir / 'printflow.db'}"
        )

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
            self._facilities_copy = redirect_facilities(
                bundled, self.data_dir / "facilities.json", self.simulator_url
            )
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
                "PRINTFLOW_METRICS_TOKEN": self.metrics_token,
                "PRINTFLOW_SMTP_HOST": self.config.host,
                "PRINTFLOW_SMTP_PORT": str(self.smtp_port),
                "PRINTFLOW_PUBLIC_BASE_URL": self.api_url,
                # Local webhook receivers (http://127.0.0.1:…) are fine on a developer's machine,
                # and so are print files served locally (the simulator's samples).
                "PRINTFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
                "PRINTFLOW_PREFLIGHT_ALLOW_PRIVATE": "true",
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
            *(
                ("api", "API" if name == "api" else f"API ({name})", port)
                for name, port in self._api_ports.items()
            ),
        ]
        for name, label, port in ports:
            if name in names and port and not port_free(self.config.host, port):
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
            for worker in self.worker_names:
                self.start_worker(worker)
        elif name == "api":
            for api in self.api_names:
                self.start_api(api)

    def stop(self) -> None:
        """Stop everything in reverse start order: SIGTERM, then SIGKILL after the grace period."""
        self.stop_processes()
        if self.mail.running:
            self.mail.stop_blocking()
        if self._smtp_log is not None:
            logging.getLogger("devstack.mailsink").removeHandler(self._smtp_log)
            self._smtp_log.close()
            self._smtp_log = None
        self._unregister_atexit()

    # -- the processes --------------------------------------------------------------------------

    def start_temporal(self) -> None:
        """The Temporal dev server with its SQLite file; ready once the namespace answers."""
        cli = temporal_cli()
        argv = dev_server_command(
            cli,
            db_file=self.data_dir / "temporal.db",
            host=self.config.host,
            port=self.config.temporal_port,
            ui_port=self.config.ui_port if self.config.ui else None,
            namespace=self.namespace,
            ui_codec_endpoint=self.codec_url if self.config.ui_codec else None,
        )

        def ready() -> bool:
            if not port_open(self.config.host, self.config.temporal_port):
                return False
            describe = [cli, "operator", "namespace", "describe", self.namespace]
            # Short attempts: a port that accepts but does not speak gRPC must not stall us.
            return run_temporal_cli(describe, self.temporal_address) is not None

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
            status = http_status(f"{self.simulator_url}/print-jobs")
            return status is not None and status < 500

        self.start_process("simulator", argv, ready=ready, env=env)

    def start_worker(self, name: str = "worker") -> None:
        """A worker (``python worker.py``); ready once it polls the task queue.

        ``name``: one of ``worker_names``, or any other for a test's extra worker ("worker-9"
        logs to worker-9.log).
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

    def start_api(self, name: str = "api") -> None:
        """An API process under uvicorn (``name``: one of ``api_names``, on its own port, the same
        after a restart); ready when /healthz (or, before it exists, /docs) is 200."""
        url = self.api_url_of(name)
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            self.config.host,
            "--port",
            str(self._api_ports[name]),
        ]

        def ready() -> bool:
            status = http_status(f"{url}/healthz")
            if status == 404:
                status = http_status(f"{url}/docs")
            return status == 200

        self.start_process(name, argv, ready=ready, env=self.app_env())

    def _poller_identities(self) -> set[str]:
        """Identities of the workflow pollers on our task queue."""
        return poller_identities(self.temporal_address, self.namespace, self.task_queue)

    # -- admin API ------------------------------------------------------------------------------

    def create_merchant(
        self,
        name: str,
        support_email: str,
        approval: str = "auto",
        webhook_url: str | None = None,
        owner: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a merchant through the admin API; the answer holds its (only) ``api_key``, and
        with an ``owner`` ({email, name}) their portal invite link."""
        body: dict[str, Any] = {"name": name, "support_email": support_email, "approval": approval}
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        if owner is not None:
            body["owner"] = owner
        try:
            response = httpx.post(
                f"{self.api_url}/v1/admin/merchants",
                json=body,
                headers={"X-Admin-Token": self.admin_token},
                timeout=30.0,
                verify=TLS,
            )
        except httpx.HTTPError as error:
            raise StackError(f"creating merchant {name!r} failed: {error}") from error
        if response.status_code >= 300:
            raise StackError(
                f"creating merchant {name!r} failed: HTTP {response.status_code} {response.text}"
            )
        result: dict[str, Any] = response.json()
        return result

    def accept_invite(self, invite_url: str, password: str) -> None:
        """Sets a portal user's password through their invite link, as a browser would."""
        path = "/portal/" + invite_url.split("/portal/", 1)[1]
        try:
            with httpx.Client(base_url=self.api_url, timeout=30.0, verify=TLS) as browser:
                form = browser.get(path)
                found = re.search(r'name="csrf" value="([^"]+)"', form.text)
                if form.status_code != 200 or found is None:
                    raise StackError(f"the invite page answered HTTP {form.status_code}")
                done = browser.post(path, data={"csrf": found.group(1), "password": password})
        except httpx.HTTPError as error:
            raise StackError(f"accepting the invite failed: {error}") from error
        if done.status_code != 303:
            raise StackError(f"setting the password failed: HTTP {done.status_code}")

    def create_agent(self, name: str, email: str, role: str = "agent") -> dict[str, Any]:
        """Create a support agent through the admin API; the answer holds its (only) ``token``."""
        try:
            response = httpx.post(
                f"{self.api_url}/v1/admin/agents",
                json={"name": name, "email": email, "role": role},
                headers={"X-Admin-Token": self.admin_token},
                timeout=30.0,
                verify=TLS,
            )
        except httpx.HTTPError as error:
            raise StackError(f"creating agent {name!r} failed: {error}") from error
        if response.status_code >= 300:
            raise StackError(
                f"creating agent {name!r} failed: HTTP {response.status_code} {response.text}"
            )
        result: dict[str, Any] = response.json()
        return result


def _names(first: str, count: int) -> tuple[str, ...]:
    """``first``, ``first-2``, … ``first-<count>``: the names of ``count`` processes of a kind."""
    return (first, *(f"{first}-{n}" for n in range(2, count + 1)))


def _select(only: Iterable[str] | None) -> Collection[str]:
    if only is None:
        return PROCESSES
    names = set(only)
    unknown = names - set(PROCESSES)
    if unknown:
        raise ValueError(f"unknown processes {sorted(unknown)}; known: {list(PROCESSES)}")
    return names
