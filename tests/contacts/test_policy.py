"""The contact policy: which reason fits which order, and what a message may not say."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.contact_policy import (
    ALLOWED_REASONS,
    ContactReason,
    ContactRefused,
    OrderFacts,
    check_contact,
    check_substitute,
    check_win_back,
    reasons_for,
)
from domain.orders import CancelReasonCode, HoldKind, Status
from tests.helpers.workflows import order_input

FINE = ("About your order", "Thank you for your patience.")


def facts(
    status: Status,
    hold: HoldKind | None = None,
    code: CancelReasonCode | None = None,
) -> OrderFacts:
    return OrderFacts(status=status, hold_kind=hold, cancel_reason_code=code)


def refused(reason: str, order: OrderFacts, subject: str, body: str) -> ContactRefused:
    with pytest.raises(ContactRefused) as caught:
        check_contact(reason, order, subject, body)
    return caught.value


# ---------------------------------------------------------------------------- reasons and orders

FITS = [
    ("invalid_address", facts(Status.PENDING_PERSONALIZATION)),
    ("invalid_address", facts(Status.PENDING_APPROVAL)),
    ("invalid_address", facts(Status.SCHEDULED)),
    ("invalid_address", facts(Status.IN_PRODUCTION)),
    ("invalid_address", facts(Status.PRINTED)),
    ("invalid_address", facts(Status.ON_HOLD, HoldKind.ADDRESS_INVALID)),
    ("delivery_delay", facts(Status.SHIPPED)),
    ("returned_to_sender", facts(Status.RETURNED)),
    ("inventory_cancellation", facts(Status.CANCELED, code=CancelReasonCode.INVENTORY_SHORTAGE)),
]

DOES_NOT_FIT = [
    ("invalid_address", facts(Status.SHIPPED)),
    ("invalid_address", facts(Status.DELIVERED)),
    ("invalid_address", facts(Status.ON_HOLD, HoldKind.FILE_QUALITY)),
    ("invalid_address", facts(Status.ON_HOLD, HoldKind.FACILITY_REJECTED)),
    ("invalid_address", facts(Status.CANCELED, code=CancelReasonCode.INVENTORY_SHORTAGE)),
    ("delivery_delay", facts(Status.PRINTED)),
    ("delivery_delay", facts(Status.DELIVERED)),
    ("delivery_delay", facts(Status.RETURNED)),
    ("returned_to_sender", facts(Status.SHIPPED)),
    ("returned_to_sender", facts(Status.DELIVERED)),
    ("inventory_cancellation", facts(Status.CANCELED)),
    ("inventory_cancellation", facts(Status.CANCELED, code=CancelReasonCode.DUPLICATE)),
    ("inventory_cancellation", facts(Status.CANCELED, code=CancelReasonCode.OTHER)),
    ("inventory_cancellation", facts(Status.SCHEDULED)),
    ("inventory_cancellation", facts(Status.FAILED)),
]


@pytest.mark.parametrize(("reason", "order"), FITS)
def test_a_reason_that_fits_the_order_is_allowed(reason: str, order: OrderFacts) -> None:
    assert check_contact(reason, order, *FINE) == ContactReason(reason)
    assert reason in reasons_for(order)


@pytest.mark.parametrize(("reason", "order"), DOES_NOT_FIT)
def test_a_reason_that_does_not_fit_is_a_409(reason: str, order: OrderFacts) -> None:
    error = refused(reason, order, *FINE)
    assert (error.code, error.status) == ("reason_does_not_fit", 409)
    assert reason in error.message and order.status.value in error.message
    assert error.details["reasons_that_fit"] == reasons_for(order)
    assert reason not in reasons_for(order)


@given(
    st.sampled_from(list(Status)),
    st.none() | st.sampled_from(list(HoldKind)),
    st.none() | st.sampled_from(list(CancelReasonCode)),
    st.sampled_from(ALLOWED_REASONS),
)
def test_every_order_gets_an_answer_that_agrees_with_reasons_for(
    status: Status, hold: HoldKind | None, code: CancelReasonCode | None, reason: str
) -> None:
    order = facts(status, hold, code)
    try:
        check_contact(reason, order, *FINE)
    except ContactRefused as error:
        assert error.code in {"reason_does_not_fit", "customer_cancellation"}
        assert reason not in reasons_for(order)
    else:
        assert reason in reasons_for(order)


@pytest.mark.parametrize(
    "reason",
    ["", "marketing", "INVALID_ADDRESS", " invalid_address", "customer_cancellation", "x" * 500],
)
def test_an_unknown_reason_is_a_422_listing_the_allowed_ones(reason: str) -> None:
    error = refused(reason, facts(Status.SCHEDULED), *FINE)
    assert (error.code, error.status) == ("reason_not_allowed", 422)
    assert error.details == {"allowed_reasons": list(ALLOWED_REASONS)}
    for allowed in ALLOWED_REASONS:
        assert allowed in error.message


@pytest.mark.parametrize("reason", ALLOWED_REASONS)
def test_an_order_the_customer_canceled_is_never_contacted(reason: str) -> None:
    order = facts(Status.CANCELED, code=CancelReasonCode.CUSTOMER_REQUEST)
    error = refused(reason, order, *FINE)
    assert (error.code, error.status) == ("customer_cancellation", 409)
    assert reasons_for(order) == []


def test_facts_come_from_the_orders_state() -> None:
    from datetime import UTC, datetime

    from domain.orders import Hold, new_state

    now = datetime(2026, 11, 28, tzinfo=UTC)
    state = new_state(order_input(now))
    state.status = Status.ON_HOLD
    state.hold = Hold(kind=HoldKind.ADDRESS_INVALID, description="no such street", since=now)
    assert OrderFacts.of(state) == facts(Status.ON_HOLD, HoldKind.ADDRESS_INVALID)
    state.status, state.hold = Status.CANCELED, None
    state.cancel_reason_code = CancelReasonCode.INVENTORY_SHORTAGE
    assert OrderFacts.of(state) == facts(Status.CANCELED, code=CancelReasonCode.INVENTORY_SHORTAGE)


# ---------------------------------------------------------------------------- the substitute rule

SUBSTITUTES = [
    "We can send you a similar mug instead.",
    "Would you accept a different colour?",
    "We could replace it with another design.",
    "We can substitute the poster with the A2 version.",
    "Substitution: a blue mug.",
    "Would you like a similar print?",
    "We can offer an alternative.",
    "We could send a comparable poster.",
    "Swap it for a different size?",
    "We could exchange it for another model.",
    "We have an alternative product for you.",
    "Or a similar item, if you like.",
    "Happy to ship another one instead!",
    "Would you be happy with an equivalent shirt?",
    # hostile spellings of the same
    "We can send you a SIMILAR MUG INSTEAD",
    "we can send you a <b>similar</b> mug instead",
    "we can send you a sim\u200bilar mug instead",  # zero-width space
    "we can send you a s\u00adimilar mug instead",  # soft hyphen
    "ｗｅ ｃａｎ ｏｆｆｅｒ ａｎ ａｌｔｅｒｎａｔｉｖｅ",  # full-width
    "we can send you a \u0455imilar mug instead",  # Cyrillic dze for s
    "we can send you a sіmіlar mug instead",  # Cyrillic i
    "we can send you a s1milar mug instead",
    "we can 5ub5titute it",
    "s u b s t i t u t e",
    "s-u-b-s-t-i-t-u-t-e",
    "S.U.B.S.T.I.T.U.T.E",
    "sub&#115;titute",
    "substitüte",
    "We could\nsend a similar\nmug instead",
    "Would you\taccept a different colour",
    "Dear Ada,\n\n" + "All is well. " * 200 + "Would you accept a different colour?",
]

INVITATIONS = [
    "You are welcome to place a new order.",
    "The item is back in stock next month.",
    "We are sorry: we had to cancel your order because the mug is out of stock.",
    "If you still want the mug, you are welcome to order it again once it is back in stock.",
    "Could you send us another address instead?",
    "Please give us a different phone number.",
    "We can change it to a different address before it ships.",
    "Would you like us to deliver on another day?",
    "The parcel goes with another carrier instead.",
    "We will send a replacement parcel if it does not arrive by Friday.",
    "We will send you a new link.",
    "Would you like to place another order?",
    "Your order is on its way.",
    "Please confirm the street name: the carrier could not find it.",
    "",
]


@pytest.mark.parametrize("text", SUBSTITUTES)
def test_offering_a_substitute_is_caught_with_the_phrase(text: str) -> None:
    verdict = check_substitute(text)
    assert verdict.caught and verdict, text
    assert verdict.rule and verdict.phrase
    order = facts(Status.CANCELED, code=CancelReasonCode.INVENTORY_SHORTAGE)
    error = refused("inventory_cancellation", order, "Your order", text)
    assert (error.code, error.status) == ("substitute_not_allowed", 422)
    assert verdict.phrase in error.message and "cancel" in error.message


@pytest.mark.parametrize("text", SUBSTITUTES[:6])
def test_a_substitute_in_the_subject_is_caught_too(text: str) -> None:
    error = refused("delivery_delay", facts(Status.SHIPPED), text, "Regards")
    assert error.code == "substitute_not_allowed"


@pytest.mark.parametrize("text", INVITATIONS)
def test_inviting_a_new_order_and_everyday_wording_pass(text: str) -> None:
    assert not check_substitute(text), check_substitute(text)
    assert not check_win_back(text), check_win_back(text)
    order = facts(Status.CANCELED, code=CancelReasonCode.INVENTORY_SHORTAGE)
    assert check_contact("inventory_cancellation", order, "Your order", text)


def test_the_phrase_names_what_matched() -> None:
    verdict = check_substitute("Sorry! We can send you a similar mug instead. Best, Bo")
    assert verdict.rule == "other product instead"
    assert verdict.phrase == "a similar mug instead"


@given(st.text(max_size=300))
def test_any_text_gets_a_verdict(text: str) -> None:
    verdict = check_substitute(text, text)
    assert verdict.caught == (verdict.phrase is not None)


# Read in linear time, the 700 KB below take a second or two; a rule that backtracks (quadratic
# or worse) would take hours. The limit catches that without timing a busy machine's second.
@pytest.mark.timeout(300)
def test_a_long_hostile_text_is_read_in_linear_time() -> None:
    text = ("would you " + "a " * 30 + "similar " * 10 + "the other " * 20 + ". ") * 2000
    verdicts = [check_substitute(text), check_win_back(text)]
    assert all(v.caught == (v.phrase is not None) for v in verdicts)


# ---------------------------------------------------------------------------- a customer's cancel

WIN_BACK = [
    "May we ask why you canceled?",
    "Why did you cancel your order?",
    "What made you cancel?",
    "What was the reason for your cancellation?",
    "Please reconsider!",
    "We would love to win you back.",
    "We miss you.",
    "Would you like to keep your order?",
    "Give us another chance.",
    "We can uncancel it for you.",
    "Maybe you will change your mind?",
    "WHY did y o u cancel",
]


@pytest.mark.parametrize("text", WIN_BACK)
def test_asking_about_their_cancel_or_winning_them_back_is_refused(text: str) -> None:
    assert check_win_back(text), text
    order = facts(Status.CANCELED, code=CancelReasonCode.INVENTORY_SHORTAGE)
    error = refused("inventory_cancellation", order, "Your order", text)
    assert (error.code, error.status) == ("customer_cancellation", 409)


@pytest.mark.parametrize(
    "text",
    [
        "Unfortunately the mug is out of stock, which is why we had to cancel your order.",
        "The reason for the cancellation is a stock shortage.",
        "We canceled your order and refunded you in full.",
    ],
)
def test_explaining_the_merchants_own_cancel_passes(text: str) -> None:
    order = facts(Status.CANCELED, code=CancelReasonCode.INVENTORY_SHORTAGE)
    assert check_contact("inventory_cancellation", order, "Your order", text)
