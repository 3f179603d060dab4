"""``mamori pull org/name[@revision]``: a quarantined Hugging Face download, thin over the library.

Identity: the pull runs as the holder of ``--token`` / ``MAMORI_TOKEN`` (a JWT or an API token,
verified exactly as the API verifies a bearer token) and needs the ``importer`` role. Locally,
``mamori token mint --role importer`` gives one from the development issuer.
"""

from __future__ import annotations

import enum
import json
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from mamori.cli._progress import byte_progress
from mamori.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_DENIED, EXIT_ERROR, EXIT_SAFE
from mamori.errors import AccessDeniedError, IdentityError, MamoriError
from mamori.scan.report.text import printable

if TYPE_CHECKING:
    from mamori.lifecycle.hf import PullResult

__all__ = ["PULL_EPILOG", "PullFormat", "pull_command"]

PULL_EPILOG = (
    f"Exit codes: {EXIT_SAFE} = every file verified, SAFE and released into the HF cache; "
    f"{EXIT_CHECK_FAILED} = refused (policy, digest mismatch) or UNSAFE: kept in quarantine; "
    f"{EXIT_ERROR} = error (hub unreachable, bad repo id, bad configuration); "
    f"{EXIT_DENIED} = the token was refused or the policies denied the import."
)


class PullFormat(enum.StrEnum):
    """How ``mamori pull`` prints its result."""

    TEXT = "text"
    JSON = "json"


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"mamori pull: {message}\n")
    raise typer.Exit(code)


def pull_command(
    target: Annotated[
        str,
        typer.Argument(
            help="org/name or org/name@revision (a branch, tag or commit sha; default main)."
        ),
    ],
    allow_remote_code: Annotated[
        bool,
        typer.Option(
            "--allow-remote-code",
            help="Also pull the .py files a config's auto_map names (trust_remote_code). "
            "Only honoured when the revision is a full 40-hex commit sha.",
        ),
    ] = False,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Glob of repo paths to leave out; repeat for more."),
    ] = None,
    output_format: Annotated[
        PullFormat, typer.Option("--format", help="text or json.")
    ] = PullFormat.TEXT,
    token: Annotated[
        str | None, typer.Option(envvar="MAMORI_TOKEN", help="Bearer token (JWT or API token).")
    ] = None,
) -> None:
    """Download a Hugging Face repo into quarantine, verify and scan it; release it if SAFE."""
    from mamori.config import load_settings  # noqa: PLC0415 - pydantic-settings; start-up time
    from mamori.lifecycle.hf import PullPolicy, pull  # noqa: PLC0415 - keeps `mamori --help` fast
    from mamori.service.runtime import build_runtime  # noqa: PLC0415

    repo_id, _, revision = target.partition("@")
    if not token:
        _fail("no token: pass --token or set MAMORI_TOKEN (mamori token mint)", EXIT_DENIED)
    try:
        settings = load_settings()
        runtime = build_runtime(settings)
        try:
            principal = runtime.authenticate(token)
            policy = PullPolicy.from_settings(
                settings, allow_remote_code=allow_remote_code, exclude=exclude or ()
            )
            with byte_progress() as bar:
                task = bar.add_task(f"pull {printable(target)}", total=None)

                def advance(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = pull(
                    runtime.lifecycle,
                    principal,
                    repo_id,
                    revision or "main",
                    settings=settings,
                    policy=policy,
                    progress=None if bar.disable else advance,
                )
        finally:
            runtime.close()
    except (IdentityError, AccessDeniedError) as exc:
        _fail(f"denied: {exc.diagnostics()}", EXIT_DENIED)
    except MamoriError as exc:
        _fail(f"error: {exc.diagnostics()}", EXIT_ERROR)
    except OSError as exc:
        _fail(f"error: {exc.strerror or exc}", EXIT_ERROR)
    if output_format is PullFormat.JSON:
        typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        _print_text(result)
    raise typer.Exit(EXIT_SAFE if result.released else EXIT_CHECK_FAILED)


def _print_text(result: PullResult) -> None:
    """The pull result as lines of text: outcome, each file, where it went."""
    typer.echo(f"{result.uri} ({result.revision}): {result.outcome.value}")
    for f in result.files:
        why = f" - {f.reason}" if f.reason else ""
        typer.echo(f"  {f.status.value:<14} {f.path} ({f.size} bytes){why}")
    if result.snapshot_dir is not None:
        typer.echo(f"released: {result.snapshot_dir}")
    for entry in result.removed:
        typer.echo(f"  removed unscanned snapshot entry: {entry}")
    typer.echo(f"quarantine: {result.quarantine_dir}")
    if result.report_path is not None:
        typer.echo(f"report: {result.report_path}")
