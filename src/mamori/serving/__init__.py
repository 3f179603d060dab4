"""Running approved models: verified bytes only, in a sandboxed loader process."""

from __future__ import annotations

from mamori.serving.sandbox import (
    Layer,
    LayerStatus,
    SandboxedModel,
    SandboxError,
    SandboxLimits,
    probe,
    start,
)
from mamori.serving.verified import NotDeployableError, serve_verified

__all__ = [
    "Layer",
    "LayerStatus",
    "NotDeployableError",
    "SandboxError",
    "SandboxLimits",
    "SandboxedModel",
    "probe",
    "serve_verified",
    "start",
]
