"""The one rule on characters in what merchants and facilities send, shared by every input model.

Control characters (tab aside) are refused with a 422 wherever text comes in: a line break in a
reference would end up in an e-mail header, NUL cannot be stored by PostgreSQL, and none of them
is ever meant in a name, an address or an id. Personalization values are the exception (a
customer's poster may have several lines): ``domain.personalization`` checks those itself.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

# C0 controls but tab, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
REFUSED = "control characters (line breaks, NUL and the like) are not allowed here; tab is"


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def find_control_characters(value: Any) -> bool:
    """True when any string in ``value`` (nested dicts and lists, keys too) has one."""
    if isinstance(value, str):
        return has_control_characters(value)
    if isinstance(value, dict):
        return any(
            find_control_characters(k) or find_control_characters(v) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return any(find_control_characters(v) for v in value)
    return False


class InputModel(BaseModel):
    """A body sent to printflow: unknown fields refused, text trimmed, no control characters.

    Each field is checked where it stands (so the error names it); a nested model checks its
    own fields. Free-form JSON fields (such as an order's ``metadata``) are checked in depth by
    the model that declares them, with ``find_control_characters``.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value_strings = list(value.keys())
        elif isinstance(value, list | tuple):
            value_strings = list(value)
        else:
            value_strings = [value]
        if any(isinstance(v, str) and has_control_characters(v) for v in value_strings):
            raise ValueError(REFUSED)
        return value
