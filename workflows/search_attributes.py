"""The search attributes operators filter orders by in the Temporal Web UI."""

from temporalio.common import SearchAttributeKey

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
MERCHANT_ID = SearchAttributeKey.for_keyword("MerchantId")
ORDER_REFERENCE = SearchAttributeKey.for_keyword("OrderReference")
FACILITY = SearchAttributeKey.for_keyword("Facility")
CUTOFF_AT = SearchAttributeKey.for_datetime("CutoffAt")

ALL = (ORDER_STATUS, MERCHANT_ID, ORDER_REFERENCE, FACILITY, CUTOFF_AT)
