"""Console pages about one artifact (model card, approve/reject) and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Annotated, Any, Final

from fastapi import Form, Path, Query, Request
from fastapi.responses import Response

from mamori.errors import StoreError
from mamori.findings import Severity
from mamori.identity.apitokens import Scope
from mamori.lifecycle import Action, ArtifactView
from mamori.service.auth import (
    get_runtime,
)
from mamori.service.console.web import (
    DIGEST,
    ConsoleUser,
    check_csrf,
    console_router,
    current_user,
    html,
    html_errors,
    redirect,
    require_scope,
)
from mamori.store.auditlog import audit_head, verify_store_chain
from mamori.store.models import ApprovalDecision

__all__ = ["router"]

PAGE_SIZE: Final = 50
router = console_router()
Digest = Annotated[str, Path(pattern=DIGEST)]


# --- model card ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Button:
    """A decision button: enabled, or disabled with the reason the policies gave."""

    action: str
    label: str
    allowed: bool
    reason: str


def _buttons(request: Request, user: ConsoleUser, view: ArtifactView) -> tuple[_Button, ...]:
    lifecycle = get_runtime(request).lifecycle
    scan = view.latest_scan
    buttons = []
    for action, label in ((Action.APPROVE, "Approve"), (Action.REJECT, "Reject")):
        if not user.may(Scope.DECIDE):
            reason = "this API token lacks the 'decide' scope"
        elif scan is None or scan.verdict is None:
            reason = "no finished scan under the current ruleset"
        else:
            decision = lifecycle.preview(user.principal, view.sha256, action)
            policies = ", ".join(decision.policy_ids)
            reason = (
                "" if decision.allowed else decision.reason + (f" ({policies})" if policies else "")
            )
        buttons.append(_Button(action.value, label, not reason, reason))
    return tuple(buttons)


def _findings(report: dict[str, Any] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Findings (most severe first) and member files of the stored file report."""
    if not report:
        return [], []
    raw_findings = report.get("findings")
    raw_members = report.get("members")
    findings = (
        [f for f in raw_findings if isinstance(f, dict)] if isinstance(raw_findings, list) else []
    )
    members = (
        [m for m in raw_members if isinstance(m, dict)] if isinstance(raw_members, list) else []
    )
    findings.sort(key=lambda f: -_rank(str(f.get("severity", ""))))
    return findings, members


def _rank(label: str) -> int:
    try:
        return int(Severity.parse(label))
    except ValueError:
        return -1


@router.get("/artifacts/{sha256}")
@html_errors
def model_card(request: Request, sha256: Digest) -> Response:
    """One artifact: state, digest, names, gate answer, detections, files, decisions."""
    user = current_user(request)
    require_scope(user, Scope.READ)
    lifecycle = get_runtime(request).lifecycle
    view = lifecycle.view(user.principal, sha256)
    report: dict[str, Any] | None = None
    if view.latest_scan is not None and view.latest_scan.verdict is not None:
        report = lifecycle.scan_report(user.principal, sha256)
    findings, members = _findings(report)
    return html(
        request,
        "artifact.html",
        user,
        view=view,
        gate=lifecycle.gate(sha256),
        findings=findings,
        members=members,
        approvals=lifecycle.approvals(user.principal, sha256),
        buttons=_buttons(request, user, view),
    )


@router.post("/artifacts/{sha256}/{action}")
@html_errors
def decide(
    request: Request,
    sha256: Digest,
    action: Annotated[str, Path(pattern="^(approve|reject)$")],
    csrf: Annotated[str, Form(max_length=128)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Approve or reject through the lifecycle (Cedar decides and audits, as on the API)."""
    user = current_user(request)
    check_csrf(request, user, csrf)
    require_scope(user, Scope.DECIDE)
    decision = ApprovalDecision.APPROVED if action == "approve" else ApprovalDecision.REJECTED
    get_runtime(request).lifecycle.decide(user.principal, sha256, decision, reason=reason.strip())
    return redirect(f"/console/artifacts/{sha256}")


# --- audit ---------------------------------------------------------------------------------


@router.get("/audit")
@html_errors
def audit(
    request: Request,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    verify: Annotated[bool, Query()] = False,
) -> Response:
    """The audit chain newest first, paged; ``verify=1`` checks the whole chain (admins).

    Verification reads and hashes every record (about 0.1 ms each on SQLite: 2 s for 20,000),
    so it runs when asked for, not on every page; the head (sequence and hash) is always
    shown, to compare with an anchor kept outside the database.
    """
    user = current_user(request)
    require_scope(user, Scope.ADMIN)
    runtime = get_runtime(request)
    head, head_hash = audit_head(runtime.store)
    high = max(0, head - (page - 1) * PAGE_SIZE)
    low = max(0, high - PAGE_SIZE)
    # Authorized (admin, audited) before a record is read: a deny raises here.
    records = list(islice(runtime.lifecycle.audit(user.principal, after=low), high - low))
    # The head now includes this view's own admin decision, which the check below covers too.
    head, head_hash = audit_head(runtime.store)
    verified, broken = 0, ""
    if verify:
        try:
            verified = verify_store_chain(runtime.store)
        except StoreError as exc:
            broken = exc.diagnostics()
    return html(
        request,
        "audit.html",
        user,
        records=[(r, datetime.fromtimestamp(r.timestamp, UTC)) for r in reversed(records)],
        page=page,
        pages=max(1, -(-head // PAGE_SIZE)),
        head=head,
        head_hash=head_hash,
        verify=verify,
        verified=verified,
        broken=broken,
    )
