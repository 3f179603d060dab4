"""What every torch format shares: storage types, persistent ids, and member-scoped analysis.

``torch.save`` pickles tensors as ``torch._utils._rebuild_tensor_v2(<persistent id>, ...)``;
the persistent id names a storage that lives outside the pickle::

    ("storage", torch.FloatStorage, "<key>", "<location>", <numel>)            # zip format
    ("storage", torch.FloatStorage, "<key>", "<location>", <numel>, <view>)    # legacy format

The storage holds ``numel * element_size(storage type)`` bytes (torch/serialization.py,
``persistent_load``). Checking every id against the storages that are really present is how
the torch handlers detect missing, extra or resized tensor data without reading it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Final

from mamori.scan.formats.interface import ScanContext
from mamori.scan.pickle import GlobalRef, PickleHooks, PickleResult, analyse_one

__all__ = [
    "STORAGE_ELEMENT_SIZES",
    "StorageRef",
    "analyse_torch_pickle",
    "storage_refs",
]

# torch.<Name>Storage -> element size in bytes: torch/storage.py ``_dtype_to_storage_type_map``
# (the legacy names torch still writes) plus UntypedStorage, which newer dtypes use with a byte
# count as numel.
STORAGE_ELEMENT_SIZES: Final[dict[str, int]] = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "BFloat16Storage": 2,
    "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8,
    "QInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt8Storage": 1,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
    "UntypedStorage": 1,
}

_ZIP_PID_LEN: Final = 5
_LEGACY_PID_LEN: Final = 6


@dataclass(frozen=True, slots=True)
class StorageRef:
    """One ``("storage", ...)`` persistent id, checked and sized."""

    key: str
    storage_type: str
    location: str
    numel: int

    @property
    def nbytes(self) -> int:
        """Bytes of the storage: element count times the element size of its type."""
        return self.numel * STORAGE_ELEMENT_SIZES[self.storage_type]


def _text(value: object) -> str | None:
    # Python 2 era files may carry the ascii strings as bytes (serialization.py
    # ``_maybe_decode_ascii``).
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


def _storage_ref(pid: object, *, legacy: bool) -> StorageRef | str:  # noqa: PLR0911 - one return per check
    """A checked storage reference, or a string saying what is wrong with ``pid``."""
    if not isinstance(pid, tuple | list) or not pid:
        return f"persistent id is not a tuple: {pid!r}"[:200]
    if _text(pid[0]) != "storage":
        return f"persistent id of kind {pid[0]!r} (torch only loads 'storage' ids)"[:200]
    want = (_ZIP_PID_LEN, _LEGACY_PID_LEN) if legacy else (_ZIP_PID_LEN,)
    if len(pid) not in want:
        return f"storage persistent id has {len(pid)} fields"
    storage_type, key, location, numel = pid[1], _text(pid[2]), _text(pid[3]), pid[4]
    if (
        not isinstance(storage_type, GlobalRef)
        or storage_type.module != "torch"
        or storage_type.name not in STORAGE_ELEMENT_SIZES
    ):
        return f"storage type {storage_type!r} is not a torch storage class"[:200]
    if key is None or location is None:
        return "storage key or location is not a string"
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        return f"storage element count {numel!r} is not a non-negative integer"[:200]
    if len(pid) == _LEGACY_PID_LEN and pid[5] is not None:
        # Legacy storage views: (view_key, offset, size). torch >= 1.6 never writes them.
        return "legacy storage view persistent ids are not supported"
    return StorageRef(key, storage_type.name, location, numel)


def storage_refs(
    pids: tuple[object, ...], report: Callable[[str], None], *, legacy: bool = False
) -> list[StorageRef]:
    """Check each persistent id; report malformed ones through ``report`` and drop them."""
    refs: list[StorageRef] = []
    for pid in pids:
        ref = _storage_ref(pid, legacy=legacy)
        if isinstance(ref, str):
            report(ref)
        else:
            refs.append(ref)
    return refs


def analyse_torch_pickle(
    stream: IO[bytes],
    ctx: ScanContext,
    *,
    hooks: PickleHooks | None = None,
    offset_base: int = 0,
) -> PickleResult:
    """Analyse exactly one pickle with persistent ids enabled (torch pickles use them)."""
    return analyse_one(stream, ctx, offset_base=offset_base, hooks=hooks, persistent_ids=True)
