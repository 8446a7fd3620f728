"""The one rule on characters in what merchants and facilities send, shared by every input model.

Control characters (tab aside) are refused with a 422 wherever text comes in: a line break in a
reference would end up in an e-mail header, NUL cannot be stored by PostgreSQL, and none of them
is ever meant in a name, an address or an id. Personalization values are the exception (a
customer's poster may have several lines): ``domain.personalization`` checks those itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

# C0 controls but tab, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
REFUSED = "control characters (line breaks, NUL and the like) are not allowed here; tab is"


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _walk(value: Any) -> Iterator[tuple[Any, int]]:
    """Every value inside ``value`` (dict keys too) with its depth, ``value`` itself at 0:
    without recursion, so JSON nested as deep as a body can hold is walked like any other."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if isinstance(item, dict):
            for k, v in item.items():
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)


def find_control_characters(value: Any) -> bool:
    """True when any string in ``value`` (nested dicts and lists, keys too) has one."""
    return any(isinstance(item, str) and has_control_characters(item) for item, _ in _walk(value))


def nesting_depth(value: Any, limit: int) -> int:
    """How many levels of dicts and lists ``value`` has (``{"a": 1}``: 1, ``{"a": [1]}``: 2,
    a string: 0); counting stops past ``limit``, so the answer is at most ``limit + 1``."""
    deepest = 0
    for item, depth in _walk(value):
        if isinstance(item, dict | list | tuple):
            deepest = max(deepest, depth + 1)
            if deepest > limit:
                break
    return deepest


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
