"""``mamori mlflow connect|sweep``: wire MLflow's webhooks to mamori; reconcile the registry.

MLflow credentials come from MLflow's own ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``; the
tracking URI and the webhook secret from ``MAMORI_MLFLOW_TRACKING_URI`` and
``MAMORI_MLFLOW_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from types import MappingProxyType
from typing import Annotated, Final, NoReturn

import typer
from rich.console import Console

from mamori.cli._extras import exit_missing_extra
from mamori.cli._progress import count_progress
from mamori.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_SAFE
from mamori.errors import ConfigError, MamoriError

__all__ = ["mlflow_app"]

_EPILOG = (
    f"Exit codes: {EXIT_SAFE} = done; {EXIT_CHECK_FAILED} = a test delivery failed (connect) or "
    f"a protected alias points at a version mamori does not allow (sweep); {EXIT_ERROR} = error "
    "(MLflow unreachable or refusing, bad configuration)."
)

mlflow_app = typer.Typer(help="The MLflow integration.", no_args_is_help=True)
_err = Console(stderr=True)

# MLflow's own defaults (120 s per request, 7 retries with exponential backoff) made `connect`
# and `sweep` hang for minutes against an unreachable server. These are MLflow's variables, so
# an operator who sets them keeps their values (`bounded_http`).
_HTTP_DEFAULTS: Final = MappingProxyType(
    {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
)


@contextlib.contextmanager
def _bounded() -> Iterator[None]:
    # Lazy: the lifecycle package needs the [mlflow] extra, whose absence _errors reports.
    from mamori.lifecycle.mlflow.http import bounded_http  # noqa: PLC0415

    with bounded_http(_HTTP_DEFAULTS):
        yield


_OUTBOUND_MODULES: Final = ("mlflow", "requests", "urllib3")
_USERINFO: Final = re.compile(r"(\w+://)[^/@\s]+@")


@contextlib.contextmanager
def _errors(command: str) -> Iterator[None]:
    """One line and exit 2 for every way the MLflow server can fail us; never a traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except ModuleNotFoundError as exc:
        exit_missing_extra(exc, "mlflow")
    except (MamoriError, ImportError) as exc:
        text = exc.diagnostics() if isinstance(exc, MamoriError) else str(exc)
        _fail(f"mamori mlflow {command}: {text}")
    except Exception as exc:
        # MlflowException and requests' errors name the URL; anything else is a bug.
        if not type(exc).__module__.startswith(_OUTBOUND_MODULES):
            raise
        _fail(f"mamori mlflow {command}: MLflow request failed: {exc}")


def _fail(message: str) -> NoReturn:
    # One line, and never the password of a tracking URI written as http://user:pw@host.
    line = _USERINFO.sub(r"\1***@", " ".join(message.split()))
    sys.stderr.write(line + "\n")
    raise typer.Exit(EXIT_ERROR)


@mlflow_app.command("connect", epilog=_EPILOG)
def connect_command(
    url: Annotated[
        str, typer.Option(help="mamori's webhook URL as MLflow reaches it (…/v1/hooks/mlflow).")
    ],
    encryption_key_fixed: Annotated[
        bool,
        typer.Option(help="Confirm MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY is fixed on the server."),
    ] = False,
) -> None:
    """Create or update the 'mamori' webhook (admin credentials) and test every event."""
    with _errors("connect"), _bounded():
        from mamori.config import load_settings  # noqa: PLC0415 - pydantic-settings; start-up time
        from mamori.lifecycle.mlflow.connect import connect  # noqa: PLC0415

        settings = load_settings()
        # Only now: importing mamori.lifecycle.mlflow above turned MLflow's telemetry off,
        # and MLflow decides whether to start reporting when it is first imported.
        from mlflow.tracking import MlflowClient  # noqa: PLC0415 - optional extra

        if not settings.mlflow_tracking_uri or settings.mlflow_webhook_secret is None:
            raise ConfigError("set MAMORI_MLFLOW_TRACKING_URI and MAMORI_MLFLOW_WEBHOOK_SECRET")
        result = connect(
            MlflowClient(
                tracking_uri=settings.mlflow_tracking_uri,
                # Named, so a process-wide MLFLOW_REGISTRY_URI never picks the registry.
                registry_uri=settings.mlflow_tracking_uri,
            ),
            url=url,
            secret=settings.mlflow_webhook_secret.get_secret_value(),
            encryption_key_fixed=encryption_key_fixed,
        )
    verb = "created" if result.created else "updated"
    typer.echo(f"webhook {result.webhook_id} {verb}")
    for event, success, detail in result.tests:
        typer.echo(f"  test {event}: {'ok' if success else 'FAILED'} ({detail})")
    for warning in result.warnings:
        _err.print(f"warning: {warning}")
    if not result.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


@mlflow_app.command("sweep", epilog=_EPILOG)
def sweep_command(
    rescan: Annotated[
        bool, typer.Option(help="Re-download every version (detects changed artifacts).")
    ] = False,
) -> None:
    """Resolve every version mamori has not bound and check every protected alias, now.

    Scans are queued for the workers (``mamori worker``).
    """
    with _errors("sweep"), _bounded():
        from mamori.config import load_settings  # noqa: PLC0415 - pydantic-settings; start-up time
        from mamori.lifecycle.mlflow.events import build_integration  # noqa: PLC0415
        from mamori.lifecycle.queue import make_queue  # noqa: PLC0415 - optional extra

        settings = load_settings()
        queue = make_queue(settings)
        with count_progress() as bar:
            task = bar.add_task("sweep: versions resolved", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = build_integration(settings, queue.lifecycle()).sweep(
                rescan=rescan, progress=None if bar.disable else advance
            )
    typer.echo(
        f"{report.versions} version(s); resolved {report.resolved}, failed {report.failed}; "
        f"{report.protected_checked} protected target(s), {report.protected_denied} denied, "
        f"{report.drifted} re-hashed version(s) changed; "
        f"{report.tags_written} tag(s) mirrored"
    )
    if report.protected_denied:
        raise typer.Exit(EXIT_CHECK_FAILED)
