"""The model lifecycle: quarantine, scan, approve or reject, and the deployment gate."""

from __future__ import annotations

from mamori.lifecycle.authz import Action, ArtifactFacts, LifecycleAuthorizer, has_mfa
from mamori.lifecycle.blobs import BlobStore, StoredBlob
from mamori.lifecycle.service import SCANNER_PRINCIPAL, Lifecycle
from mamori.lifecycle.views import ArtifactView, BindingView, GateResult, Page, ScanView

__all__ = [
    "SCANNER_PRINCIPAL",
    "Action",
    "ArtifactFacts",
    "ArtifactView",
    "BindingView",
    "BlobStore",
    "GateResult",
    "Lifecycle",
    "LifecycleAuthorizer",
    "Page",
    "ScanView",
    "StoredBlob",
    "has_mfa",
]
