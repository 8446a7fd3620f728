"""Runs the test suite and exits with pytest's status.

Without arguments, the suite runs in two parts:

1. every test not marked ``serial``, in ``WORKERS`` processes (pytest-xdist): most of a test's
   time is spent waiting on servers, timers and real processes rather than on a core.
   ``tests/conftest.py`` sends the longest tests (those of real processes) out first, and a
   process that runs out of tests takes some queued for a busy one (``--dist worksteal``), so
   no long test is left to run alone at the end;
2. the tests marked ``serial``, in one process, alone on the machine: they measure a rate
   against the wall clock (a cutoff wave at a facility's jobs per second, a merchant's five
   requests a second) or a deadline of seconds (a personalization link living 3 s),
   which other tests' load would bend.

``PRINTFLOW_TEST_WORKERS`` sets the count: 4 by default (the whole suite in about 10 minutes
on two cores); ``0`` or ``1`` runs it in one process (about 25 minutes). With arguments, they
go to pytest as they are, in this process.

Each part runs in a process of its own, with bytecode written even where
``PYTHONDONTWRITEBYTECODE`` is set: every test process imports every test module, and pytest
keeps the modules it rewrote for its assertions only as bytecode.

The Temporal SDK's native threads can crash the interpreter during finalization, after every
test has passed; leaving through ``os._exit`` skips that finalization, so the exit status is
always the one pytest reported.

pytest-timeout bounds each test, but not what runs after the last one (a session fixture's
teardown, a worker that never finishes shutting down). So each part also has a limit,
``PART_MINUTES``: past it, every test process writes its threads' stacks (``SIGUSR1``, see
``tests/conftest.py``), they are printed, the part's processes are killed and the run fails,
instead of hanging.
"""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

WORKERS = os.environ.get("PRINTFLOW_TEST_WORKERS", "4")
COMMON = ["-q", "-p", "no:cacheprovider"]
NO_TESTS = pytest.ExitCode.NO_TESTS_COLLECTED
# A part takes about 10 minutes here; four times that is a hang, not a slow machine.
PART_MINUTES = float(os.environ.get("PRINTFLOW_TEST_PART_MINUTES", "40"))
# Where each test process writes its stacks on SIGUSR1 (tests/conftest.py).
STACKS = "PRINTFLOW_TEST_STACKS"


def part(*args: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, "-m", "tests.run", *COMMON, *args]
    with tempfile.TemporaryDirectory(prefix="printflow-stacks-") as stacks:
        env[STACKS] = stacks
        # A session of its own: the part, its test processes and what they start are one group.
        process = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            status = process.wait(timeout=PART_MINUTES * 60)
        except subprocess.TimeoutExpired:
            stop(process, signal.SIGUSR1, grace=2)
            what = " ".join(args) or "the suite"
            print(
                f"\ntests.run: {what} ran past {PART_MINUTES:g} minutes and was stopped; the"
                " stacks of its test processes then:",
                file=sys.stderr,
            )
            for dump in sorted(Path(stacks).iterdir()):
                print(f"\n{dump.name}\n{dump.read_text()}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # the part is not in the terminal's process group: tell it
            stop(process, signal.SIGINT, grace=10)
            raise
    return 0 if status == NO_TESTS else status


def stop(process: subprocess.Popen[bytes], first: signal.Signals, grace: float) -> None:
    """Sends ``first`` to the part's process group and, ``grace`` seconds later (or once the
    part has ended), kills what is left of it."""
    for sig, wait in ((first, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)


def whole_suite() -> int:
    if WORKERS in ("", "0", "1"):
        return part()
    parallel = part("-n", WORKERS, "--dist", "worksteal", "-m", "not serial")
    alone = part("-m", "serial")
    return parallel or alone


if __name__ == "__main__":
    if sys.argv[1:]:
        status = int(pytest.main(sys.argv[1:]))
    else:
        status = whole_suite()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
