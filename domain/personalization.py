"""The rules for a customer's personalization values, shared by the workflow and the API.

Pure (stdlib, pydantic and ``domain.orders`` only): the order workflow imports it inside the
Temporal sandbox and validates every submission itself, while the API runs the same checks first
so it can re-render the form with the errors instead of round-tripping to the workflow.

Values arrive as ``{item_reference_id: {field name: value}}``; errors are keyed
``"item_reference_id.field"`` (or just ``"item_reference_id"`` for an item that takes none).
Field names never contain dots (``PersonalizationField.name`` forbids them), so the key splits
unambiguously at its last dot.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from domain.orders import (
    PERSONALIZATION_MAX_BYTES,
    ItemState,
    PersonalizationStatus,
    StoredPersonalizationField,
    values_size,
)

# Caps for fields that declare no max_length, so a submission stays a reasonable size in the
# workflow history and in the print job.
DEFAULT_TEXT_MAX_LENGTH = 1000
IMAGE_URL_MAX_LENGTH = 2048

REQUIRED = "This field is required"


def hash_token(token: str) -> str:
    """What the database keeps of a link's token: 256 random bits need no slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def pending_items(items: list[ItemState]) -> list[ItemState]:
    """The items still waiting for the customer: the ones a link asks for."""
    return [
        i
        for i in items
        if i.personalization_status is PersonalizationStatus.PENDING
        and i.personalization is not None
    ]


def error_key(item_reference_id: str, field: str) -> str:
    return f"{item_reference_id}.{field}"


def max_length(field: StoredPersonalizationField) -> int:
    if field.max_length is not None:
        return field.max_length
    return IMAGE_URL_MAX_LENGTH if field.type == "image_url" else DEFAULT_TEXT_MAX_LENGTH


def describe_field(field: StoredPersonalizationField) -> str:
    """A short human description, e.g. "text, up to 20 characters, required"."""
    parts = ["image URL (http or https)" if field.type == "image_url" else "text"]
    if field.max_length is not None:
        parts.append(f"up to {field.max_length} characters")
    parts.append("required" if field.required else "optional")
    return ", ".join(parts)


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host: what a print facility can download."""
    if any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a malformed port such as "host:abc"
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _has_control_characters(value: str) -> bool:
    # Line breaks and tabs may be meant (a poster's lines); other control characters never are,
    # and NUL cannot be stored by PostgreSQL.
    return any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in value)


def _field_error(field: StoredPersonalizationField, value: str) -> str | None:
    if not value:
        return REQUIRED if field.required else None
    limit = max_length(field)
    if len(value) > limit:
        return f"Use at most {limit} characters (this has {len(value)})"
    if _has_control_characters(value):
        return "Remove the invisible control characters"
    if field.type == "image_url" and not is_http_url(value):
        return "Enter a full web address starting with http:// or https://"
    return None


def validate_values(items: list[ItemState], values: dict[str, dict[str, str]]) -> dict[str, str]:
    """Everything wrong with ``values`` for ``items``, keyed "item_ref.field"; {} when valid."""
    pending = {i.item_reference_id: i for i in pending_items(items)}
    errors: dict[str, str] = {}
    for ref, given in values.items():
        if ref not in pending:
            errors[ref] = f"Item {ref!r} does not take personalization in this order"
            continue
        spec = pending[ref].personalization
        assert spec is not None  # pending_items() only returns items with a spec
        declared = {f.name for f in spec.fields}
        for name in given:
            if name not in declared:
                errors[error_key(ref, name)] = f"Item {ref!r} has no field {name!r}"
    for ref, item in pending.items():
        assert item.personalization is not None
        given = values.get(ref, {})
        for field in item.personalization.fields:
            problem = _field_error(field, given.get(field.name, "").strip())
            if problem is not None:
                errors[error_key(ref, field.name)] = problem
    size = values_size(values)
    if size > PERSONALIZATION_MAX_BYTES and values:
        # The order's print job carries every value: together they stay within the cap.
        largest = max(values, key=lambda ref: values_size({ref: values[ref]}))
        errors.setdefault(
            largest,
            f"Together the values take {size} bytes; an order's may take at most "
            f"{PERSONALIZATION_MAX_BYTES}. Please shorten some",
        )
    return errors


def clean_values(
    items: list[ItemState], values: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """The stripped values of declared fields for every pending item; empty optional ones out.

    Call it on values that ``validate_values`` accepted: it drops what it does not know rather
    than complaining about it.
    """
    cleaned: dict[str, dict[str, str]] = {}
    for item in pending_items(items):
        assert item.personalization is not None
        given = values.get(item.item_reference_id, {})
        cleaned[item.item_reference_id] = {
            field.name: value
            for field in item.personalization.fields
            if (value := given.get(field.name, "").strip())
        }
    return cleaned
