"""The API and the worker take what they built at start-up out of the garbage collector's rounds
(``runtime.startup.freeze_startup_heap``): a full collection then visits only what the process
made since, and still frees it. The whole stack's test checks that both processes do it."""

from __future__ import annotations

import json

from tests.ops.conftest import run_python

# Everything the two processes import, then the freeze, then garbage made after it.
SCRIPT = """
import gc, json
import api.main, worker
from runtime.startup import freeze_startup_heap

before = len(gc.get_objects())
frozen = freeze_startup_heap()
after = len(gc.get_objects())

class Node:
    pass

node = Node()
node.itself = node
del node
print(json.dumps({"before": before, "frozen": frozen, "after": after, "freed": gc.collect()}))
"""


def test_a_full_collection_visits_only_what_came_after_start_up() -> None:
    result = run_python(["-c", SCRIPT], {})
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout.strip().splitlines()[-1])

    # The imports alone are more than a hundred thousand objects; nearly all are frozen.
    assert counts["before"] > 100_000
    assert counts["frozen"] >= 0.9 * counts["before"]
    assert counts["after"] < counts["before"] / 20
    # Garbage made after the freeze is still found: the node in a cycle with itself.
    assert counts["freed"] >= 1
