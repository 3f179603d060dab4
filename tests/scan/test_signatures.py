"""Optional ClamAV and YARA engines over every file and member.

The ClamAV tests use the real ``clamscan`` from Debian's ``clamav`` package with a tiny
database written here (no virus database is downloaded); they skip only when ``clamscan`` is
not installed. The clamd tests talk to a local Unix-socket server that speaks clamd's
INSTREAM protocol, because starting a real clamd needs a full virus database.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import socket
import struct
import threading
import zipfile
from pathlib import Path

import pytest

from mamori.findings import Severity, Verdict
from mamori.scan import ScanPolicy, scan_bytes, scan_path
from mamori.scan.policy_file import parse_policy
from mamori.scan.signatures import (
    ClamAVConfig,
    ClamAVMode,
    SignatureConfig,
    SignatureScanner,
    YaraConfig,
)

# The EICAR anti-virus test file: harmless by design, recognised by every engine.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"MAMORI-SIGNATURE-TEST-MARKER"
CLAMSCAN = shutil.which("clamscan")
needs_clamscan = pytest.mark.skipif(
    CLAMSCAN is None, reason="clamscan (Debian clamav) not installed"
)


@pytest.fixture
def clam_db(tmp_path) -> Path:
    db = tmp_path / "db"
    db.mkdir()
    (db / "test.hdb").write_text(
        f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Mamori.Test.EICAR\n"
    )
    (db / "test.ndb").write_text(f"Mamori.Test.Marker:0:*:{MARKER.hex()}\n")
    return db


def _policy(**kw) -> ScanPolicy:
    return ScanPolicy(signatures=SignatureConfig(**kw))


def _clam(db: Path, **kw) -> ScanPolicy:
    return _policy(clamav=ClamAVConfig(enabled=True, database=str(db), **kw))


def _sig(report, rule_id: str):
    return [f for f in report.findings if f.rule_id == rule_id]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_signature_engines_are_off_by_default():
    assert SignatureScanner.create(ScanPolicy().signatures) is None
    assert not _sig(scan_bytes(EICAR, "x.bin"), "MAM-SIG-001")


@needs_clamscan
def test_clamscan_finds_eicar_in_a_file(tmp_path, clam_db):
    path = tmp_path / "eicar.com"
    path.write_bytes(EICAR)
    hits = _sig(scan_path(path, _clam(clam_db)), "MAM-SIG-001")
    assert [h.evidence for h in hits] == ["Mamori.Test.EICAR.UNOFFICIAL"]
    assert hits[0].severity is Severity.CRITICAL


@needs_clamscan
def test_clamscan_finds_a_signature_in_a_compressed_zip_member(clam_db):
    data = _zip({"readme.txt": b"hello", "payload.bin": b"xx" + MARKER + b"yy"})
    hits = _sig(scan_bytes(data, "m.zip", _clam(clam_db)), "MAM-SIG-001")
    # ClamAV unpacks zips itself, so the archive matches too; the member pins the location.
    by_member = {h.location.member: h.evidence for h in hits}
    assert by_member[("payload.bin",)] == "Mamori.Test.Marker.UNOFFICIAL"
    assert ("readme.txt",) not in by_member


@needs_clamscan
def test_clamscan_sees_a_streamed_gzip_member(clam_db):
    report = scan_bytes(gzip.compress(MARKER * 3), "x.gz", _clam(clam_db))
    assert _sig(report, "MAM-SIG-001")


@needs_clamscan
def test_clean_input_gives_no_signature_finding(clam_db):
    report = scan_bytes(b"just some bytes", "x.bin", _clam(clam_db))
    assert not [f for f in report.findings if f.rule_id.startswith("MAM-SIG-")]


def test_a_missing_clamscan_binary_is_reported_as_a_check_that_did_not_run():
    report = scan_bytes(
        b"data", "x.bin", _policy(clamav=ClamAVConfig(enabled=True, binary="no-such-clamscan"))
    )
    hits = _sig(report, "MAM-SIG-003")
    assert hits
    assert "not available" in hits[0].message
    assert report.verdict is Verdict.UNSAFE


def test_a_missing_database_path_is_reported(tmp_path):
    policy = _policy(clamav=ClamAVConfig(enabled=True, database=str(tmp_path / "nope")))
    assert _sig(scan_bytes(b"data", "x.bin", policy), "MAM-SIG-003")


@needs_clamscan
def test_a_clamscan_failure_is_reported_once_not_per_member(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()  # a database directory with no signatures: clamscan exits 2
    data = _zip({f"m{i}.txt": b"x" for i in range(5)})
    hits = _sig(scan_bytes(data, "m.zip", _clam(empty)), "MAM-SIG-003")
    assert len(hits) == 1


# --- clamd over its socket ---------------------------------------------------------------------
_FAKE_STREAM_MAX = 4096


class _FakeClamd:
    """Answers PING and INSTREAM like clamd: FOUND when the stream holds the marker."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.streams: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                command = b""
                while not command.endswith(b"\0"):
                    command += conn.recv(1)
                if command == b"zPING\0":
                    conn.sendall(b"PONG\0")
                    continue
                data = b""
                while True:
                    (size,) = struct.unpack(">I", _recv_exactly(conn, 4))
                    if size == 0:
                        break
                    data += _recv_exactly(conn, size)
                self.streams.append(data)
                reply = b"stream: Fake.Marker FOUND\0" if MARKER in data else b"stream: OK\0"
                if len(data) > _FAKE_STREAM_MAX:
                    reply = b"INSTREAM size limit exceeded. ERROR\0"
                conn.sendall(reply)

    def close(self) -> None:
        self.server.close()


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise ConnectionError
        out += chunk
    return out


@pytest.fixture
def clamd(tmp_path):
    server = _FakeClamd(tmp_path / "clamd.sock")
    yield tmp_path / "clamd.sock", server
    server.close()


def test_clamd_instream_reports_a_match_in_a_member(clamd):
    path, server = clamd
    policy = _policy(clamav=ClamAVConfig(enabled=True, socket=str(path)))
    report = scan_bytes(_zip({"a.txt": b"fine", "b.bin": MARKER}), "m.zip", policy)
    hits = _sig(report, "MAM-SIG-001")
    assert [(h.location.member, h.evidence) for h in hits] == [(("b.bin",), "Fake.Marker")]
    assert MARKER in server.streams[-1] or any(MARKER in s for s in server.streams)


def test_clamd_mode_without_a_socket_is_reported():
    policy = _policy(clamav=ClamAVConfig(enabled=True, mode=ClamAVMode.CLAMD))
    assert _sig(scan_bytes(b"x", "x.bin", policy), "MAM-SIG-003")


def test_an_unreachable_clamd_is_reported(tmp_path):
    policy = _policy(clamav=ClamAVConfig(enabled=True, socket=str(tmp_path / "missing.sock")))
    hits = _sig(scan_bytes(b"x", "x.bin", policy), "MAM-SIG-003")
    assert "does not answer" in hits[0].message


# --- YARA --------------------------------------------------------------------------------------
YARA_RULE = f"""
rule mamori_test_marker {{
    meta:
        description = "test marker"
        severity = "critical"
    strings:
        $m = "{MARKER.decode()}"
    condition:
        $m
}}
rule mamori_mz_header {{
    condition:
        uint16(0) == 0x5A4D
}}
"""


@pytest.fixture
def yara_rules(tmp_path) -> Path:
    pytest.importorskip("yara")
    path = tmp_path / "rules.yar"
    path.write_text(YARA_RULE)
    return path


def _yara(*rules: Path | str) -> ScanPolicy:
    return _policy(yara=YaraConfig(enabled=True, rules=tuple(str(r) for r in rules)))


def test_a_yara_rule_matches_a_file_and_takes_its_meta_severity(tmp_path, yara_rules):
    path = tmp_path / "f.bin"
    path.write_bytes(b"aa" + MARKER)
    hits = _sig(scan_path(path, _yara(yara_rules)), "MAM-SIG-002")
    assert [h.evidence for h in hits] == ["r0:mamori_test_marker"]
    assert hits[0].severity is Severity.CRITICAL


def test_a_yara_rule_matches_a_zip_member_with_the_default_severity(yara_rules):
    report = scan_bytes(_zip({"tool.exe": b"MZ\x90\x00rest"}), "m.zip", _yara(yara_rules))
    hits = _sig(report, "MAM-SIG-002")
    assert [h.location.member for h in hits] == [("tool.exe",)]
    assert hits[0].severity is Severity.HIGH


def test_a_directory_of_yara_rules_is_loaded(tmp_path, yara_rules):
    hits = _sig(scan_bytes(MARKER, "x.bin", _yara(tmp_path)), "MAM-SIG-002")
    assert hits


def test_yara_enabled_without_rules_fails_closed():
    pytest.importorskip("yara")
    assert _sig(scan_bytes(b"x", "x.bin", _yara()), "MAM-SIG-003")


def test_yara_rules_that_do_not_compile_are_reported(tmp_path):
    pytest.importorskip("yara")
    bad = tmp_path / "bad.yar"
    bad.write_text("rule broken { condition: }")
    hits = _sig(scan_bytes(b"x", "x.bin", _yara(bad)), "MAM-SIG-003")
    assert "do not compile" in hits[0].message


def test_a_missing_rule_path_is_reported(tmp_path):
    pytest.importorskip("yara")
    assert _sig(scan_bytes(b"x", "x.bin", _yara(tmp_path / "nope.yar")), "MAM-SIG-003")


def test_the_policy_file_configures_both_engines(tmp_path):
    policy = parse_policy(
        f"""
        [signatures.clamav]
        enabled = true
        mode = "clamscan"
        database = "{tmp_path}"
        [signatures.yara]
        enabled = true
        rules = ["{tmp_path / "r.yar"}"]
        timeout_s = 5
        """
    )
    assert policy.signatures.clamav == ClamAVConfig(
        enabled=True, mode=ClamAVMode.CLAMSCAN, database=str(tmp_path)
    )
    assert policy.signatures.yara == YaraConfig(
        enabled=True, rules=(str(tmp_path / "r.yar"),), timeout_s=5
    )


def test_every_file_of_a_directory_scan_is_checked(tmp_path, yara_rules):
    tree = tmp_path / "model"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"clean")
    (tree / "sub" / "b.bin").write_bytes(MARKER)
    hits = _sig(scan_path(tree, _yara(yara_rules)), "MAM-SIG-002")
    assert [h.location.member for h in hits] == [("sub/b.bin",)]


def test_clamd_refusing_one_large_member_still_checks_the_others(clamd):
    path, _ = clamd
    policy = _policy(clamav=ClamAVConfig(enabled=True, socket=str(path)))
    data = _zip({"big.bin": b"\0" * 10_000, "z.bin": MARKER})
    report = scan_bytes(data, "m.zip", policy)
    refused = {h.location.member for h in _sig(report, "MAM-SIG-003")}
    assert ("big.bin",) in refused
    assert [h.location.member for h in _sig(report, "MAM-SIG-001")] == [("z.bin",)]
