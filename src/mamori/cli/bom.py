"""``mamori bom``: scan paths (or URLs) and write a CycloneDX 1.6 ML-BOM, thin over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mamori.cli.exitcodes import EXIT_ERROR, EXIT_SAFE
from mamori.cli.scan import (
    _check_paths,
    _errors_exit_2,
    _policy,
    _scan_all,
    _targets,
    _write_atomic,
)

__all__ = ["BOM_EPILOG", "bom_command"]

BOM_EPILOG = (
    f"Exit codes: {EXIT_SAFE} = the BOM was written (each model's verdict is in it as "
    f"mamori:verdict); {EXIT_ERROR} = error (missing or unreadable path, bad policy, I/O "
    "error, or the [bom] extra is not installed)."
)


def bom_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Files, directories or URLs, as for `mamori scan`.", show_default=False
        ),
    ],
    *,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the BOM here instead of stdout.", show_default=False
        ),
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="TOML policy file, as for `mamori scan`.", show_default=False
        ),
    ] = None,
) -> None:
    """Write a CycloneDX 1.6 ML-BOM: every model with its digests, format, verdict and findings."""
    with _errors_exit_2("bom"):
        from mamori.scan.report.bom import render_bom  # noqa: PLC0415 -- optional extra [bom]

        policy = _policy(policy_file, None, md5=False)
        targets = _targets(paths)
        _check_paths(targets, output)
        text = render_bom(_scan_all(targets, policy))
        if output is None:
            sys.stdout.write(text)
        else:
            _write_atomic(output, text)
    raise typer.Exit(EXIT_SAFE)
