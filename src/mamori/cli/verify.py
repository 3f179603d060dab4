"""``mamori verify TARGET``: hash the bytes a consumer would load, ask the gate for exactly those.

Run it in a deploy step or a serving container right before the model is loaded. The gate is
asked over HTTP when ``MAMORI_GATE_URL`` and ``MAMORI_GATE_TOKEN`` (a ``gate``-scoped API
token) are set, else in process from the configured store.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from mamori.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_SAFE
from mamori.errors import MamoriError

if TYPE_CHECKING:
    from mamori.config import Settings
    from mamori.lifecycle.verify import Gate

__all__ = ["VERIFY_EPILOG", "open_gate", "verify_command"]

VERIFY_EPILOG = (
    f"Exit codes: {EXIT_SAFE} = every file read is deployable (and, for a registry source, "
    f"exactly the bound manifest); {EXIT_CHECK_FAILED} = not deployable (the reason is "
    f"printed); {EXIT_ERROR} = no answer (bad target, unreadable files, registry or gate "
    "unreachable)."
)

_err = Console(stderr=True)


@contextlib.contextmanager
def open_gate(settings: Settings) -> Iterator[Gate]:
    """The gate over HTTP when ``gate_url`` and ``gate_token`` are set, else the store's."""
    from mamori.lifecycle.verify import HttpGate, StoreGate  # noqa: PLC0415 - start-up time

    if settings.gate_url and settings.gate_token is not None:
        remote = HttpGate(settings.gate_url, settings.gate_token.get_secret_value())
        try:
            yield remote
        finally:
            remote.close()
        return
    from mamori.lifecycle.factory import build_lifecycle  # noqa: PLC0415

    yield StoreGate(build_lifecycle(settings))


class VerifyFormat(enum.StrEnum):
    """Output formats of ``mamori verify``."""

    TEXT = "text"
    JSON = "json"


def verify_command(
    target: Annotated[
        str,
        typer.Argument(
            help="models:/NAME@ALIAS, models:/NAME/VERSION, hf://org/repo@rev or a path."
        ),
    ],
    output_format: Annotated[
        VerifyFormat, typer.Option("--format", help="Output format.")
    ] = VerifyFormat.TEXT,
) -> None:
    """Hash what would be loaded and ask the gate; exit 0 only if it is deployable."""
    try:
        from mamori.config import load_settings  # noqa: PLC0415 - start-up time
        from mamori.lifecycle.verify import verify  # noqa: PLC0415

        settings = load_settings()
        with open_gate(settings) as gate:
            result = verify(gate, target, settings=settings)
    except (MamoriError, ImportError) as exc:
        text = exc.diagnostics() if isinstance(exc, MamoriError) else str(exc)
        _err.print(f"mamori verify: {text}")
        raise typer.Exit(EXIT_ERROR) from exc
    if output_format is VerifyFormat.JSON:
        document = {
            "target": result.target,
            "deployable": result.deployable,
            "reason": result.reason,
            "files": [
                {
                    "path": f.path,
                    "size": f.size,
                    "sha256": f.sha256,
                    "allowed": f.allowed,
                    "reason": f.reason,
                }
                for f in result.files
            ],
        }
        typer.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        verdict = "deployable" if result.deployable else "NOT deployable"
        typer.echo(f"{result.target}: {verdict}: {result.reason}")
        for f in result.files:
            mark = "ok  " if f.allowed else "DENY"
            typer.echo(f"  {mark} {f.sha256[:12]} {f.path} ({f.size} bytes) {f.reason}")
    raise typer.Exit(EXIT_SAFE if result.deployable else EXIT_CHECK_FAILED)
