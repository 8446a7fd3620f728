"""The search attributes operators filter orders, support cases and customer contacts by in the
Temporal Web UI: what a workflow starts with (``typed``) and how it sets them after a change
(``updates``)."""

from collections.abc import Iterable, Sequence
from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    SearchAttributeValueType,
    TypedSearchAttributes,
)

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
MERCHANT_ID = SearchAttributeKey.for_keyword("MerchantId")
ORDER_REFERENCE = SearchAttributeKey.for_keyword("OrderReference")
FACILITY = SearchAttributeKey.for_keyword("Facility")
CUTOFF_AT = SearchAttributeKey.for_datetime("CutoffAt")
# True once an order has not shipped by its ship-by promise (absent before).
LATE = SearchAttributeKey.for_bool("Late")
# Support cases and customer contacts (MerchantId is shared with orders).
CASE_STATUS = SearchAttributeKey.for_keyword("CaseStatus")
SLA_STATE = SearchAttributeKey.for_keyword("SlaState")
SLA_DUE_AT = SearchAttributeKey.for_datetime("SlaDueAt")

ALL = (
    ORDER_STATUS,
    MERCHANT_ID,
    ORDER_REFERENCE,
    FACILITY,
    CUTOFF_AT,
    LATE,
    CASE_STATUS,
    SLA_STATE,
    SLA_DUE_AT,
)

# The attributes of one workflow have values of several types (keywords, datetimes).
Pair = SearchAttributePair[Any]
Update = SearchAttributeUpdate[Any]


def pairs(*candidates: Pair | None) -> list[Pair]:
    """The pairs that have a value (``maybe`` gives None for an attribute without one)."""
    return [pair for pair in candidates if pair is not None]


def maybe(
    key: SearchAttributeKey[SearchAttributeValueType], value: SearchAttributeValueType | None
) -> Pair | None:
    return None if value is None else SearchAttributePair(key, value)


def typed(pairs: Iterable[Pair]) -> TypedSearchAttributes:
    """What a workflow starts with, so the Web UI can find it before its first task runs."""
    return TypedSearchAttributes(list(pairs))


def updates(pairs: Iterable[Pair], unset: Sequence[SearchAttributeKey[Any]] = ()) -> list[Update]:
    """Sets ``pairs``, then unsets each key of ``unset`` that no pair sets."""
    out: list[Update] = []
    present = set()
    for pair in pairs:
        out.append(pair.key.value_set(pair.value))
        present.add(pair.key.name)
    out.extend(key.value_unset() for key in unset if key.name not in present)
    return out
