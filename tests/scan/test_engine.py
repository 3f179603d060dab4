"""The engine's contract: detection by content, recursion, hashing, limits, fail-closed."""

from __future__ import annotations

import hashlib
import io
import os
import time
import zlib
from pathlib import Path
from typing import ClassVar

import pytest

from mamori.findings import FileFormat, Severity, Verdict
from mamori.scan import ScanLimits, ScanPolicy, Suppression, scan_bytes, scan_path
from mamori.scan import engine as engine_mod
from mamori.scan._internal.source import BytesSource, Source, StreamSource
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext


class _Magic(FormatHandler):
    """A test format: bytes starting with a magic; optionally nests its payload as a child."""

    format: ClassVar[FileFormat] = FileFormat.TEXT
    magic: ClassVar[bytes] = b"MAGIC"

    def sniff(self, probe: Probe) -> bool:
        return probe.head.startswith(self.magic)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        with source.open() as stream:
            data = stream.read()
        if b"BAD" in data:
            ctx.report("MAM-GEN-004", "bad marker", offset=data.index(b"BAD"))
        if b"CRASH" in data:
            raise ValueError("parser bug")
        if b"NEST" in data:
            ctx.scan_child("inner", BytesSource(data))
        if b"SLEEP" in data:
            while True:
                time.sleep(0.01)
                ctx.check_deadline()


class _Json(_Magic):
    format: ClassVar[FileFormat] = FileFormat.JSON
    magic: ClassVar[bytes] = b"MAGIC"


class _Yaml(_Magic):
    """Refines TEXT, so when both match only this reading is kept."""

    format: ClassVar[FileFormat] = FileFormat.YAML
    refines: ClassVar[FileFormat | None] = FileFormat.TEXT
    magic: ClassVar[bytes] = b"MAGICYAML"


class _Streamer(FormatHandler):
    """Reads only the first bytes of a streamed child and emits them as children of its own."""

    format: ClassVar[FileFormat] = FileFormat.ZLIB
    magic: ClassVar[bytes] = b"ZSTREAM"

    def sniff(self, probe: Probe) -> bool:
        return probe.head.startswith(self.magic)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        with source.open() as stream:
            stream.read(len(self.magic))
            payload = stream.read()
        inner = zlib.decompress(payload)
        ctx.scan_child(
            "<decompressed>", StreamSource(lambda: io.BytesIO(inner), None), expected_crc32=None
        )


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> list[FormatHandler]:
    registry: list[FormatHandler] = [_Magic(), _Streamer()]
    monkeypatch.setattr(engine_mod, "HANDLERS", registry)
    return registry


def test_an_unrecognised_file_with_a_model_extension_is_unsafe(handlers):
    report = scan_bytes(b"K\x01\xffgarbage", "weights.pt")
    assert [f.rule_id for f in report.findings] == ["MAM-GEN-004"]
    assert report.verdict is Verdict.UNSAFE


def test_an_unrecognised_file_without_a_model_extension_is_safe(handlers):
    report = scan_bytes(b"just some notes", "README.md")
    assert report.findings == ()
    assert report.format is FileFormat.UNKNOWN
    assert report.verdict is Verdict.SAFE


def test_the_report_digest_is_the_sha256_of_the_exact_bytes(handlers):
    data = b"MAGIC" + os.urandom(3_000_000)
    report = scan_bytes(data, "x.bin")
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.size == len(data)
    assert report.md5 is None


def test_md5_is_computed_only_when_the_policy_asks_for_it(handlers):
    report = scan_bytes(b"MAGIC", "x", ScanPolicy(md5=True))
    assert report.md5 == hashlib.md5(b"MAGIC").hexdigest()


def test_a_crashing_parser_becomes_a_finding_not_a_clean_result(handlers):
    report = scan_bytes(b"MAGIC CRASH", "x")
    assert [f.rule_id for f in report.findings] == ["MAM-GEN-001"]
    assert "ValueError: parser bug" in report.findings[0].message
    assert report.verdict is Verdict.UNSAFE


def test_bytes_valid_as_two_unrelated_formats_are_reported_and_both_readings_scanned(
    handlers,
):
    handlers.append(_Json())
    report = scan_bytes(b"MAGIC BAD", "x")
    rules = [f.rule_id for f in report.findings]
    assert "MAM-GEN-005" in rules
    assert report.findings[0].severity >= Severity.HIGH
    # each reading ran: the BAD marker is found once per handler, deduplicated to one finding
    assert rules.count("MAM-GEN-004") == 1


def test_a_format_that_refines_another_replaces_it_without_an_ambiguity_finding(handlers):
    handlers.append(_Yaml())
    report = scan_bytes(b"MAGICYAML", "x")
    assert report.format is FileFormat.YAML
    assert report.findings == ()


def test_nesting_past_the_depth_limit_is_a_finding(handlers):
    policy = ScanPolicy(limits=ScanLimits(max_depth=3))
    report = scan_bytes(b"MAGIC NEST", "x", policy)
    assert "MAM-LIM-002" in {f.rule_id for f in report.findings}
    assert max(len(m.path) for m in report.members) == 3


def test_too_many_members_is_a_finding(handlers):
    policy = ScanPolicy(limits=ScanLimits(max_members=2, max_depth=50))
    report = scan_bytes(b"MAGIC NEST", "x", policy)
    assert "MAM-LIM-003" in {f.rule_id for f in report.findings}


def test_a_scan_past_its_time_budget_stops_with_a_finding(handlers):
    policy = ScanPolicy(limits=ScanLimits(max_seconds=0.2))
    report = scan_bytes(b"MAGIC SLEEP", "x", policy)
    assert "MAM-LIM-004" in {f.rule_id for f in report.findings}
    assert report.verdict is Verdict.UNSAFE


def test_a_streamed_child_is_hashed_completely_even_if_the_handler_reads_part(handlers):
    inner = b"MAGIC" + b"x" * 200_000
    report = scan_bytes(b"ZSTREAM" + zlib.compress(inner), "x.z")
    (member,) = report.members
    assert member.path == ("<decompressed>",)
    assert member.sha256 == hashlib.sha256(inner).hexdigest()
    assert member.size == len(inner)
    assert member.format is FileFormat.TEXT


def test_a_member_whose_crc_does_not_match_its_container_is_reported(handlers):
    class _Crc(_Magic):
        magic: ClassVar[bytes] = b"CRC"

        def scan(self, source: Source, ctx: ScanContext) -> None:
            ctx.scan_child("m", BytesSource(b"hello"), expected_crc32=zlib.crc32(b"hellO"))
            ctx.scan_child("ok", BytesSource(b"hello"), expected_crc32=zlib.crc32(b"hello"))

    handlers.append(_Crc())
    report = scan_bytes(b"CRC", "x")
    crc = [f for f in report.findings if f.rule_id == "MAM-GEN-008"]
    assert [f.location.member for f in crc] == [("m",)]


def test_a_one_shot_member_is_spooled_to_disk_for_a_handler_that_seeks(handlers):
    seen: list[int] = []

    class _Seeker(_Magic):
        magic: ClassVar[bytes] = b"SEEK"
        needs_random_access: ClassVar[bool] = True

        def scan(self, source: Source, ctx: ScanContext) -> None:
            assert source.random_access
            with source.open() as stream:
                stream.seek(-4, io.SEEK_END)
                seen.append(int.from_bytes(stream.read(4), "little"))

    handlers.append(_Seeker())
    inner = b"SEEK" + b"\x00" * 2_000_000 + (1234).to_bytes(4, "little")
    policy = ScanPolicy(limits=ScanLimits(max_spool_memory=1024))
    report = scan_bytes(b"ZSTREAM" + zlib.compress(inner), "x", policy)
    assert seen == [1234]
    assert report.members[0].sha256 == hashlib.sha256(inner).hexdigest()


def test_a_suppression_moves_the_finding_out_of_the_verdict_and_keeps_the_reason(handlers):
    policy = ScanPolicy(
        suppressions=(Suppression(rule_id="MAM-GEN-004", path_glob="*.pt", reason="vendor format"),)
    )
    report = scan_bytes(b"\x00garbage", "weights.pt", policy)
    assert report.findings == ()
    assert report.verdict is Verdict.SAFE
    (suppressed,) = report.suppressed
    assert suppressed.reason == "vendor format"
    assert suppressed.finding.rule_id == "MAM-GEN-004"


def test_a_directory_is_one_artifact_whose_digest_is_its_manifest(handlers, tmp_path: Path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_bytes(b"MAGIC")
    (tmp_path / "b" / "c.pt").write_bytes(b"\x00junk")
    report = scan_path(tmp_path)
    assert report.format is FileFormat.DIRECTORY
    assert [m.path for m in report.members] == [("a.txt",), ("b/c.pt",)]
    manifest = "".join(f"{m.sha256}  {m.path[0]}\n" for m in report.members)
    assert report.sha256 == hashlib.sha256(manifest.encode()).hexdigest()
    # files named by a directory scan are judged like top-level files
    assert [(f.rule_id, f.location.member) for f in report.findings] == [
        ("MAM-GEN-004", ("b/c.pt",))
    ]


def test_a_symlink_leaving_the_directory_is_reported_and_not_followed(handlers, tmp_path: Path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"MAGIC BAD")
    root = tmp_path / "model"
    root.mkdir()
    (root / "link").symlink_to(outside)
    report = scan_path(root)
    assert [f.rule_id for f in report.findings] == ["MAM-GEN-006"]
    assert report.members == ()


def test_a_missing_path_raises_a_scan_error_naming_it(tmp_path: Path):
    from mamori.errors import ScanError

    with pytest.raises(ScanError, match=r"nope\.pt"):
        scan_path(tmp_path / "nope.pt")


def test_a_fifo_is_refused_with_a_scan_error(tmp_path: Path):
    from mamori.errors import ScanError

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ScanError, match="not a regular file"):
        scan_path(fifo)


def test_a_file_that_changes_during_the_scan_is_reported(handlers, tmp_path: Path):
    target = tmp_path / "m.bin"

    class _Mutator(_Magic):
        magic: ClassVar[bytes] = b"MUTATE"

        def scan(self, source: Source, ctx: ScanContext) -> None:
            with target.open("ab") as fh:
                fh.write(b"more")

    handlers.append(_Mutator())
    target.write_bytes(b"MUTATE")
    report = scan_path(target)
    assert "MAM-GEN-002" in {f.rule_id for f in report.findings}


def test_unknown_bytes_under_a_name_loaders_open_make_the_verdict_unsafe(handlers):
    for name in ("weights.bin", "x.data", "m.npy", "m.pt", "archive.zip", "m.safetensors"):
        # K (BININT1) is a valid first opcode: pickle.load would read on, so this is no proof.
        report = scan_bytes(b"K\x01\xff\xferaw float32 weights", name)
        (finding,) = report.findings
        assert (finding.rule_id, finding.severity) == ("MAM-GEN-004", Severity.MEDIUM), name
        assert report.verdict is Verdict.UNSAFE, name


def test_raw_data_beside_the_onnx_model_that_declares_it_stays_safe(handlers, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"ONNX")
    (tmp_path / "model.onnx.data").write_bytes(b"K\x01\xffraw float32 weights")
    report = scan_path(tmp_path / "model.onnx.data")
    (finding,) = report.findings
    assert (finding.rule_id, finding.severity) == ("MAM-GEN-004", Severity.LOW)
    assert report.verdict is Verdict.SAFE


def test_binary_file_without_extension_in_a_folder_is_unsafe_but_text_is_quiet(handlers, tmp_path):
    (tmp_path / "LICENSE").write_text("MIT License\n\nCopyright (c) 2026\n")
    (tmp_path / "README.md").write_bytes(b"\x00\x01 not even text")
    (tmp_path / ".gitattributes").write_text("*.bin filter=lfs\n")
    assert scan_path(tmp_path).verdict is Verdict.SAFE
    (tmp_path / "weights").write_bytes(b"K\x01\xff\xferaw float32 weights")
    report = scan_path(tmp_path)
    assert [(f.rule_id, f.location.member) for f in report.findings] == [
        ("MAM-GEN-004", ("weights",))
    ]
    assert report.verdict is Verdict.UNSAFE


def test_text_under_a_loader_name_is_noted_but_not_unsafe(handlers):
    # site-packages' *.pth path files; Git LFS pointers named pytorch_model.bin
    for name, text in (("distutils-precedence.pth", b"import os; x = 1\n"), ("m.bin", b"v 1\n")):
        report = scan_bytes(text, name)
        (finding,) = report.findings
        assert (finding.rule_id, finding.severity) == ("MAM-GEN-004", Severity.LOW), name
        assert report.verdict is Verdict.SAFE, name


def test_unparsed_sentencepiece_model_files_are_noted_but_not_unsafe(handlers):
    report = scan_bytes(b"\n\x0e\n\x05<unk>\x15\x00\x00\x00\x00\x18\x02", "tokenizer.model")
    (finding,) = report.findings
    assert (finding.rule_id, finding.severity) == ("MAM-GEN-004", Severity.LOW)


def test_bytes_whose_first_opcode_pickle_rejects_are_noted_but_not_unsafe(handlers):
    # Raw float32 data starting with 0x00 (no opcode), a PNG named like a checkpoint, a GLOBAL
    # whose module does not decode: torch.load, numpy.load and pickle.load all stop at once.
    for data, name in (
        (b"\x00\x00\x80?\x00\x00\x00@", "weights.bin"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "bad_pytorch.pt"),
        (b"cmod\n\xf8\n", "not_a_pickle.bin"),
    ):
        report = scan_bytes(data, name)
        (finding,) = report.findings
        assert (finding.rule_id, finding.severity) == ("MAM-GEN-004", Severity.LOW), name


def test_text_under_an_archive_or_model_format_name_is_unsafe(handlers):
    report = scan_bytes(b"hello, this is not a zip\n", "weights.zip")
    assert report.verdict is Verdict.UNSAFE


def test_openvino_weights_beside_their_xml_stay_safe(handlers, tmp_path):
    (tmp_path / "openvino_model.xml").write_text("<net/>\n")
    (tmp_path / "openvino_model.bin").write_bytes(b"K\x01\xffraw float32 weights")
    report = scan_path(tmp_path / "openvino_model.bin")
    (finding,) = report.findings
    assert (finding.rule_id, finding.severity) == ("MAM-GEN-004", Severity.LOW)
