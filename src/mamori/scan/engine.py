"""The scan engine: detect by content, recurse into containers, hash, enforce limits.

One :class:`Scan` exists per scanned path. Every source it meets (the file, each archive
member, each decompressed stream) goes through :meth:`Scan.scan_source`, which

1. checks depth, member count and the deadline (hitting one is a finding);
2. reads a probe (head and tail) and asks every handler whether the bytes are its format;
3. reports an ambiguity when two unrelated formats match, and scans every reading;
4. hashes the exact bytes: re-openable regions on a worker thread while the main thread
   parses, one-shot streams through a tee that is drained after the handler is done;
5. turns any handler failure into a finding, so a crash can never look like "clean".
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mamori.findings import (
    FileFormat,
    Finding,
    Location,
    Member,
    Severity,
)
from mamori.scan._internal.digest import (
    CHUNK,
    DigestBatcher,
    Digests,
    MultiHasher,
    PendingDigest,
    digest_source,
)
from mamori.scan._internal.source import BytesSource, Source
from mamori.scan._internal.streams import (
    DescriptorSource,
    OneShotTee,
    TeeSource,
    probe_random,
    read_exactly,
)
from mamori.scan.formats import HANDLERS
from mamori.scan.formats.interface import PROBE_BYTES, FormatHandler, LimitExceeded, Probe
from mamori.scan.limits import ScanLimits
from mamori.scan.policy import ScanPolicy
from mamori.scan.rules import rule
from mamori.scan.signatures import SignatureScanner
from mamori.scan.unrecognised import grade_unrecognised

__all__ = ["Scan", "detect"]

# Extensions users expect to be models. Only used to report an extension that lies about the
# content (how loud unrecognised bytes are is unrecognised.py's rule); never to
# choose a parser.
_MODEL_EXTENSIONS: dict[str, frozenset[FileFormat]] = {
    ".pkl": frozenset({FileFormat.PICKLE}),
    ".pickle": frozenset({FileFormat.PICKLE}),
    ".pt": frozenset(),
    ".pth": frozenset(),
    ".bin": frozenset(),
    ".ckpt": frozenset(),
    ".model": frozenset(),
    ".joblib": frozenset(),
    ".npy": frozenset({FileFormat.NUMPY}),
    ".npz": frozenset({FileFormat.NUMPY_NPZ}),
    ".safetensors": frozenset({FileFormat.SAFETENSORS}),
    ".gguf": frozenset({FileFormat.GGUF}),
    ".onnx": frozenset({FileFormat.ONNX}),
    ".keras": frozenset({FileFormat.KERAS_V3}),
    ".h5": frozenset({FileFormat.KERAS_H5, FileFormat.HDF5}),
    ".hdf5": frozenset({FileFormat.KERAS_H5, FileFormat.HDF5}),
    ".nemo": frozenset({FileFormat.NEMO, FileFormat.GZIP, FileFormat.TAR}),
    ".msgpack": frozenset({FileFormat.FLAX_MSGPACK}),
    ".pb": frozenset({FileFormat.TF_SAVEDMODEL, FileFormat.ONNX_TENSOR}),
}


def detect(probe: Probe, handlers: Sequence[FormatHandler] | None = None) -> list[FormatHandler]:
    """Return the handlers whose format matches the bytes, most specific readings only.

    A handler is dropped when a matching handler refines its format (a torch zip is also a
    zip; only the torch reading is kept). More than one survivor means the bytes are
    ambiguous, which the engine reports.
    """
    if handlers is None:
        handlers = HANDLERS
    matched = [h for h in handlers if _safe_sniff(h, probe)]
    refined = {h.refines for h in matched if h.refines is not None}
    return [h for h in matched if h.format not in refined]


def _safe_sniff(handler: FormatHandler, probe: Probe) -> bool:
    try:
        return handler.sniff(probe)
    except Exception:  # noqa: BLE001 - a sniff that crashes simply does not claim the bytes
        return False


@dataclass(slots=True)
class _PendingMember:
    path: tuple[str, ...]
    format: FileFormat
    digests: Digests | Future[Digests] | PendingDigest
    expected_crc32: int | None
    expected_size: int | None


class _Context:
    """What a handler sees of the engine while it scans one source (see ``ScanContext``)."""

    def __init__(self, scan: Scan, member_path: tuple[str, ...], depth: int) -> None:
        self._scan = scan
        self._member_path = member_path
        self._depth = depth
        self.refined: FileFormat | None = None

    @property
    def limits(self) -> ScanLimits:
        return self._scan.limits

    @property
    def policy(self) -> ScanPolicy:
        return self._scan.policy

    @property
    def member_path(self) -> tuple[str, ...]:
        return self._member_path

    def location(self, offset: int | None = None) -> Location:
        return Location(self._member_path, offset)

    def emit(self, finding: Finding) -> None:
        self._scan.findings.append(finding)

    def report(
        self,
        rule_id: str,
        message: str,
        *,
        offset: int | None = None,
        evidence: str | None = None,
        severity: Severity | None = None,
    ) -> None:
        self.emit(
            rule(rule_id).finding(
                message, location=self.location(offset), evidence=evidence, severity=severity
            )
        )

    def refine_format(self, fmt: FileFormat) -> None:
        self.refined = fmt

    def scan_child(
        self,
        name: str,
        source: Source,
        *,
        opaque: bool = False,
        expected_crc32: int | None = None,
        expected_format: FileFormat | None = None,
    ) -> FileFormat:
        return self._scan.scan_source(
            source,
            (*self._member_path, name),
            self._depth + 1,
            opaque=opaque,
            expected_crc32=expected_crc32,
            expected_format=expected_format,
        )

    def check_deadline(self) -> None:
        self._scan.check_deadline()

    def account_decompressed(self, nbytes: int) -> None:
        self._scan.decompressed += nbytes
        if self._scan.decompressed > self._scan.limits.max_decompressed_bytes:
            raise LimitExceeded(
                "MAM-LIM-001",
                f"decompressed output exceeds {self._scan.limits.max_decompressed_bytes} bytes",
            )


class Scan:
    """State of the scan of one top-level path."""

    def __init__(self, policy: ScanPolicy, pool: ThreadPoolExecutor) -> None:
        self.policy = policy
        self.limits = policy.limits
        self.pool = pool
        # Members are hashed in batches (one task per ~32 MiB), not one future per member.
        self.batcher = DigestBatcher(pool)
        self.deadline = time.monotonic() + self.limits.max_seconds
        self.findings: list[Finding] = []
        self.members: list[_PendingMember] = []
        self.member_count = 0
        self.decompressed = 0
        self.timed_out = False
        self.spool_fds: list[int] = []
        self.file_depth = 0
        """Depth of the files the user named: 0 for a file scan, 1 for a directory scan."""
        # Optional signature engines (scan/signatures.py); None unless the policy enables one.
        self.signatures = SignatureScanner.create(policy.signatures)
        if self.signatures is not None:
            self.findings.extend(self.signatures.setup_findings)

    def close(self) -> None:
        """Release spooled temporary files."""
        for fd in self.spool_fds:
            os.close(fd)
        self.spool_fds.clear()

    def check_deadline(self) -> None:
        """Raise LimitExceeded once the wall-clock budget of this scan is spent."""
        if time.monotonic() > self.deadline:
            raise LimitExceeded(
                "MAM-LIM-004", f"scan exceeded its {self.limits.max_seconds:g} s budget"
            )

    def emit(self, rule_id: str, message: str, member_path: tuple[str, ...], **kw: object) -> None:
        """Record a finding of catalogue rule ``rule_id`` (``offset``/``evidence`` optional)."""
        evidence = kw.get("evidence")
        offset = kw.get("offset")
        self.findings.append(
            rule(rule_id).finding(
                message,
                location=Location(member_path, offset if isinstance(offset, int) else None),
                evidence=evidence if isinstance(evidence, str) else None,
            )
        )

    def scan_source(
        self,
        source: Source,
        member_path: tuple[str, ...],
        depth: int,
        *,
        opaque: bool = False,
        expected_crc32: int | None = None,
        expected_format: FileFormat | None = None,
        top_digests: Future[Digests] | None = None,
    ) -> FileFormat:
        """Scan one source; record it as a member when it is not the top-level file."""
        if depth > self.limits.max_depth:
            self.emit(
                "MAM-LIM-002",
                f"container nesting deeper than {self.limits.max_depth}; not descended",
                member_path,
            )
            return FileFormat.UNKNOWN
        if depth > 0:
            self.member_count += 1
            if self.member_count > self.limits.max_members:
                raise LimitExceeded("MAM-LIM-003", f"more than {self.limits.max_members} members")
        self.check_deadline()
        md5 = self.policy.md5
        want_crc = expected_crc32 is not None

        if source.random_access:
            digests: Digests | Future[Digests] | PendingDigest
            if top_digests is not None:
                digests = top_digests
            elif depth > 0:
                digests = self.batcher.submit(source, md5=md5, crc32=want_crc)
            else:
                digests = self.pool.submit(digest_source, source, md5=md5, crc32=want_crc)
            if opaque:
                self.record(member_path, FileFormat.RAW_DATA, digests, expected_crc32, source)
                return FileFormat.RAW_DATA
            probe = probe_random(source, member_path)
            fmt = self.run_handlers(
                detect(probe),
                source,
                probe,
                member_path=member_path,
                depth=depth,
                expected_format=expected_format,
            )
            self.record(member_path, fmt, digests, expected_crc32, source)
            return fmt

        hasher = MultiHasher(md5=md5, crc32=want_crc)
        raw = source.open()
        try:
            head = read_exactly(raw, PROBE_BYTES)
            hasher.update(head)
            tee = OneShotTee(head, raw, hasher)
            if opaque:
                tee.drain()
                self.record(member_path, FileFormat.RAW_DATA, hasher.result(), expected_crc32, None)
                return FileFormat.RAW_DATA
            probe = Probe(head=head, tail=None, size=source.size, name=_name(member_path))
            matches = detect(probe)
            # Signature engines read the bytes again, so they need the spooled copy.
            if len(matches) == 1 and not matches[0].needs_random_access and self.signatures is None:
                fmt = self.run_handlers(
                    matches,
                    TeeSource(tee, source.size),
                    probe,
                    member_path=member_path,
                    depth=depth,
                    expected_format=expected_format,
                )
                tee.drain()
            else:
                spooled = self._spool(tee)
                fmt = self.run_handlers(
                    matches,
                    spooled,
                    probe,
                    member_path=member_path,
                    depth=depth,
                    expected_format=expected_format,
                )
        finally:
            raw.close()
        self.record(member_path, fmt, hasher.result(), expected_crc32, None)
        return fmt

    def _spool(self, tee: OneShotTee) -> Source:
        """Copy a one-shot stream so that handlers can seek in it (or read it twice)."""
        buf = io.BytesIO()
        stream = io.BufferedReader(tee, CHUNK)
        while chunk := stream.read(CHUNK):
            buf.write(chunk)
            if buf.tell() > self.limits.max_spool_memory:
                return self._spool_to_disk(buf, stream)
        return BytesSource(buf.getbuffer())

    def _spool_to_disk(self, head: io.BytesIO, stream: IO[bytes]) -> Source:
        fd, name = tempfile.mkstemp(prefix="mamori-spool-")
        # Unlink at once: the descriptor keeps the data readable and nothing is left behind.
        os.unlink(name)
        self.spool_fds.append(fd)
        with os.fdopen(os.dup(fd), "wb") as out:
            out.write(head.getbuffer())
            while chunk := stream.read(CHUNK):
                out.write(chunk)
        return DescriptorSource(fd, os.fstat(fd).st_size)

    def run_handlers(
        self,
        matches: list[FormatHandler],
        source: Source,
        probe: Probe,
        *,
        member_path: tuple[str, ...],
        depth: int,
        expected_format: FileFormat | None,
    ) -> FileFormat:
        """Scan ``source`` with every matching handler; return the (refined) format."""
        if self.signatures is not None:
            self.findings.extend(self.signatures.check(source, member_path))
        if not matches:
            self._unrecognised(probe, source, member_path, depth)
            return FileFormat.UNKNOWN
        if len(matches) > 1:
            names = ", ".join(h.format.value for h in matches)
            self.emit(
                "MAM-GEN-005",
                f"bytes are valid as several formats ({names}); each reading is scanned",
                member_path,
                evidence=names,
            )
        formats: list[FileFormat] = []
        for handler in matches:
            ctx = _Context(self, member_path, depth)
            try:
                handler.scan(source, ctx)
            except LimitExceeded as exc:
                self.emit(exc.rule_id, exc.message, member_path)
                if exc.rule_id == "MAM-LIM-004":
                    self.timed_out = True
                    raise
            except Exception as exc:  # noqa: BLE001 - any parser failure is a finding: fail closed
                self.emit(
                    "MAM-GEN-001",
                    f"{handler.format.value} parser failed: {type(exc).__name__}: {exc}",
                    member_path,
                )
            formats.append(ctx.refined or handler.format)
        fmt = formats[0]
        if expected_format is not None and expected_format not in formats:
            self.emit(
                "MAM-GEN-007",
                f"container declares {expected_format.value} but content is {fmt.value}",
                member_path,
            )
        if depth == self.file_depth:
            self._check_extension(probe, formats, member_path)
        return fmt

    def _unrecognised(
        self, probe: Probe, source: Source, member_path: tuple[str, ...], depth: int
    ) -> None:
        """Grade bytes no handler recognises by the name a loader would open them under."""
        in_folder = depth == self.file_depth > 0 and not any(
            part.startswith(".") for part in probe.name.split("/")
        )
        grade = grade_unrecognised(probe, source, in_folder=in_folder)
        if grade is None:
            if depth > self.file_depth:
                self.emit("MAM-GEN-003", "member format not recognised; hashed only", member_path)
            return
        severity, why = grade
        self.findings.append(
            rule("MAM-GEN-004").finding(
                f"bytes match no known format ({why})",
                location=Location(member_path),
                severity=severity,
            )
        )

    def _check_extension(
        self, probe: Probe, formats: list[FileFormat], member_path: tuple[str, ...]
    ) -> None:
        expected = _MODEL_EXTENSIONS.get(Path(probe.name).suffix.lower())
        if expected and not expected.intersection(formats):
            self.emit(
                "MAM-GEN-007",
                f"extension {Path(probe.name).suffix} but content is {formats[0].value}",
                member_path,
            )

    def record(
        self,
        member_path: tuple[str, ...],
        fmt: FileFormat,
        digests: Digests | Future[Digests] | PendingDigest,
        expected_crc32: int | None,
        source: Source | None,
    ) -> None:
        """Remember a member (or the top file when ``member_path`` is empty) for the report."""
        size = source.size if source is not None else None
        self.members.append(_PendingMember(member_path, fmt, digests, expected_crc32, size))

    def finish(self) -> tuple[Digests | None, tuple[Member, ...]]:
        """Wait for the hashing threads; check CRCs and sizes; return the top and members."""
        top: Digests | None = None
        members: list[Member] = []
        self.batcher.flush()
        for pending in self.members:
            digests = pending.digests
            if not isinstance(digests, Digests):
                try:
                    digests = digests.result()
                except OSError as exc:
                    self.emit("MAM-GEN-001", f"could not read for hashing: {exc}", pending.path)
                    continue
            if pending.expected_crc32 is not None and digests.crc32 != pending.expected_crc32:
                self.emit(
                    "MAM-GEN-008",
                    "CRC-32 of the member does not match the container's directory",
                    pending.path,
                    evidence=f"declared {pending.expected_crc32:08x}, "
                    f"actual {digests.crc32 or 0:08x}",
                )
            if not pending.path:
                top = digests
                continue
            members.append(
                Member(
                    path=pending.path,
                    size=digests.size,
                    sha256=digests.sha256,
                    md5=digests.md5,
                    format=pending.format,
                )
            )
        return top, tuple(members)


def _name(member_path: tuple[str, ...]) -> str:
    return member_path[-1] if member_path else ""
