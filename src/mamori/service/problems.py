"""One error model for the whole API: RFC 9457 (formerly 7807) problem details.

Every error body is ``{"type", "title", "status", "detail"}`` with media type
``application/problem+json``; a 403 adds ``policy_ids`` (the Cedar policies or allow lists
that decided). The status comes from the :class:`~mamori.errors.MamoriError` subclass, so
handlers raise library errors and never pick status codes themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mamori.errors import (
    AccessDeniedError,
    ConfigError,
    IdentityError,
    InvalidStateError,
    MamoriError,
    NotFoundError,
    PolicyError,
    RegistryError,
    ScanError,
    StoreError,
)

__all__ = [
    "PROBLEM_JSON",
    "PayloadTooLargeError",
    "install_problem_handlers",
    "problem",
    "status_for",
]

PROBLEM_JSON: Final = "application/problem+json"
_TYPE_BASE: Final = "https://mamori.dev/problems/"


class PayloadTooLargeError(ScanError):
    """An upload is larger than ``max_upload_bytes`` (HTTP 413)."""


# Most specific first: the first matching class decides the status.
_STATUS: Final[tuple[tuple[type[MamoriError], HTTPStatus], ...]] = (
    (IdentityError, HTTPStatus.UNAUTHORIZED),
    (AccessDeniedError, HTTPStatus.FORBIDDEN),
    (PolicyError, HTTPStatus.FORBIDDEN),  # the engine could not decide: that is a deny
    (NotFoundError, HTTPStatus.NOT_FOUND),
    (InvalidStateError, HTTPStatus.CONFLICT),
    (PayloadTooLargeError, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (ConfigError, HTTPStatus.UNPROCESSABLE_ENTITY),
    (ScanError, HTTPStatus.BAD_REQUEST),
    (StoreError, HTTPStatus.SERVICE_UNAVAILABLE),
    (RegistryError, HTTPStatus.BAD_GATEWAY),
)


def status_for(error: MamoriError) -> HTTPStatus:
    """The HTTP status of a library error (500 only for an unmapped subclass)."""
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return HTTPStatus.INTERNAL_SERVER_ERROR


def problem(
    status: int,
    detail: str,
    *,
    policy_ids: Sequence[str] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """Build a problem-details response."""
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": _TYPE_BASE + phrase.lower().replace(" ", "-").replace("'", ""),
        "title": phrase,
        "status": status,
        "detail": detail,
    }
    if policy_ids is not None:
        body["policy_ids"] = list(policy_ids)
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _mamori_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MamoriError)
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == HTTPStatus.UNAUTHORIZED else None
    policy_ids: tuple[str, ...] | None = None
    if isinstance(exc, AccessDeniedError):
        policy_ids = exc.policy_ids
    elif status == HTTPStatus.FORBIDDEN:
        policy_ids = ()
    return problem(status, exc.diagnostics(), policy_ids=policy_ids, headers=headers)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return problem(HTTPStatus.UNPROCESSABLE_ENTITY, detail, extra={"errors": errors})


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every library, validation and HTTP error through :func:`problem`."""
    app.add_exception_handler(MamoriError, _mamori_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
