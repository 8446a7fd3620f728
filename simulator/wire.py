"""HTTP details the job floor and the routes share: the error envelope and the bearer token."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    """An error in printflow's envelope: ``{"error": {"code", "message", "details"}}``."""
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}}, status_code=status
    )


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer …``, or None when there is none."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
