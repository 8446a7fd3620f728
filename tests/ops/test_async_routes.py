"""No request waits for a thread for what is only a lookup: FastAPI runs a route or dependency
written as a plain ``def`` on a thread of its pool, a hand-off to another thread and back for
each (CPU per request, docs/performance.md), so every route and every dependency is ``async``;
one that must block (a password hash) hands that work to a thread itself."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant

from api.main import create_app
from runtime.settings import Settings
from tests.helpers.routes import api_routes


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def test_every_route_and_dependency_runs_on_the_event_loop() -> None:
    found = list(api_routes(create_app(Settings()).routes))
    assert len(found) > 100, "the routes of the included routers were not found"
    on_threads = sorted(
        {
            f"{route.path}: {call.__module__}.{call.__qualname__}"
            for route in found
            for call in _calls(route.dependant)
            if not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call))
        }
    )
    assert on_threads == []
