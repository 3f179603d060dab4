"""The security console: server-rendered views over the lifecycle library, no script."""

from __future__ import annotations

from mamori.service.console.router import install_console
from mamori.service.console.session import ConsoleSessions
from mamori.service.console.web import CSP, ConsoleUser

__all__ = ["CSP", "ConsoleSessions", "ConsoleUser", "install_console"]
