"""The search attributes operators filter orders and support cases by in the Temporal Web UI."""

from temporalio.common import SearchAttributeKey

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
MERCHANT_ID = SearchAttributeKey.for_keyword("MerchantId")
ORDER_REFERENCE = SearchAttributeKey.for_keyword("OrderReference")
FACILITY = SearchAttributeKey.for_keyword("Facility")
CUTOFF_AT = SearchAttributeKey.for_datetime("CutoffAt")
# Support cases (MerchantId is shared with orders).
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
