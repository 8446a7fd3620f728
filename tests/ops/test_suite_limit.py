"""A part of the suite that runs past its limit (``tests/run.py``) is stopped and fails with
every test process's stacks printed, instead of holding the run: pytest-timeout bounds each
test, not a hang after the last one (a session fixture's teardown, a worker never shut down)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.ops.conftest import run_python

# Outside the repository, so none of its settings apply: no per-test timeout stops it.
HANGING = """
import time


def test_waits_forever():
    time.sleep(600)
"""

# The part as `make test` runs it, with the suite's conftest loaded for its SIGUSR1 handler.
PART = "import sys, tests.run as run; sys.exit(run.part('-p', 'tests.conftest', sys.argv[1]))"


@pytest.mark.e2e  # it starts pytest in processes of its own, and waits: sent out first
def test_a_part_past_its_limit_is_stopped_with_its_stacks(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(HANGING)
    started = time.monotonic()
    # Long enough for the part's pytest to start on a loaded machine and reach the test.
    done = run_python(
        ["-c", PART, str(tmp_path / "test_hangs.py")],
        env={"PRINTFLOW_TEST_PART_MINUTES": "0.5"},
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "ran past 0.5 minutes and was stopped" in done.stderr
    # The stacks say where it hangs.
    assert 'test_hangs.py", line 6 in test_waits_forever' in done.stderr, done.stderr[-2000:]
    assert time.monotonic() - started < 100
