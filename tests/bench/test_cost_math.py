"""The bench's arithmetic (``bench/``): random arrivals, CPU per operation, the closed loop of a
cost step, and the PostgreSQL schema URL. Pure functions; no process is started."""

from __future__ import annotations

import math
import statistics

import pytest

from bench.common import cpu_used, per_operation, poisson_arrivals
from bench.cost import run_for
from bench.database import PostgresSchema, postgres_base
from bench.plot import named


def test_poisson_arrivals_are_ascending_within_the_window_and_repeatable() -> None:
    moments = poisson_arrivals(20.0, 30.0, seed=3)
    assert moments == sorted(moments)
    assert all(0 < m < 30.0 for m in moments)
    assert moments == poisson_arrivals(20.0, 30.0, seed=3)
    assert moments != poisson_arrivals(20.0, 30.0, seed=4)


def test_poisson_arrivals_come_at_the_rate_with_exponential_gaps() -> None:
    moments = poisson_arrivals(50.0, 200.0, seed=1)
    # 10,000 expected; a Poisson count's standard deviation is its square root (100).
    assert abs(len(moments) - 10_000) < 400
    gaps = [b - a for a, b in zip(moments, moments[1:], strict=False)]
    # Exponential: the mean and the standard deviation are both 1/rate.
    assert statistics.mean(gaps) == pytest.approx(0.02, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(0.02, rel=0.05)


def test_no_arrivals_at_rate_zero() -> None:
    assert poisson_arrivals(0.0, 10.0, seed=1) == []


def test_cpu_used_counts_new_processes_whole_and_loses_ended_ones() -> None:
    before = {"api": {10: 5.0}, "database": {20: 1.0, 21: 2.0}}
    after = {"api": {10: 7.5}, "database": {20: 1.5, 22: 0.25}}
    used = cpu_used(before, after)
    # 21 ended in between (lost); 22 started in between (all of it counts).
    assert used == {"api": 2.5, "database": 0.75}


def test_cpu_used_never_goes_negative() -> None:
    # A pid reused by a new process reads less than the old one did.
    assert cpu_used({"api": {10: 9.0}}, {"api": {10: 1.0}}) == {"api": 0.0}


def test_per_operation_subtracts_idle_and_sums() -> None:
    used = {"api": 3.0, "temporal": 1.2}
    idle = {"api": 0.0, "temporal": 0.02}  # CPU seconds per second
    ms = per_operation(used, idle, seconds=10.0, operations=500)
    assert ms["api"] == pytest.approx(6.0)
    assert ms["temporal"] == pytest.approx(2.0)  # (1.2 - 0.2) s over 500
    assert ms["total"] == pytest.approx(8.0)


def test_per_operation_below_idle_is_zero_and_no_operations_is_nan() -> None:
    assert per_operation({"worker": 0.1}, {"worker": 0.05}, 10.0, 100)["worker"] == 0.0
    assert math.isnan(per_operation({"api": 1.0}, {}, 1.0, 0)["total"])


async def test_run_for_runs_at_least_min_ops_and_never_more_than_max_ops() -> None:
    seen: list[int] = []

    async def op(n: int) -> int:
        seen.append(n)
        return n

    done = await run_for(op, concurrency=3, min_ops=10, min_seconds=0.0)
    assert sorted(done) == list(range(10))
    seen.clear()
    done = await run_for(op, concurrency=3, min_ops=10, min_seconds=5.0, max_ops=4)
    assert sorted(seen) == [0, 1, 2, 3]


async def test_run_for_keeps_going_for_min_seconds() -> None:
    import asyncio

    async def op(n: int) -> int:
        await asyncio.sleep(0.01)
        return n

    done = await run_for(op, concurrency=2, min_ops=1, min_seconds=0.1)
    assert len(done) >= 10


def test_postgres_schema_url_sets_search_path_and_application_name() -> None:
    schema = PostgresSchema("postgresql://postgres@127.0.0.1:5432/test", schema="bench_x")
    assert schema.url == (
        "postgresql://postgres@127.0.0.1:5432/test"
        "?options=-csearch_path%3Dbench_x&application_name=bench_x"
    )
    with_query = PostgresSchema("postgresql://h/db?sslmode=disable", schema="bench_y")
    assert with_query.url.startswith("postgresql://h/db?sslmode=disable&options=")


def test_postgres_base_takes_any_postgresql_driver_and_refuses_others() -> None:
    assert postgres_base("postgresql+psycopg://u@h:5432/d") == "postgresql://u@h:5432/d"
    with pytest.raises(ValueError, match="postgresql"):
        postgres_base("sqlite:///x.db")


def test_plot_names_for_postgresql() -> None:
    assert named("bench-wave.png", "-postgresql") == "bench-wave-postgresql.png"
    assert named("bench-wave.png", "") == "bench-wave.png"
