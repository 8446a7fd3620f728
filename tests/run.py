"""Runs the test suite and exits with pytest's own status.

Without arguments, the whole suite runs in ``WORKERS`` processes (pytest-xdist),
most of its time being spent waiting on servers, timers and real processes rather than on one
core; ``tests/conftest.py`` sends the longest tests (those of real processes) out first.
``PRINTFLOW_TEST_WORKERS`` sets the count; the default, ``0``, is one process until every
timing-sensitive test holds under parallel load.

The Temporal SDK's native threads can crash the interpreter during finalization, after every
test has passed; leaving through ``os._exit`` skips that finalization, so the exit status is
always the one pytest reported.
"""

import os
import sys

import pytest

WORKERS = os.environ.get("PRINTFLOW_TEST_WORKERS", "0")


def default_args() -> list[str]:
    args = ["-q", "-p", "no:cacheprovider"]
    if WORKERS not in ("", "0", "1"):
        args += ["-n", WORKERS, "--dist", "load"]
    return args


if __name__ == "__main__":
    status = pytest.main(sys.argv[1:] or default_args())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(status))
