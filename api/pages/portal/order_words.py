"""What the order page (``orders``) and the forms for an order's problems (``order_problems``)
both say: the order's status, the notices after each of the page's forms, the API's refusals of
a change, and the words and limits of the hold, problem-report and customer-message forms."""

from __future__ import annotations

from typing import get_args

from api.errors import ApiError
from api.pages.portal import common
from api.schemas import ClaimReason
from domain.contact_policy import ContactReason
from domain.orders import RefusalCode, Status

STATUS_WORDS: dict[Status, str] = {
    Status.PENDING_PERSONALIZATION: "Waiting for personalization",
    Status.PENDING_APPROVAL: "Waiting for your approval",
    Status.SCHEDULED: "Scheduled",
    Status.IN_PRODUCTION: "In production",
    Status.PRINTED: "Printed",
    Status.SHIPPED: "Shipped",
    Status.DELIVERED: "Delivered",
    Status.ON_HOLD: "On hold",
    Status.CANCELED: "Canceled",
    Status.RETURNED: "Returned to sender",
    Status.FAILED: "Failed",
}

# The order page's forms, by the name a failed one is shown again with: the order's own
# (``orders``), then those for its problems (``order_problems``).
CANCEL, ADDRESS, APPROVE = "cancel", "address", "approve"
PROCEED, FILES, REORDER, CONTACT = "hold-proceed", "hold-files", "reorder", "contact"

# What the order page says after one of its forms went through (``common.done``); a problem
# report leads to the reprint's page. (The customer message leads to the conversation's page,
# which says so itself.)
DONE: dict[str, str] = {
    "canceled": "The order was canceled.",
    "address": "The shipping address was changed.",
    "approved": "The order was approved.",
    "hold_answered": "The hold is answered: the order goes on as it is.",
    "files_replaced": "The files were replaced and the hold is answered: the order goes on "
    "with the new files.",
    "reordered": "Your problem report was filed as a claim, and this order is its reprint: it "
    "goes to production like any order. The claim links it to the original order.",
}

# When the service did not answer: the order's own forms, the forms for its problems.
NOT_ANSWERED = common.no_answer("The order", "check the order")
# The API's refusals of a change, as the shop reads them.
REFUSAL_WORDS: dict[str, str] = {
    RefusalCode.ORDER_IN_PRODUCTION: (
        "This order went to production: it can no longer be canceled or changed."
    ),
    RefusalCode.ORDER_CANCELED: "This order was canceled: it can no longer be changed.",
    RefusalCode.ORDER_FAILED: "This order failed and is closed: it can no longer be changed.",
    RefusalCode.ORDER_NOT_PENDING: "This order is not waiting for approval (any more).",
    RefusalCode.ORDER_ON_HOLD: (
        "While this order is on hold for another reason than its address, the address cannot "
        "be changed: answer the hold first."
    ),
    "order_closed": "This order is closed: it can no longer be changed.",
    RefusalCode.ORDER_NOT_ON_HOLD: (
        "This order is not on hold any more: the hold was answered, or the order was canceled."
    ),
    RefusalCode.ORDER_NOT_PRODUCED: (
        "Only an order that was printed, shipped, delivered or returned can be reprinted."
    ),
}


def refused(err: ApiError) -> str:
    """The API's refusal of a change of the order, as the shop reads it."""
    return REFUSAL_WORDS.get(err.code) or common.refused(err)


# The claim reasons the API takes (``ClaimReason``), in words.
CLAIM_WORDS: dict[str, tuple[str, str]] = {
    "damaged": (
        "Damaged on the way",
        "It arrived broken, dented or torn. Photos of what arrived are needed.",
    ),
    "defective": (
        "Defective",
        "A fault of the product itself, such as a print that peels off. Photos are needed.",
    ),
    "misprint": (
        "Misprint",
        "Printed wrong: the colours, the position, or not the design that was ordered.",
    ),
    "lost": ("Lost", "The parcel never arrived."),
}
CLAIM_REASONS: tuple[str, ...] = get_args(ClaimReason)
DESCRIPTION_MAX = 2000  # ReorderRequest.description
PHOTOS_MAX = 20  # ReorderRequest.photo_urls

# The reasons a customer may be written to (the contact policy), in words, with when they fit.
CONTACT_WORDS: dict[ContactReason, tuple[str, str]] = {
    ContactReason.INVALID_ADDRESS: (
        "Address problem",
        "an order not shipped yet, or on hold because of its address",
    ),
    ContactReason.DELIVERY_DELAY: ("Delivery delay", "a shipped order that has not arrived yet"),
    ContactReason.RETURNED_TO_SENDER: (
        "Returned to sender",
        "an order whose parcel came back",
    ),
    ContactReason.INVENTORY_CANCELLATION: (
        "Canceled: out of stock",
        "an order canceled because it was out of stock",
    ),
}
