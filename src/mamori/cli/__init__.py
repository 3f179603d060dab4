"""The ``mamori`` command line: a thin layer that parses, calls the library and renders.

Exit codes are named constants in :mod:`mamori.cli.exitcodes` and documented in ``--help``.
"""

from __future__ import annotations

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="mamori",
    help="Scan ML models without loading them; gate their lifecycle; authorize GenAI data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Console-script entry point."""
    app()
