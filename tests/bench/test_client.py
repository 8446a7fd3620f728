"""The bench's client keeps to each key's rate limit as a shop's integration does: a 429 is
waited out and sent again, and counted, never a failed measurement."""

from __future__ import annotations

import httpx

from bench.common import Api


async def test_a_429_is_waited_out_sent_again_and_counted() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {}}),
            httpx.Response(200, json={"id": "ord_1", "status": "scheduled"}),
        ]
    )
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["X-API-Key"])
        return next(answers)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(answer), base_url="http://api"
    ) as http:
        api = Api(http, api_keys=["key-1"], simulator_url="http://sim", owners={"ord_1": "key-1"})
        order, _ = await api.get("ord_1")
    assert order["status"] == "scheduled"
    assert seen == ["key-1", "key-1"]
    assert api.rate_limited == 1
