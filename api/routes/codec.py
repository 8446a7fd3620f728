"""The codec endpoint for operators: the Temporal Web UI and CLI decode printflow's encrypted
payloads here (Temporal's codec server protocol; workflows/codec.py encrypts them).

- ``POST /codec/decode``, ``POST /codec/encode``: ``{"payloads": [{"metadata": {k: base64},
  "data": base64}]}`` (a ``temporal.api.common.v1.Payloads`` in proto3 JSON) in and out; the
  Web UI adds ``X-Namespace``. Payloads that are not encrypted come back as they are.
- Who may call: ``Authorization: Bearer <PRINTFLOW_ADMIN_TOKEN>`` (the CLI: ``--codec-auth``),
  or, for the Web UI in a browser, the cookie set by signing in at ``GET /codec`` with the same
  token (the UI sends it when "Include cross-origin credentials" is on). 401 otherwise.
- 503 ``codec_unavailable`` when no ``PRINTFLOW_PAYLOAD_KEYS`` are set.
- CORS for the origins in ``PRINTFLOW_CODEC_CORS_ORIGINS`` (the Web UI's), credentials included.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api.errors import envelope
from runtime.settings import Settings
from workflows.codec import EncryptionCodec, PayloadDecryptError

router = APIRouter(prefix="/codec", tags=["operations"])

COOKIE = "printflow_codec"
SESSION_SECONDS = 12 * 3600
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _codec(request: Request) -> EncryptionCodec | None:
    state = request.app.state
    if not hasattr(state, "payload_codec"):
        keys = _settings(request).payload_key_list()
        # Operators see plaintext as it is (a worker refuses it: workflows/codec.py).
        state.payload_codec = EncryptionCodec(keys, accept_plaintext=True) if keys else None
    codec: EncryptionCodec | None = state.payload_codec
    return codec


def _cors(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin", "").rstrip("/")
    if origin and origin in _settings(request).codec_origins():
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }
    return {"Vary": "Origin"}


def _session_value(token: str, expires: int) -> str:
    mac = hmac.new(token.encode(), f"codec-session:{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


def _authorized(request: Request) -> bool:
    expected = _settings(request).admin_token
    if expected is None:
        return False
    token = expected.get_secret_value()
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        return hmac.compare_digest(given.strip().encode(), token.encode())
    cookie = request.cookies.get(COOKIE, "")
    expires, _, _ = cookie.partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(cookie.encode(), _session_value(token, int(expires)).encode())


@router.options("/encode", include_in_schema=False)
@router.options("/decode", include_in_schema=False)
async def preflight(request: Request) -> Response:
    """A browser asks before it posts JSON with credentials from the Web UI's origin."""
    cors = _cors(request)
    if "Access-Control-Allow-Origin" not in cors:
        return envelope(
            403,
            "origin_not_allowed",
            "this origin is not in PRINTFLOW_CODEC_CORS_ORIGINS",
            headers=cors,
        )
    cors.update(
        {
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        }
    )
    return Response(status_code=204, headers=cors)


@router.post("/encode")
async def encode(request: Request) -> Response:
    """Encrypts payloads with the first key (what the Web UI sends to a workflow)."""
    return await _convert(request, encode=True)


@router.post("/decode")
async def decode(request: Request) -> Response:
    """Decrypts payloads by their key id; payloads not encrypted pass through."""
    return await _convert(request, encode=False)


async def _convert(request: Request, *, encode: bool) -> Response:
    cors = _cors(request)
    if not _authorized(request):
        return envelope(
            401,
            "unauthorized",
            "send the admin token as 'Authorization: Bearer <token>', or sign in at /codec",
            headers={**cors, "WWW-Authenticate": "Bearer"},
        )
    codec = _codec(request)
    if codec is None:
        return envelope(
            503,
            "codec_unavailable",
            "payloads are not encrypted here: no PRINTFLOW_PAYLOAD_KEYS are set",
            headers=cors,
        )
    try:
        payloads = json_format.Parse(await request.body(), Payloads())
    except (json_format.ParseError, UnicodeDecodeError) as err:
        return envelope(
            422,
            "validation_error",
            f"expected {{'payloads': [{{'metadata': {{}}, 'data': base64}}]}}: {err}",
            headers=cors,
        )
    try:
        converted = await (codec.encode if encode else codec.decode)(payloads.payloads)
    except PayloadDecryptError as err:
        return envelope(422, "undecodable_payload", str(err), headers=cors)
    body = json_format.MessageToJson(Payloads(payloads=converted))
    return Response(body, media_type="application/json", headers=cors)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>printflow codec</title></head><body style="font-family:sans-serif;max-width:40em">
<h1>printflow codec</h1><p>{message}</p>
<form method="post" action="/codec/session">
<label>Admin token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Sign in</button></form>
<p>Then, in the Temporal Web UI's codec server settings, set the endpoint to this page's address
and turn on <em>Include cross-origin credentials</em>.</p></body></html>"""


@router.get("", response_class=HTMLResponse, include_in_schema=False)
async def sign_in_page(request: Request) -> HTMLResponse:
    message = (
        "Signed in: the Web UI can decode payloads from this browser."
        if _authorized(request)
        else "Sign in with the admin token so the Temporal Web UI can decode payloads here."
    )
    return HTMLResponse(_PAGE.format(message=html.escape(message)))


@router.post("/session", include_in_schema=False)
async def sign_in(request: Request, token: Annotated[str, Form()]) -> Response:
    expected = _settings(request).admin_token
    if expected is None or not hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    ):
        page = _PAGE.format(message="Wrong admin token.")
        return HTMLResponse(page, status_code=401)
    expires = int(time.time()) + SESSION_SECONDS
    response = HTMLResponse(
        _PAGE.format(message="Signed in: the Web UI can decode payloads from this browser.")
    )
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(
        COOKIE,
        _session_value(expected.get_secret_value(), expires),
        max_age=SESSION_SECONDS,
        path="/codec",
        httponly=True,
        # A Web UI on another site sends the cookie only if it is SameSite=None (https only);
        # on http (make run) the UI on localhost:8233 is the same site, where Lax suffices.
        secure=secure,
        samesite="none" if secure else "lax",
    )
    return response
