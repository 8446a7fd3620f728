"""What workflow histories hold is read as it was written: the stored models.

A workflow's input, its state (carried through continue-as-new), its Updates' and signals'
arguments and its activities' inputs and results stay in histories for as long as the workflow
runs, and are read again on every replay. The API's input models refuse what the API does not
accept *today* (unknown fields, a country, a state, an e-mail address, lengths); read with
those, a rule tightened later, or a field removed, would make running workflows fail to decode
their own history. So what workflows keep and exchange is typed with ``StoredModel``s: unknown
fields ignored, plain types, no checks. The API validates its input strictly, then converts it
to the stored model (a stored model given an input model takes its JSON).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class StoredModel(BaseModel):
    """Lenient: unknown fields ignored, nothing checked but the types."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _from_input(cls, value: Any) -> Any:
        """An input model (the API's, already checked) is taken as its JSON, as a history
        holds it."""
        if isinstance(value, BaseModel) and not isinstance(value, cls):
            return value.model_dump(mode="json")
        return value
