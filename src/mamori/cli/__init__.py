"""The ``mamori`` command line: a thin layer that parses, calls the library and renders.

Exit codes are named constants in :mod:`mamori.cli.exitcodes` and documented in ``--help``.
"""

from __future__ import annotations

import typer

from mamori.cli.exitcodes import EXIT_CODE_HELP
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
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("scan", epilog=EXIT_CODE_HELP)(scan_command)
app.command("rules")(rules_command)
app.command("pull", epilog=PULL_EPILOG)(pull_command)
app.command("worker")(worker_command)
app.command("rescan")(rescan_command)
app.command("serve")(serve_command)
app.command("approve", epilog=DECIDE_EPILOG)(approve_command)
app.command("reject", epilog=DECIDE_EPILOG)(reject_command)
app.command("override", epilog=DECIDE_EPILOG)(override_command)
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")


def main() -> None:
    """Console-script entry point."""
    app()


from mamori.cli.demo import demo_app  # noqa: E402 -- registered after the app exists

app.add_typer(demo_app, name="demo")

from mamori.cli.mlflow import mlflow_app  # noqa: E402 -- registered after the app exists

app.add_typer(mlflow_app, name="mlflow")

from mamori.cli.verify import VERIFY_EPILOG, verify_command  # noqa: E402 -- as above

app.command("verify", epilog=VERIFY_EPILOG)(verify_command)
