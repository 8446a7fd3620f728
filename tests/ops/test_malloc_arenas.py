"""The API and the worker cap glibc's malloc arenas at start (``runtime.startup``,
``configure_process``), so memory freed between live allocations is not spread over an arena per
thread, where it cannot be handed back: without the cap the API's resident memory climbed for as
long as a soak ran.

Each case is a fresh interpreter that configures itself as the API and the worker do, then
starts eight threads that each allocate and hold memory, and prints glibc's own account of its
arenas (``malloc_stats``, on stderr). glibc makes a new arena for each new thread until the cap.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.ops.conftest import run_python

SCRIPT = """
import ctypes, sys, threading
if sys.argv[1] == "configure":
    from runtime.startup import configure_process
    configure_process()
start = threading.Barrier(9)
held = []

def allocate():
    held.append(bytearray(100_000))  # from malloc in this thread, not Python's small blocks
    start.wait()
    start.wait()

threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
start.wait()
ctypes.CDLL("libc.so.6").malloc_stats()
start.wait()
for thread in threads:
    thread.join()
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc only",
)


def _arenas(how: str) -> int:
    """The arenas of a fresh interpreter under this test's environment."""
    done = run_python(["-c", SCRIPT, how], env={})
    assert done.returncode == 0, done.stderr
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def test_a_configured_process_uses_two_arenas_however_many_threads_allocate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert _arenas("bare") > 2  # glibc's own way: one more per thread
    assert _arenas("configure") == 2


def test_an_operators_malloc_arena_max_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert _arenas("configure") == 4
