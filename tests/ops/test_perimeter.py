"""The perimeter: the body limit (413 before the body is read) and the rate limit per credential
(429 with Retry-After), against the real API of tests/helpers/api.py on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.perimeter import Rate, RateLimits, parse_rate
from tests.helpers.api import Api, order_json, running_api

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


async def test_the_limit_is_per_key_and_never_leaks_to_another(limited: Api) -> None:
    first = limited.auth(await limited.merchant(name="First"))
    second = limited.auth(await limited.merchant(name="Second"))
    assert {r.status_code for r in await _burst(limited, first, 10)} == {200, 429}

    others = await _burst(limited, second, 5)
    assert [r.status_code for r in others] == [200] * 5
    # Unknown keys are limited too (per key), and say 401 until their own limit is spent.
    stranger = await _burst(limited, {"X-API-Key": "pf_guess"}, 5)
    assert {r.status_code for r in stranger} == {401}


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
