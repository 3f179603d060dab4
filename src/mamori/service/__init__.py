"""The HTTP service: a thin FastAPI layer over the lifecycle, identity and policy packages."""

from __future__ import annotations

from mamori.service.app import create_app
from mamori.service.runtime import InProcessScanner, Runtime, ScanMode, build_runtime

__all__ = ["InProcessScanner", "Runtime", "ScanMode", "build_runtime", "create_app"]
