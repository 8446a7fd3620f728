"""Every error the API answers, and the one envelope they all share.

    ApiError                      any refusal, rendered as {"error": {code, message, details}}
    ├── Unauthorized       401    missing or unknown X-API-Key / facility token
    ├── Forbidden          403    admin token wrong, or admin API disabled
    ├── NotFound           404    unknown id, or another merchant's order
    ├── Conflict           409    the order's state refuses the action; idempotency clash
    ├── Gone               410    an expired personalization link
    └── Unavailable        503    a dependency did not answer; retrying the same request is safe

Request validation failures (FastAPI's RequestValidationError) become 422 ``validation_error``
with the offending fields in ``details``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def envelope(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}}, status_code=status
    )


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
        return envelope(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first = details[0] if details else {"field": "", "message": "invalid request"}
        where = f"{first['field']}: " if first["field"] else ""
        return envelope(422, "validation_error", f"{where}{first['message']}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return envelope(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return envelope(500, "internal_error", "something went wrong on our side; retry later")
