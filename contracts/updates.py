"""An Update applied once, whatever the run: the ids a workflow keeps, and message ids.

Temporal runs an Update id once per workflow run only. A caller's retry (the same
``Idempotency-Key``, so the same Update id) that reaches the next run, after a continue-as-new,
or a workflow that has closed, must get the first answer and change nothing. So a workflow keeps
the digests of the Update ids it applied, the newest ``APPLIED_KEPT``, in its state, which
continue-as-new carries and the read model holds (``applied_updates``); a handler or validator
that sees its Update's id there answers without changing anything, and the API answers a retry
to a closed workflow from the read model when the id is there.

A message added by an Update has an id derived from the Update's id and the workflow's
(``message_id``): a retry carries the same message, which the read model writes once.
"""

from __future__ import annotations

import hashlib
import uuid

# Enough for any retry: a caller retries within minutes, not after a hundred more changes.
APPLIED_KEPT = 100


def applied_digest(update_id: str) -> str:
    """What a workflow keeps of an Update id: short, and the same in every run."""
    return hashlib.sha256(update_id.encode()).hexdigest()[:24]


def remember(applied: list[str], update_id: str) -> list[str]:
    """``applied`` with ``update_id`` added (once), the newest ``APPLIED_KEPT``."""
    digest = applied_digest(update_id)
    if digest in applied:
        return applied
    return [*applied, digest][-APPLIED_KEPT:]


def message_id(workflow_id: str, update_id: str | None) -> str:
    """A message's id: from the workflow's id and the Update's (so a retry carries the same
    message), random when the caller sent no key."""
    if update_id is None:
        return "msg_" + uuid.uuid4().hex
    return "msg_" + hashlib.sha256(f"{workflow_id}\n{update_id}".encode()).hexdigest()[:32]
