"""Support IDs: their shape, how people type them, and what a wrong one is told."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.support_ids import (
    SUPPORT_ID_ALPHABET,
    InvalidSupportId,
    generate_support_id,
    is_support_id,
    normalize_support_id,
)


def test_the_alphabet_has_no_character_people_confuse() -> None:
    assert len(SUPPORT_ID_ALPHABET) == len(set(SUPPORT_ID_ALPHABET)) == 30
    assert not set("01OILU") & set(SUPPORT_ID_ALPHABET)


def test_a_generated_id_is_pf_and_eight_characters_of_the_alphabet() -> None:
    for _ in range(500):
        support_id = generate_support_id()
        assert support_id.startswith("PF-") and len(support_id) == 11
        assert set(support_id[3:]) <= set(SUPPORT_ID_ALPHABET)
        assert is_support_id(support_id)
        assert normalize_support_id(support_id) == support_id


def test_generated_ids_are_random_not_sequential() -> None:
    ids = {generate_support_id() for _ in range(2000)}
    assert len(ids) == 2000
    # Every position takes many values: not a counter with a fixed head.
    for position in range(3, 11):
        assert len({i[position] for i in ids}) > 20


def test_the_chooser_decides_every_character() -> None:
    seeded = random.Random(7)
    assert generate_support_id(seeded.choice) == generate_support_id(random.Random(7).choice)


@given(
    st.text(alphabet=SUPPORT_ID_ALPHABET, min_size=8, max_size=8),
    st.sampled_from(["", " ", "  ", "\t"]),
    st.sampled_from(["", " ", "\t "]),
    st.booleans(),
)
def test_lower_case_and_spaces_around_are_accepted(
    body: str, before: str, after: str, lower: bool
) -> None:
    typed = before + ("pf-" + body.lower() if lower else "PF-" + body) + after
    assert normalize_support_id(typed) == "PF-" + body


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("7KQ2M9XR", "must start with 'PF-'"),
        ("PF7KQ2M9XR", "must start with 'PF-'"),
        ("XX-7KQ2M9XR", "must start with 'PF-'"),
        ("", "must start with 'PF-'"),
        ("PF-7KQ2M9X", "8 characters after 'PF-', not 7"),
        ("PF-7KQ2M9XRR", "not 9"),
        ("PF-7KQ 2M9X", "characters a Support ID never has (' ')"),
        ("PF-0KQ2M9XR", "'0'"),
        ("PF-OKQ2M9XR", "'O'"),
        ("PF-1KQ2M9XR", "'1'"),
        ("PF-IKQ2M9XR", "'I'"),
        ("PF-LKQ2M9XR", "'L'"),
        ("PF-UKQ2M9XR", "'U'"),
        ("PF-7KQ2M9X\u0420", "'Р'"),  # a Cyrillic look-alike of P
        ("PF-7KQ2M9X;", "';'"),
    ],
)
def test_a_wrong_id_is_told_what_a_support_id_looks_like(typed: str, says: str) -> None:
    with pytest.raises(InvalidSupportId) as caught:
        normalize_support_id(typed)
    message = str(caught.value)
    assert says in message
    assert "a Support ID looks like PF-" in message and SUPPORT_ID_ALPHABET in message
    assert not is_support_id(typed)


@given(st.text(max_size=20))
def test_normalize_accepts_exactly_what_is_a_support_id_once_trimmed(text: str) -> None:
    try:
        normalized = normalize_support_id(text)
    except InvalidSupportId:
        assert not is_support_id(text.strip().upper())
    else:
        assert is_support_id(normalized)
