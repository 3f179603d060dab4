"""``/console``: the server-rendered security console over the lifecycle library.

Each view parses its query, calls :class:`~mamori.lifecycle.Lifecycle` as the signed-in
principal (so Cedar decides and audits exactly as for the API), and renders a template. The
console has no permission of its own: an API token's scopes apply as on the API, and a button
the policies would refuse is shown disabled with the policy's reason.

Every response carries a strict Content-Security-Policy (no script at all, styles only from
``/console/static``), and every state change is a POST with the session's CSRF token.
"""

from __future__ import annotations

import csv
import functools
import io
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from itertools import islice
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, Form, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment

from mamori.errors import AccessDeniedError, ConfigError, IdentityError, MamoriError, StoreError
from mamori.findings import Severity, Verdict
from mamori.identity.apitokens import Scope, principal_scopes
from mamori.identity.network import RouteGroup
from mamori.identity.principal import Principal
from mamori.lifecycle import Action, ArtifactView
from mamori.service.auth import SUBJECT_STATE_KEY, get_runtime, network_guard
from mamori.service.console.charts import bar_chart
from mamori.service.console.render import STATIC, environment
from mamori.service.console.session import COOKIE, LOGIN_COOKIE, ConsoleSessions
from mamori.service.problems import status_for
from mamori.store.auditlog import audit_head, verify_store_chain
from mamori.store.models import ApprovalDecision, ArtifactState
from mamori.text import printable

__all__ = ["CSP", "install_console", "router"]

CSP: Final = (
    "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PAGE_SIZE: Final = 50
_CSV_CAP: Final = 10_000
_DIGEST: Final = r"^[0-9a-f]{64}$"
# OWASP CSV injection: a cell starting with one of these is a formula in spreadsheet programs.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")

router = APIRouter(
    prefix="/console",
    include_in_schema=False,
    dependencies=[Depends(network_guard(RouteGroup.API))],
)
Digest = Annotated[str, Path(pattern=_DIGEST)]


@dataclass(frozen=True, slots=True)
class _Console:
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


class _LoginRequired(Exception):  # noqa: N818 - control flow, not an error report
    """No valid session: send the browser to the login page."""


def install_console(app: FastAPI) -> None:
    """Mount the console on ``app`` (its session key lives in the data directory)."""
    settings = app.state.runtime.settings
    app.state.console = _Console(ConsoleSessions.from_dir(settings.data_dir), environment())
    app.include_router(router)


def _console(request: Request) -> _Console:
    console: _Console = request.app.state.console
    return console


def _secure(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


def _html(
    request: Request,
    template: str,
    user: ConsoleUser | None,
    *,
    status: int = HTTPStatus.OK,
    **context: Any,
) -> Response:
    page = _console(request).templates.get_template(template)
    body = page.render(user=user, who=_who(user), path=request.url.path, **context)
    return _secure(HTMLResponse(body, status_code=status))


def _who(user: ConsoleUser | None) -> str:
    if user is None:
        return ""
    return user.principal.subject


def _redirect(url: str) -> Response:
    return _secure(RedirectResponse(url, status_code=HTTPStatus.SEE_OTHER))


def _require(user: ConsoleUser, scope: Scope) -> None:
    if not user.may(scope):
        msg = f"this API token lacks the {scope.value!r} scope"
        raise AccessDeniedError(msg, policy_ids=(f"api-token-scope-{scope.value}",))


def current_user(request: Request) -> ConsoleUser:
    """Open the session cookie and verify its credential with the API's code."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise _LoginRequired
    sessions = _console(request).sessions
    try:
        opened = sessions.open(cookie)
        principal = get_runtime(request).authenticate(opened.credential)
    except IdentityError as exc:
        raise _LoginRequired from exc
    setattr(request.state, SUBJECT_STATE_KEY, principal.subject)  # for the access log
    return ConsoleUser(principal, sessions.csrf_token(opened.nonce))


def _page(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Render library errors as an HTML page with the API's status; no session → login."""

    @functools.wraps(handler)
    def _wrapped(*args: Any, **kwargs: Any) -> Response:
        request: Request = kwargs["request"]
        try:
            return handler(*args, **kwargs)
        except _LoginRequired:
            response = _redirect("/console/login")
            response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
            return response
        except MamoriError as exc:
            user = _user_or_none(request)
            return _html(
                request,
                "error.html",
                user,
                status=status_for(exc),
                message=exc.diagnostics(),
                policy_ids=exc.policy_ids if isinstance(exc, AccessDeniedError) else (),
            )

    return _wrapped


def _user_or_none(request: Request) -> ConsoleUser | None:
    try:
        return current_user(request)
    except _LoginRequired:
        return None


def _check_csrf(request: Request, user: ConsoleUser, token: str) -> None:
    if not token or not secrets.compare_digest(user.csrf, token):
        msg = "the form's CSRF token is missing or wrong; reload the page and try again"
        raise AccessDeniedError(msg, policy_ids=("console-csrf",))
    del request


# --- static and login ----------------------------------------------------------------------


@router.get("/static/console.css")
def stylesheet() -> Response:
    """The console's one stylesheet (the CSP allows no other style source)."""
    return _secure(FileResponse(STATIC / "console.css", media_type="text/css"))


@router.get("/login")
@_page
def login_form(request: Request) -> Response:
    """The sign-in form, with a fresh login CSRF value in a cookie and the form."""
    nonce = secrets.token_urlsafe(16)
    response = _html(
        request, "login.html", None, csrf=_console(request).sessions.csrf_token(nonce), error=""
    )
    _set_cookie(response, LOGIN_COOKIE, nonce, max_age=900)
    return response


def _set_cookie(response: Response, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


@router.post("/login")
@_page
def login(
    request: Request,
    credential: Annotated[str, Form(max_length=16 * 1024)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Verify an API token or a JWT exactly as the API does; on success open a session."""
    sessions = _console(request).sessions
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not sessions.csrf_ok(nonce, csrf):
        return _login_error(request, "The sign-in form expired; try again.", HTTPStatus.FORBIDDEN)
    try:
        principal = get_runtime(request).authenticate(credential.strip())
        cookie, opened = sessions.seal(credential.strip())
    except IdentityError as exc:
        return _login_error(request, f"Sign-in refused: {exc.diagnostics()}", 401)
    del principal, opened
    response = _redirect("/console")
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    _set_cookie(response, COOKIE, cookie, max_age=sessions.max_age_seconds)
    return response


def _login_error(request: Request, message: str, status: int) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = _html(
        request,
        "login.html",
        None,
        status=status,
        csrf=_console(request).sessions.csrf_token(nonce),
        error=message,
    )
    _set_cookie(response, LOGIN_COOKIE, nonce, max_age=900)
    return response


@router.post("/logout")
@_page
def logout(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    """End the session (the cookie is dropped; the credential itself stays valid)."""
    _check_csrf(request, current_user(request), csrf)
    response = _redirect("/console/login")
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


# --- summary -------------------------------------------------------------------------------


@router.get("")
@_page
def summary(request: Request) -> Response:
    """Counts by state, verdict, severity and source, and scans per day."""
    user = current_user(request)
    _require(user, Scope.READ)
    counts = get_runtime(request).lifecycle.summary(user.principal)
    severities = dict(counts.by_severity)
    ordered = [(s.name.lower(), severities.get(s.name.lower(), 0)) for s in reversed(Severity)]
    charts = [
        bar_chart("Artifacts by state", counts.by_state),
        bar_chart("Current scans by verdict", counts.by_verdict),
        bar_chart("Current scans by highest severity", ordered),
        bar_chart("Artifacts by source", counts.by_source),
        bar_chart(
            "Scans finished per day (UTC, last 14 days)",
            [(d.strftime("%m-%d"), n) for d, n in counts.scans_per_day],
        ),
    ]
    return _html(
        request,
        "summary.html",
        user,
        counts=counts,
        waiting=counts.count(ArtifactState.SAFE),
        blocked=counts.count(ArtifactState.UNSAFE) + counts.count(ArtifactState.REJECTED),
        quarantined=counts.count(ArtifactState.QUARANTINED),
        charts=charts,
    )


# --- inventory -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Filters:
    state: ArtifactState | None
    verdict: Verdict | None
    severity: Severity | None
    source: str | None

    def query(self) -> dict[str, str]:
        out = {
            "state": "" if self.state is None else self.state.value,
            "verdict": "" if self.verdict is None else self.verdict.value,
            "severity": "" if self.severity is None else self.severity.name.lower(),
            "source": self.source or "",
        }
        return {k: v for k, v in out.items() if v}


def _parse_filters(state: str, verdict: str, severity: str, source: str) -> _Filters:
    try:
        return _Filters(
            state=ArtifactState(state) if state else None,
            verdict=Verdict(verdict) if verdict else None,
            severity=Severity.parse(severity) if severity else None,
            source=source or None,
        )
    except ValueError as exc:
        msg = f"invalid filter: {printable(str(exc))}"
        raise ConfigError(msg) from exc


_Text = Annotated[str, Query(max_length=64)]


def _listing(
    request: Request, user: ConsoleUser, filters: _Filters, *, limit: int, offset: int
) -> tuple[tuple[ArtifactView, ...], int]:
    page = get_runtime(request).lifecycle.list_artifacts(
        user.principal,
        state=filters.state,
        verdict=filters.verdict,
        source=filters.source,
        min_severity=filters.severity,
        limit=limit,
        offset=offset,
    )
    return page.items, page.total


@router.get("/inventory")
@_page
def inventory(
    *,
    request: Request,
    state: _Text = "",
    verdict: _Text = "",
    severity: _Text = "",
    source: _Text = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    """Every artifact with its state, highest severity and last scan; filtered and paged."""
    user = current_user(request)
    _require(user, Scope.READ)
    filters = _parse_filters(state, verdict, severity, source)
    items, total = _listing(request, user, filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    return _html(
        request,
        "inventory.html",
        user,
        items=items,
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * PAGE_SIZE + 1 if items else 0,
        last=(page - 1) * PAGE_SIZE + len(items),
        filters=filters.query(),
        states=[s.value for s in ArtifactState],
        verdicts=[v.value for v in Verdict],
        severities=[s.name.lower() for s in reversed(Severity)],
    )


def _cell(value: str) -> str:
    text = printable(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_rows(request: Request, user: ConsoleUser, filters: _Filters) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "sha256",
            "state",
            "verdict",
            "max_severity",
            "format",
            "size",
            "names",
            "last_scan",
            "ruleset",
            "deployable",
        ]
    )
    offset = 0
    while offset < _CSV_CAP:
        items, _total = _listing(request, user, filters, limit=500, offset=offset)
        for item in items:
            scan = item.latest_scan
            writer.writerow(
                [
                    _cell(c)
                    for c in (
                        item.sha256,
                        item.state.value,
                        (scan.verdict or "") if scan else "",
                        (scan.max_severity or "") if scan else "",
                        item.format,
                        str(item.size),
                        " ".join(_binding(b.source, b.name, b.version) for b in item.bindings),
                        scan.finished_at.isoformat() if scan and scan.finished_at else "",
                        scan.ruleset_version if scan else "",
                        "yes" if item.deployable else "no",
                    )
                ]
            )
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(items) < 500:  # noqa: PLR2004 - the page size asked for
            return
        offset += 500


def _binding(source: str, name: str, version: str) -> str:
    return f"{source}:{name}" + (f"@{version}" if version else "")


@router.get("/inventory.csv")
@_page
def inventory_csv(
    request: Request,
    state: _Text = "",
    verdict: _Text = "",
    severity: _Text = "",
    source: _Text = "",
) -> Response:
    """The filtered inventory as CSV (at most 10,000 rows; formula cells neutralised)."""
    user = current_user(request)
    _require(user, Scope.READ)
    filters = _parse_filters(state, verdict, severity, source)
    body = "".join(_csv_rows(request, user, filters))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="mamori-inventory-{stamp}.csv"'},
    )
    return _secure(response)


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
@_page
def model_card(request: Request, sha256: Digest) -> Response:
    """One artifact: state, digest, names, gate answer, detections, files, decisions."""
    user = current_user(request)
    _require(user, Scope.READ)
    lifecycle = get_runtime(request).lifecycle
    view = lifecycle.view(user.principal, sha256)
    report: dict[str, Any] | None = None
    if view.latest_scan is not None and view.latest_scan.verdict is not None:
        report = lifecycle.scan_report(user.principal, sha256)
    findings, members = _findings(report)
    return _html(
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
@_page
def decide(
    request: Request,
    sha256: Digest,
    action: Annotated[str, Path(pattern="^(approve|reject)$")],
    csrf: Annotated[str, Form(max_length=128)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Approve or reject through the lifecycle (Cedar decides and audits, as on the API)."""
    user = current_user(request)
    _check_csrf(request, user, csrf)
    _require(user, Scope.DECIDE)
    decision = ApprovalDecision.APPROVED if action == "approve" else ApprovalDecision.REJECTED
    get_runtime(request).lifecycle.decide(user.principal, sha256, decision, reason=reason.strip())
    return _redirect(f"/console/artifacts/{sha256}")


# --- audit ---------------------------------------------------------------------------------


@router.get("/audit")
@_page
def audit(request: Request, page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> Response:
    """The audit chain newest first, paged, with the chain's verification status (admins)."""
    user = current_user(request)
    _require(user, Scope.ADMIN)
    runtime = get_runtime(request)
    head, _hash = audit_head(runtime.store)
    high = max(0, head - (page - 1) * PAGE_SIZE)
    low = max(0, high - PAGE_SIZE)
    # Authorized (admin, audited) before a record is read: a deny raises here.
    records = list(islice(runtime.lifecycle.audit(user.principal, after=low), high - low))
    try:
        verified, broken = verify_store_chain(runtime.store), ""
    except StoreError as exc:
        verified, broken = 0, exc.diagnostics()
    return _html(
        request,
        "audit.html",
        user,
        records=[(r, datetime.fromtimestamp(r.timestamp, UTC)) for r in reversed(records)],
        page=page,
        pages=max(1, -(-head // PAGE_SIZE)),
        head=head,
        verified=verified,
        broken=broken,
    )
