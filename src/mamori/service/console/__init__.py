"""The security console: server-rendered views over the lifecycle library, no script."""

from __future__ import annotations

from mamori.service.console.router import CSP, ConsoleUser, install_console
from mamori.service.console.session import ConsoleSessions

__all__ = ["CSP", "ConsoleSessions", "ConsoleUser", "install_console"]
