"""mamori: scan ML models without loading them, gate their lifecycle, authorize GenAI data.

The stable library API is re-exported here by name; everything else is reachable through its
package (``mamori.scan``, ``mamori.identity``, ``mamori.policy``, ``mamori.genai``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from mamori.errors import (
    ConfigError,
    IdentityError,
    MamoriError,
    PolicyError,
    RegistryError,
    ScanError,
    StoreError,
)
from mamori.findings import (
    FileFormat,
    Finding,
    Location,
    Member,
    ScanReport,
    Severity,
    SuppressedFinding,
    Verdict,
)
from mamori.scan import ScanLimits, ScanPolicy, Suppression, scan_bytes, scan_path

__all__ = [
    "ConfigError",
    "FileFormat",
    "Finding",
    "IdentityError",
    "Location",
    "MamoriError",
    "Member",
    "PolicyError",
    "RegistryError",
    "ScanError",
    "ScanLimits",
    "ScanPolicy",
    "ScanReport",
    "Severity",
    "StoreError",
    "SuppressedFinding",
    "Suppression",
    "Verdict",
    "__version__",
    "scan_bytes",
    "scan_path",
]
