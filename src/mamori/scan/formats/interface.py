"""The small interface every format module implements.

A handler answers two questions about bytes it has never seen before: *is this mine?*
(:meth:`FormatHandler.sniff`, by content only) and *what is wrong with it?*
(:meth:`FormatHandler.scan`, emitting findings and recursing into members through the
:class:`ScanContext`). Handlers never load, import, execute or render the content.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from mamori.findings import FileFormat
from mamori.scan._internal.context import PROBE_BYTES, LimitExceeded, Probe, ScanContext
from mamori.scan._internal.source import Source

__all__ = ["PROBE_BYTES", "FormatHandler", "LimitExceeded", "Probe", "ScanContext"]


class FormatHandler(ABC):
    """One file format: detection by content and a scan that never loads the content."""

    format: ClassVar[FileFormat]
    """The format this handler recognises."""
    refines: ClassVar[FileFormat | None] = None
    """A more generic format this one is a special case of (torch-zip refines zip)."""
    needs_random_access: ClassVar[bool] = False
    """Whether :meth:`scan` seeks; one-shot sources are spooled first when it does."""

    @abstractmethod
    def sniff(self, probe: Probe) -> bool:
        """Return True when the bytes are this format. Must be cheap and never raise."""

    @abstractmethod
    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Analyse ``source`` and emit findings through ``ctx``. Never load the content."""


HandlerFactory = Callable[[], FormatHandler]
