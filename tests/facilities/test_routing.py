"""Tests of the facility registry (``domain.facilities``) and of the bundled facilities file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import domain
from domain.facilities import (
    Facilities,
    FacilitiesError,
    Facility,
    FacilityInfo,
    Schedule,
    facility_task_queue,
    load_facilities,
)

BUNDLED = Path(domain.__file__).resolve().parent / "facilities.json"
SCHEDULE = {"daily": ["00:00"], "peak_daily": ["00:00", "12:00"], "peak_months": [10, 11, 12]}


def entry(facility_id: str, countries: list[str], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": facility_id,
        "name": facility_id.title(),
        "timezone": "Europe/Oslo",
        "countries": countries,
        "api_url": "http://127.0.0.1:8100",
        "api_token": f"dev-token-{facility_id}",
        "schedule": SCHEDULE,
    }
    data.update(overrides)
    return data


def facility(facility_id: str, countries: list[str], **overrides: Any) -> Facility:
    return Facility.model_validate(entry(facility_id, countries, **overrides))


@pytest.fixture
def registry() -> Facilities:
    return Facilities(
        [
            facility("oslo", ["NO", "SE"]),
            facility("berlin", ["DE", "AT"], timezone="Europe/Berlin"),
            facility("sydney", ["AU", "NZ"], timezone="Australia/Sydney"),
            facility("world", ["*"], timezone="UTC"),
        ]
    )


def write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "facilities.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(FacilitiesError) as caught:
        Facilities.load(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"facilities file {path}: "), message
    return message


# --- routing ----------------------------------------------------------------------------------


def test_route_by_country(registry: Facilities) -> None:
    assert registry.route("NO").id == "oslo"
    assert registry.route("SE").id == "oslo"
    assert registry.route("DE").id == "berlin"
    assert registry.route("NZ").id == "sydney"


def test_route_is_case_insensitive(registry: Facilities) -> None:
    assert registry.route("at").id == "berlin"
    assert registry.route(" nz ").id == "sydney"


def test_route_falls_back_to_star(registry: Facilities) -> None:
    assert registry.route("BR").id == "world"
    assert registry.route("zz").id == "world"


def test_route_without_fallback_raises() -> None:
    facilities = Facilities([facility("oslo", ["NO"])])
    with pytest.raises(FacilitiesError, match="no facility ships to 'BR'"):
        facilities.route("BR")


def test_get_iter_len(registry: Facilities) -> None:
    assert registry.get("berlin").timezone == "Europe/Berlin"
    assert [f.id for f in registry] == ["oslo", "berlin", "sydney", "world"]
    assert len(registry) == 4
    with pytest.raises(KeyError, match="nowhere"):
        registry.get("nowhere")


# --- models -----------------------------------------------------------------------------------


def test_info_carries_no_secret() -> None:
    oslo = facility("oslo", ["no"])
    info = oslo.info()
    assert type(info) is FacilityInfo
    assert "api_token" not in info.model_dump()
    assert "dev-token-oslo" not in info.model_dump_json()
    assert info.schedule == oslo.schedule and info.timezone == "Europe/Oslo"
    # The full model never prints its token either.
    assert "dev-token-oslo" not in repr(oslo) and "dev-token-oslo" not in str(oslo)
    assert oslo.api_token.get_secret_value() == "dev-token-oslo"
    assert oslo.countries == ["NO"]


def test_models_are_frozen() -> None:
    oslo = facility("oslo", ["NO"])
    with pytest.raises(ValidationError):
        oslo.name = "Bergen"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        oslo.schedule.every_seconds = 5  # type: ignore[misc]


def test_schedule_normalizes_times_and_months() -> None:
    schedule = Schedule(daily=["12:00", "00:00", "12:00"], peak_months=[12, 10, 12])
    assert schedule.daily == ["00:00", "12:00"]
    assert schedule.peak_months == [10, 12]
    assert Schedule(daily=["00:00"]).peak_months == [10, 11, 12]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "either 'daily' or 'every_seconds'"),
        ({"daily": ["00:00"], "every_seconds": 5}, "both"),
        ({"peak_daily": ["00:00"], "every_seconds": 5}, "'peak_daily' only goes with 'daily'"),
        ({"daily": []}, "at least one time"),
        ({"daily": ["24:00"]}, "invalid time '24:00'"),
        ({"daily": ["7:30"]}, "invalid time '7:30'"),
        ({"daily": ["00:00"], "peak_daily": ["12:60"]}, "invalid time '12:60'"),
        ({"daily": ["00:00"], "peak_months": [0]}, "invalid month 0"),
        ({"daily": ["00:00"], "peak_months": [13]}, "invalid month 13"),
        ({"every_seconds": 0}, "at least 1"),
        ({"daily": ["00:00"], "peek_daily": ["12:00"]}, "peek_daily"),
    ],
)
def test_schedule_validation(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Schedule.model_validate(data)


def test_max_jobs_per_second_is_optional() -> None:
    assert facility("oslo", ["NO"]).max_jobs_per_second is None
    assert facility("oslo", ["NO"], max_jobs_per_second=20).max_jobs_per_second == 20
    assert facility("oslo", ["NO"], max_jobs_per_second=0.5).max_jobs_per_second == 0.5
    # The workflow never sees it: the worker applies the current file's limit to every order.
    info = facility("oslo", ["NO"], max_jobs_per_second=20).info()
    assert "max_jobs_per_second" not in info.model_dump()


@pytest.mark.parametrize("value", [0, -1, 0.0, True, "20", float("inf"), float("nan")])
def test_max_jobs_per_second_must_be_a_positive_number(value: Any) -> None:
    with pytest.raises(ValidationError, match="must be a positive number of jobs per second"):
        facility("oslo", ["NO"], max_jobs_per_second=value)


def test_facility_task_queue() -> None:
    assert facility_task_queue("printflow", "new-jersey") == "printflow-facility-new-jersey"


def test_times_for_month() -> None:
    schedule = Schedule.model_validate(SCHEDULE)
    assert schedule.times_for_month(9) == ["00:00"]
    assert schedule.times_for_month(10) == ["00:00", "12:00"]
    assert Schedule(daily=["06:00"]).times_for_month(11) == ["06:00"]  # no peak_daily: all year


# --- registry validation ----------------------------------------------------------------------


def test_duplicate_id() -> None:
    with pytest.raises(FacilitiesError, match=r"^facility 'oslo': duplicate id$"):
        Facilities([facility("oslo", ["NO"]), facility("oslo", ["SE"])])


def test_country_in_two_facilities() -> None:
    with pytest.raises(
        FacilitiesError, match="facility 'bergen': country 'NO' is already served by .*'oslo'"
    ):
        Facilities([facility("oslo", ["NO", "SE"]), facility("bergen", ["no"])])


def test_two_fallbacks() -> None:
    with pytest.raises(FacilitiesError, match="facility 'b': fallback .* facility 'a'"):
        Facilities([facility("a", ["*"]), facility("b", ["*"])])


def test_unknown_time_zone() -> None:
    with pytest.raises(FacilitiesError, match="facility 'oslo': unknown time zone 'Europe/Osloo'"):
        Facilities([facility("oslo", ["NO"], timezone="Europe/Osloo")])


def test_empty_registry() -> None:
    with pytest.raises(FacilitiesError, match="no facilities"):
        Facilities([])


# --- loading files ----------------------------------------------------------------------------


def test_load_error_unknown_time_zone(tmp_path: Path) -> None:
    path = write(tmp_path, [entry("oslo", ["NO"], timezone="Europe/Osloo")])
    assert load_error(path).endswith("facility 'oslo': unknown time zone 'Europe/Osloo'")


def test_load_error_duplicate_id(tmp_path: Path) -> None:
    path = write(tmp_path, [entry("oslo", ["NO"]), entry("oslo", ["SE"])])
    assert load_error(path).endswith("facility 'oslo': duplicate id")


def test_load_error_duplicate_country(tmp_path: Path) -> None:
    path = write(tmp_path, [entry("oslo", ["NO", "SE"]), entry("stockholm", ["SE"])])
    message = load_error(path)
    assert "facility 'stockholm': country 'SE' is already served by facility 'oslo'" in message


def test_load_error_malformed_json(tmp_path: Path) -> None:
    path = write(tmp_path, '[{"id": "oslo",}]')
    assert "not valid JSON" in load_error(path)


def test_load_error_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "facilities.json")
    assert "cannot read" in message and "No such file" in message


def test_load_error_not_a_list(tmp_path: Path) -> None:
    assert "expected a JSON list" in load_error(write(tmp_path, {"oslo": {}}))


def test_load_error_invalid_field_names_the_facility(tmp_path: Path) -> None:
    bad = entry("oslo", ["NO"], schedule={"daily": ["25:00"]})
    message = load_error(write(tmp_path, [entry("berlin", ["DE"]), bad]))
    assert "facility 'oslo': schedule.daily: " in message and "'25:00'" in message


def test_load_error_missing_field_and_entry_without_id(tmp_path: Path) -> None:
    no_token = entry("oslo", ["NO"])
    del no_token["api_token"]
    assert "facility 'oslo': api_token: Field required" in load_error(write(tmp_path, [no_token]))
    no_id = entry("x", ["NO"])
    del no_id["id"]
    assert "entry #1: id: Field required" in load_error(write(tmp_path, [no_id]))


def test_load_error_bad_country_code(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, [entry("oslo", ["NOR"])]))
    assert "facility 'oslo': countries: invalid country 'NOR'" in message


def test_load_error_bad_max_jobs_per_second(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, [entry("oslo", ["NO"], max_jobs_per_second=0)]))
    assert "facility 'oslo': max_jobs_per_second: must be a positive number" in message
    message = load_error(write(tmp_path, [entry("oslo", ["NO"], max_jobs_per_sec=5)]))
    assert "facility 'oslo': max_jobs_per_sec: Extra inputs are not permitted" in message


def test_load_facilities_caches_per_path(tmp_path: Path) -> None:
    path = write(tmp_path, [entry("oslo", ["NO"])])
    first = load_facilities(path)
    assert load_facilities(path) is first
    load_facilities.cache_clear()
    assert load_facilities(path) is not first


# --- the bundled file -------------------------------------------------------------------------


def test_bundled_file_loads_and_meets_the_requirements() -> None:
    facilities = Facilities.load(BUNDLED)
    assert len(facilities) >= 6
    continents = {f.timezone.split("/")[0] for f in facilities}
    assert len(continents & {"Europe", "America", "Asia", "Australia", "Africa"}) >= 3
    assert len({f.timezone for f in facilities}) == len(facilities)
    assert [f.id for f in facilities if "*" in f.countries] == [facilities.route("ZZ").id]
    assert sum(f.countries == ["*"] for f in facilities) == 1
    tokens = [f.api_token.get_secret_value() for f in facilities]
    assert len(set(tokens)) == len(tokens)
    for f in facilities:
        assert f.api_url == "http://127.0.0.1:8100"
        assert f.schedule == Schedule.model_validate(SCHEDULE)
        assert f.api_token.get_secret_value() == f"dev-token-{f.id}"
        assert f.max_jobs_per_second == 20


@pytest.mark.parametrize(
    ("country", "facility_id"),
    [
        ("NO", "oslo"),
        ("DE", "berlin"),
        ("FR", "berlin"),
        ("GB", "london"),
        ("IE", "london"),
        ("US", "new-jersey"),
        ("CA", "new-jersey"),
        ("BR", "sao-paulo"),
        ("AU", "sydney"),
        ("JP", "tokyo"),
        ("IN", "singapore"),
        ("ZA", "singapore"),
    ],
)
def test_bundled_routing(country: str, facility_id: str) -> None:
    assert Facilities.load(BUNDLED).route(country).id == facility_id
