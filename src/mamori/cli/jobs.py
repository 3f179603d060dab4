"""``mamori worker`` and ``mamori rescan``: run scan jobs, or queue every pending scan now."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from mamori.cli.exitcodes import EXIT_ERROR
from mamori.errors import MamoriError

__all__ = ["rescan_command", "worker_command"]

_err = Console(stderr=True)


def worker_command(
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Worker processes.")
    ] = None,
) -> None:
    """Consume scan jobs (SQLite queue by default, Redis with MAMORI_QUEUE_URL)."""
    # Lazy: the queue imports huey, redis, SQLAlchemy and the lifecycle (start-up time).
    from mamori.config import load_settings  # noqa: PLC0415
    from mamori.jobs import run_worker  # noqa: PLC0415
    from mamori.lifecycle.queue import make_queue  # noqa: PLC0415

    try:
        settings = load_settings()
        run_worker(make_queue(settings).huey, workers=workers or settings.workers)
    except MamoriError as exc:
        _err.print(f"mamori worker: {exc.diagnostics()}")
        raise typer.Exit(EXIT_ERROR) from exc


def rescan_command() -> None:
    """Queue a scan for every artifact without a finished scan under the current ruleset."""
    from mamori.config import load_settings  # noqa: PLC0415 -- lazy (start-up time)
    from mamori.lifecycle.queue import enqueue_scan, make_queue  # noqa: PLC0415

    try:
        queue = make_queue(load_settings())
        pending = queue.lifecycle().pending_scans()
        for sha256 in pending:
            enqueue_scan(queue, sha256)
    except MamoriError as exc:
        _err.print(f"mamori rescan: {exc.diagnostics()}")
        raise typer.Exit(EXIT_ERROR) from exc
    typer.echo(f"queued {len(pending)} scan(s)")
