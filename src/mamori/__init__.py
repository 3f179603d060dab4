"""mamori: scan ML models without loading them, gate their lifecycle, authorize GenAI data access."""

from __future__ import annotations

__version__ = "0.1.0"
