"""Checks that run on every request before routing.

- Control characters in the URL (path or query, once decoded) are a 422, as in bodies
  (``domain.text``): nothing with a line break or NUL reaches a route, a log line or a query.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import envelope
from domain.text import REFUSED, has_control_characters


class RefuseControlCharacters:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_control_characters(scope):
            response = envelope(422, "validation_error", f"the URL: {REFUSED}")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_control_characters(scope: Scope) -> bool:
    query = unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" "))
    for raw in (scope.get("path", ""), query.decode("utf-8", "replace")):
        if has_control_characters(raw):
            return True
    return False
