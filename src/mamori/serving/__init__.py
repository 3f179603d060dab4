"""Running approved models: the sandboxed loader process (bwrap, seccomp, Landlock, rlimits)."""

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

__all__ = [
    "Layer",
    "LayerStatus",
    "SandboxError",
    "SandboxLimits",
    "SandboxedModel",
    "probe",
    "start",
]
