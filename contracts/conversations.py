"""What the inputs of the conversation workflows (support cases, customer contacts) share."""

from __future__ import annotations

from typing import Generic, TypeVar

from domain.stored import StoredModel

StateT = TypeVar("StateT", bound=StoredModel)


class ConversationInput(StoredModel, Generic[StateT]):
    """The merchant a conversation is with, and the state a run continues from."""

    merchant_name: str
    # The merchant's support_email: what the conversation tells the merchant goes there.
    merchant_email: str
    # Carried over when the run continues as new.
    state: StateT | None = None
    # A new run after this many changes in one run, as well as whenever Temporal suggests one;
    # None: only when Temporal suggests it (tests set it to reach a new run quickly).
    changes_per_run: int | None = None


def task_summary(text: str) -> str:
    """A workflow's summary in the Web UI, as long as Temporal keeps it."""
    return text[:400]
