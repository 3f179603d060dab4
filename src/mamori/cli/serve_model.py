"""``mamori serve-model MODEL``: verify the exact bytes with the gate, then serve them sandboxed.

The model (and every file beside it) is copied into a private directory, hashed and checked
with the gate exactly like ``mamori verify``; only then does the sandboxed loader start on
that copy. Requests are JSON objects, one per line on stdin (``{"inputs": [[...], ...]}``);
answers are JSON objects, one per line on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mamori.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_SAFE
from mamori.errors import MamoriError

__all__ = ["SERVE_MODEL_EPILOG", "serve_model_command"]

SERVE_MODEL_EPILOG = (
    f"Exit codes: {EXIT_SAFE} = served until stdin closed; {EXIT_CHECK_FAILED} = not started: "
    f"the gate did not approve the exact bytes; {EXIT_ERROR} = not started: a sandbox layer is "
    "missing (see --allow-weaker-sandbox), the model failed to load, or the gate is unreachable."
)

_err = Console(stderr=True)


def serve_model_command(
    model: Annotated[Path, typer.Argument(help="The model file (its folder is verified too).")],
    flavour: Annotated[
        str, typer.Option(help="How to load it: pickle, joblib, torch or onnx.")
    ] = "joblib",
    entry: Annotated[
        str | None, typer.Option(help="torch: MODULE:FUNCTION beside the model that wraps it.")
    ] = None,
    allow_weaker_sandbox: Annotated[
        bool, typer.Option(help="Start even when an isolation layer is missing (listed).")
    ] = False,
) -> None:
    """Verify the model's bytes with the gate, then serve predictions from the sandbox."""
    try:
        from mamori.cli.verify import open_gate  # noqa: PLC0415 - start-up time
        from mamori.config import load_settings  # noqa: PLC0415
        from mamori.serving import NotDeployableError, serve_verified  # noqa: PLC0415
    except ImportError as exc:
        _err.print(f"mamori serve-model: {exc}")
        raise typer.Exit(EXIT_ERROR) from exc
    try:
        with (
            open_gate(load_settings()) as gate,
            serve_verified(
                gate, model, flavour=flavour, entry=entry, allow_weaker=allow_weaker_sandbox
            ) as (result, running),
        ):
            _err.print(f"mamori serve-model: {result.target}: {result.reason}")
            if running.lost:
                lost = ", ".join(running.lost)
                _err.print(f"mamori serve-model: WEAKER SANDBOX, running without: {lost}")
            for line in sys.stdin:
                try:
                    outputs = running.predict(json.loads(line)["inputs"])
                    typer.echo(json.dumps({"ok": True, "outputs": outputs}))
                except (MamoriError, ValueError, KeyError, TypeError) as exc:
                    typer.echo(json.dumps({"ok": False, "error": str(exc)}))
    except NotDeployableError as exc:
        _err.print(f"mamori serve-model: {exc}")
        raise typer.Exit(EXIT_CHECK_FAILED) from exc
    except MamoriError as exc:
        _err.print(f"mamori serve-model: {exc.diagnostics()}")
        raise typer.Exit(EXIT_ERROR) from exc
    raise typer.Exit(EXIT_SAFE)
