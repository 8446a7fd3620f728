"""Runs the test suite and exits with pytest's own status.

The Temporal SDK's native threads can crash the interpreter during finalization, after every
test has passed; leaving through ``os._exit`` skips that finalization, so the exit status is
always the one pytest reported.
"""

import os
import sys

import pytest

if __name__ == "__main__":
    status = pytest.main(sys.argv[1:] or ["-q", "-p", "no:cacheprovider"])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(status))
