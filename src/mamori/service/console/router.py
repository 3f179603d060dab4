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
import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from itertools import chain
from typing import Annotated, Final

import anyio.to_thread
from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from mamori.errors import AccessDeniedError, ConfigError, IdentityError, MamoriError
from mamori.findings import Severity, Verdict
from mamori.identity.apitokens import Scope
from mamori.identity.principal import Principal
from mamori.lifecycle import Action, ArtifactView
from mamori.service.auth import (
    authorize_system,
    get_runtime,
)
from mamori.service.console import artifacts
from mamori.service.console.charts import bar_chart
from mamori.service.console.render import STATIC, environment
from mamori.service.console.session import COOKIE, LOGIN_COOKIE, ConsoleSessions
from mamori.service.console.web import (
    ConsoleState,
    ConsoleUser,
    LoginRequiredError,
    check_csrf,
    console_router,
    console_state,
    current_user,
    html,
    html_errors,
    redirect,
    require_scope,
    secure,
    user_or_none,
)
from mamori.service.problems import status_for
from mamori.service.refusals import RefusalLog, RefusalReason
from mamori.service.upload import receive_blob
from mamori.store.models import ArtifactState
from mamori.text import printable

__all__ = ["PAGE_SIZE", "install_console", "router"]

PAGE_SIZE: Final = 50
_CSV_CAP: Final = 10_000
# OWASP CSV injection: a cell starting with one of these is a formula in spreadsheet programs.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")

router = console_router()


def install_console(app: FastAPI) -> None:
    """Mount the console on ``app`` (its session key lives in the data directory)."""
    settings = app.state.runtime.settings
    app.state.console = ConsoleState(ConsoleSessions.from_dir(settings.data_dir), environment())
    app.include_router(router)
    app.include_router(artifacts.router)


# --- static and login ----------------------------------------------------------------------


@router.get("/static/console.css")
def stylesheet() -> Response:
    """The console's one stylesheet (the CSP allows no other style source)."""
    return secure(FileResponse(STATIC / "console.css", media_type="text/css"))


@router.get("/login")
@html_errors
def login_form(request: Request) -> Response:
    """The sign-in form, with a fresh login CSRF value in a cookie and the form."""
    nonce = secrets.token_urlsafe(16)
    response = html(
        request,
        "login.html",
        None,
        csrf=console_state(request).sessions.csrf_token(nonce),
        error="",
    )
    _set_cookie(response, LOGIN_COOKIE, nonce, max_age=900)
    return response


def _set_cookie(response: Response, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


@router.post("/login")
@html_errors
def login(
    request: Request,
    credential: Annotated[str, Form(max_length=16 * 1024)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Verify an API token or a JWT exactly as the API does; on success open a session."""
    sessions = console_state(request).sessions
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not sessions.csrf_ok(nonce, csrf):
        return _login_error(request, "The sign-in form expired; try again.", HTTPStatus.FORBIDDEN)
    runtime = get_runtime(request)
    try:
        runtime.authenticate(credential.strip())
        cookie, _opened = sessions.seal(credential.strip())
    except IdentityError as exc:
        _record_refusal(request, exc)
        return _login_error(request, f"Sign-in refused: {exc.diagnostics()}", 401)
    response = redirect("/console")
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    _set_cookie(response, COOKIE, cookie, max_age=sessions.max_age_seconds)
    return response


def _record_refusal(request: Request, exc: IdentityError) -> None:
    """Count and audit (rate-limited) a refused sign-in, as the API does for a bad token."""
    refusals: RefusalLog | None = getattr(request.app.state, "refusals", None)
    if refusals is None:
        return
    peer = request.client.host if request.client is not None else None
    address = get_runtime(request).network.client(peer, request.headers.getlist("x-forwarded-for"))
    refusals.record(
        RefusalReason.UNAUTHENTICATED,
        source=str(address) if address is not None else "unknown",
        group="console",
        detail=exc.diagnostics(),
    )


def _login_error(request: Request, message: str, status: int) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = html(
        request,
        "login.html",
        None,
        status=status,
        csrf=console_state(request).sessions.csrf_token(nonce),
        error=message,
    )
    _set_cookie(response, LOGIN_COOKIE, nonce, max_age=900)
    return response


@router.post("/logout")
@html_errors
def logout(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    """End the session (the cookie is dropped; the credential itself stays valid)."""
    check_csrf(request, current_user(request), csrf)
    response = redirect("/console/login")
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


# --- summary -------------------------------------------------------------------------------


@router.get("")
@html_errors
def summary(request: Request) -> Response:
    """Counts by state, verdict, severity and source, and scans per day."""
    user = current_user(request)
    require_scope(user, Scope.READ)
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
    return html(
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
@html_errors
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
    require_scope(user, Scope.READ)
    filters = _parse_filters(state, verdict, severity, source)
    items, total = _listing(request, user, filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    return html(
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
@html_errors
def inventory_csv(
    request: Request,
    state: _Text = "",
    verdict: _Text = "",
    severity: _Text = "",
    source: _Text = "",
) -> Response:
    """The filtered inventory as CSV (at most 10,000 rows; formula cells neutralised)."""
    user = current_user(request)
    require_scope(user, Scope.READ)
    filters = _parse_filters(state, verdict, severity, source)
    rows = _csv_rows(request, user, filters)
    # The first page is read here, so a deny is an error page and not a 200 that breaks off;
    # the rest streams, a page of 500 at a time.
    first = next(rows)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = StreamingResponse(
        chain([first], rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="mamori-inventory-{stamp}.csv"'},
    )
    return secure(response)


# --- upload --------------------------------------------------------------------------------


@router.post("/upload")
async def upload(request: Request, csrf: Annotated[str, Query(max_length=128)] = "") -> Response:
    """Quarantine a file posted from the inventory page and open its model card.

    The CSRF token travels in the form's action URL: it must be checked before the body is
    read, and the body is a stream of file bytes that is never parsed for other fields.
    Referrer-Policy: no-referrer keeps that URL from leaking to other sites.
    """
    runtime = get_runtime(request)

    def _admit() -> Principal:
        user = current_user(request)
        check_csrf(request, user, csrf)
        require_scope(user, Scope.SCAN)
        authorize_system(runtime, user.principal, Action.IMPORT)
        return user.principal

    try:
        principal = await anyio.to_thread.run_sync(_admit)
        uploaded = await receive_blob(
            request, runtime.blobs, max_bytes=runtime.settings.max_upload_bytes
        )
        view = await anyio.to_thread.run_sync(
            lambda: runtime.lifecycle.register(
                principal, uploaded.blob, source="upload", name=uploaded.filename or "upload"
            )
        )
    except LoginRequiredError:
        return redirect("/console/login")
    except MamoriError as exc:
        user = await anyio.to_thread.run_sync(user_or_none, request)
        return html(
            request,
            "error.html",
            user,
            status=status_for(exc),
            message=exc.diagnostics(),
            policy_ids=exc.policy_ids if isinstance(exc, AccessDeniedError) else (),
        )
    return redirect(f"/console/artifacts/{view.sha256}")
