"""The perimeter: the body limit (413 before the body is read), the rate limit per credential
(429 with Retry-After) and the limit of failed authentications per client address, against the
real API of tests/helpers/api.py on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from limits import RateLimitItemPerSecond
from sqlmodel import col, func, select
from temporalio.testing import WorkflowEnvironment

from api.perimeter import InProcessCounts, Limiter, Rate, RateLimits, parse_rate
from db.models import IdempotentRequest, RequestLog
from tests.cases.console import Console
from tests.helpers.api import ADMIN_TOKEN, Api, order_json, running_api

LIMIT = 4096


@pytest.fixture
async def limited(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    """Five requests at once per credential, then five a second; bodies up to 4 KiB."""
    async with running_api(
        dev_env.client,
        database_url,
        tmp_path,
        rate_limit="5/s",
        rate_limit_burst=5,
        max_body_bytes=LIMIT,
    ) as api:
        yield api


@pytest.fixture
async def limited_a_minute(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    """Five requests in any minute per credential: for tests that send their requests one after
    another and count on none of them leaving the window, however slow the machine is."""
    async with running_api(
        dev_env.client, database_url, tmp_path, rate_limit="5/minute", rate_limit_burst=5
    ) as api:
        yield api


class Stream:
    """A request body sent in chunks without Content-Length; records how much was taken."""

    def __init__(self, chunks: int, size: int = 1024) -> None:
        self.chunks, self.size, self.sent = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.sent += self.size
            yield b" " * self.size


def _refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return dict(error)


async def _burst(api: Api, headers: dict[str, str], n: int) -> list[httpx.Response]:
    return list(
        await asyncio.gather(*(api.client.get("/v1/orders", headers=headers) for _ in range(n)))
    )


@pytest.mark.serial  # five a second: counted against the wall clock
async def test_a_burst_beyond_the_limit_is_429_with_retry_after_then_works_again(
    limited: Api,
) -> None:
    key = limited.auth(await limited.merchant())
    answers = await _burst(limited, key, 8)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 5 + [429] * 3, statuses
    refused = next(r for r in answers if r.status_code == 429)
    _refused(refused, 429, "rate_limited")
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 1, wait  # the window of 5 at 5/s is one second

    await asyncio.sleep(wait + 0.1)
    assert (await limited.client.get("/v1/orders", headers=key)).status_code == 200


@pytest.mark.serial  # five a second: counted against the wall clock
async def test_the_limit_is_per_key_and_never_leaks_to_another(limited: Api) -> None:
    first = limited.auth(await limited.merchant(name="First"))
    second = limited.auth(await limited.merchant(name="Second"))
    assert {r.status_code for r in await _burst(limited, first, 10)} == {200, 429}

    others = await _burst(limited, second, 5)
    assert [r.status_code for r in others] == [200] * 5
    # Unknown keys are limited too (per key), and say 401 until their own limit is spent.
    stranger = await _burst(limited, {"X-API-Key": "pf_guess"}, 5)
    assert {r.status_code for r in stranger} == {401}


@pytest.mark.serial  # five a second: counted against the wall clock
async def test_facility_and_agent_tokens_are_limited_the_admin_api_is_not(limited: Api) -> None:
    facility = {"Authorization": "Bearer tok-berlin"}
    answers = await asyncio.gather(
        *(limited.client.post("/v1/production/events", json={}, headers=facility) for _ in range(8))
    )
    assert sorted(r.status_code for r in answers) == [422] * 5 + [429] * 3
    agent = {"X-Agent-Token": "pfagt_unknown"}
    assert 429 in {r.status_code for r in await _burst(limited, agent, 8)}
    for _ in range(8):
        await limited.merchant()  # X-Admin-Token: never a 429


@pytest.mark.parametrize("with_key", [True, False])
async def test_a_body_over_the_limit_is_413_before_it_is_read(limited: Api, with_key: bool) -> None:
    headers = limited.auth(await limited.merchant()) if with_key else {}
    big = order_json(metadata={"notes": "x" * LIMIT})

    declared = await limited.client.post("/v1/orders", json=big, headers=headers)
    error = _refused(declared, 413, "body_too_large")
    assert error["details"] == {"max_body_bytes": LIMIT}

    stream = Stream(chunks=1000)  # 1 MB, no Content-Length
    chunked = await limited.client.post(
        "/v1/orders", content=stream, headers={**headers, "Content-Type": "application/json"}
    )
    _refused(chunked, 413, "body_too_large")
    assert stream.sent <= LIMIT + 1024, f"read {stream.sent} bytes of a refused body"

    if with_key:
        listed = await limited.client.get("/v1/orders", headers=headers)
        assert listed.json()["data"] == [], "nothing was created"


async def test_a_body_within_the_limit_passes_in_chunks_too(limited: Api) -> None:
    key = limited.auth(await limited.merchant())
    body = httpx.Request("POST", "http://api", json=order_json()).content
    assert len(body) < LIMIT

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    created = await limited.client.post(
        "/v1/orders", content=chunks(), headers={**key, "Content-Type": "application/json"}
    )
    assert created.status_code == 201, created.text


def test_rates_parse_into_a_moving_window_that_allows_the_burst() -> None:
    rate = parse_rate("20/s", 40)
    assert rate == Rate(20, 40) and rate.window_seconds == 2
    per_minute = parse_rate("600/min", 10)
    assert per_minute is not None and per_minute.window_seconds == 1
    assert parse_rate("off", 40) is None
    for bad in ("20", "20/fortnight", "-1/s", "x/s"):
        with pytest.raises(ValueError):
            parse_rate(bad, 40)


async def test_the_limiter_keys_on_a_hash_never_the_credential() -> None:
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limits = RateLimits(ok, Rate(5, 5))
    transport = httpx.ASGITransport(app=limits)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = await client.get("/v1/orders", headers={"X-API-Key": "pf_secret-key"})
    assert answer.status_code == 204
    kept = " ".join(limits.limiter.storage.events)  # type: ignore[attr-defined]
    assert "pf_secret-key" not in kept
    assert hashlib.sha256(b"x-api-key:pf_secret-key").hexdigest() in kept


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_two_api_processes_on_one_redis_share_one_limit(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path, redis_url: str
) -> None:
    """Two apps, each with its own limiter, counting on one Redis: a key spends its burst on
    the first and is refused by the second. On memory:// each would have given it the burst."""
    # Five in any minute: the requests go one after another, and none may leave the window.
    limits = {"rate_limit": "5/minute", "rate_limit_burst": 5}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    for storage, refused in ((redis_url, True), ("memory://", False)):
        async with (
            running_api(
                dev_env.client, database_url, tmp_path / "a", rate_limit_storage=storage, **limits
            ) as first,
            running_api(
                dev_env.client, database_url, tmp_path / "b", rate_limit_storage=storage, **limits
            ) as second,
        ):
            key = Api.auth(await first.merchant())
            answers = [await first.client.get("/v1/orders", headers=key) for _ in range(5)]
            assert [a.status_code for a in answers] == [200] * 5
            other = await second.client.get("/v1/orders", headers=key)
            if refused:
                _refused(other, 429, "rate_limited")
                assert 1 <= int(other.headers["Retry-After"]) <= 60
            else:
                assert other.status_code == 200, other.text


async def test_counting_in_memory_hands_nothing_to_a_thread_however_many_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """limits' own in-process storage cleaned up after each count by handing each caller's
    entries to a thread in turn: with 1,000 callers in the window a request cost 15 ms of CPU.
    Ours cleans up on the event loop, at most once a second."""
    trips = 0
    to_thread = asyncio.to_thread

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal trips
        trips += 1
        return await to_thread(*args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    limiter = Limiter("memory://")
    item = RateLimitItemPerSecond(5, 1)
    for caller in range(300):
        assert await limiter.hit(item, "rate", f"caller-{caller}")
        await asyncio.sleep(0)  # a clean-up task, if one was started, runs here
    assert trips == 0
    # The window still counts: a sixth within the second is refused.
    assert all([await limiter.hit(item, "rate", "caller-0") for _ in range(4)])
    assert not await limiter.hit(item, "rate", "caller-0")


async def test_counts_of_callers_gone_quiet_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = Limiter("memory://")
    storage = limiter.storage
    assert isinstance(storage, InProcessCounts)
    short, long = RateLimitItemPerSecond(5, 1), RateLimitItemPerSecond(5, 600)
    for caller in range(50):
        await limiter.hit(short, "rate", f"caller-{caller}")
    await limiter.hit(long, "rate", "patient")
    assert len(storage.events) == 51
    # Ten seconds on, the next count after a second without a clean-up starts one.
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 10)
    storage._swept -= storage.SWEEP_EVERY
    await limiter.hit(long, "rate", "patient")
    assert len(storage.events) == 1
    assert len(next(iter(storage.events.values()))) == 2
    assert set(storage.locks) <= set(storage.events)


async def test_a_rate_limit_storage_that_fails_lets_requests_through(tmp_path: Path) -> None:
    """Redis down: nothing is limited (and it is logged), rather than everyone refused."""

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limits = RateLimits(ok, Rate(1, 1), Limiter("redis://127.0.0.1:1"))
    transport = httpx.ASGITransport(app=limits)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answers = [await client.get("/v1/orders", headers={"X-API-Key": "pf_k"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [204, 204, 204]


# --------------------------------------------------------------- strangers and failed sign-ins


@pytest.fixture
async def guarded(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    """Five requests at once per credential; ten failed authentications a minute per address."""
    async with running_api(
        dev_env.client,
        database_url,
        tmp_path,
        rate_limit="5/s",
        rate_limit_burst=5,
        auth_failure_limit="10/minute",
    ) as api:
        yield api


async def _rows(api: Api, table: Any, *where: Any) -> int:
    async with api.app.state.sessions() as session:
        query = select(func.count()).select_from(table).where(*where)
        return int((await session.exec(query)).one())


def _from(api: Api, address: str) -> httpx.AsyncClient:
    """A client of the same app from another address."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=api.settings.public_base_url)


async def test_strangers_write_nothing_and_their_failures_are_limited_per_address(
    guarded: Api,
) -> None:
    api = guarded
    answers = []
    for n in range(8):
        for credential in ({}, {"X-API-Key": f"pf_guess-{n}"}):
            answers.append(
                await api.client.post(
                    "/v1/orders",
                    json=order_json(),
                    headers={**credential, "Idempotency-Key": f"stranger-{n}"},
                )
            )
    statuses = [r.status_code for r in answers]
    assert statuses == [401] * 10 + [429] * 6, statuses
    refused = _refused(answers[-1], 429, "too_many_failed_authentications")
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60, refused
    assert await _rows(api, IdempotentRequest) == 0, "a stranger's request claimed a key"
    assert await _rows(api, RequestLog) == 0

    # Another address is not affected, and a valid key from the limited one is never refused.
    async with _from(api, "203.0.113.9") as elsewhere:
        other = await elsewhere.post("/v1/orders", json=order_json(), headers={"X-API-Key": "x"})
        assert other.status_code == 401, other.text
    key = api.auth(await api.merchant())
    listed = await api.client.get("/v1/orders", headers=key)
    assert listed.status_code == 200, listed.text
    created = await api.client.post(
        "/v1/orders", json=order_json(), headers={**key, "Idempotency-Key": "mine-1"}
    )
    assert created.status_code == 201, created.text
    still = await api.client.get("/v1/orders", headers={"X-API-Key": "pf_guess-again"})
    assert still.status_code == 429, still.text


async def test_sign_in_codec_and_customer_links_share_the_addresss_failure_limit(
    guarded: Api,
) -> None:
    api = guarded
    console = Console.of(api)
    try:
        bad_token = "x" * 43

        async def failures() -> list[httpx.Response]:
            return [
                await console.sign_in("pfagt_wrong"),
                await api.client.post("/codec/session", data={"token": "wrong"}),
                await api.client.post("/codec/decode", json={"payloads": []}),
                await api.client.get(f"/c/{bad_token}"),
                await api.client.post(f"/c/{bad_token}", data={"body": "hello"}),
                await api.client.get(f"/p/{bad_token}"),
                await api.client.get(f"/v1/personalization/{bad_token}"),
                await api.client.get("/v1/admin/agents", headers={"X-Admin-Token": "guess"}),
            ]

        first = await failures()
        assert [r.status_code for r in first] == [401, 401, 401, 404, 404, 404, 404, 403]
        second = await failures()
        # Ten failures a minute: the first two of the second round still count, then 429.
        assert [r.status_code for r in second][2:] == [429] * 6, [r.status_code for r in second]
        for response in second[2:]:
            assert 1 <= int(response.headers["Retry-After"]) <= 60
            assert bad_token not in response.text
        page = second[3]
        assert page.headers["content-type"].startswith("text/html"), page.headers
        assert page.headers["cache-control"] == "no-store"

        # An agent with a valid token signs in from the same address.
        created = await api.client.post(
            "/v1/admin/agents",
            json={"name": "Ada", "email": "ada@printflow.example", "role": "agent"},
            headers={"X-Admin-Token": ADMIN_TOKEN},
        )
        assert created.status_code == 201, created.text
        signed_in = await console.sign_in(created.json()["token"])
        assert signed_in.status_code == 303, signed_in.text
        codec = await api.client.post("/codec/session", data={"token": ADMIN_TOKEN})
        assert codec.status_code == 200, codec.text
    finally:
        await console.close()


async def test_every_credential_a_request_carries_counts(limited_a_minute: Api) -> None:
    limited = limited_a_minute
    facility = {"Authorization": "Bearer tok-berlin"}
    for _ in range(5):
        sent = await limited.client.post("/v1/production/events", json={}, headers=facility)
        assert sent.status_code == 422, sent.text
    escaping = await limited.client.post(
        "/v1/production/events", json={}, headers={**facility, "X-API-Key": "pf_random-1"}
    )
    _refused(escaping, 429, "rate_limited")

    key = limited.auth(await limited.merchant())
    assert [r.status_code for r in await _burst(limited, key, 5)] == [200] * 5
    doubled = await limited.client.get(
        "/v1/orders",
        headers=[(b"X-API-Key", key["X-API-Key"].encode()), (b"X-API-Key", b"pf_random-2")],
    )
    _refused(doubled, 429, "rate_limited")


@pytest.mark.serial  # five a second: counted against the wall clock
async def test_rate_limited_answers_are_not_written_to_the_request_log(limited: Api) -> None:
    merchant = await limited.merchant()
    key = limited.auth(merchant)
    answers = await _burst(limited, key, 12)
    assert sorted(r.status_code for r in answers) == [200] * 5 + [429] * 7
    await asyncio.sleep(0.2)  # the log is written after the answer
    assert await _rows(limited, RequestLog, col(RequestLog.merchant_id) == merchant["id"]) == 0
