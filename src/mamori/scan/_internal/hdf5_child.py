"""The part of the HDF5 scan that runs h5py, executed in a child process with a time limit.

The HDF5 C library parses hostile metadata itself, and some corruptions make it loop for
minutes inside one call (found by mutating a small Keras file in our fuzz tests), where no
Python deadline can interrupt it. So :mod:`mamori.scan.formats.hdf5` runs this file as a
separate interpreter (``python -I path/to/hdf5_child.py``), kills it when it overruns, and turns
that into a finding. This module is deliberately self-contained: it imports only the standard
library and h5py, so the child starts fast and never imports mamori or anything named by the
file.

Protocol: one JSON header line on stdin (``{"path", "offset", "length"}`` for a file region,
or ``{"stdin": true}`` followed by the raw bytes), one JSON document on stdout (see
:func:`inspect`). JSON, not pickle, in both directions: the parent must not trust what a
possibly compromised child sends back.
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
from typing import IO, Any, Final

__all__ = ["inspect", "main"]

_CONFIG_ATTRS: Final = ("model_config", "training_config")
_MAX_TEXT: Final = 32 << 20
_MAX_OBJECTS: Final = 1_000_000
_MEMORY_LIMIT: Final = 4 << 30
_MAX_SHOWN: Final = 8


class _Region(io.RawIOBase):
    """A read-only seekable window of a file, for members stored inside another archive."""

    def __init__(self, path: str, offset: int, length: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._offset = offset
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), max(0, self._length - self._pos))
        data = os.pread(self._fd, want, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def inspect(target: str | IO[bytes]) -> dict[str, Any]:
    """Open ``target`` with h5py and describe what the parent needs to judge.

    Returns ``{"error": str}`` when the file cannot be opened, else ``{"userblock": int,
    "keras": bool, "configs": {name: text | null}, "events": [[rule, message, evidence]]}``.
    """
    import h5py  # noqa: PLC0415 - imported in the child only

    try:
        h5 = h5py.File(target, "r")
    except Exception as exc:  # noqa: BLE001 - any h5py failure is reported to the parent
        return {"error": f"HDF5 file cannot be opened: {type(exc).__name__}: {exc}"}
    events: list[list[str | None]] = []
    out: dict[str, Any] = {"events": events, "configs": {}}
    try:
        with h5:
            out["userblock"] = int(h5.userblock_size)
            attrs = h5.attrs
            out["keras"] = "keras_version" in attrs or "model_config" in attrs
            for name in _CONFIG_ATTRS:
                if name in attrs:
                    out["configs"][name] = _text_attr(h5py, h5, name, events)
            _walk(h5py, h5, events)
    except Exception as exc:  # noqa: BLE001 - reported as unreadable structure
        events.append(
            ["MAM-H5-001", f"HDF5 structure could not be read: {type(exc).__name__}: {exc}", None]
        )
    return out


def _text_attr(h5py: Any, obj: Any, name: str, events: list[list[str | None]]) -> str | None:
    """Read a scalar string attribute after checking its declared size."""
    attr_id = h5py.h5a.open(obj.id, name.encode())
    count = 1
    for dim in attr_id.shape:
        count *= int(dim)
    if count != 1 or attr_id.dtype.itemsize > _MAX_TEXT:
        events.append(
            [
                "MAM-KERAS-005",
                f"attribute {name} declares {count} elements of {attr_id.dtype}; not read",
                None,
            ]
        )
        return None
    value = obj.attrs[name]
    if hasattr(value, "item") and getattr(value, "shape", ()) == ():
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    if not isinstance(value, str):
        events.append(["MAM-KERAS-005", f"attribute {name} is not a string", None])
        return None
    if len(value) > _MAX_TEXT:
        events.append(["MAM-KERAS-005", f"attribute {name} is larger than {_MAX_TEXT}", None])
        return None
    return value


def _walk(h5py: Any, h5: Any, events: list[list[str | None]]) -> None:
    """Every link: external links, virtual datasets and external raw storage."""
    stack: list[tuple[str, Any]] = [("", h5)]
    seen: set[int] = {hash(h5.id)}
    visited = 0
    while stack:
        path, group = stack.pop()
        for name in group:
            visited += 1
            if visited > _MAX_OBJECTS:
                events.append(["MAM-H5-001", f"more than {_MAX_OBJECTS} HDF5 links", None])
                return
            full = f"{path}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                events.append(
                    [
                        "MAM-H5-002",
                        f"external link {full} points into another file",
                        f"{link.filename}:{link.path}",
                    ]
                )
                continue
            if isinstance(link, h5py.SoftLink):
                continue  # a path inside this file; its target is visited as a hard link
            obj = group.get(name)
            if obj is None or hash(obj.id) in seen:
                continue
            seen.add(hash(obj.id))
            if isinstance(obj, h5py.Group):
                stack.append((full, obj))
            elif isinstance(obj, h5py.Dataset):
                _dataset(full, obj, events)


def _dataset(path: str, ds: Any, events: list[list[str | None]]) -> None:
    external = ds.external
    if external:
        files = ", ".join(str(entry[0]) for entry in external[:_MAX_SHOWN])
        events.append(["MAM-H5-003", f"dataset {path} stores its data in external files", files])
    if ds.is_virtual:
        names = sorted({m.file_name for m in ds.virtual_sources() if m.file_name != "."})
        if names:
            events.append(
                [
                    "MAM-H5-003",
                    f"virtual dataset {path} maps data from other files",
                    ", ".join(names[:_MAX_SHOWN]),
                ]
            )


def main() -> None:
    """Read the request from stdin, write the JSON answer to stdout."""
    # A hostile file must not make the child eat the machine's memory either.
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))
    stdin = sys.stdin.buffer
    header = json.loads(stdin.readline())
    target: str | IO[bytes]
    if header.get("stdin"):
        target = io.BytesIO(stdin.read())
    elif header["offset"] == 0 and header["length"] == os.stat(header["path"]).st_size:
        target = header["path"]
    else:
        target = io.BufferedReader(_Region(header["path"], header["offset"], header["length"]))
    sys.stdout.write(json.dumps(inspect(target)))


if __name__ == "__main__":
    main()
