"""Optional signature engines: ClamAV and YARA over every file and member. Off by default.

mamori's own analysis understands model formats; signature engines catch known malware that
rides inside them (a dropper in an ``assets/`` folder, a known trojan pickle). Both are
optional and configured in the policy (``[signatures.clamav]``, ``[signatures.yara]``):

* ClamAV through a running ``clamd`` (``INSTREAM`` over its socket, preferred: the database is
  loaded once) or the ``clamscan`` binary (loads its database on every call: slow with the
  full database, fine with a small custom one passed as ``database``).
* YARA through ``yara-python`` with the configured rule files.

A hit is a finding (``MAM-SIG-001`` ClamAV, ``MAM-SIG-002`` YARA) with the signature name as
evidence. An engine that is enabled but missing, misconfigured or failing is itself a finding
(``MAM-SIG-003``): the user asked for a check that did not happen, so the scan fails closed.
"""

from __future__ import annotations

import enum
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from mamori.findings import Finding, Location, Severity
from mamori.scan._internal.source import BytesSource, FileRegion, Source
from mamori.scan.rules import rule

__all__ = [
    "ClamAVConfig",
    "ClamAVMode",
    "SignatureConfig",
    "SignatureScanner",
    "YaraConfig",
]

_CHUNK: Final = 1 << 20
_YARA_IN_MEMORY: Final = 64 << 20
_CLAMSCAN_EXIT_FOUND: Final = 1


class ClamAVMode(enum.StrEnum):
    """How ClamAV is reached."""

    AUTO = "auto"
    """clamd when a socket is configured, else the clamscan binary."""
    CLAMD = "clamd"
    CLAMSCAN = "clamscan"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClamAVConfig:
    """ClamAV settings. ``socket`` is a Unix socket path or ``tcp://host:port``."""

    enabled: bool = False
    mode: ClamAVMode = ClamAVMode.AUTO
    socket: str | None = None
    binary: str = "clamscan"
    database: str | None = None
    """A database file or directory for clamscan (``--database``); the system one if unset."""
    timeout_s: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class YaraConfig:
    """YARA settings: rule files or directories of ``*.yar``/``*.yara`` files."""

    enabled: bool = False
    rules: tuple[str, ...] = ()
    timeout_s: int = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureConfig:
    """Both engines; each is off unless enabled."""

    clamav: ClamAVConfig = field(default_factory=ClamAVConfig)
    yara: YaraConfig = field(default_factory=YaraConfig)

    @property
    def enabled(self) -> bool:
        """Whether any engine is switched on."""
        return self.clamav.enabled or self.yara.enabled


class _EngineError(Exception):
    """An engine failed; the message says how."""


class _InputError(_EngineError):
    """The engine works but refused this one input (clamd's stream size limit, ...)."""


class SignatureScanner:
    """The engines of one scan, set up once; :meth:`check` runs them over one source."""

    def __init__(self, config: SignatureConfig) -> None:
        """Resolve binaries and compile rules; problems are kept as setup findings."""
        self.config = config
        self.setup_findings: list[Finding] = []
        self._clamd: str | None = None
        self._clamscan: str | None = None
        self._clam_broken: str | None = None
        self._yara: Any = None
        if config.clamav.enabled:
            self._setup_clamav(config.clamav)
        if config.yara.enabled:
            self._setup_yara(config.yara)

    @classmethod
    def create(cls, config: SignatureConfig) -> SignatureScanner | None:
        """A scanner when an engine is enabled, else ``None`` (the default: nothing runs)."""
        return cls(config) if config.enabled else None

    def _unavailable(self, engine: str, why: str) -> None:
        self.setup_findings.append(
            rule("MAM-SIG-003").finding(
                f"{engine} is enabled in the policy but not available: {why}; "
                "no file was checked with it",
                evidence=engine,
            )
        )

    def _setup_clamav(self, cfg: ClamAVConfig) -> None:
        use_clamd = cfg.mode is ClamAVMode.CLAMD or (
            cfg.mode is ClamAVMode.AUTO and cfg.socket is not None
        )
        if use_clamd:
            if not cfg.socket:
                self._unavailable("ClamAV", "mode is clamd but no socket is configured")
                return
            self._clamd = cfg.socket
            try:
                reply = _clamd_command(cfg.socket, b"zPING\0", cfg.timeout_s)
            except OSError as exc:
                self._clamd = None
                self._unavailable("ClamAV", f"clamd at {cfg.socket} does not answer: {exc}")
                return
            if reply != "PONG":
                self._clamd = None
                self._unavailable("ClamAV", f"clamd at {cfg.socket} answered {reply!r}")
            return
        binary = shutil.which(cfg.binary)
        if binary is None:
            self._unavailable(
                "ClamAV", f"{cfg.binary!r} not found (install Debian's clamav package)"
            )
            return
        if cfg.database is not None and not Path(cfg.database).exists():
            self._unavailable("ClamAV", f"database {cfg.database!r} does not exist")
            return
        self._clamscan = binary

    def _setup_yara(self, cfg: YaraConfig) -> None:
        try:
            import yara  # noqa: PLC0415 - optional dependency, imported only when enabled
        except ImportError:
            self._unavailable("YARA", "yara-python is not installed (pip install yara-python)")
            return
        files: dict[str, str] = {}
        for entry in cfg.rules:
            path = Path(entry)
            if path.is_dir():
                found = sorted(
                    p for p in path.rglob("*") if p.suffix in {".yar", ".yara"} and p.is_file()
                )
                files.update((f"r{len(files) + i}", os.fspath(p)) for i, p in enumerate(found))
            elif path.is_file():
                files[f"r{len(files)}"] = os.fspath(path)
            else:
                self._unavailable("YARA", f"rule path {entry!r} does not exist")
                return
        if not files:
            # An enabled engine with no rules would report every file clean: fail closed.
            self._unavailable("YARA", "no rule files are configured")
            return
        try:
            self._yara = yara.compile(filepaths=files)
        except yara.Error as exc:
            self._unavailable("YARA", f"rules do not compile: {exc}")

    def check(self, source: Source, member_path: tuple[str, ...]) -> list[Finding]:
        """Run the available engines over a re-openable ``source``; return their findings."""
        location = Location(member_path)
        findings: list[Finding] = []
        if self._clamd is not None or self._clamscan is not None:
            findings.extend(self._check_clamav(source, location))
        if self._yara is not None:
            findings.extend(self._check_yara(source, location))
        return findings

    def _check_clamav(self, source: Source, location: Location) -> list[Finding]:
        if self._clam_broken is not None:
            return []
        cfg = self.config.clamav
        try:
            if self._clamd is not None:
                verdict = _clamd_instream(self._clamd, source, cfg.timeout_s)
            else:
                assert self._clamscan is not None
                verdict = _clamscan(self._clamscan, cfg.database, source, cfg.timeout_s)
        except _InputError as exc:
            # clamd refused this input only (too large for StreamMaxLength, ...).
            return [
                rule("MAM-SIG-003").finding(
                    f"ClamAV could not scan this input: {exc}", location=location, evidence="ClamAV"
                )
            ]
        except (_EngineError, OSError, subprocess.SubprocessError) as exc:
            # An engine failure (no database, clamd gone) repeats for every input: report it
            # once, where it happened, instead of once per member.
            self._clam_broken = str(exc)
            return [
                rule("MAM-SIG-003").finding(
                    f"ClamAV could not scan this input ({exc}); later inputs were not "
                    "checked with ClamAV either",
                    location=location,
                    evidence="ClamAV",
                )
            ]
        if verdict is None:
            return []
        return [
            rule("MAM-SIG-001").finding(
                f"ClamAV signature {verdict} matched", location=location, evidence=verdict
            )
        ]

    def _check_yara(self, source: Source, location: Location) -> list[Finding]:
        timeout = self.config.yara.timeout_s
        try:
            matches = _yara_match(self._yara, source, timeout)
        except (OSError, _EngineError) as exc:
            return [
                rule("MAM-SIG-003").finding(
                    f"YARA could not scan this input: {exc}", location=location, evidence="YARA"
                )
            ]
        except Exception as exc:  # noqa: BLE001 - yara.Error/TimeoutError: a finding, fail closed
            return [
                rule("MAM-SIG-003").finding(
                    f"YARA could not scan this input: {type(exc).__name__}: {exc}",
                    location=location,
                    evidence="YARA",
                )
            ]
        out: list[Finding] = []
        for match in matches:
            meta = getattr(match, "meta", {}) or {}
            severity = _meta_severity(meta.get("severity"))
            out.append(
                rule("MAM-SIG-002").finding(
                    f"YARA rule {match.rule} matched"
                    + (f": {meta['description']}" if meta.get("description") else ""),
                    location=location,
                    evidence=f"{match.namespace}:{match.rule}",
                    severity=severity,
                )
            )
        return out


def _meta_severity(value: object) -> Severity | None:
    if not isinstance(value, str):
        return None
    try:
        return Severity.parse(value)
    except ValueError:
        return None


def _whole_file(source: Source) -> str | None:
    if isinstance(source, FileRegion) and source.offset == 0:
        try:
            if source.size == os.stat(source.path).st_size:
                return source.path
        except OSError:
            return None
    return None


def _copy(src: IO[bytes], dst: IO[bytes]) -> None:
    while chunk := src.read(_CHUNK):
        dst.write(chunk)


def _yara_match(rules: Any, source: Source, timeout: int) -> list[Any]:
    path = _whole_file(source)
    if path is not None:
        return list(rules.match(filepath=path, timeout=timeout))
    if isinstance(source, BytesSource):
        return list(rules.match(data=source.data, timeout=timeout))
    if source.size is not None and source.size <= _YARA_IN_MEMORY:
        with source.open() as stream:
            return list(rules.match(data=stream.read(), timeout=timeout))
    # Large members are copied to an unlinked-on-close temporary file, not into memory.
    with tempfile.NamedTemporaryFile(prefix="mamori-yara-") as tmp, source.open() as stream:
        _copy(stream, tmp)
        tmp.flush()
        return list(rules.match(filepath=tmp.name, timeout=timeout))


def _clamscan(binary: str, database: str | None, source: Source, timeout: float) -> str | None:
    """Run clamscan on the file, or on stdin for members; return the signature or None."""
    args = [binary, "--no-summary", "--stdout", "--infected"]
    if database is not None:
        args.append(f"--database={database}")
    path = _whole_file(source)
    args.append(path if path is not None else "-")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, binary resolved from the policy
            args, stdin=subprocess.PIPE, stdout=out, stderr=err
        )
        assert proc.stdin is not None
        try:
            if path is None:
                with source.open() as stream:
                    _copy(stream, proc.stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # clamscan exited early (bad database); its exit code says why
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            msg = f"clamscan took longer than {timeout:g} s"
            raise _EngineError(msg) from None
        out.seek(0)
        err.seek(0)
        stdout = out.read(1 << 16).decode("utf-8", "replace")
        stderr = err.read(1 << 12).decode("utf-8", "replace").strip()
    if code == 0:
        return None
    if code == _CLAMSCAN_EXIT_FOUND:
        for line in stdout.splitlines():
            if line.endswith(" FOUND"):
                return line.rsplit(":", 1)[-1].removesuffix(" FOUND").strip()
        return "unknown signature"
    last = stderr.splitlines()[-1] if stderr else f"exit code {code}"
    msg = f"clamscan failed: {last}"
    raise _EngineError(msg)


def _connect(address: str, timeout: float) -> socket.socket:
    if address.startswith("tcp://"):
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        return socket.create_connection((host, int(port)), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


def _recv_reply(sock: socket.socket) -> str:
    parts: list[bytes] = []
    while chunk := sock.recv(4096):
        parts.append(chunk)
        if chunk.endswith(b"\0"):
            break
    return b"".join(parts).rstrip(b"\0\n").decode("utf-8", "replace")


def _clamd_command(address: str, command: bytes, timeout: float) -> str:
    with _connect(address, timeout) as sock:
        sock.sendall(command)
        return _recv_reply(sock)


def _clamd_instream(address: str, source: Source, timeout: float) -> str | None:
    """Clamd's INSTREAM: 4-byte big-endian chunk lengths, a zero length ends the stream."""
    with _connect(address, timeout) as sock, source.open() as stream:
        sock.sendall(b"zINSTREAM\0")
        try:
            while chunk := stream.read(_CHUNK):
                sock.sendall(struct.pack(">I", len(chunk)) + chunk)
            sock.sendall(struct.pack(">I", 0))
        except BrokenPipeError:
            pass  # clamd stops reading past StreamMaxLength; its reply says so
        reply = _recv_reply(sock)
    # Replies look like "stream: OK", "stream: <signature> FOUND" or "<reason> ERROR".
    body = reply.split(":", 1)[-1].strip()
    if body == "OK":
        return None
    if body.endswith(" FOUND"):
        return body.removesuffix(" FOUND").strip()
    msg = f"clamd answered {reply!r}"
    if "size limit" in reply:
        raise _InputError(msg)
    raise _EngineError(msg)
