"""``/v1/admin`` routes: API tokens, audit export, registering server-side files.

Every route here passes the API *and* the admin allow lists, needs an API token's ``admin``
scope, and asks Cedar for the ``admin`` action (which is audited) before doing anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http import HTTPStatus
from itertools import chain
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from mamori.audit.chain import AuditRecord
from mamori.errors import AccessDeniedError
from mamori.identity.apitokens import Scope, principal_scopes
from mamori.identity.network import RouteGroup
from mamori.identity.principal import Principal
from mamori.service.auth import RuntimeDep, authorize_admin, network_guard, requires
from mamori.service.schemas import ArtifactOut, RegisterIn, TokenCreated, TokenIn, TokenOut

__all__ = ["router", "who"]

NDJSON: Final = "application/x-ndjson"

router = APIRouter(
    prefix="/v1/admin",
    dependencies=[
        Depends(network_guard(RouteGroup.API)),
        Depends(network_guard(RouteGroup.ADMIN)),
    ],
)
Admin = Annotated[Principal, Depends(requires(Scope.ADMIN))]


def who(principal: Principal) -> str:
    """How a principal is named in the audit log."""
    return f"{principal.issuer}|{principal.subject}"


@router.post(
    "/tokens", status_code=HTTPStatus.CREATED, response_model=TokenCreated, summary="Create"
)
def create_token(runtime: RuntimeDep, principal: Admin, body: TokenIn) -> TokenCreated:
    """Create an API token; its secret is in this response and nowhere else, ever."""
    authorize_admin(runtime, principal)
    _check_delegation(principal, body)
    issued = runtime.tokens.create(
        name=body.name,
        subject=body.subject or f"ci:{body.name}",
        roles=body.roles,
        scopes=body.scopes,
        created_by=who(principal),
        ttl_seconds=body.ttl_seconds,
    )
    return TokenCreated(**TokenOut.of(issued.info).model_dump(), token=issued.secret)


def _check_delegation(principal: Principal, body: TokenIn) -> None:
    """An API token mints only tokens narrower and shorter-lived than itself.

    Otherwise a stolen admin token with an hour to live mints a token that never expires,
    survives the first one's revocation, and carries scopes and roles the first never had.
    """
    scopes = principal_scopes(principal)
    if scopes is None:
        return  # a person's (JWT) session; the policies decide alone
    extra_scopes = set(body.scopes) - scopes
    extra_roles = set(body.roles) - principal.roles
    outlives = principal.expires_at != 0 and (
        # One second of margin: ``expires_at`` is whole seconds and the store reads its own clock.
        body.ttl_seconds is None or time.time() + body.ttl_seconds + 1 > principal.expires_at
    )
    if extra_scopes or extra_roles or outlives:
        msg = (
            "an API token may only create tokens with a subset of its own scopes and roles "
            "that expire no later than itself"
        )
        raise AccessDeniedError(msg, policy_ids=("api-token-delegation",))


@router.get("/tokens", response_model=list[TokenOut], summary="List API tokens")
def list_tokens(runtime: RuntimeDep, principal: Admin) -> list[TokenOut]:
    """Every API token's metadata, newest first."""
    authorize_admin(runtime, principal)
    return [TokenOut.of(t) for t in runtime.tokens.list()]


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke an API token")
def revoke_token(runtime: RuntimeDep, principal: Admin, token_id: int) -> TokenOut:
    """Revoke a token; it is refused (401) from the next request on."""
    authorize_admin(runtime, principal)
    return TokenOut.of(runtime.tokens.revoke(token_id, by=who(principal)))


@router.get(
    "/audit",
    summary="Export the audit log as JSON lines",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {}}}},
)
def export_audit(
    runtime: RuntimeDep,
    principal: Admin,
    after: Annotated[int, Query(ge=0, description="Only records with seq greater than this.")] = 0,
) -> StreamingResponse:
    """Every audit record after ``after`` in chain order, one JSON object per line."""
    records = runtime.lifecycle.audit(principal, after=after)
    # The generator authorizes on its first step; take it now so a deny is a 403, not a
    # 200 whose body breaks off.
    first = next(records, None)
    head: list[AuditRecord] = [] if first is None else [first]
    lines: Iterator[str] = (
        json.dumps(r.to_json(), sort_keys=True, separators=(",", ":")) + "\n"
        for r in chain(head, records)
    )
    return StreamingResponse(lines, media_type=NDJSON)


@router.post(
    "/register",
    status_code=HTTPStatus.CREATED,
    response_model=ArtifactOut,
    summary="Register a file already on the server",
)
def register_path(runtime: RuntimeDep, principal: Admin, body: RegisterIn) -> ArtifactOut:
    """Copy a server-side file into the quarantine and queue its scan (admins only)."""
    authorize_admin(runtime, principal)
    path = Path(body.path)
    view = runtime.lifecycle.import_file(principal, path, name=body.name, source=body.source)
    return ArtifactOut.of(view)
