"""The contact policy: when and how a merchant may contact an end customer about an order.

Pure: no I/O, no clock, no randomness.

``check_contact(reason, order, subject, body)`` returns None when the contact may go out and
raises ``ContactRefused(code, message, status)`` otherwise, checking in this order:

=========================  ======  ============================================================
code                       status  when
=========================  ======  ============================================================
``reason_not_allowed``     422     ``reason`` is not one of ``ContactReason`` (the message and
                                   ``details`` list the allowed ones)
``customer_cancellation``  409     the order was canceled with ``reason_code`` ``customer_request``:
                                   the customer canceled it themselves; nobody contacts them
                                   about it, whatever the reason given
``reason_does_not_fit``    409     the reason does not fit the order's state (table below)
``substitute_not_allowed`` 422     the subject or body offers a substitute product
                                   (``check_substitute``): cancel instead
``customer_cancellation``  409     the subject or body asks why the customer canceled, or tries
                                   to win them back (``check_win_back``)
=========================  ======  ============================================================

Which order each reason fits (statuses as in docs/api.md, "Order statuses"):

==========================  ==================================================================
reason                      fits an order that is
==========================  ==================================================================
``invalid_address``         not yet shipped (``pending_personalization``, ``pending_approval``,
                            ``scheduled``, ``in_production``, ``printed``), or ``on_hold``
                            because of its address (hold kind ``address_invalid``)
``delivery_delay``          ``shipped`` and not (yet) delivered
``returned_to_sender``      ``returned`` (the parcel came back, shipped or delivered before)
``inventory_cancellation``  ``canceled`` with ``reason_code`` ``inventory_shortage``
==========================  ==================================================================
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from domain.orders import CancelReasonCode, HoldKind, OrderState, Status

# ---------------------------------------------------------------------------- reasons and facts


class ContactReason(StrEnum):
    INVALID_ADDRESS = "invalid_address"
    DELIVERY_DELAY = "delivery_delay"
    RETURNED_TO_SENDER = "returned_to_sender"
    INVENTORY_CANCELLATION = "inventory_cancellation"


ALLOWED_REASONS: tuple[str, ...] = tuple(r.value for r in ContactReason)

BEFORE_SHIPMENT = frozenset(
    {
        Status.PENDING_PERSONALIZATION,
        Status.PENDING_APPROVAL,
        Status.SCHEDULED,
        Status.IN_PRODUCTION,
        Status.PRINTED,
    }
)


class OrderFacts(BaseModel):
    """What the policy needs to know about an order (``OrderFacts.of(state)`` from its state)."""

    model_config = ConfigDict(frozen=True)

    status: Status
    hold_kind: HoldKind | None = None
    cancel_reason_code: CancelReasonCode | None = None

    @classmethod
    def of(cls, state: OrderState) -> OrderFacts:
        return cls(
            status=state.status,
            hold_kind=state.hold.kind if state.hold is not None else None,
            cancel_reason_code=state.cancel_reason_code,
        )


def _fits(reason: ContactReason, order: OrderFacts) -> bool:
    match reason:
        case ContactReason.INVALID_ADDRESS:
            return order.status in BEFORE_SHIPMENT or (
                order.status is Status.ON_HOLD and order.hold_kind is HoldKind.ADDRESS_INVALID
            )
        case ContactReason.DELIVERY_DELAY:
            return order.status is Status.SHIPPED
        case ContactReason.RETURNED_TO_SENDER:
            return order.status is Status.RETURNED
        case ContactReason.INVENTORY_CANCELLATION:
            return (
                order.status is Status.CANCELED
                and order.cancel_reason_code is CancelReasonCode.INVENTORY_SHORTAGE
            )


_FITS_TEXT = {
    ContactReason.INVALID_ADDRESS: "an order not yet shipped, or on hold because of its address",
    ContactReason.DELIVERY_DELAY: "a shipped order that is not delivered yet",
    ContactReason.RETURNED_TO_SENDER: "a returned order",
    ContactReason.INVENTORY_CANCELLATION: ("an order canceled with reason_code inventory_shortage"),
}


def reasons_for(order: OrderFacts) -> list[str]:
    """The reasons a contact about ``order`` may give (empty: none; e.g. a customer's cancel)."""
    if _customer_canceled(order):
        return []
    return [r.value for r in ContactReason if _fits(r, order)]


def _customer_canceled(order: OrderFacts) -> bool:
    return (
        order.status is Status.CANCELED
        and order.cancel_reason_code is CancelReasonCode.CUSTOMER_REQUEST
    )


# ---------------------------------------------------------------------------- reading text

# Letters that look Latin but are not (Cyrillic, Greek), as they are used to dodge word filters.
_LOOKALIKES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
        "ј": "j", "ԁ": "d", "ɡ": "g", "ո": "n", "α": "a", "β": "b", "ε": "e", "ι": "i",
        "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    }
)  # fmt: skip
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_TAG = re.compile(r"<[^>]{0,200}>")
# A word that mixes letters with look-alike digits or symbols: "5ub5titute", "$imilar".
_MIXED_WORD = re.compile(r"[a-z0-9@$]*[a-z][a-z0-9@$]*")
# Letters spelled out one by one: "s u b s t i t u t e", "s-u-b-s-t-i-t-u-t-e", "s.i.m.i.l.a.r".
_SPACED = re.compile(r"\b[a-z](?:[ .\-_*/'|]{1,3}[a-z]\b){2,}")
_NOT_WORD = re.compile(r"[^a-z0-9.!?]+")


def _spaced_out(match: re.Match[str]) -> str:
    return re.sub(r"[^a-z]", "", match.group(0))


def _leet(match: re.Match[str]) -> str:
    word = match.group(0)
    return word.translate(_LEET) if not word.isdigit() else word


def normalize_text(text: str) -> str:
    """``text`` as the rules read it: one line of lower-case ASCII words and sentence marks.

    Undoes what is used to slip past a word filter: HTML tags and entities, full-width and
    styled letters (NFKC), accents, invisible characters (zero-width spaces, soft hyphens),
    Cyrillic and Greek look-alikes, digits for letters, and letters spelled out one by one.
    """
    text = html.unescape(_TAG.sub(" ", text))
    text = unicodedata.normalize("NFKC", text).casefold().translate(_LOOKALIKES)
    text = "".join(
        c
        for c in unicodedata.normalize("NFKD", text)
        if not unicodedata.combining(c) and unicodedata.category(c) != "Cf"
    )
    text = _MIXED_WORD.sub(_leet, text)
    text = _SPACED.sub(_spaced_out, text)
    text = _NOT_WORD.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class Verdict:
    """What a text rule found: ``caught`` with the ``rule`` and the ``phrase`` that matched
    (as the rule read it, see ``normalize_text``), or not caught."""

    caught: bool
    rule: str | None = None
    phrase: str | None = None

    def __bool__(self) -> bool:
        return self.caught


_CLEAR = Verdict(caught=False)


@dataclass(frozen=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    # True if the match is about something other than a product (an address, a date…).
    excused: Callable[[re.Match[str]], bool] = lambda match: False


def _first(rules: Sequence[_Rule], *texts: str) -> Verdict:
    for text in texts:
        plain = normalize_text(text)
        for rule in rules:
            for match in rule.pattern.finditer(plain):
                if not rule.excused(match):
                    return Verdict(caught=True, rule=rule.name, phrase=match.group(0))
    return _CLEAR


# ---------------------------------------------------------------------------- the substitute rule

# Words that make "another …" or "a different …" an offer of another thing.
_OTHER = r"(?:similar|different|another|other|alternative|alternate|comparable|equivalent)"
# What those words may be about without being a product: a contact about an invalid address or
# a late parcel talks of another address, a different day, another carrier.
_NOT_PRODUCTS = frozenset(
    """
    address addresses street house building apartment flat floor door doorstep neighbour
    neighbor location pickup pick collection point post office locker parcelshop
    day days date dates time times week weeks month months morning afternoon evening slot
    carrier carriers courier couriers delivery deliveries service shipping route method way
    email e mail phone number contact name recipient spelling postcode zip code city country
    order orders purchase purchases
    """.split()
)
_SENTENCE = r"[^.!?]"


def _about_non_product(match: re.Match[str]) -> bool:
    """True if the words right after the "other" word name a non-product (an address…)."""
    after = match.group("after") or ""
    return any(word in _NOT_PRODUCTS for word in after.split()[:3])


SUBSTITUTE_RULES: tuple[_Rule, ...] = (
    _Rule("substitute", re.compile(r"\bsubstitut(?:e|es|ed|ing|ion|ions)\b")),
    _Rule(
        "other product instead",
        re.compile(rf"\b(?:a |an |the )?{_OTHER}\b(?P<after>(?: [a-z0-9]+){{0,4}}?) instead\b"),
        _about_non_product,
    ),
    _Rule(
        "replace it with another",
        re.compile(
            rf"\b(?:replac|swap|exchang|switch|chang)\w*\b{_SENTENCE}{{0,40}}?"
            rf"\b(?:with|for|to|by) (?:a |an |the |some )?{_OTHER}\b"
            rf"(?P<after>(?: [a-z0-9]+){{0,3}})"
        ),
        _about_non_product,
    ),
    _Rule(
        "would you accept another",
        re.compile(
            rf"\b(?:would|will|could|can|do|are) you\b{_SENTENCE}{{0,30}}?"
            r"\b(?:accept|like|prefer|take|want|consider|be (?:happy|ok|okay|fine|interested)"
            r"|mind|be open to|settle for|choose|pick|go for)\b"
            rf"{_SENTENCE}{{0,20}}?\b(?:a |an |the |some )?{_OTHER}\b"
            r"(?P<after>(?: [a-z0-9]+){0,3})"
        ),
        _about_non_product,
    ),
    _Rule(
        "offer another product",
        re.compile(
            rf"\b(?:offer|send|ship|give|provide|propose|suggest|recommend|make|print)\w*\b"
            rf"{_SENTENCE}{{0,20}}?\b(?:a |an |the |some )?"
            r"(?:similar|alternative|alternate|comparable|equivalent|substitute)\b"
            r"(?P<after>(?: [a-z0-9]+){0,3})"
        ),
        _about_non_product,
    ),
    _Rule(
        "alternative product",
        re.compile(
            r"\b(?:similar|alternative|alternate|comparable|equivalent|lookalike|look alike)"
            r" (?:product|item|article|model|design|version|style|colou?r|motif|print|one)s?\b"
        ),
    ),
)


def check_substitute(*texts: str) -> Verdict:
    """Does any of ``texts`` offer the customer a substitute product instead of a cancel?

    printflow's rule: a merchant who cannot deliver what was ordered cancels the order
    (``reason_code: inventory_shortage``) and may tell the customer, and may invite a new
    order; it never proposes another product in its place: the customer did not order that,
    and a "yes" in a reply is no order (no price, no address check, no personalization).

    The text is read as ``normalize_text`` leaves it, so tags, accents, look-alike letters,
    digits for letters and spelled-out words do not hide a phrase. The rules, in order:

    ===========================  ==========================================  ====================
    rule                         catches                                     lets through
    ===========================  ==========================================  ====================
    substitute                   "we can substitute it", "a substitution",   —
                                 "no substitutes" (the word in any form:
                                 talk of cancels, not of substitutes)
    other product instead        "we can send you a similar mug instead",    "ship it to another
                                 "another one instead"                       address instead"
    replace it with another      "replace it with another design",           "we will send a
                                 "swap it for a different size",             replacement parcel",
                                 "exchange it for another model"             "change it to a
                                                                             different address"
    would you accept another     "would you accept a different colour",      "could you give us
                                 "would you like a similar print"            a different phone
                                                                             number"
    offer another product        "we can offer an alternative",              "we will send you
                                 "we could send a comparable poster"         a new link"
    alternative product          "an alternative product", "a similar        "the item is back in
                                 item", "in a comparable colour"             stock next month",
                                                                             "you are welcome to
                                                                             place a new order"
    ===========================  ==========================================  ====================

    The "other" words (similar, different, another, other, alternative, comparable,
    equivalent) followed within three words by an address, a date, a carrier and the like
    (``_NOT_PRODUCTS``) are not about a product, and pass. Returns the first rule that caught
    a phrase, with the phrase; a falsy verdict if none did.
    """
    return _first(SUBSTITUTE_RULES, *texts)


# ---------------------------------------------------------------------------- a customer's cancel

WIN_BACK_RULES: tuple[_Rule, ...] = (
    _Rule(
        "asks why they canceled",
        re.compile(
            rf"\b(?:why|what made|what led)\b{_SENTENCE}{{0,30}}?\byou\b{_SENTENCE}{{0,20}}?"
            r"\bcancel\w*"
        ),
    ),
    _Rule(
        "asks for the cancel's reason",
        re.compile(r"\breasons? (?:for|behind|of) (?:your|their) (?:decision (?:to )?)?cancel\w*"),
    ),
    _Rule(
        "tries to win them back",
        re.compile(
            r"\b(?:reconsider\w*|change (?:your|their) mind|win (?:you|them) back"
            r"|(?:we )?miss you|give us (?:another|a second) (?:chance|try)"
            r"|(?:keep|restore|reinstate|reactivate|undo|revert)\w* (?:your|the|their) "
            r"(?:order|purchase|cancel\w*)"
            r"|(?:un ?cancel\w*))\b"
        ),
    ),
)


def check_win_back(*texts: str) -> Verdict:
    """Does any of ``texts`` ask the customer why they canceled, or try to win them back?

    ==========================  =============================================  ================
    rule                        catches                                        lets through
    ==========================  =============================================  ================
    asks why they canceled      "may we ask why you canceled?", "what made     "which is why we
                                you cancel"                                    had to cancel"
    asks for the cancel's       "what was the reason for your cancellation"    "the reason for
    reason                                                                     the cancellation
                                                                               is a shortage"
    tries to win them back      "please reconsider", "we miss you", "keep      "you are welcome
                                your order", "give us another chance",         to place a new
                                "we can uncancel it"                           order"
    ==========================  =============================================  ================
    """
    return _first(WIN_BACK_RULES, *texts)


# ---------------------------------------------------------------------------- the policy


class ContactRefused(Exception):
    """A contact the policy refuses: ``code`` for machines, ``message`` for people, ``status``
    the HTTP status to answer with, ``details`` what the caller needs to fix it."""

    def __init__(self, code: str, message: str, status: int, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details


def check_contact(reason: str, order: OrderFacts, subject: str, body: str) -> ContactReason:
    """Refuses (``ContactRefused``) a contact that breaks a rule of the policy (module docstring);
    returns the reason as a ``ContactReason`` when the contact may go out."""
    try:
        known = ContactReason(reason)
    except ValueError:
        raise ContactRefused(
            "reason_not_allowed",
            f"a customer may be contacted only about: {', '.join(ALLOWED_REASONS)}; not {reason!r}",
            422,
            {"allowed_reasons": list(ALLOWED_REASONS)},
        ) from None
    if _customer_canceled(order):
        raise ContactRefused(
            "customer_cancellation",
            "the customer canceled this order themselves (reason_code customer_request); "
            "they are not contacted about it",
            409,
        )
    if not _fits(known, order):
        where = order.status.value
        if order.status is Status.ON_HOLD and order.hold_kind is not None:
            where += f" ({order.hold_kind.value})"
        if order.status is Status.CANCELED:
            where += f" (reason_code {order.cancel_reason_code or 'none'})"
        raise ContactRefused(
            "reason_does_not_fit",
            f"{known.value} is for {_FITS_TEXT[known]}; this order is {where}",
            409,
            {"reason": known.value, "reasons_that_fit": reasons_for(order)},
        )
    offer = check_substitute(subject, body)
    if offer:
        raise ContactRefused(
            "substitute_not_allowed",
            f"the message offers a substitute product ({offer.phrase!r}); printflow does not "
            "allow that: cancel the order instead (reason_code inventory_shortage) and, if "
            "you like, invite the customer to place a new order",
            422,
            {"rule": offer.rule, "phrase": offer.phrase},
        )
    win_back = check_win_back(subject, body)
    if win_back:
        raise ContactRefused(
            "customer_cancellation",
            f"the message asks about or argues with a customer's cancel ({win_back.phrase!r}); "
            "customers are not contacted about their own cancellations",
            409,
            {"rule": win_back.rule, "phrase": win_back.phrase},
        )
    return known
