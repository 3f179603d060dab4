"""Progress displays for long work, on stderr and only at a terminal: bytes, or a count."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

__all__ = ["byte_progress", "count_progress"]


def byte_progress() -> Progress:
    """A transient byte progress bar on stderr, disabled unless stderr is a terminal."""
    console = Console(stderr=True)
    # Bytes done, speed and time, so a 500 MB pickle or a pull is not a minute of silence; only
    # for a person at a terminal: in CI logs or pipes it is noise.
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def count_progress() -> Progress:
    """A transient progress bar counting items (versions, files), at a terminal only."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
