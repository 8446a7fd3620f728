"""Plans and what they include; the support file refuses what cannot work."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from domain.support import (
    BUNDLED_SUPPORT_FILE,
    INCLUDES,
    Plan,
    SupportFileError,
    load_support,
    plan_named,
)


@pytest.mark.parametrize(
    ("name", "plan"),
    [
        ("free", Plan.FREE),
        ("essential", Plan.FREE),
        ("small_shop", Plan.LITE),
        ("Large_Shop", Plan.GROWTH),
        ("business", Plan.PREMIUM),
        ("premium", Plan.PREMIUM),
    ],
)
def test_legacy_plan_names_map_one_to_one(name: str, plan: Plan) -> None:
    assert plan_named(name) is plan


def test_an_unknown_plan_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="free, lite, growth, premium"):
        plan_named("gold")


def test_what_each_plan_includes_is_the_table_of_the_contract() -> None:
    table = {plan.value: INCLUDES[plan].model_dump() for plan in Plan}
    everyone = {"ticket": True, "chat": True}
    assert table == {
        "free": everyone | {"priority": False, "callback": False, "csm": False},
        "lite": everyone | {"priority": False, "callback": False, "csm": False},
        "growth": everyone | {"priority": True, "callback": False, "csm": False},
        "premium": everyone | {"priority": True, "callback": True, "csm": True},
    }


def test_the_bundled_support_file_loads() -> None:
    support = load_support()
    assert support.targets["normal"].first_response == timedelta(hours=8)
    assert support.customer_reply.target == timedelta(days=1)
    assert support.calendar.holidays_country == "NL"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"targets": {"normal": {"first_response": "PT8H", "next_response": "PT1H"}}}, "targets"),
        ({"at_risk_fraction": 1.5}, "at_risk_fraction"),
        ({"calendar": {"timezone": "Europe/Amsterdam", "hours": {}}}, "working hours"),
        ({"support_address": "not an address"}, "support_address"),
    ],
)
def test_a_support_file_that_cannot_work_is_refused_with_where(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    bundled = json.loads(BUNDLED_SUPPORT_FILE.read_text())
    path = tmp_path / "support.json"
    path.write_text(json.dumps(bundled | change))
    with pytest.raises(SupportFileError, match=message):
        load_support(path)
