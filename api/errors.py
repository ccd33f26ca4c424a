"""JSON errors: every failure is ``{"error": {"status", "message", "field"}}`` with the bad field named."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from aidc.errors import AidcError
from analytics.limits import LimitError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """The error object."""

    status: int
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """Every non-2xx answer."""

    error: ErrorBody


class ApiError(Exception):
    """An error with its HTTP status and the request field at fault."""

    def __init__(
        self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.headers = dict(headers or {})


def _body(status: int, message: str, field: str | None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message, "field": field}}, status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the JSON error object."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        headers = {**exc.headers, "WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return _body(exc.status, exc.message, exc.field, headers or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err: dict[str, Any] = exc.errors()[0]
        if err.get("type") == "json_invalid":  # its loc is ("body", <character offset>), not a field
            return _body(422, json_error(exc.body, err), "body")
        loc = [str(p) for p in err.get("loc", ())]
        name = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else None)
        value = err.get("input")
        shown = "" if value is None or isinstance(value, dict | list) else f": {value!r}"
        return _body(422, f"{name}{shown}: {err.get('msg', 'invalid')}", name)

    @app.exception_handler(AidcError)
    async def _aidc(_: Request, exc: AidcError) -> JSONResponse:
        if isinstance(exc, LimitError):  # a stated limit: the parameter to change is named
            return _body(422, str(exc), exc.field)
        return _body(400, str(exc), None)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the caller's fault: logged with its traceback here, never sent to the client.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _body(500, f"internal error ({type(exc).__name__}); see the server log", None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 413: a streamed body passed the cap (api.guard); the rest of it is not read, so the connection closes.
        headers = {"Connection": "close"} if exc.status_code == 413 else None
        return _body(exc.status_code, str(exc.detail), None, headers)


def json_error(doc: object, err: dict[str, Any]) -> str:
    """The message for a body that is not JSON: the parser's reason with its line and column."""
    loc = err.get("loc", ())
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    reason = (err.get("ctx") or {}).get("error", "JSON decode error")
    if pos is None or not isinstance(doc, str):
        return f"the request body is not valid JSON: {reason}"
    line = doc.count("\n", 0, pos) + 1
    column = pos - doc.rfind("\n", 0, pos)  # rfind gives -1 on the first line: columns count from 1
    return f"the request body is not valid JSON: {reason} at line {line} column {column} (character {pos})"


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "bad input data or configuration"},
    401: {"model": ErrorResponse, "description": "no token or an unknown token"},
    422: {"model": ErrorResponse, "description": "a parameter is invalid; `field` names it"},
}
