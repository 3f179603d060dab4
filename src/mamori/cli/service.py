"""``mamori serve``, ``token``, ``audit``, ``policy test`` and ``approve|reject|override``.

Thin over the library: each command parses options, calls :mod:`mamori.service` /
:mod:`mamori.lifecycle` / :mod:`mamori.identity`, prints, and exits with a named code.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
import tomllib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn

import typer

from mamori.cli.exitcodes import (
    EXIT_CHECK_FAILED,
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_NOTHING_TO_CHECK,
    EXIT_SAFE,
    STORE_EPILOG,
)
from mamori.errors import AccessDeniedError, ConfigError, IdentityError, MamoriError

if TYPE_CHECKING:
    # Start-up time: the store, the lifecycle (cedarpy, SQLAlchemy) and the settings
    # (pydantic-settings) are imported inside the commands that use them, so that
    # `mamori scan` does not pay for them.
    from mamori.config import Settings
    from mamori.identity.principal import Principal
    from mamori.lifecycle import Action, ArtifactFacts
    from mamori.store.models import ApprovalDecision

__all__ = [
    "DECIDE_EPILOG",
    "approve_command",
    "audit_app",
    "override_command",
    "policy_app",
    "reject_command",
    "serve_command",
    "token_app",
]

token_app = typer.Typer(help="Development JWTs and CI API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify and export the audit chain.", no_args_is_help=True)
policy_app = typer.Typer(help="Check the lifecycle policies.", no_args_is_help=True)

DECIDE_EPILOG = (
    f"Exit codes: {EXIT_SAFE} = done; {EXIT_DENIED} = the token was refused or the policies "
    f"denied it; {EXIT_ERROR} = error (unknown digest, no finished scan, bad configuration)."
)
_SCOPE_VALUES: Final = ("read", "scan", "gate", "decide", "admin", "authz")
"""The values of :class:`mamori.identity.apitokens.Scope` for --help (a test pins them): that
module imports SQLAlchemy, which `mamori --help` should not pay for."""
_CHECK_EPILOG = (
    f"Exit codes: {EXIT_SAFE} = passed; {EXIT_CHECK_FAILED} = failed (named on stderr); "
    f"{EXIT_ERROR} = could not check (unreadable file, bad configuration)."
)
_TOKEN_EPILOG = (
    f"Exit codes: {EXIT_SAFE} = done; {EXIT_DENIED} = the operator's credential was refused; "
    f"{EXIT_ERROR} = error (bad usage or configuration, store error, missing extra)."
)
_VERIFY_EPILOG = (
    f"Exit codes: {EXIT_SAFE} = the chain is intact; {EXIT_CHECK_FAILED} = the chain is broken "
    f"(named on stderr); {EXIT_ERROR} = could not check (bad anchors file, store error); "
    f"{EXIT_NOTHING_TO_CHECK} = no store where the configuration points (none is created)."
)


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    sys.stderr.write(f"mamori: {message}\n")
    raise typer.Exit(code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Library errors become one stderr line and a named exit code; never a traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except (IdentityError, AccessDeniedError) as exc:
        extra = ""
        if isinstance(exc, AccessDeniedError) and exc.policy_ids:
            extra = f" (policies: {', '.join(exc.policy_ids)})"
        _fail(f"denied: {exc.diagnostics()}{extra}", EXIT_DENIED)
    except MamoriError as exc:
        _fail(f"error: {exc.diagnostics()}")
    except OSError as exc:
        _fail(f"error: {exc.strerror or exc}")


def _settings(**overrides: Any) -> Settings:
    from mamori.config import load_settings  # noqa: PLC0415 -- lazy: pydantic-settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


# --- serve -----------------------------------------------------------------------------------


def _quiet_server() -> type[Any]:
    import uvicorn  # noqa: PLC0415 - only the server needs it

    class QuietServer(uvicorn.Server):
        """A uvicorn server whose Ctrl-C ends in a clean exit.

        After its graceful shutdown uvicorn re-raises the signal it caught, so the asyncio
        runner dies with KeyboardInterrupt and prints a cancelled-lifespan traceback. The
        shutdown already happened; forgetting the signal lets ``mamori serve`` exit 0.
        """

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return QuietServer


def serve_command(
    host: Annotated[str | None, typer.Option(help="Listen address (MAMORI_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (MAMORI_PORT).")] = None,
    scans: Annotated[
        str,
        typer.Option(
            help="Where scans run: auto (the job queue when installed), queue, or inline "
            "(a thread in this process)."
        ),
    ] = "auto",
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from mamori.service import ScanMode, create_app  # noqa: PLC0415 - heavy imports
    from mamori.service.observe import configure_logging  # noqa: PLC0415

    with _errors():
        try:
            mode = ScanMode(scans)
        except ValueError:
            _fail(f"--scans: expected auto, queue or inline, not {scans!r}")
        settings = _settings(host=host, port=port)
        configure_logging()
        app = create_app(settings, scan_mode=mode)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, access_log=False, log_level="warning"
        )
        _quiet_server()(config).run()


# --- tokens ----------------------------------------------------------------------------------


@token_app.command("mint", epilog=_TOKEN_EPILOG)
def token_mint(
    roles: Annotated[list[str], typer.Option("--role", help="A role; repeat for more.")],
    subject: Annotated[str | None, typer.Option(help="The sub claim.")] = None,
    mfa: Annotated[bool, typer.Option("--mfa/--no-mfa", help="Assert MFA (amr).")] = True,
    ttl: Annotated[int, typer.Option(min=1, max=86400, help="Lifetime in seconds.")] = 3600,
) -> None:
    """Print a JWT from the local development issuer (MAMORI_DEV_ISSUER must be on)."""
    from mamori.service.runtime import dev_issuer  # noqa: PLC0415

    with _errors():
        settings = _settings()
        if not settings.dev_issuer:
            _fail("the development issuer is off (MAMORI_DEV_ISSUER=false)")
        methods = ["pwd", settings.mfa_value] if mfa else ["pwd"]
        token = dev_issuer(settings).mint(
            subject or f"dev-{roles[0]}",
            roles=roles,
            ttl_seconds=ttl,
            claims={settings.mfa_claim: methods},
        )
    typer.echo(token)


def _token_store(settings: Settings) -> Any:
    from mamori.store import Store  # noqa: PLC0415
    from mamori.store.apitokens import ApiTokens  # noqa: PLC0415

    store = Store(settings.resolved_database_url)
    store.migrate()
    return ApiTokens(store)


def _operator() -> str:
    try:
        return f"mamori|cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "mamori|cli"


@token_app.command("create", epilog=_TOKEN_EPILOG)
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for, e.g. ci-deploy.")],
    scopes: Annotated[
        list[str], typer.Option("--scope", help=f"One of {', '.join(_SCOPE_VALUES)}.")
    ],
    roles: Annotated[list[str] | None, typer.Option("--role", help="A role; repeat.")] = None,
    subject: Annotated[str | None, typer.Option(help="Default: ci:<name>.")] = None,
    ttl: Annotated[int | None, typer.Option(min=1, help="Lifetime in seconds.")] = None,
) -> None:
    """Create an API token directly in the store; prints the secret once."""
    from mamori.identity.apitokens import Scope  # noqa: PLC0415 -- lazy: SQLAlchemy

    with _errors():
        try:
            parsed = [Scope(s) for s in scopes]
        except ValueError as exc:
            _fail(f"--scope: {exc}")
        issued = _token_store(_settings()).create(
            name=name,
            subject=subject or f"ci:{name}",
            roles=roles or [],
            scopes=parsed,
            created_by=_operator(),
            ttl_seconds=ttl,
        )
    sys.stderr.write(f"api token {issued.info.id} ({name}); the secret is shown only now:\n")
    typer.echo(issued.secret)


@token_app.command("revoke", epilog=_TOKEN_EPILOG)
def token_revoke(token_id: Annotated[int, typer.Argument(help="The token's id.")]) -> None:
    """Revoke an API token; it is refused from the next request on."""
    with _errors():
        info = _token_store(_settings()).revoke(token_id, by=_operator())
    typer.echo(f"revoked api token {info.id} ({info.name})")


@token_app.command("list", epilog=_TOKEN_EPILOG)
def token_list() -> None:
    """List API tokens (never their secrets)."""
    with _errors():
        tokens = _token_store(_settings()).list()
    for t in tokens:
        status = "revoked" if t.revoked_at else "active"
        typer.echo(
            f"{t.id}\t{t.name}\t{t.subject}\t{','.join(t.roles)}\t"
            f"{','.join(s.value for s in t.scopes)}\t{status}"
        )


# --- audit -----------------------------------------------------------------------------------


def _existing_store(settings: Settings) -> Any:
    """The store as it is, never created or migrated: a check of nothing must not pass.

    ``audit verify`` in a directory without a store used to create an empty one and report
    "intact: 0 records"; now it names where it looked and exits
    :data:`~mamori.cli.exitcodes.EXIT_NOTHING_TO_CHECK`.
    """
    from sqlalchemy import inspect  # noqa: PLC0415 -- lazy: SQLAlchemy
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from mamori.store import Store  # noqa: PLC0415

    url = settings.resolved_database_url
    hint = "set MAMORI_DATA_DIR or MAMORI_DATABASE_URL, or run from the directory that has it"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in {"", ":memory:"} or not Path(database).is_file():
            _fail(f"error: no mamori store at {database or url!r}; {hint}", EXIT_NOTHING_TO_CHECK)
    store = Store(url)
    try:
        tables = set(inspect(store.engine).get_table_names())
    except SQLAlchemyError as exc:
        store.dispose()
        _fail(f"error: cannot open the store: {type(exc).__name__}")
    if "audit_log" not in tables:
        store.dispose()
        where = parsed.render_as_string(hide_password=True)
        _fail(
            f"error: no mamori store (no audit table) at {where!r}; {hint}", EXIT_NOTHING_TO_CHECK
        )
    return store


def _anchors(path: Path) -> dict[int, str]:
    """``mamori audit head`` lines, one JSON object per line."""
    anchors: dict[int, str] = {}
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        msg = f"{path}: cannot read the anchors file: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            seq, digest = int(entry["seq"]), str(entry["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"{path}:{number}: expected a 'mamori audit head' line"
            raise ConfigError(msg) from exc
        if anchors.setdefault(seq, digest) != digest:
            msg = f"{path}:{number}: two different hashes anchored for record {seq}"
            raise ConfigError(msg)
    return anchors


@audit_app.command("head", epilog=STORE_EPILOG)
def audit_head_command() -> None:
    """Print the newest record's sequence number and hash as one JSON line.

    Append it to somewhere the database's writers cannot rewrite (a WORM bucket, a ticket, a
    log shipper); `mamori audit verify --anchors FILE` then proves the chain was not rewritten
    wholesale.
    """
    from mamori.store.auditlog import audit_head  # noqa: PLC0415

    with _errors():
        seq, digest = audit_head(_existing_store(_settings()))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    typer.echo(json.dumps({"seq": seq, "hash": digest, "at": stamp}))


@audit_app.command("verify", epilog=_VERIFY_EPILOG)
def audit_verify(
    anchors: Annotated[
        Path | None,
        typer.Option(help="'mamori audit head' lines kept outside the database to check too."),
    ] = None,
) -> None:
    """Check every link and hash of the audit chain in the store (and any anchors)."""
    from mamori.errors import StoreError  # noqa: PLC0415
    from mamori.store.auditlog import verify_store_chain  # noqa: PLC0415

    with _errors():
        expected = {} if anchors is None else _anchors(anchors)
        store = _existing_store(_settings())
        try:
            count = verify_store_chain(store, expected)
        except StoreError as exc:
            if "audit" not in str(exc):
                raise
            _fail(f"audit chain BROKEN: {exc.diagnostics()}", EXIT_CHECK_FAILED)
    typer.echo(f"audit chain intact: {count} records")


@audit_app.command("export", epilog=STORE_EPILOG)
def audit_export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout.")] = None,
    after: Annotated[int, typer.Option(min=0, help="Only records after this seq.")] = 0,
) -> None:
    """Write the audit records as JSON lines (one canonical record per line)."""
    from mamori.audit.chain import canonical_json  # noqa: PLC0415
    from mamori.store.auditlog import iter_audit  # noqa: PLC0415

    with _errors():
        store = _existing_store(_settings())
        with contextlib.ExitStack() as stack:
            out = sys.stdout if output is None else stack.enter_context(output.open("w"))
            for record in iter_audit(store, after=after):
                out.write(canonical_json(record) + "\n")


# --- policy test -----------------------------------------------------------------------------


def _load_cases(path: Path) -> list[Mapping[str, Any]]:
    try:
        text = path.read_text("utf-8")
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot read the policy test file: {exc}"
        raise ConfigError(msg) from exc
    cases = data.get("case") if isinstance(data, dict) else data
    if not isinstance(cases, list) or not cases or not all(isinstance(c, dict) for c in cases):
        msg = f"{path}: expected a non-empty list of [[case]] tables"
        raise ConfigError(msg)
    return cases


def _case(
    index: int, case: Mapping[str, Any]
) -> tuple[str, Principal, Action, ArtifactFacts | None, str, bool]:
    from mamori.identity.principal import Principal  # noqa: PLC0415 -- lazy (start-up time)
    from mamori.lifecycle import Action, ArtifactFacts  # noqa: PLC0415 -- lazy: cedarpy

    where = f"case {index} ({case.get('name', 'unnamed')})"
    try:
        who = case["principal"]
        principal = Principal(
            subject=str(who["subject"]),
            issuer=str(who.get("issuer", "policy-test")),
            tenant="",
            roles=frozenset(str(r) for r in who.get("roles", [])),
            attributes=MappingProxyType({"mfa": "true" if who.get("mfa") else "false"}),
        )
        action = Action(case["action"])
        res = case.get("resource")
        facts = None
        if res is not None:
            facts = ArtifactFacts(
                sha256=str(res.get("sha256", "0" * 64)),
                imported_by=str(res.get("imported_by", "")),
                state=str(res.get("state", "safe")),
                verdict=str(res.get("verdict", "safe")),
                deployable=bool(res.get("deployable", False)),
            )
        expect = str(case["expect"]).lower()
        if expect not in {"allow", "deny"}:
            msg = f"expect must be allow or deny, not {expect!r}"
            raise ValueError(msg)  # noqa: TRY301
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"{where}: {exc}"
        raise ConfigError(msg) from exc
    return where, principal, action, facts, str(case.get("reason", "")), expect == "allow"


@policy_app.command("test", epilog=_CHECK_EPILOG)
def policy_test(
    file: Annotated[
        Path,
        typer.Argument(help="TOML file of case tables (or JSON: a list of the same objects)."),
    ],
) -> None:
    """Evaluate example requests against the configured lifecycle policies.

    One TOML table per case:

    \b
      \\[\\[case]]
      name = "an approver with MFA may approve"
      principal = { subject = "alice", roles = \\["approver"], mfa = true }
      action = "approve"
      resource = { imported_by = "ivan", state = "safe", verdict = "safe" }
      expect = "allow"

    action: view, scan, import, approve, reject, override, deploy, invoke or admin.
    resource (optional): imported_by, state, verdict, deployable, sha256.
    reason (optional): the written reason an override carries. expect: allow or deny.
    """  # noqa: D301 -- "\b" is click's do-not-rewrap marker, and "\\[" escapes rich markup
    from mamori.lifecycle import LifecycleAuthorizer  # noqa: PLC0415
    from mamori.lifecycle.factory import load_lifecycle_policies  # noqa: PLC0415

    with _errors():
        authz = LifecycleAuthorizer(load_lifecycle_policies(_settings()))
        cases = [_case(i, c) for i, c in enumerate(_load_cases(file), start=1)]
    failed = 0
    for where, principal, action, facts, reason, expected in cases:
        decision = authz.decide(principal, action, facts, reason=reason)
        ok = decision.allowed == expected
        failed += not ok
        mark = "ok  " if ok else "FAIL"
        ids = ", ".join(decision.policy_ids) or "-"
        typer.echo(f"{mark} {where}: {decision.effect.value} by [{ids}] ({decision.reason})")
    typer.echo(f"{len(cases) - failed}/{len(cases)} cases as expected")
    if failed:
        raise typer.Exit(EXIT_CHECK_FAILED)


# --- decisions -------------------------------------------------------------------------------


def _decide(digest: str, decision: ApprovalDecision, reason: str, token: str | None) -> None:
    from mamori.service.runtime import build_runtime  # noqa: PLC0415

    with _errors():
        if not token:
            _fail("no token: pass --token or set MAMORI_TOKEN", EXIT_DENIED)
        runtime = build_runtime(_settings())
        try:
            # Verified exactly as the API verifies a bearer token.
            principal = runtime.authenticate(token)
            view = runtime.lifecycle.decide(principal, digest, decision, reason=reason.strip())
        finally:
            runtime.close()
    typer.echo(f"{view.sha256}: {view.state.value} ({view.state_reason})")


_Token = Annotated[
    str | None, typer.Option(envvar="MAMORI_TOKEN", help="Bearer token (JWT or API token).")
]
_Digest = Annotated[str, typer.Argument(help="SHA-256 of the artifact.")]


def approve_command(
    digest: _Digest,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "",
    token: _Token = None,
) -> None:
    """Approve a SAFE artifact (approver role, MFA, not its importer)."""
    from mamori.store.models import ApprovalDecision  # noqa: PLC0415 -- lazy: SQLAlchemy

    _decide(digest, ApprovalDecision.APPROVED, reason, token)


def reject_command(
    digest: _Digest,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "",
    token: _Token = None,
) -> None:
    """Reject an artifact; it is never deployable afterwards."""
    from mamori.store.models import ApprovalDecision  # noqa: PLC0415 -- lazy: SQLAlchemy

    _decide(digest, ApprovalDecision.REJECTED, reason, token)


def override_command(
    digest: _Digest,
    reason: Annotated[str, typer.Option(help="Required: why an UNSAFE verdict is accepted.")] = "",
    token: _Token = None,
) -> None:
    """Approve an UNSAFE artifact (admin, MFA, not its importer, with a reason)."""
    from mamori.store.models import ApprovalDecision  # noqa: PLC0415 -- lazy: SQLAlchemy

    _decide(digest, ApprovalDecision.OVERRIDE, reason, token)
