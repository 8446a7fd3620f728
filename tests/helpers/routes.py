"""The app's routes as FastAPI serves them, those of included routers too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.routing import APIRoute


def api_routes(routes: Any) -> Iterator[Any]:
    """Every ``APIRoute``, and every route of an included router (FastAPI ≥ 0.165 keeps those
    apart): each has ``path``, ``methods`` and ``dependant``."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "effective_route_contexts"):
            yield from route.effective_route_contexts()
