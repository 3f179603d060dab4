"""Scanning without loading: ``scan_path`` is the entry point."""

from __future__ import annotations

from mamori.scan.engine import detect
from mamori.scan.limits import ScanLimits
from mamori.scan.policy import ScanPolicy, Suppression
from mamori.scan.rules import RULES, RULESET_VERSION, Rule
from mamori.scan.scanner import iter_scan_paths, scan_bytes, scan_path

__all__ = [
    "RULES",
    "RULESET_VERSION",
    "Rule",
    "ScanLimits",
    "ScanPolicy",
    "Suppression",
    "detect",
    "iter_scan_paths",
    "scan_bytes",
    "scan_path",
]
