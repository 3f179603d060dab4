"""The ``mamori`` command line: a thin layer that parses, calls the library and renders.

Exit codes are named constants in :mod:`mamori.cli.exitcodes` and documented in ``--help``.
"""

from __future__ import annotations

import platform
import sys
from typing import Annotated

import typer

from mamori import __version__
from mamori.cli._extras import install_hint, missing_extra
from mamori.cli.bom import BOM_EPILOG, bom_command
from mamori.cli.exitcodes import DONE_EPILOG, EXIT_CODE_HELP, EXIT_MISSING_EXTRA
from mamori.cli.jobs import rescan_command, worker_command
from mamori.cli.pull import PULL_EPILOG, pull_command
from mamori.cli.scan import rules_command, scan_command
from mamori.cli.service import (
    DECIDE_EPILOG,
    approve_command,
    audit_app,
    override_command,
    policy_app,
    reject_command,
    serve_command,
    token_app,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="mamori",
    help="Scan ML models without loading them; gate their lifecycle; authorize GenAI data.",
    no_args_is_help=True,
    # typer's completion: `mamori --install-completion` (bash, zsh, fish, PowerShell).
    add_completion=True,
    pretty_exceptions_enable=False,
)


def version_text() -> str:
    """``mamori --version``: the package, the scan ruleset and the interpreter it runs on."""
    # Lazy: the rule catalogue is only needed when the version is asked for.
    from mamori.scan.pickle.hot import SCANNER_BUILD  # noqa: PLC0415
    from mamori.scan.rules import RULES, RULESET_VERSION  # noqa: PLC0415

    python = f"{platform.python_implementation()} {platform.python_version()}"
    return (
        f"mamori {__version__}\n"
        f"ruleset {RULESET_VERSION} ({len(RULES)} rules)\n"
        f"scanner: pickle hot loop {SCANNER_BUILD}, on {python}\n"
    )


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(version_text())
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_show_version,
            help="Print the version, the ruleset version and the Python it runs on; exit.",
        ),
    ] = False,
) -> None:
    """Scan ML models without loading them; gate their lifecycle; authorize GenAI data."""


app.command("scan", epilog=EXIT_CODE_HELP)(scan_command)
app.command("rules", epilog=DONE_EPILOG)(rules_command)
app.command("bom", epilog=BOM_EPILOG)(bom_command)
app.command("pull", epilog=PULL_EPILOG)(pull_command)
app.command("worker", epilog=DONE_EPILOG)(worker_command)
app.command("rescan", epilog=DONE_EPILOG)(rescan_command)
app.command("serve", epilog=DONE_EPILOG)(serve_command)
app.command("approve", epilog=DECIDE_EPILOG)(approve_command)
app.command("reject", epilog=DECIDE_EPILOG)(reject_command)
app.command("override", epilog=DECIDE_EPILOG)(override_command)
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")


def main() -> None:
    """Console-script entry point.

    A command whose optional extra is not installed prints one line naming the extra and
    exits :data:`~mamori.cli.exitcodes.EXIT_MISSING_EXTRA` instead of a traceback.
    """
    try:
        app()
    except ModuleNotFoundError as exc:
        argv = sys.argv[1:]
        extra = missing_extra(exc.name, argv)
        if extra is None:
            raise
        command = next((a for a in argv if not a.startswith("-")), "")
        sys.stderr.write(install_hint(extra, command) + "\n")
        raise SystemExit(EXIT_MISSING_EXTRA) from None


from mamori.cli.demo import demo_app  # noqa: E402 -- registered after the app exists

app.add_typer(demo_app, name="demo")

from mamori.cli.mlflow import mlflow_app  # noqa: E402 -- registered after the app exists

app.add_typer(mlflow_app, name="mlflow")

from mamori.cli.verify import VERIFY_EPILOG, verify_command  # noqa: E402 -- as above

app.command("verify", epilog=VERIFY_EPILOG)(verify_command)

from mamori.cli.serve_model import (  # noqa: E402 -- as above
    SERVE_MODEL_EPILOG,
    serve_model_command,
)

app.command("serve-model", epilog=SERVE_MODEL_EPILOG)(serve_model_command)
