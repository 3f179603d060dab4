"""The result model shared by every part of mamori: severities, findings and scan reports.

These are frozen dataclasses on purpose. A report is a value: it can be hashed, compared,
serialised and stored, and nothing downstream can quietly edit a finding. The verdict is
*derived* from the findings and the threshold, never stored beside them, so the two can never
disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "FileFormat",
    "Finding",
    "Location",
    "Member",
    "ScanReport",
    "Severity",
    "SuppressedFinding",
    "Verdict",
]


class Severity(enum.IntEnum):
    """How bad a finding is. Ordered, so ``finding.severity >= threshold`` reads naturally."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse a case-insensitive severity name such as ``"high"``.

        Raises:
            ValueError: ``text`` names no severity; the message lists the valid names.
        """
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            msg = f"unknown severity {text!r}; expected one of: {names}"
            raise ValueError(msg) from None

    @property
    def label(self) -> str:
        """The lower-case name used in reports and on the command line."""
        return self.name.lower()


class Verdict(enum.StrEnum):
    """The answer a scan gives about one artifact."""

    SAFE = "safe"
    UNSAFE = "unsafe"


class FileFormat(enum.StrEnum):
    """Every format mamori recognises by content. ``UNKNOWN`` is a real answer, not a skip."""

    DIRECTORY = "directory"
    PICKLE = "pickle"
    TORCH_ZIP = "torch-zip"
    TORCHSCRIPT = "torchscript"
    TORCH_LEGACY = "torch-legacy"
    TORCH_TAR = "torch-tar"
    JOBLIB = "joblib"
    NUMPY = "numpy"
    NUMPY_NPZ = "numpy-npz"
    ZIP = "zip"
    TAR = "tar"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    LZMA = "lzma"
    ZLIB = "zlib"
    ZSTD = "zstd"
    LZ4 = "lz4"
    SEVEN_ZIP = "7z"
    KERAS_V3 = "keras-v3"
    KERAS_H5 = "keras-h5"
    HDF5 = "hdf5"
    TF_SAVEDMODEL = "tf-savedmodel"
    ONNX = "onnx"
    ONNX_TENSOR = "onnx-tensor"
    SAFETENSORS = "safetensors"
    GGUF = "gguf"
    NEMO = "nemo"
    FLAX_MSGPACK = "flax-msgpack"
    JSON = "json"
    YAML = "yaml"
    PYTHON_SOURCE = "python-source"
    TEXT = "text"
    RAW_DATA = "data"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding sits: the chain of container members from the scanned file, and an offset.

    ``member`` is empty for the scanned file itself; ``("model.pt", "archive/data.pkl")`` means
    the member ``archive/data.pkl`` of the member ``model.pt`` of the scanned path. ``offset``
    is a byte offset inside the innermost member (or the file), when one is meaningful.
    """

    member: tuple[str, ...] = ()
    offset: int | None = None

    def __str__(self) -> str:
        where = "!".join(self.member) if self.member else "<file>"
        return where if self.offset is None else f"{where}@{self.offset}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One detection. ``rule_id`` is stable across releases (``MAM-PKL-001``)."""

    rule_id: str
    severity: Severity
    message: str
    location: Location = Location()
    evidence: str | None = None
    cwe: tuple[str, ...] = ()
    atlas: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SuppressedFinding:
    """A finding that a policy suppression removed from the verdict, with the stated reason."""

    finding: Finding
    reason: str


@dataclass(frozen=True, slots=True)
class Member:
    """A file inside the scanned artifact (archive member, directory entry) and its digests."""

    path: tuple[str, ...]
    size: int
    sha256: str
    format: FileFormat
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class ScanReport:
    """Everything one scan of one path found. The verdict is computed, never stored."""

    path: str
    size: int
    sha256: str
    format: FileFormat
    threshold: Severity
    scanner_version: str
    ruleset_version: str
    started_at: datetime
    duration_s: float
    md5: str | None = None
    members: tuple[Member, ...] = ()
    findings: tuple[Finding, ...] = ()
    suppressed: tuple[SuppressedFinding, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> Verdict:
        """UNSAFE when any unsuppressed finding is at or above the threshold, else SAFE."""
        if any(f.severity >= self.threshold for f in self.findings):
            return Verdict.UNSAFE
        return Verdict.SAFE

    @property
    def max_severity(self) -> Severity | None:
        """The highest severity among unsuppressed findings, or ``None`` when there are none."""
        return max((f.severity for f in self.findings), default=None)
