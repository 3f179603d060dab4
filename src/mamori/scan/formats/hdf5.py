"""HDF5 files, and the Keras models saved in them (``model.save("m.h5")``, Keras 2 style).

The file is opened read-only with h5py, which parses structure and attributes and never
executes anything; building the model is what runs code. Keras keeps the architecture in the
root attribute ``model_config`` (JSON) and the compile settings in ``training_config``; both go
through the shared Keras walker. Keras' HDF5 loader ignores ``safe_mode`` (CVE-2025-9905), so a
Lambda layer here always runs.

HDF5 can also make a "model" read other files: external links, virtual datasets and external
raw storage name files outside the artifact (``../`` or absolute paths), which the scanner did
not see and which the loader will read. Each is a finding. Bytes before the superblock (the
*user block*) are scanned by content, because they are invisible to HDF5 tools but not to other
readers.

The HDF5 C library parses hostile metadata, and some corruptions make it loop inside a
single call, out of reach of any Python deadline. So h5py runs in a child interpreter
(:mod:`mamori.scan._internal.hdf5_child`) with a time and memory limit; a child that overruns,
crashes or answers nonsense is a finding, never a hang or a crash of the scanner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal import hdf5_child
from mamori.scan._internal.keras_config import report_keras_json
from mamori.scan._internal.source import BytesSource, FileRegion, Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = [
    "CHILD_TIMEOUT_S",
    "HDF5_MAGIC",
    "Hdf5Handler",
    "KerasH5Handler",
    "superblock_offset",
]

HDF5_MAGIC: Final = b"\x89HDF\r\n\x1a\n"
# The superblock sits at 0 or after a user block whose size is 512 doubled (HDF5 spec,
# "Format Signature"); only offsets inside the probe can be checked at sniff time.
_PROBE_OFFSETS: Final = (0, 512, 1024, 2048, 4096, 8192, 16384, 32768)
_KERAS_ATTRS: Final = (b"model_config", b"keras_version")
_CONFIG_ATTRS: Final = ("model_config", "training_config")
_CHILD: Final = Path(hdf5_child.__file__)
_CHILD_RULES: Final = frozenset({"MAM-H5-001", "MAM-H5-002", "MAM-H5-003", "MAM-KERAS-005"})
_MAX_MESSAGE: Final = 2000
CHILD_TIMEOUT_S: Final = 60.0
"""How long h5py may take on one file's metadata; real models need well under a second."""


def superblock_offset(head: bytes) -> int | None:
    """Where the HDF5 signature is in ``head`` (0 or a user-block size), or ``None``."""
    for offset in _PROBE_OFFSETS:
        if head[offset : offset + len(HDF5_MAGIC)] == HDF5_MAGIC:
            return offset
    return None


class Hdf5Handler(FormatHandler):
    """Any HDF5 file, found by its superblock signature."""

    format: ClassVar[FileFormat] = FileFormat.HDF5
    needs_random_access: ClassVar[bool] = True

    def sniff(self, probe: Probe) -> bool:
        """The HDF5 signature at offset 0 or at a power-of-two user-block boundary."""
        return superblock_offset(probe.head) is not None

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Check Keras configs, links and external storage; scan the user block."""
        _scan_hdf5(source, ctx)


class KerasH5Handler(Hdf5Handler):
    """An HDF5 file whose root carries Keras' ``model_config`` or ``keras_version``."""

    format: ClassVar[FileFormat] = FileFormat.KERAS_H5
    refines: ClassVar[FileFormat | None] = FileFormat.HDF5

    def sniff(self, probe: Probe) -> bool:
        """HDF5 with a Keras root attribute name in the probe (the root header is early).

        When the attribute lives further in, the generic HDF5 reading still runs the same
        Keras checks and refines the format.
        """
        start = superblock_offset(probe.head)
        if start is None:
            return False
        return any(name in probe.head[start:] for name in _KERAS_ATTRS)


def _scan_hdf5(source: Source, ctx: ScanContext) -> None:
    result = _run_child(source, ctx)
    if result is None:
        return
    error = result.get("error")
    if isinstance(error, str):
        ctx.report("MAM-H5-001", error[:_MAX_MESSAGE])
        return
    for event in _list(result.get("events")):
        rule_id, message, evidence = ([*_list(event), None, None, None])[:3]
        if rule_id in _CHILD_RULES and isinstance(message, str):
            shown = evidence[:_MAX_MESSAGE] if isinstance(evidence, str) else None
            ctx.report(str(rule_id), message[:_MAX_MESSAGE], evidence=shown)
    if result.get("keras") is True:
        ctx.refine_format(FileFormat.KERAS_H5)
    configs = result.get("configs")
    for name in _CONFIG_ATTRS:
        text = configs.get(name) if isinstance(configs, dict) else None
        if isinstance(text, str):
            report_keras_json(
                text.encode("utf-8", "surrogateescape"),
                ctx,
                ignores_safe_mode=True,
                what=f"HDF5 attribute {name}",
            )
    userblock = result.get("userblock")
    if isinstance(userblock, int) and userblock > 0:
        _check_user_block(userblock, source, ctx)


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _run_child(source: Source, ctx: ScanContext) -> dict[str, object] | None:
    """Run h5py in a child interpreter with a time limit; ``None`` after reporting a failure."""
    timeout = min(CHILD_TIMEOUT_S, ctx.limits.max_seconds)
    with _request(source) as request:
        try:
            proc = subprocess.run(  # noqa: S603 - our own script, run by this interpreter
                [sys.executable, "-I", os.fspath(_CHILD)],
                input=request,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            ctx.report(
                "MAM-H5-001",
                f"the HDF5 library did not finish within {timeout:g} s and was stopped; "
                "corrupt metadata can make it loop, so the file was not analysed",
            )
            return None
    if proc.returncode != 0:
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [
            f"exit status {proc.returncode}"
        ]
        ctx.report("MAM-H5-001", f"the HDF5 reader failed: {why[0][:_MAX_MESSAGE]}")
        return None
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        ctx.report("MAM-H5-001", "the HDF5 reader returned an unreadable answer")
        return None
    if not isinstance(result, dict):
        ctx.report("MAM-H5-001", "the HDF5 reader returned an unreadable answer")
        return None
    return result


@contextmanager
def _request(source: Source) -> Iterator[bytes]:
    """The child's stdin: a file region by path, in-memory bytes inline, anything else spooled."""
    if isinstance(source, FileRegion):
        header = {"path": source.path, "offset": source.offset, "length": source.size}
        yield json.dumps(header).encode() + b"\n"
        return
    if isinstance(source, BytesSource):
        yield b'{"stdin": true}\n' + source.data
        return
    with tempfile.NamedTemporaryFile(prefix="mamori-h5-") as tmp, source.open() as stream:
        while chunk := stream.read(1 << 20):
            tmp.write(chunk)
        tmp.flush()
        header = {"path": tmp.name, "offset": 0, "length": tmp.tell()}
        yield json.dumps(header).encode() + b"\n"


def _check_user_block(size: int, source: Source, ctx: ScanContext) -> None:
    if source.size is not None and size > source.size:
        ctx.report("MAM-H5-001", f"user block of {size} bytes is larger than the file")
        return
    with source.open() as stream:
        block = stream.read(size)
    if not block.strip(b"\x00"):
        return  # an all-zero user block is what h5py writes by default
    ctx.report(
        "MAM-H5-004",
        f"{size} bytes precede the HDF5 superblock (user block); scanned by content",
        offset=0,
    )
    ctx.scan_child("<hdf5-user-block>", BytesSource(block))
