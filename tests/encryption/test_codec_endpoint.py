"""``/codec``: the codec server the Temporal Web UI and CLI call to read encrypted payloads."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers.api import ADMIN_TOKEN, Api, running_api
from tests.helpers.keys import TEST_KEY_B

UI = "http://localhost:8233"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Namespace": "default"}


async def _api(dev_env: WorkflowEnvironment, tmp_path: Path, **settings: Any) -> Any:
    return running_api(
        dev_env.client,
        f"sqlite:///{tmp_path / 'codec.db'}",
        tmp_path,
        codec_cors_origins=f"{UI}, http://127.0.0.1:8233",
        **settings,
    )


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Api]:
    async with await _api(dev_env, tmp_path) as running:
        yield running


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PLAIN = {
    "payloads": [
        {
            "metadata": {"encoding": _b64(b"json/plain")},
            "data": _b64(json.dumps({"first_name": "Wilhelmine"}).encode()),
        }
    ]
}


async def test_encode_then_decode_gives_the_payloads_back(api: Api) -> None:
    encoded = await api.client.post("/codec/encode", json=PLAIN, headers=ADMIN)
    assert encoded.status_code == 200, encoded.text
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    assert base64.b64decode(sealed["metadata"]["encryption-key-id"]) == b"test-a"
    assert b"Wilhelmine" not in base64.b64decode(sealed["data"])

    decoded = await api.client.post("/codec/decode", json=encoded.json(), headers=ADMIN)
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == PLAIN


async def test_decode_reads_what_the_workflows_wrote(api: Api) -> None:
    """The payloads of a real order's history, as the Web UI sends them."""
    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads

    from tests.encryption.test_histories import payloads_in

    key = Api.auth(await api.merchant())
    from tests.helpers.api import order_json, started

    created = await api.client.post("/v1/orders", json=order_json(), headers=key)
    handle = api.temporal.get_workflow_handle(created.json()["id"])
    await started(handle)
    history = await handle.fetch_history()
    payloads = [p for event in history.events[:1] for p in payloads_in(event)]
    body = json_format.MessageToJson(Payloads(payloads=payloads))
    decoded = await api.client.post(
        "/codec/decode", content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert decoded.status_code == 200, decoded.text
    text = b"".join(base64.b64decode(p["data"]) for p in decoded.json()["payloads"])
    assert b"Mustermann" in text and b"erika@example.com" in text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": ADMIN_TOKEN}],
    ids=["none", "wrong token", "not bearer"],
)
async def test_without_the_admin_token_the_answer_is_401(api: Api, headers: dict[str, str]) -> None:
    for path in ("/codec/decode", "/codec/encode"):
        refused = await api.client.post(path, json=PLAIN, headers={**headers, "Origin": UI})
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "unauthorized"
        # The Web UI can read why: the refusal carries the CORS headers too.
        assert refused.headers["Access-Control-Allow-Origin"] == UI


async def test_the_web_ui_signs_in_once_and_decodes_with_its_cookie(api: Api) -> None:
    page = await api.client.get("/codec")
    assert page.status_code == 200 and 'name="token"' in page.text
    wrong = await api.client.post("/codec/session", data={"token": "guess"})
    assert wrong.status_code == 401
    assert "printflow_codec" not in api.client.cookies

    signed_in = await api.client.post("/codec/session", data={"token": ADMIN_TOKEN})
    assert signed_in.status_code == 200
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/codec" in cookie and "SameSite=lax" in cookie
    decoded = await api.client.post("/codec/decode", json=PLAIN, headers={"Origin": UI})
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["Access-Control-Allow-Credentials"] == "true"

    api.client.cookies.set("printflow_codec", "9999999999.forged", path="/codec")
    forged = await api.client.post("/codec/decode", json=PLAIN)
    assert forged.status_code == 401


async def test_the_preflight_of_the_web_ui_is_allowed_and_others_are_not(api: Api) -> None:
    ask = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    allowed = await api.client.options("/codec/decode", headers=ask)
    assert allowed.status_code == 204, allowed.text
    assert allowed.headers["Access-Control-Allow-Origin"] == UI
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    allowed_headers = allowed.headers["Access-Control-Allow-Headers"].lower()
    assert {"content-type", "x-namespace", "authorization"} <= {
        h.strip() for h in allowed_headers.split(",")
    }

    other = await api.client.options(
        "/codec/decode", headers={**ask, "Origin": "https://evil.example"}
    )
    assert other.status_code == 403
    assert "Access-Control-Allow-Origin" not in other.headers
    posted = await api.client.post(
        "/codec/decode", json=PLAIN, headers={**ADMIN, "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in posted.headers


async def test_an_unknown_key_id_and_a_broken_body_are_422(api: Api) -> None:
    from tests.helpers.keys import keys
    from workflows.client import data_converter

    [other] = await data_converter(keys(TEST_KEY_B)).encode(["x"])
    body = {
        "payloads": [
            {"metadata": {k: _b64(v) for k, v in other.metadata.items()}, "data": _b64(other.data)}
        ]
    }
    unknown = await api.client.post("/codec/decode", json=body, headers=ADMIN)
    assert unknown.status_code == 422
    assert "test-b" in unknown.json()["error"]["message"]
    broken = await api.client.post("/codec/decode", content=b"{not json", headers=ADMIN)
    assert broken.status_code == 422


async def test_without_keys_the_codec_answers_503(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with await _api(dev_env, tmp_path, payload_keys="") as api:
        assert api.settings.payload_keys is None
        unavailable = await api.client.post("/codec/decode", json=PLAIN, headers=ADMIN)
        assert unavailable.status_code == 503
        assert unavailable.json()["error"]["code"] == "codec_unavailable"
        still_401 = await api.client.post("/codec/decode", json=PLAIN)
        assert still_401.status_code == 401
