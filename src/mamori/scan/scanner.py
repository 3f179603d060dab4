"""The public entry points: scan a file, a directory or bytes, and build the report."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from mamori import __version__
from mamori.errors import ScanError
from mamori.findings import FileFormat, Finding, Member, ScanReport, SuppressedFinding
from mamori.scan._internal.digest import Digests, MultiHasher, digest_source
from mamori.scan._internal.source import BytesSource, FileRegion, Source
from mamori.scan._internal.streams import probe_random
from mamori.scan.engine import Scan, detect
from mamori.scan.formats.interface import LimitExceeded, Probe
from mamori.scan.policy import ScanPolicy
from mamori.scan.rules import RULESET_VERSION

__all__ = ["Progress", "iter_scan_paths", "scan_bytes", "scan_path"]

Progress = Callable[[int, int | None], None]
"""``progress(done_bytes, total_bytes)``; ``total_bytes`` is ``None`` when unknown."""


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def scan_path(
    path: str | os.PathLike[str],
    policy: ScanPolicy | None = None,
    *,
    progress: Progress | None = None,
) -> ScanReport:
    """Scan a file or a directory tree without loading anything in it.

    A directory is scanned as one artifact whose members are its regular files; its digest is
    the SHA-256 of a manifest listing ``<sha256>  <relative path>`` per file, sorted by path.
    ``progress(done_bytes, total_bytes)`` is called from time to time during long scans
    (``total_bytes`` is ``None`` for a directory, whose size is not known in advance).

    Raises:
        ScanError: the path does not exist or cannot be read at all.
    """
    policy = policy or ScanPolicy()
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        msg = f"cannot scan {os.fspath(path)!r}: {exc.strerror or exc}"
        raise ScanError(msg) from exc
    if stat.S_ISDIR(st.st_mode):
        return _scan_directory(p, policy, progress)
    if not stat.S_ISREG(st.st_mode):
        msg = f"cannot scan {os.fspath(path)!r}: not a regular file or directory"
        raise ScanError(msg)
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        msg = f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}"
        raise ScanError(msg) from exc
    return _scan_file(p, policy, st, progress)


def scan_bytes(data: bytes, name: str = "<bytes>", policy: ScanPolicy | None = None) -> ScanReport:
    """Scan bytes held in memory (an upload, a test payload) as if they were a file."""
    policy = policy or ScanPolicy()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mamori-hash") as pool:
        scan = Scan(policy, pool)
        fmt = _run_top(scan, BytesSource(data), name)
        top, members = scan.finish()
        scan.close()
    assert top is not None
    return _build_report(scan, name, top, fmt, members, started, time.perf_counter() - t0)


def _run_top(
    scan: Scan, source: Source, name: str, progress: Callable[[int], None] | None = None
) -> FileFormat:
    # Hash on a worker thread while the main thread parses the same bytes.
    digests = scan.pool.submit(
        digest_source, source, md5=scan.policy.md5, crc32=False, progress=progress
    )
    try:
        probe = probe_random(source, ())
        probe = Probe(head=probe.head, tail=probe.tail, size=probe.size, name=name)
        fmt = scan.run_handlers(
            detect(probe), source, probe, member_path=(), depth=0, expected_format=None
        )
    except LimitExceeded:
        # A time-out aborts the remaining work; the finding is already recorded.
        fmt = FileFormat.UNKNOWN
    scan.record((), fmt, digests, None, source)
    return fmt


def _scan_file(
    p: Path, policy: ScanPolicy, st: os.stat_result, progress: Progress | None
) -> ScanReport:
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    hashed = None if progress is None else (lambda done: progress(done, st.st_size))
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mamori-hash") as pool:
        scan = Scan(policy, pool)
        fmt = _run_top(scan, FileRegion(p, 0, st.st_size), p.name, hashed)
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


def _scan_directory(root: Path, policy: ScanPolicy, progress: Progress | None) -> ScanReport:
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    real_root = root.resolve()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mamori-hash") as pool:
        scan = Scan(policy, pool)
        scan.file_depth = 1
        try:
            done = 0
            for rel, full in _walk(root):
                member = (rel,)
                if full.is_symlink():
                    target = full.resolve()
                    if target.is_dir() and target.is_relative_to(real_root):
                        continue  # its files are scanned under their real path
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
                done += st.st_size
                if progress is not None:
                    progress(done, None)
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
        Digests(
            size=sum(m.size for m in members if len(m.path) == 1),
            sha256=top.sha256,
            md5=top.md5,
            crc32=None,
        ),
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


def _build_report(  # noqa: PLR0917 - private helper with one call shape
    scan: Scan,
    path: str,
    top: Digests,
    fmt: FileFormat,
    members: tuple[Member, ...],
    started: datetime,
    duration: float,
) -> ScanReport:
    if fmt is FileFormat.DIRECTORY and not members and not scan.findings:
        # Fail closed: an empty tree is what a wrong path or a failed download looks like.
        scan.emit("MAM-GEN-009", "the directory holds no regular file to scan", ())
    kept: list[Finding] = []
    suppressed: list[SuppressedFinding] = []
    for finding in _dedupe(scan.findings):
        match = next(
            (
                s
                for s in scan.policy.suppressions
                if s.matches(finding, path, directory=fmt is FileFormat.DIRECTORY)
            ),
            None,
        )
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
        notes=scan.policy.override_notes(),
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
