"""What every console page shares: the signed-in user, security headers, error pages.

The console has no permission of its own: :func:`current_user` verifies the session's
credential with the API's code on every request, an API token's scopes apply as on the API
(:func:`require_scope`), and every decision is the lifecycle's (Cedar, audited).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment

from mamori.errors import AccessDeniedError, IdentityError, MamoriError
from mamori.identity.apitokens import Scope, principal_scopes
from mamori.identity.network import RouteGroup
from mamori.identity.principal import Principal
from mamori.service.auth import (
    SUBJECT_STATE_KEY,
    get_runtime,
    network_guard,
)
from mamori.service.console.session import COOKIE, ConsoleSessions
from mamori.service.problems import status_for

__all__ = [
    "CSP",
    "DIGEST",
    "HEADERS",
    "ConsoleState",
    "ConsoleUser",
    "LoginRequiredError",
    "check_csrf",
    "console_router",
    "console_state",
    "current_user",
    "html",
    "html_errors",
    "redirect",
    "require_scope",
    "secure",
    "user_or_none",
    "who",
]

CSP: Final = (
    "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
DIGEST: Final = r"^[0-9a-f]{64}$"


def console_router() -> APIRouter:
    """A router for console pages: under ``/console``, behind the API's network allow list."""
    return APIRouter(
        prefix="/console",
        include_in_schema=False,
        dependencies=[Depends(network_guard(RouteGroup.API))],
    )


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """The console's session sealer and templates, kept on ``app.state.console``."""

    sessions: ConsoleSessions
    templates: Environment


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The signed-in principal, verified again on this request, and its CSRF token."""

    principal: Principal
    csrf: str

    def may(self, scope: Scope) -> bool:
        """False when an API token lacks ``scope`` (JWT sessions carry no scopes)."""
        scopes = principal_scopes(self.principal)
        return scopes is None or scope in scopes


class LoginRequiredError(Exception):
    """No valid session: send the browser to the login page."""


def console_state(request: Request) -> ConsoleState:
    """The console state of the app serving ``request``."""
    console: ConsoleState = request.app.state.console
    return console


def secure(response: Response) -> Response:
    """Add the console's security headers (CSP, no framing, no referrer, no caching)."""
    response.headers.update(HEADERS)
    return response


def html(
    request: Request,
    template: str,
    user: ConsoleUser | None,
    *,
    status: int = HTTPStatus.OK,
    **context: Any,
) -> Response:
    """Render ``template`` with the security headers."""
    page = console_state(request).templates.get_template(template)
    # Our own packaged template; model-controlled text only ever arrives as autoescaped data.
    ctx = {**context, "user": user, "who": who(user), "path": request.url.path}
    body = page.render(ctx)  # mamori: safe
    return secure(HTMLResponse(body, status_code=status))


def who(user: ConsoleUser | None) -> str:
    """The signed-in subject for the page header ("" when signed out)."""
    if user is None:
        return ""
    return user.principal.subject


def redirect(url: str) -> Response:
    """A 303 to ``url`` (always a console path, never taken from the request)."""
    return secure(RedirectResponse(url, status_code=HTTPStatus.SEE_OTHER))


def require_scope(user: ConsoleUser, scope: Scope) -> None:
    """Refuse (403) an API-token session without ``scope``, as the API does."""
    if not user.may(scope):
        msg = f"this API token lacks the {scope.value!r} scope"
        raise AccessDeniedError(msg, policy_ids=(f"api-token-scope-{scope.value}",))


def current_user(request: Request) -> ConsoleUser:
    """Open the session cookie and verify its credential with the API's code."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise LoginRequiredError
    sessions = console_state(request).sessions
    try:
        opened = sessions.open(cookie)
        principal = get_runtime(request).authenticate(opened.credential)
    except IdentityError as exc:
        raise LoginRequiredError from exc
    setattr(request.state, SUBJECT_STATE_KEY, principal.subject)  # for the access log
    return ConsoleUser(principal, sessions.csrf_token(opened.nonce))


def html_errors(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Render library errors as an HTML page with the API's status; no session → login."""

    @functools.wraps(handler)
    def _wrapped(*args: Any, **kwargs: Any) -> Response:
        request: Request = kwargs["request"]
        try:
            return handler(*args, **kwargs)
        except LoginRequiredError:
            response = redirect("/console/login")
            response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
            return response
        except MamoriError as exc:
            user = user_or_none(request)
            return html(
                request,
                "error.html",
                user,
                status=status_for(exc),
                message=exc.diagnostics(),
                policy_ids=exc.policy_ids if isinstance(exc, AccessDeniedError) else (),
            )

    return _wrapped


def user_or_none(request: Request) -> ConsoleUser | None:
    """The signed-in user, or ``None`` (for pages that render either way)."""
    try:
        return current_user(request)
    except LoginRequiredError:
        return None


def check_csrf(request: Request, user: ConsoleUser, token: str) -> None:
    """Refuse (403) a state change whose form did not carry this session's token."""
    if not token or not secrets.compare_digest(user.csrf, token):
        msg = "the form's CSRF token is missing or wrong; reload the page and try again"
        raise AccessDeniedError(msg, policy_ids=("console-csrf",))
    del request
