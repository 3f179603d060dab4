"""``python -m mamori`` runs the command line."""

from __future__ import annotations

from mamori.cli import main

main()
