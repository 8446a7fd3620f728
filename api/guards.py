"""Checks that run on every request before routing.

- Control characters in the URL (path or query, once decoded) are a 422, as in bodies
  (``domain.text``): nothing with a line break or NUL reaches a route, a log line or a query.
  The refusal names where: ``details`` holds ``{"field": "query.<name>"}`` for a query
  parameter (its name, or ``query`` when the name itself is refused) or ``path``.
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
        where = _refused_part(scope) if scope["type"] == "http" else None
        if where is not None:
            named = {"path": "the URL's path", "query": "the URL's query (a parameter's name)"}.get(
                where, f"the URL's query parameter {where.removeprefix('query.')}"
            )
            detail = {"field": where, "message": f"{where}: {REFUSED}", "type": "control_character"}
            response = envelope(422, "validation_error", f"{named}: {REFUSED}", [detail])
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _decoded(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "replace")


def _refused_part(scope: Scope) -> str | None:
    """Where the URL has a control character: ``path``, ``query.<name>``, ``query``; or None."""
    if has_control_characters(scope.get("path", "")):
        return "path"
    for pair in scope.get("query_string", b"").split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        name = _decoded(raw_name)
        if has_control_characters(name):
            return "query"  # the name itself is refused: never repeated in the answer
        if has_control_characters(_decoded(raw_value)):
            return f"query.{name[:100]}"
    return None
