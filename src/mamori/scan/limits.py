"""Resource limits for one scan, as validated data.

Every limit exists because a hostile file can otherwise make the scanner hang, exhaust memory
or fill the disk. Hitting a limit is a finding (``MAM-LIM-*``), never a silent stop.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ScanLimits"]

_MiB = 1 << 20
_GiB = 1 << 30


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanLimits:
    """Bounds on the work one scan of one path may do. All values must be positive."""

    max_decompressed_bytes: int = 16 * _GiB
    """Total bytes all decompression in one scan may produce."""
    max_compression_ratio: int = 200
    """Largest expansion ratio allowed for a compressed member bigger than ``ratio_floor``."""
    ratio_floor: int = 16 * _MiB
    """Members that decompress to less than this are exempt from the ratio check."""
    max_depth: int = 8
    """How deeply containers may nest (a zip in a tar in a gzip is depth 3)."""
    max_members: int = 100_000
    """How many members (archive entries, directory files) one scan may visit."""
    max_pickle_opcodes: int = 1_000_000_000
    """How many opcodes one pickle stream may contain."""
    max_pickle_memo: int = 10_000_000
    """Memo entries one pickle may define (``MAM-LIM-007``). The loader keeps every one alive
    until the load ends; the analyser keeps plain data among them compactly (a few bytes
    each), so this bounds memory, not correctness: real models use a few per tensor or row."""
    max_pickle_stack: int = 2_000_000
    """Values on one pickle's symbolic stack, all MARK frames and the MARK depth counted
    (``MAM-LIM-008``). Checked every 65,536 opcodes; picklers batch 1,000 items per frame."""
    max_pickle_memory: int = 192 * _MiB
    """Bytes the process may grow by while one pickle is analysed (``MAM-LIM-009``): the
    backstop for every structure the analyser keeps, checked per MiB of input and every
    65,536 opcodes, so that a hostile pickle ends in a finding rather than an OOM kill."""
    max_seconds: float = 900.0
    """Wall-clock budget for the scan of one top-level path."""
    max_spool_memory: int = 64 * _MiB
    """Members needing random access are spooled to memory up to this size, then to disk."""
    max_header_bytes: int = 100 * _MiB
    """Largest metadata block (zip directory, safetensors header, npy header, ...) read whole."""

    def __post_init__(self) -> None:
        """Reject non-positive limits: a zero limit would silently disable a check."""
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                msg = f"scan limit {name} must be a positive number, got {value!r}"
                raise ValueError(msg)
