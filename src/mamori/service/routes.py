"""``/v1`` artifact routes and the gate: parse, call the lifecycle, render.

Handlers that block (store, Cedar) are plain ``def`` and run in the thread pool; the upload is
``async`` because it streams the body (see :mod:`mamori.service.upload`).
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Final, Literal

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from mamori.errors import ConfigError
from mamori.findings import Severity, Verdict
from mamori.identity.apitokens import Scope
from mamori.identity.network import RouteGroup
from mamori.identity.principal import Principal
from mamori.lifecycle import Action, GateResult
from mamori.scan.report.schema import FindingModel
from mamori.service.auth import (
    RuntimeDep,
    authorize_system,
    network_guard,
    requires,
    scoped_principal,
)
from mamori.service.schemas import ArtifactOut, ArtifactPage, DecisionIn, FindingsOut, GateOut
from mamori.service.upload import receive_blob
from mamori.store.models import ApprovalDecision, ArtifactState
from mamori.text import check_name

__all__ = ["admin_router", "router"]

_DIGEST: Final = r"^[0-9a-f]{64}$"

router = APIRouter(prefix="/v1", dependencies=[Depends(network_guard(RouteGroup.API))])
# Overrides are admin acts: the admin allow list applies on top of the API one.
admin_router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(network_guard(RouteGroup.API)), Depends(network_guard(RouteGroup.ADMIN))],
)

Digest = Annotated[
    str, Path(pattern=_DIGEST, description="SHA-256 of the artifact, lowercase hex.")
]
Reader = Annotated[Principal, Depends(requires(Scope.READ))]
Decider = Annotated[Principal, Depends(requires(Scope.DECIDE))]
Admin = Annotated[Principal, Depends(requires(Scope.ADMIN))]


def _severity(label: str | None) -> Severity | None:
    if label is None:
        return None
    try:
        return Severity.parse(label)
    except ValueError as exc:
        msg = f"severity: {exc}"
        raise ConfigError(msg) from exc


@router.post(
    "/artifacts",
    status_code=HTTPStatus.CREATED,
    response_model=ArtifactOut,
    summary="Upload an artifact (raw body with ?name=, or multipart field 'file')",
)
async def upload_artifact(
    *,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(requires(Scope.SCAN))],
    name: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
    source: Annotated[str, Query(min_length=1, max_length=32)] = "upload",
    version: Annotated[str, Query(max_length=255)] = "",
) -> JSONResponse:
    """Quarantine the uploaded bytes and queue their scan; returns the artifact (201)."""
    # Decide before reading the body: a caller who may not import never uploads a byte.
    await anyio.to_thread.run_sync(authorize_system, runtime, principal, Action.IMPORT)
    # The one name rule (mamori.text), checked before a byte is stored.
    check_name(source, what="source")
    if name is not None:
        check_name(name, what="name")
    if version:
        check_name(version, what="version")
    is_multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    if name is None and not is_multipart:
        raise ConfigError("name: required for a raw upload (?name=model.pkl)")
    uploaded = await receive_blob(
        request, runtime.blobs, max_bytes=runtime.settings.max_upload_bytes
    )
    view = await anyio.to_thread.run_sync(
        lambda: runtime.lifecycle.register(
            principal,
            uploaded.blob,
            source=source,
            name=name or uploaded.filename or "upload",
            version=version,
        )
    )
    body = ArtifactOut.of(view).model_dump(mode="json")
    return JSONResponse(
        body, status_code=HTTPStatus.CREATED, headers={"Location": f"/v1/artifacts/{view.sha256}"}
    )


@router.get("/artifacts", response_model=ArtifactPage, summary="List and filter artifacts")
def list_artifacts(
    *,
    runtime: RuntimeDep,
    principal: Reader,
    verdict: Verdict | None = None,
    state: ArtifactState | None = None,
    severity: Annotated[
        str | None, Query(description="Only artifacts with a finding at or above this.")
    ] = None,
    source: Annotated[str | None, Query(max_length=32)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ArtifactPage:
    """Artifacts matching every given filter, newest first."""
    page = runtime.lifecycle.list_artifacts(
        principal,
        state=state,
        verdict=verdict,
        source=source,
        since=since,
        min_severity=_severity(severity),
        limit=limit,
        offset=offset,
    )
    return ArtifactPage.of(page)


@router.get("/artifacts/{sha256}", response_model=ArtifactOut, summary="One artifact")
def get_artifact(runtime: RuntimeDep, principal: Reader, sha256: Digest) -> ArtifactOut:
    """The artifact; 404 when unknown or not visible to the caller."""
    return ArtifactOut.of(runtime.lifecycle.view(principal, sha256))


@router.get("/artifacts/{sha256}/report", summary="The JSON scan report of the current scan")
def get_report(runtime: RuntimeDep, principal: Reader, sha256: Digest) -> dict[str, Any]:
    """The stored report document (the same schema as ``mamori scan --format json``)."""
    return runtime.lifecycle.scan_report(principal, sha256)


@router.get("/artifacts/{sha256}/findings", response_model=FindingsOut, summary="Findings")
def get_findings(
    runtime: RuntimeDep,
    principal: Reader,
    sha256: Digest,
    severity: Annotated[str | None, Query(description="Minimum severity.")] = None,
    rule_id: Annotated[str | None, Query(max_length=32)] = None,
) -> FindingsOut:
    """Findings of the current scan, optionally at or above a severity or of one rule."""
    floor = _severity(severity)
    report = runtime.lifecycle.scan_report(principal, sha256)
    raw = report.get("findings")
    items: list[Any] = raw if isinstance(raw, list) else []
    findings = [FindingModel.model_validate(f) for f in items]
    if floor is not None:
        findings = [f for f in findings if Severity.parse(f.severity) >= floor]
    if rule_id is not None:
        findings = [f for f in findings if f.rule_id == rule_id]
    verdict = report.get("verdict")
    return FindingsOut(
        sha256=sha256,
        verdict=None if verdict is None else str(verdict),
        total=len(findings),
        findings=findings,
    )


def _decide(
    runtime: RuntimeDep,
    principal: Principal,
    sha256: str,
    decision: ApprovalDecision,
    body: DecisionIn,
) -> ArtifactOut:
    view = runtime.lifecycle.decide(principal, sha256, decision, reason=body.reason.strip())
    return ArtifactOut.of(view)


_NO_BODY: Final = DecisionIn()


@router.post("/artifacts/{sha256}/approve", response_model=ArtifactOut, summary="Approve")
def approve(
    runtime: RuntimeDep,
    principal: Decider,
    sha256: Digest,
    body: Annotated[DecisionIn, Body()] = _NO_BODY,
) -> ArtifactOut:
    """Approve a SAFE artifact (approver role, MFA, not the importer)."""
    return _decide(runtime, principal, sha256, ApprovalDecision.APPROVED, body)


@router.post("/artifacts/{sha256}/reject", response_model=ArtifactOut, summary="Reject")
def reject(
    runtime: RuntimeDep,
    principal: Decider,
    sha256: Digest,
    body: Annotated[DecisionIn, Body()] = _NO_BODY,
) -> ArtifactOut:
    """Reject an artifact; it is never deployable afterwards."""
    return _decide(runtime, principal, sha256, ApprovalDecision.REJECTED, body)


@admin_router.post(
    "/artifacts/{sha256}/override", response_model=ArtifactOut, summary="Override (admin)"
)
def override(
    runtime: RuntimeDep,
    principal: Decider,
    sha256: Digest,
    body: Annotated[DecisionIn, Body()] = _NO_BODY,
) -> ArtifactOut:
    """Approve an UNSAFE verdict: admin role, MFA, not the importer, and a written reason."""
    return _decide(runtime, principal, sha256, ApprovalDecision.OVERRIDE, body)


@router.get("/gate", response_model=GateOut, summary="May these exact bytes be deployed?")
async def gate(
    runtime: RuntimeDep,
    request: Request,
    digest: Annotated[str, Query(pattern=_DIGEST)],
    action: Literal["deploy", "invoke"] = "deploy",
) -> GateOut:
    """A fast yes/no with a one-sentence reason; always 200 for a well-formed question.

    Any authenticated caller may ask (an API token needs the ``gate`` scope): the answer is
    about the bytes, not about the caller, so it needs no Cedar decision and no MFA, which
    lets CI and the MLflow gate plugin use it with a service token.
    """

    def _answer() -> GateResult:
        scoped_principal(request, Scope.GATE)
        return runtime.lifecycle.gate(digest, Action(action))

    # NOTE: the gate sits in front of every promotion and serving start, and on 2 cores a
    # worker-thread hop costs more than the lookup. Authentication and the lookup share one
    # hop here (a sync dependency plus a sync handler take three: FastAPI also validates a
    # sync handler's response in the pool).
    result = await anyio.to_thread.run_sync(_answer)
    request.app.state.metrics.decisions.labels(
        f"gate-{action}", "allow" if result.allowed else "deny"
    ).inc()
    return GateOut.of(digest, action, result)
