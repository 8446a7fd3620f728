"""Defaults that must hold together, and the settings of this round's alerts and links."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from runtime.settings import Settings


def test_a_write_waits_longer_than_one_workflow_task_may_take() -> None:
    """One stalled workflow task is handed to another worker after WORKFLOW_TASK_TIMEOUT; a
    write that waited only as long would answer 503 for what is a normal hiccup."""
    settings = Settings()
    assert settings.update_timeout > settings.workflow_task_timeout
    assert settings.update_timeout == timedelta(seconds=15)


def test_the_production_report_timeout_has_its_documented_default() -> None:
    assert Settings().production_report_timeout == timedelta(days=3)
    assert Settings(production_report_timeout="PT12H").production_report_timeout == timedelta(  # type: ignore[arg-type]
        hours=12
    )


def test_a_link_secret_is_long_or_absent() -> None:
    assert Settings().link_secret is None
    assert Settings(link_secret="  ").link_secret is None  # type: ignore[arg-type]
    assert Settings(link_secret="s" * 32).link_secret is not None  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(link_secret="short")  # type: ignore[arg-type]
