"""The soak's arithmetic (``bench/soak.py``): creates bucketed by minute, the RSS-flatness and
p99 verdicts, and "every order at the facility exactly once". Pure functions; no process is
started."""

from __future__ import annotations

import math

import pytest

from bench.soak import (
    Sent,
    by_cycle,
    by_minute,
    flat_window,
    once,
    p99_verdict,
    rss_flat,
    slope,
    verdicts,
)


def test_creates_count_in_the_minute_they_were_sent_in() -> None:
    sent = [
        Sent(0.5, 0.010, True),
        Sent(59.9, 0.900, True),  # answered in minute 2, sent in minute 1
        Sent(60.0, 0.020, True),
        Sent(61.0, 0.030, False),
        Sent(185.0, 0.040, True),  # after the last minute: counted in the last
    ]
    rows = by_minute(sent, 3)
    assert [r["minute"] for r in rows] == [1, 2, 3]
    assert [r["creates"] for r in rows] == [2, 2, 1]
    assert [r["errors"] for r in rows] == [0, 1, 0]
    # Only answered creates have a latency; nearest rank.
    assert rows[0]["p50_ms"] == pytest.approx(10.0)
    assert rows[0]["p99_ms"] == pytest.approx(900.0)
    assert rows[1]["p99_ms"] == pytest.approx(20.0)
    assert rows[2]["p50_ms"] == pytest.approx(40.0)


def test_a_minute_without_answers_has_no_percentiles() -> None:
    rows = by_minute([Sent(10.0, 0.1, False)], 2)
    assert rows[0]["errors"] == 1
    assert math.isnan(rows[0]["p99_ms"])
    assert rows[1]["creates"] == 0 and math.isnan(rows[1]["p50_ms"])


def test_the_rss_window_is_the_last_20_minutes_or_two_thirds_of_a_shorter_soak() -> None:
    assert flat_window(30) == 20
    assert flat_window(60) == 20
    assert flat_window(12) == 8
    assert flat_window(10) == 6
    assert flat_window(1) == 1


def test_rss_is_flat_when_the_window_stays_within_ten_percent() -> None:
    # A climb while the caches fill, then a plateau: judged on the plateau only.
    warm_up = [100.0, 150.0, 200.0, 250.0]
    plateau = [270.0, 280.0, 275.0, 285.0, 280.0, 286.0, 282.0, 284.0]
    verdict = rss_flat(warm_up + plateau)
    assert verdict["window_minutes"] == 8
    assert verdict["first_mb"] == 270.0 and verdict["last_mb"] == 284.0
    assert verdict["spread"] == pytest.approx(286 / 270 - 1)
    assert verdict["met"] is True


def test_rss_growing_by_more_than_ten_percent_in_the_window_is_not_flat() -> None:
    # 153 → 167 MB over 20 minutes is +9 %; another 10 minutes at 0.7 MB a minute passes 10 %.
    climbing = [153.0 + 0.7 * n for n in range(30)]
    verdict = rss_flat(climbing)
    assert verdict["window_minutes"] == 20
    assert verdict["slope_mb_per_minute"] == pytest.approx(0.7)
    assert verdict["spread"] == pytest.approx(climbing[-1] / climbing[10] - 1)
    assert verdict["met"] is (verdict["spread"] <= 0.10)
    assert rss_flat([100.0] * 10 + [100.0 + 2 * n for n in range(20)])["met"] is False


def test_slope_is_least_squares_per_step() -> None:
    assert slope([1.0, 3.0, 5.0, 7.0]) == pytest.approx(2.0)
    assert slope([5.0, 5.0, 5.0]) == 0.0
    assert slope([4.0]) == 0.0


def test_p99_is_met_only_when_every_minute_is_within_the_goal() -> None:
    rows = [{"p99_ms": v} for v in (30.0, 45.0, 50.0, math.nan)]
    verdict = p99_verdict(rows)
    assert verdict["met"] is True
    assert verdict["worst_ms"] == 50.0
    assert verdict["minutes_over"] == 0
    over = p99_verdict([*rows, {"p99_ms": 380.0}, {"p99_ms": 990.0}])
    assert over["met"] is False
    assert over["worst_ms"] == 990.0
    assert over["minutes_over"] == 2
    assert p99_verdict([{"p99_ms": math.nan}])["met"] is None


def test_each_order_has_exactly_one_print_job() -> None:
    jobs = [{"order_id": "o1"}, {"order_id": "o2"}, {"order_id": "o2"}, {"order_id": "x"}]
    verdict = once(["o1", "o2", "o3"], jobs)
    assert verdict == {
        "orders": 3,
        "missing": 1,
        "more_than_once": 1,
        "missing_ids": ["o3"],
        "more_than_once_ids": ["o2"],
        "met": False,
    }
    assert once(["o1"], jobs)["met"] is True


def test_verdicts_judge_api_worker_and_temporal_not_the_simulator() -> None:
    rows = [
        {"errors": 0, "p99_ms": 20.0},
        {"errors": 2, "p99_ms": 30.0},
        {"errors": 0, "p99_ms": 25.0},
    ]
    rss = {
        "api": [150.0, 151.0, 152.0],
        "worker": [250.0, 280.0, 282.0],
        "temporal": [200.0, 200.0, 201.0],
        "simulator": [80.0, 120.0, 200.0],
    }
    result = verdicts(rows, rss, once(["o1"], [{"order_id": "o1"}]))
    assert result["errors"] == {"value": 2, "met": False}
    assert set(result["rss_flat"]) == {"api", "worker", "temporal"}
    assert all(v["window_minutes"] == 2 for v in result["rss_flat"].values())
    assert result["p99"]["met"] is True
    assert result["once"]["met"] is True


def test_creates_by_the_second_after_a_cutoff() -> None:
    # Cutoffs at multiples of 5 s since the epoch: 1000.2 is 0.2 s after one, 1006.7 is
    # 1.7 s after one, 1004.9 is 4.9 s after one.
    sent = [
        Sent(0.0, 0.010, True, 1000.2),
        Sent(0.0, 0.500, True, 1006.7),
        Sent(0.0, 0.020, True, 1004.9),
        Sent(0.0, 9.000, False, 1000.1),  # unanswered: no latency
    ]
    cycle = by_cycle(sent, period=5)
    assert [c["after_cutoff_s"] for c in cycle] == [0, 1, 2, 3, 4]
    assert [c["creates"] for c in cycle] == [1, 1, 0, 0, 1]
    assert cycle[0]["p99_ms"] == pytest.approx(10.0)
    assert cycle[1]["p99_ms"] == pytest.approx(500.0)
    assert math.isnan(cycle[2]["p50_ms"])
