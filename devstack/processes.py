"""Child processes by name: started until ready, signalled as a group, stopped in order.

``ProcessManager`` is the generic machinery under ``Stack``; it knows nothing about printflow.
Every child runs in a session of its own, so Ctrl-C in a terminal reaches only the manager and
a stop can kill a child's whole process group. When started from the main thread on Linux, the
children also get a parent-death signal, so they go away even if the manager is SIGKILLed.
Each child appends to ``<log dir>/<name>.log``; a failed start quotes the end of this run's part.

The port and HTTP probes at the bottom are what readiness checks and port checks are made of.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from devstack.config import StackError

# The CA bundle, loaded once per process and shared by every client the stack and its tests
# build: an httpx client given none loads it again, about 20 ms of CPU, which a readiness poll
# every 50 ms (and each helper call) would pay every time.
TLS = httpx.create_ssl_context()

logger = logging.getLogger(__name__)


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


class ProcessManager:
    """Starts, waits for, signals and stops named child processes (``Stack`` builds on it).

    Children run in ``cwd`` with the environment from ``default_env`` unless a start passes
    its own; ``ready_timeout`` bounds a start, ``stop_grace`` the wait between SIGTERM and
    SIGKILL. ``stop()`` is registered with ``atexit`` while anything runs.
    """

    def __init__(
        self,
        *,
        cwd: Path,
        log_dir: Path,
        default_env: Callable[[], Mapping[str, str]],
        ready_timeout: float,
        stop_grace: float,
    ) -> None:
        self._cwd = cwd
        self._log_dir = log_dir
        self._default_env = default_env
        self._ready_timeout = ready_timeout
        self._stop_grace = stop_grace
        self._processes: dict[str, _Process] = {}
        self._atexit_registered = False

    @property
    def log_dir(self) -> Path:
        return self._log_dir

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the child processes started and not stopped (the sink is a thread)."""
        return {name: proc.pid for name, proc in self._processes.items()}

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
                cwd=self._cwd,
                env=dict(env) if env is not None else dict(self._default_env()),
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
        self._wait_ready(proc, ready, self._ready_timeout if timeout is None else timeout)
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
            code = proc.popen.wait(timeout=self._stop_grace)
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
                proc.popen.wait(timeout=self._stop_grace)
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM for %gs; killing it", name, self._stop_grace)
                _signal_group(proc, signal.SIGKILL)
                proc.popen.wait()
        # The leader is gone; anything left in its group would be an orphan.
        _signal_group(proc, signal.SIGKILL)
        return proc.popen.returncode

    def stop_processes(self) -> None:
        """Stop every process in reverse start order (``stop_process`` each)."""
        for name in reversed(list(self._processes)):
            self.stop_process(name)

    def stop(self) -> None:
        """Stop every process in reverse start order and drop the ``atexit`` hook."""
        self.stop_processes()
        self._unregister_atexit()

    def _unregister_atexit(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False


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


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR; without it a port in TIME_WAIT would look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0, verify=TLS).status_code
    except httpx.HTTPError:
        return None
