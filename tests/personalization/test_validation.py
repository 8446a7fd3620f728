"""The rules for personalization values, as both the API and the workflow apply them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.orders import ItemState, PersonalizationField, PersonalizationSpec
from domain.personalization import (
    DEFAULT_TEXT_MAX_LENGTH,
    REQUIRED,
    clean_values,
    describe_field,
    hash_token,
    is_http_url,
    pending_items,
    validate_values,
)


def _item(ref: str, *fields: PersonalizationField, status: str = "pending") -> ItemState:
    return ItemState(
        item_reference_id=ref,
        product_uid="mug_11oz_white",
        quantity=1,
        files=[],
        personalization=PersonalizationSpec(fields=list(fields)) if fields else None,
        personalization_status=status if fields else "not_required",
    )


NAME = PersonalizationField(name="name", label="Name", type="text", max_length=10, required=True)
PHOTO = PersonalizationField(name="photo", label="Photo", type="image_url")
NOTE = PersonalizationField(name="note", label="Note", type="text")

ITEMS = [_item("mug.1", NAME, PHOTO), _item("card", NOTE), _item("shirt")]


def test_good_values_pass_and_come_out_stripped() -> None:
    values = {"mug.1": {"name": "  Ada  ", "photo": " https://img.example/a.png "}}
    assert validate_values(ITEMS, values) == {}
    assert clean_values(ITEMS, values) == {
        "mug.1": {"name": "Ada", "photo": "https://img.example/a.png"},
        "card": {},  # every pending item gets an entry, even with nothing given
    }


def test_a_required_field_must_have_more_than_spaces() -> None:
    assert validate_values(ITEMS, {"mug.1": {"name": "   "}}) == {"mug.1.name": REQUIRED}
    assert validate_values(ITEMS, {}) == {"mug.1.name": REQUIRED}


def test_max_length_counts_what_is_left_after_stripping() -> None:
    assert validate_values(ITEMS, {"mug.1": {"name": "  " + "x" * 10 + "  "}}) == {}
    errors = validate_values(ITEMS, {"mug.1": {"name": "x" * 11}})
    assert errors == {"mug.1.name": "Use at most 10 characters (this has 11)"}


def test_text_without_a_declared_limit_is_still_capped() -> None:
    long = "y" * (DEFAULT_TEXT_MAX_LENGTH + 1)
    errors = validate_values(ITEMS, {"mug.1": {"name": "Ada"}, "card": {"note": long}})
    assert list(errors) == ["card.note"]
    assert str(DEFAULT_TEXT_MAX_LENGTH) in errors["card.note"]


def test_image_urls_must_be_absolute_http_or_https() -> None:
    for good in ("https://img.example/a.png", "http://img.example:8080/a?b=c#d"):
        assert is_http_url(good), good
    for bad in (
        "ftp://img.example/a.png",
        "/uploads/a.png",
        "img.example/a.png",
        "https://",
        "javascript:alert(1)",
        "https://img.example:port/a.png",
        "https://img.example/a b.png",
    ):
        assert not is_http_url(bad), bad
        errors = validate_values(ITEMS, {"mug.1": {"name": "Ada", "photo": bad}})
        assert list(errors) == ["mug.1.photo"], bad


def test_optional_fields_may_be_missing_or_empty_and_are_dropped() -> None:
    values = {"mug.1": {"name": "Ada", "photo": "  "}, "card": {"note": ""}}
    assert validate_values(ITEMS, values) == {}
    assert clean_values(ITEMS, values) == {"mug.1": {"name": "Ada"}, "card": {}}


def test_unknown_items_and_fields_are_refused() -> None:
    errors = validate_values(
        ITEMS,
        {"mug.1": {"name": "Ada", "colour": "red"}, "shirt": {"x": "y"}, "ghost": {}},
    )
    assert set(errors) == {"mug.1.colour", "shirt", "ghost"}
    assert "no field 'colour'" in errors["mug.1.colour"]
    assert clean_values(ITEMS, {"mug.1": {"name": "Ada", "colour": "red"}})["mug.1"] == {
        "name": "Ada"
    }


def test_items_already_done_take_no_values() -> None:
    done = [_item("mug.1", NAME, status="completed"), _item("card", NOTE, status="skipped")]
    assert pending_items(done) == []
    assert set(validate_values(done, {"mug.1": {"name": "Ada"}, "card": {}})) == {"mug.1", "card"}
    assert clean_values(done, {}) == {}


def test_control_characters_are_refused_but_line_breaks_are_fine() -> None:
    assert validate_values(ITEMS, {"mug.1": {"name": "Ada"}, "card": {"note": "Hi\nyou\t!"}}) == {}
    errors = validate_values(ITEMS, {"mug.1": {"name": "A\x00da"}})
    assert list(errors) == ["mug.1.name"]


def test_fields_are_described_for_the_merchant() -> None:
    assert describe_field(NAME) == "text, up to 10 characters, required"
    assert describe_field(PHOTO) == "image URL (http or https), optional"


def test_token_hashes_are_sha256_hex() -> None:
    digest = hash_token("abc")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


_values = st.dictionaries(
    st.sampled_from(["mug.1", "card", "shirt", "other"]),
    st.dictionaries(
        st.sampled_from(["name", "photo", "note", "x"]),
        st.one_of(
            st.text(max_size=15),
            st.sampled_from(["https://img.example/a.png", " http://h/x ", "ftp://h/x", " "]),
        ),
        max_size=3,
    ),
    max_size=4,
)


@given(_values)
def test_whatever_passes_validation_cleans_into_values_that_keep_every_rule(
    values: dict[str, dict[str, str]],
) -> None:
    if validate_values(ITEMS, values):
        return
    cleaned = clean_values(ITEMS, values)
    assert set(cleaned) == {"mug.1", "card"}
    assert 1 <= len(cleaned["mug.1"]["name"]) <= 10
    assert cleaned["mug.1"]["name"] == cleaned["mug.1"]["name"].strip()
    if "photo" in cleaned["mug.1"]:
        assert is_http_url(cleaned["mug.1"]["photo"])
    # Cleaning is stable: cleaned values validate and clean to themselves.
    assert validate_values(ITEMS, cleaned) == {}
    assert clean_values(ITEMS, cleaned) == cleaned
