"""Request guards, run as FastAPI dependencies before any handler body executes.

Order per route: the network guard (403 when the client address is not on the route group's
allow list), then authentication (401 for a missing, malformed, unverifiable, revoked or
expired credential), then the API-token scope check (403). Handlers receive a verified
:class:`~mamori.identity.principal.Principal` and never see the raw credential.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import Depends, Request

from mamori.errors import AccessDeniedError, IdentityError, MamoriError
from mamori.identity.apitokens import Scope, principal_scopes
from mamori.identity.network import RouteGroup
from mamori.identity.principal import Principal
from mamori.lifecycle import Action
from mamori.service.refusals import RefusalLog, RefusalReason
from mamori.service.runtime import Runtime

__all__ = [
    "SUBJECT_STATE_KEY",
    "authorize_admin",
    "authorize_system",
    "current_principal",
    "get_runtime",
    "network_guard",
    "requires",
    "scoped_principal",
]

SUBJECT_STATE_KEY: Final = "mamori_subject"
"""Where the authenticated subject is left for the access log (never the token)."""

_MAX_CREDENTIAL: Final = 16 * 1024


def get_runtime(request: Request) -> Runtime:
    """The runtime the app was created with."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime_dependency(request: Request) -> Runtime:
    """Async so FastAPI does not spend a thread-pool hop on a dictionary lookup."""
    return get_runtime(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime_dependency)]


def network_guard(group: RouteGroup) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing clients outside ``group``'s allow list with 403."""

    # async: a few CIDR comparisons, not worth a thread-pool hop on every request.
    async def _guard(request: Request) -> None:
        runtime = get_runtime(request)
        peer = request.client.host if request.client is not None else None
        try:
            runtime.network.check(group, peer, request.headers.getlist("x-forwarded-for"))
        except AccessDeniedError as exc:
            _refused(request, RefusalReason.NETWORK, group.value, exc)
            raise

    _guard.__name__ = f"network_guard_{group.value}"
    return _guard


def _refused(request: Request, reason: RefusalReason, group: str, exc: MamoriError) -> None:
    """Count and (rate-limited) audit a refusal that happened before any handler ran."""
    refusals: RefusalLog | None = getattr(request.app.state, "refusals", None)
    if refusals is None:
        return
    runtime = get_runtime(request)
    peer = request.client.host if request.client is not None else None
    address = runtime.network.client(peer, request.headers.getlist("x-forwarded-for"))
    refusals.record(
        reason,
        source=str(address) if address is not None else "unknown",
        group=group,
        detail=exc.diagnostics(),
        policy_ids=exc.policy_ids if isinstance(exc, AccessDeniedError) else (),
    )


def current_principal(request: Request) -> Principal:
    """Verify ``Authorization: Bearer <jwt | mamori_ API token>``; any failure is a 401."""
    try:
        return _authenticate(request)
    except IdentityError as exc:
        _refused(request, RefusalReason.UNAUTHENTICATED, _route_group(request), exc)
        raise


def _route_group(request: Request) -> str:
    # The route template's first segments name the group well enough for a metric label,
    # and a template (not the raw path) keeps the label set bounded.
    route = getattr(request.scope.get("route"), "path", "") or ""
    return "admin" if route.startswith("/v1/admin") else RouteGroup.API.value


def _authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if header is None:
        raise IdentityError("missing Authorization header; send 'Bearer <token>'")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise IdentityError("the Authorization header must be 'Bearer <token>'")
    if len(credential) > _MAX_CREDENTIAL:
        raise IdentityError("bearer token is too long")
    principal = get_runtime(request).authenticate(credential)
    setattr(request.state, SUBJECT_STATE_KEY, principal.subject)
    return principal


def scoped_principal(request: Request, scope: Scope) -> Principal:
    """The verified principal, refusing (403) an API token that does not carry ``scope``."""
    principal = current_principal(request)
    scopes = principal_scopes(principal)
    if scopes is not None and scope not in scopes:
        msg = f"this API token lacks the {scope.value!r} scope"
        raise AccessDeniedError(msg, policy_ids=(f"api-token-scope-{scope.value}",))
    return principal


def requires(scope: Scope) -> Callable[[Request], Principal]:
    """A dependency: :func:`scoped_principal` for ``scope``.

    Authentication happens inside this one dependency (not a chain of two) so a request pays
    for a single thread-pool hop before its handler.
    """

    def _scoped(request: Request) -> Principal:
        return scoped_principal(request, scope)

    _scoped.__name__ = f"requires_{scope.value}"
    return _scoped


def authorize_system(runtime: Runtime, principal: Principal, action: Action) -> None:
    """Ask the lifecycle policies about a system-wide action; audit it; raise on deny.

    The decision is audited in its own transaction, so a deny is recorded even though the
    request fails (the same contract as the lifecycle's own checks).
    """
    with runtime.store.write() as session:
        try:
            runtime.authz.require(session, principal, action, None)
        except AccessDeniedError as exc:
            denied = exc
        else:
            return
    raise denied


def authorize_admin(runtime: Runtime, principal: Principal) -> None:
    """Require the ``admin`` lifecycle action (token management, audit export, ...)."""
    authorize_system(runtime, principal, Action.ADMIN)
