"""The search attributes operators filter orders, support cases and customer contacts by in the
Temporal Web UI, and ``updates``, how a workflow sets them after a change."""

from collections.abc import Iterable, Sequence
from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, SearchAttributeUpdate

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
MERCHANT_ID = SearchAttributeKey.for_keyword("MerchantId")
ORDER_REFERENCE = SearchAttributeKey.for_keyword("OrderReference")
FACILITY = SearchAttributeKey.for_keyword("Facility")
CUTOFF_AT = SearchAttributeKey.for_datetime("CutoffAt")
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
    CASE_STATUS,
    SLA_STATE,
    SLA_DUE_AT,
)

# The attributes of one workflow have values of several types (keywords, datetimes).
Pair = SearchAttributePair[Any]
Update = SearchAttributeUpdate[Any]


def updates(pairs: Iterable[Pair], unset: Sequence[SearchAttributeKey[Any]] = ()) -> list[Update]:
    """Sets ``pairs``, then unsets each key of ``unset`` that no pair sets."""
    out: list[Update] = []
    present = set()
    for pair in pairs:
        out.append(pair.key.value_set(pair.value))
        present.add(pair.key.name)
    out.extend(key.value_unset() for key in unset if key.name not in present)
    return out
