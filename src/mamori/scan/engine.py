"""The scan engine: detect by content, recurse into containers, hash, enforce limits.

One :class:`_Scan` exists per scanned path. Every source it meets (the file, each archive
member, each decompressed stream) goes through :meth:`_Scan.scan_source`, which

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
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from mamori import __version__
from mamori.errors import ScanError
from mamori.findings import (
    FileFormat,
    Finding,
    Location,
    Member,
    ScanReport,
    Severity,
    SuppressedFinding,
)
from mamori.scan._internal.digest import CHUNK, Digests, MultiHasher, digest_source
from mamori.scan._internal.source import BytesSource, FileRegion, RegionReader, Source
from mamori.scan.formats import HANDLERS
from mamori.scan.formats.interface import PROBE_BYTES, FormatHandler, LimitExceeded, Probe
from mamori.scan.limits import ScanLimits
from mamori.scan.policy import ScanPolicy
from mamori.scan.rules import RULESET_VERSION, rule

__all__ = ["detect", "iter_scan_paths", "scan_bytes", "scan_path"]

# Extensions users expect to be models. Only used to decide how loud an unrecognised file is
# and to report an extension that lies about the content; never to choose a parser.
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
    ".nemo": frozenset({FileFormat.NEMO}),
    ".msgpack": frozenset({FileFormat.FLAX_MSGPACK}),
    ".pb": frozenset({FileFormat.TF_SAVEDMODEL}),
}


def detect(probe: Probe, handlers: Sequence[FormatHandler] = HANDLERS) -> list[FormatHandler]:
    """Return the handlers whose format matches the bytes, most specific readings only.

    A handler is dropped when a matching handler refines its format (a torch zip is also a
    zip; only the torch reading is kept). More than one survivor means the bytes are
    ambiguous, which the engine reports.
    """
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
    digests: Digests | Future[Digests]
    expected_crc32: int | None
    expected_size: int | None


class _OneShotTee(io.RawIOBase):
    """Replays the probed head, then streams the rest, hashing every byte exactly once."""

    def __init__(self, head: bytes, inner: IO[bytes], hasher: MultiHasher) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._inner = inner
        self.hasher = hasher

    def readable(self) -> bool:  # noqa: D102 - io protocol
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's buffer type is wider than needed
        """Serve the remaining head first, then read and hash from the inner stream."""
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._inner.read(len(view))
        self.hasher.update(data)
        view[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        self._head = memoryview(b"")
        while chunk := self._inner.read(CHUNK):
            self.hasher.update(chunk)


class _TeeSource(Source):
    random_access = False

    def __init__(self, tee: _OneShotTee, size: int | None) -> None:
        self._tee: _OneShotTee | None = tee
        self.size = size

    def open(self) -> IO[bytes]:
        if self._tee is None:
            msg = "a streamed member can be read only once"
            raise RuntimeError(msg)
        tee, self._tee = self._tee, None
        return io.BufferedReader(tee, CHUNK)


class _Context:
    """What a handler sees of the engine while it scans one source (see ``ScanContext``)."""

    def __init__(self, scan: _Scan, member_path: tuple[str, ...], depth: int) -> None:
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


class _Scan:
    """State of the scan of one top-level path."""

    def __init__(self, policy: ScanPolicy, pool: ThreadPoolExecutor) -> None:
        self.policy = policy
        self.limits = policy.limits
        self.pool = pool
        self.deadline = time.monotonic() + self.limits.max_seconds
        self.findings: list[Finding] = []
        self.members: list[_PendingMember] = []
        self.member_count = 0
        self.decompressed = 0
        self.timed_out = False
        self.spool_fds: list[int] = []
        self.file_depth = 0
        """Depth of the files the user named: 0 for a file scan, 1 for a directory scan."""

    def close(self) -> None:
        """Release spooled temporary files."""
        for fd in self.spool_fds:
            os.close(fd)
        self.spool_fds.clear()

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(
                "MAM-LIM-004", f"scan exceeded its {self.limits.max_seconds:g} s budget"
            )

    def emit(self, rule_id: str, message: str, member_path: tuple[str, ...], **kw: object) -> None:
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
                raise LimitExceeded(
                    "MAM-LIM-003", f"more than {self.limits.max_members} members"
                )
        self.check_deadline()
        md5 = self.policy.md5
        want_crc = expected_crc32 is not None

        if source.random_access:
            digests: Digests | Future[Digests] = (
                top_digests
                if top_digests is not None
                else self.pool.submit(digest_source, source, md5=md5, crc32=want_crc)
            )
            if opaque:
                self._record(member_path, FileFormat.RAW_DATA, digests, expected_crc32, source)
                return FileFormat.RAW_DATA
            probe = _probe_random(source, member_path)
            fmt = self._dispatch(source, probe, member_path, depth, expected_format)
            self._record(member_path, fmt, digests, expected_crc32, source)
            return fmt

        hasher = MultiHasher(md5=md5, crc32=want_crc)
        raw = source.open()
        try:
            head = _read_exactly(raw, PROBE_BYTES)
            hasher.update(head)
            tee = _OneShotTee(head, raw, hasher)
            if opaque:
                tee.drain()
                self._record(member_path, FileFormat.RAW_DATA, hasher.result(), expected_crc32, None)
                return FileFormat.RAW_DATA
            probe = Probe(head=head, tail=None, size=source.size, name=_name(member_path))
            matches = detect(probe)
            if len(matches) == 1 and not matches[0].needs_random_access:
                fmt = self._run_handlers(
                    matches, _TeeSource(tee, source.size), probe, member_path, depth,
                    expected_format,
                )
                tee.drain()
            else:
                spooled = self._spool(tee)
                fmt = self._run_handlers(
                    matches, spooled, probe, member_path, depth, expected_format
                )
        finally:
            raw.close()
        self._record(member_path, fmt, hasher.result(), expected_crc32, None)
        return fmt

    def _spool(self, tee: _OneShotTee) -> Source:
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
        return _DescriptorSource(fd, os.fstat(fd).st_size)

    def _dispatch(
        self,
        source: Source,
        probe: Probe,
        member_path: tuple[str, ...],
        depth: int,
        expected_format: FileFormat | None,
    ) -> FileFormat:
        return self._run_handlers(
            detect(probe), source, probe, member_path, depth, expected_format
        )

    def _run_handlers(
        self,
        matches: list[FormatHandler],
        source: Source,
        probe: Probe,
        member_path: tuple[str, ...],
        depth: int,
        expected_format: FileFormat | None,
    ) -> FileFormat:
        if not matches:
            self._unrecognised(probe, member_path, depth)
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

    def _unrecognised(self, probe: Probe, member_path: tuple[str, ...], depth: int) -> None:
        ext = Path(probe.name).suffix.lower()
        if depth == self.file_depth and ext in _MODEL_EXTENSIONS:
            self.emit(
                "MAM-GEN-004",
                f"file named *{ext} matches no known model format",
                member_path,
            )
        elif depth > self.file_depth:
            self.emit("MAM-GEN-003", "member format not recognised; hashed only", member_path)

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

    def _record(
        self,
        member_path: tuple[str, ...],
        fmt: FileFormat,
        digests: Digests | Future[Digests],
        expected_crc32: int | None,
        source: Source | None,
    ) -> None:
        size = source.size if source is not None else None
        self.members.append(_PendingMember(member_path, fmt, digests, expected_crc32, size))

    def finish(self) -> tuple[Digests | None, tuple[Member, ...]]:
        """Wait for the hashing threads; check CRCs and sizes; return the top and members."""
        top: Digests | None = None
        members: list[Member] = []
        for pending in self.members:
            digests = pending.digests
            if isinstance(digests, Future):
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


class _DescriptorSource(Source):
    """A spooled member in an unlinked temporary file, read through ``pread``."""

    random_access = True

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size

    def open(self) -> IO[bytes]:
        assert self.size is not None
        reader = RegionReader(os.dup(self._fd), 0, self.size, owns_fd=True)
        return io.BufferedReader(reader, CHUNK)


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    parts: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _probe_random(source: Source, member_path: tuple[str, ...]) -> Probe:
    with source.open() as stream:
        head = _read_exactly(stream, PROBE_BYTES)
        tail: bytes | None = None
        size = source.size
        if size is not None and size > PROBE_BYTES:
            stream.seek(size - PROBE_BYTES)
            tail = _read_exactly(stream, PROBE_BYTES)
        elif size is not None:
            tail = head
    return Probe(head=head, tail=tail, size=size, name=_name(member_path))


def _name(member_path: tuple[str, ...]) -> str:
    return member_path[-1] if member_path else ""


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def scan_path(path: str | os.PathLike[str], policy: ScanPolicy | None = None) -> ScanReport:
    """Scan a file or a directory tree without loading anything in it.

    A directory is scanned as one artifact whose members are its regular files; its digest is
    the SHA-256 of a manifest listing ``<sha256>  <relative path>`` per file, sorted by path.

    Raises:
        ScanError: the path does not exist or cannot be read at all.
    """
    policy = policy or ScanPolicy()
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ScanError(f"cannot scan {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        return _scan_directory(p, policy)
    if not stat.S_ISREG(st.st_mode):
        raise ScanError(f"cannot scan {os.fspath(path)!r}: not a regular file or directory")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise ScanError(f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    return _scan_file(p, policy, st)


def scan_bytes(data: bytes, name: str = "<bytes>", policy: ScanPolicy | None = None) -> ScanReport:
    """Scan bytes held in memory (an upload, a test payload) as if they were a file."""
    policy = policy or ScanPolicy()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mamori-hash") as pool:
        scan = _Scan(policy, pool)
        fmt = _run_top(scan, BytesSource(data), name)
        top, members = scan.finish()
        scan.close()
    assert top is not None
    return _build_report(scan, name, top, fmt, members, started, time.perf_counter() - t0)


def _run_top(scan: _Scan, source: Source, name: str) -> FileFormat:
    probe_name = name
    try:
        probe = _probe_random(source, ())
        probe = Probe(head=probe.head, tail=probe.tail, size=probe.size, name=probe_name)
        digests = scan.pool.submit(digest_source, source, md5=scan.policy.md5, crc32=False)
        fmt = scan._run_handlers(detect(probe), source, probe, (), 0, None)  # noqa: SLF001
    except LimitExceeded:
        # A time-out aborts the remaining work; the finding is already recorded.
        fmt = FileFormat.UNKNOWN
        digests = scan.pool.submit(digest_source, source, md5=scan.policy.md5, crc32=False)
    scan._record((), fmt, digests, None, source)  # noqa: SLF001
    return fmt


def _scan_file(p: Path, policy: ScanPolicy, st: os.stat_result) -> ScanReport:
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mamori-hash") as pool:
        scan = _Scan(policy, pool)
        fmt = _run_top(scan, FileRegion(p, 0, st.st_size), p.name)
        top, members = scan.finish()
        scan.close()
    try:
        changed = _stat_key(p.stat()) != _stat_key(st)
    except OSError:
        changed = True
    if changed:
        scan.emit("MAM-GEN-002", "file changed while it was being scanned", ())
    assert top is not None
    return _build_report(scan, os.fspath(p), top, fmt, members, started, time.perf_counter() - t0)


def _scan_directory(root: Path, policy: ScanPolicy) -> ScanReport:
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    real_root = root.resolve()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mamori-hash") as pool:
        scan = _Scan(policy, pool)
        scan.file_depth = 1
        try:
            for rel, full in _walk(root):
                member = (rel,)
                if full.is_symlink():
                    target = full.resolve()
                    if not target.is_relative_to(real_root):
                        scan.emit(
                            "MAM-GEN-006",
                            f"symlink points outside the scanned directory to {target}",
                            member,
                            evidence=os.readlink(full),
                        )
                        continue
                try:
                    st = full.stat()
                except OSError as exc:
                    scan.emit("MAM-GEN-001", f"cannot stat: {exc.strerror or exc}", member)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    scan.emit("MAM-GEN-001", "not a regular file; not scanned", member)
                    continue
                try:
                    with open(full, "rb"):
                        pass
                except OSError as exc:
                    scan.emit("MAM-GEN-001", f"cannot read: {exc.strerror or exc}", member)
                    continue
                scan.scan_source(FileRegion(full, 0, st.st_size), member, 1)
        except LimitExceeded as exc:
            scan.emit(exc.rule_id, exc.message, ())
        _, members = scan.finish()
        scan.close()
    manifest = "".join(f"{m.sha256}  {m.path[0]}\n" for m in members if len(m.path) == 1)
    hasher = MultiHasher(md5=policy.md5, crc32=False)
    hasher.update(manifest.encode())
    top = hasher.result()
    return _build_report(
        scan,
        os.fspath(root),
        Digests(size=sum(m.size for m in members if len(m.path) == 1), sha256=top.sha256,
                md5=top.md5, crc32=None),
        FileFormat.DIRECTORY,
        members,
        started,
        time.perf_counter() - t0,
    )


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative posix path, path)`` for every non-directory entry, sorted, no follow."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        entries = sorted(filenames) + sorted(d for d in dirnames if (base / d).is_symlink())
        for name in sorted(entries):
            full = base / name
            yield full.relative_to(root).as_posix(), full


def _build_report(
    scan: _Scan,
    path: str,
    top: Digests,
    fmt: FileFormat,
    members: tuple[Member, ...],
    started: datetime,
    duration: float,
) -> ScanReport:
    kept: list[Finding] = []
    suppressed: list[SuppressedFinding] = []
    for finding in _dedupe(scan.findings):
        match = next((s for s in scan.policy.suppressions if s.matches(finding, path)), None)
        if match is None:
            kept.append(finding)
        else:
            suppressed.append(SuppressedFinding(finding, match.reason))
    return ScanReport(
        path=path,
        size=top.size,
        sha256=top.sha256,
        md5=top.md5,
        format=fmt,
        threshold=scan.policy.threshold,
        scanner_version=__version__,
        ruleset_version=RULESET_VERSION,
        started_at=started,
        duration_s=duration,
        members=members,
        findings=tuple(_sorted(kept)),
        suppressed=tuple(suppressed),
    )


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[Finding] = set()
    out: list[Finding] = []
    for f in findings:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(
        findings,
        key=lambda f: (-f.severity, f.location.member, f.location.offset or -1, f.rule_id),
    )


def iter_scan_paths(
    paths: Sequence[str | os.PathLike[str]], policy: ScanPolicy | None = None
) -> Iterator[ScanReport]:
    """Scan each path in turn (files or directories), yielding one report per path."""
    for path in paths:
        yield scan_path(path, policy)
