"""Support IDs: the short code every order carries, which customers and support quote.

Every order has one: ``PF-`` and 8 characters from ``SUPPORT_ID_ALPHABET``, Crockford's
base32 without 0, 1 and the letters it already leaves out (I, L, O, U), so nobody reading one
out over the phone confuses O with 0 or I/L with 1. 30^8 (about 6.6 × 10^11) possible IDs; the
database's unique index catches the rare collision and the caller draws again.
``normalize_support_id`` accepts what people type (lower case, spaces around it).

Pure: the one source of randomness, ``generate_support_id``, takes its chooser as an argument
(``secrets.choice`` unless a test passes its own); never call it from a workflow.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

SUPPORT_ID_PREFIX = "PF-"
SUPPORT_ID_LENGTH = 8
# Crockford's base32 (0-9, A-Z without I, L, O, U), without 0 and 1 as well.
SUPPORT_ID_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
SUPPORT_ID_EXAMPLE = "PF-7KQ2M9XR"
SUPPORT_ID_PATTERN = re.compile(
    rf"^{re.escape(SUPPORT_ID_PREFIX)}[{SUPPORT_ID_ALPHABET}]{{{SUPPORT_ID_LENGTH}}}$"
)
SUPPORT_ID_FORMAT = (
    f"a Support ID looks like {SUPPORT_ID_EXAMPLE}: '{SUPPORT_ID_PREFIX}' and "
    f"{SUPPORT_ID_LENGTH} characters from {SUPPORT_ID_ALPHABET} "
    "(digits 2-9 and letters; never 0, O, 1, I, L or U)"
)


class InvalidSupportId(ValueError):
    """Not a Support ID; the message says what is wrong and what one looks like."""


def generate_support_id(choice: Callable[[str], str] = secrets.choice) -> str:
    """A fresh random Support ID (about 39 bits): uniqueness is the database's to enforce."""
    return SUPPORT_ID_PREFIX + "".join(
        choice(SUPPORT_ID_ALPHABET) for _ in range(SUPPORT_ID_LENGTH)
    )


def normalize_support_id(value: str) -> str:
    """``value`` as stored (``PF-`` and upper case), accepting spaces around it and lower case.

    Raises ``InvalidSupportId`` naming the problem: the prefix, the length, or the characters.
    """
    text = value.strip().upper()
    if not text.startswith(SUPPORT_ID_PREFIX):
        raise InvalidSupportId(f"must start with '{SUPPORT_ID_PREFIX}'; {SUPPORT_ID_FORMAT}")
    rest = text[len(SUPPORT_ID_PREFIX) :]
    if len(rest) != SUPPORT_ID_LENGTH:
        raise InvalidSupportId(
            f"must have {SUPPORT_ID_LENGTH} characters after '{SUPPORT_ID_PREFIX}', "
            f"not {len(rest)}; {SUPPORT_ID_FORMAT}"
        )
    wrong = sorted({c for c in rest if c not in SUPPORT_ID_ALPHABET})
    if wrong:
        shown = ", ".join(repr(c) for c in wrong)
        raise InvalidSupportId(
            f"has characters a Support ID never has ({shown}); {SUPPORT_ID_FORMAT}"
        )
    return text


def is_support_id(value: str) -> bool:
    """True for a Support ID exactly as stored (already normalized)."""
    return SUPPORT_ID_PATTERN.fullmatch(value) is not None
