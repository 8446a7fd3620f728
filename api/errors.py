"""Every error the API answers, and the one envelope they all share.

    ApiError                      any refusal, rendered as {"error": {code, message, details}}
    ├── Unauthorized       401    missing or unknown X-API-Key / facility token
    ├── Forbidden          403    admin token wrong, or admin API disabled
    ├── NotFound           404    unknown id, or another merchant's order
    ├── Conflict           409    the order's state refuses the action; idempotency clash
    ├── Gone               410    an expired personalization link
    └── Unavailable        503    a dependency did not answer, or the order's workflow did not
                                  within UPDATE_TIMEOUT (``order_busy``); the write may or may
                                  not have happened: GET tells, and a retry with the same
                                  Idempotency-Key applies it at most once. Carries Retry-After.

Request validation failures (FastAPI's RequestValidationError) become 422 ``validation_error``
with the offending fields in ``details``. A database or Temporal that cannot be reached is a 503
``temporarily_unavailable``, never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from runtime.logs import mask_token_path

log = logging.getLogger("printflow.api")


class ApiError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class Gone(ApiError):
    status_code = 410
    code = "gone"


class Unavailable(ApiError):
    status_code = 503
    code = "temporarily_unavailable"
    retry_after = 2  # seconds, sent as Retry-After


def envelope(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers=headers,
    )


# Temporal answers that mean "not now" rather than "no": the request may be retried.
_TEMPORAL_BUSY = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.FAILED_PRECONDITION,  # e.g. the workflow task is failing or timing out
    RPCStatusCode.INTERNAL,
    RPCStatusCode.UNKNOWN,
}


def unavailable(exc: Exception) -> Unavailable | None:
    """The 503 for an error of a dependency (database, Temporal), or None if it is not one."""
    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | ConnectionError):
        return Unavailable("the database did not answer; retry in a moment")
    if isinstance(exc, WorkflowUpdateRPCTimeoutOrCancelledError):
        return Unavailable("the order's workflow did not answer in time", code="order_busy")
    if isinstance(exc, RPCError) and exc.status in _TEMPORAL_BUSY:
        return Unavailable("the workflow service did not answer; retry in a moment")
    return None


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        details.append({"field": ".".join(loc), "message": err.get("msg"), "type": err.get("type")})
    return details


_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else None
        return envelope(exc.status_code, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first = details[0] if details else {"field": "", "message": "invalid request"}
        where = f"{first['field']}: " if first["field"] else ""
        return envelope(422, "validation_error", f"{where}{first['message']}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, RecursionError):
            # FastAPI's JSON reading gave up on a body nested past Python's recursion limit.
            return envelope(
                422,
                "validation_error",
                "body: JSON nested too deeply to read",
                [{"field": "", "message": "JSON nested too deeply", "type": "json_invalid"}],
            )
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return envelope(exc.status_code, code, str(exc.detail))

    async def _dependency(request: Request, exc: Exception) -> JSONResponse:
        down = unavailable(exc)
        if down is None:
            return await _unexpected(request, exc)
        log.warning(
            "%s %s: dependency unavailable (%s: %s)",
            request.method,
            mask_token_path(request.url.path),
            type(exc).__name__,
            str(exc)[:200],
        )
        return await _api_error(request, down)

    # Registered by class, so the answer is final: Starlette re-raises what the catch-all
    # handler below answers (a logged 500 and a closed connection), never what these answer.
    for dependency_error in (
        OperationalError,
        InterfaceError,
        PoolTimeout,
        ConnectionError,
        RPCError,
        WorkflowUpdateRPCTimeoutOrCancelledError,
    ):
        app.add_exception_handler(dependency_error, _dependency)  # type: ignore[arg-type]

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception(
            "unhandled error on %s %s",
            request.method,
            mask_token_path(request.url.path),
            extra={"request_id": getattr(request.state, "request_id", None)},
        )
        return envelope(500, "internal_error", "something went wrong on our side; retry later")
