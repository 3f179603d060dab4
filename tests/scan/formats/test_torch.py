"""PyTorch checkpoints: zip, TorchScript, legacy stacked pickles and the pre-0.4 tar.

Samples are written with the real torch; none is ever loaded. Malicious ones carry a harmless
``os.system("true")`` reduce, or are edited copies of benign archives.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Verdict
from mamori.scan import scan_bytes, scan_path
from mamori.scan.formats.torchscript_code import check_torchscript_code


class _Payload:
    def __reduce__(self):
        return (os.system, ("true",))


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.conv = torch.nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


class FileReader(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file("/etc/hostname", shared=False, size=1, dtype=torch.uint8)
        return x + t.sum()


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def _zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("torch")
    with warnings.catch_warnings():
        # torch.jit is deprecated upstream; building samples with it is the point here.
        warnings.simplefilter("ignore")
        return _build_samples(d)


def _build_samples(d: Path) -> dict[str, Path]:
    net = Net()
    paths = {
        "state_dict": d / "sd.pt",
        "module": d / "module.pt",
        "script": d / "script.pt",
        "trace": d / "trace.pt",
        "lite": d / "lite.ptl",
        "legacy": d / "legacy.pt",
        "payload": d / "payload.pt",
        "legacy_payload": d / "legacy_payload.pt",
        "file_reader": d / "file_reader.pt",
        "quantized": d / "quantized.pt",
        "legacy_module": d / "legacy_module.pt",
    }
    torch.save(net.state_dict(), paths["state_dict"])
    torch.save(net, paths["module"])
    torch.jit.save(torch.jit.script(net), paths["script"])
    traced = torch.jit.trace(net, torch.ones(1, 3))
    torch.jit.save(traced, paths["trace"], _extra_files={"meta.json": b"{}"})
    traced._save_for_lite_interpreter(str(paths["lite"]))
    torch.save(
        {"w": torch.arange(6.0).reshape(2, 3), "i": torch.arange(3)},
        paths["legacy"],
        _use_new_zipfile_serialization=False,
    )
    torch.save({"w": torch.ones(2), "x": _Payload()}, paths["payload"])
    torch.save(
        {"w": torch.ones(2), "x": _Payload()},
        paths["legacy_payload"],
        _use_new_zipfile_serialization=False,
    )
    torch.jit.save(torch.jit.script(FileReader()), paths["file_reader"])
    quantized = torch.ao.quantization.quantize_dynamic(Net(), {torch.nn.Linear}, dtype=torch.qint8)
    torch.jit.save(torch.jit.script(quantized), paths["quantized"])
    torch.save(net, paths["legacy_module"], _use_new_zipfile_serialization=False)
    return paths


# --- benign samples -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("state_dict", FileFormat.TORCH_ZIP),
        ("module", FileFormat.TORCH_ZIP),
        ("script", FileFormat.TORCHSCRIPT),
        ("trace", FileFormat.TORCHSCRIPT),
        ("lite", FileFormat.TORCHSCRIPT),
        ("legacy", FileFormat.TORCH_LEGACY),
        ("quantized", FileFormat.TORCHSCRIPT),
        ("legacy_module", FileFormat.TORCH_LEGACY),
    ],
)
def test_checkpoints_written_by_torch_are_safe(samples, name, fmt):
    report = scan_path(samples[name])
    assert report.format is fmt
    assert report.verdict is Verdict.SAFE, report.findings


def test_state_dict_storages_are_hashed_not_parsed(samples):
    report = scan_path(samples["state_dict"])
    storages = [m for m in report.members if m.path[0].startswith("sd/data/")]
    assert len(storages) == 4
    assert {m.format for m in storages} == {FileFormat.RAW_DATA}


def test_torchscript_archives_raise_no_finding_on_their_own_globals(samples):
    report = scan_path(samples["script"])
    assert not [f for f in report.findings if f.rule_id.startswith(("MAM-PKL", "MAM-TORCH"))]


# --- malicious and tampered zip checkpoints ---------------------------------------------------


def test_reduce_payload_in_a_zip_checkpoint_is_critical(samples):
    report = scan_path(samples["payload"])
    assert report.verdict is Verdict.UNSAFE
    hits = [f for f in report.findings if f.rule_id == "MAM-PKL-001"]
    assert hits
    assert hits[0].location.member == ("payload/data.pkl",)


def test_swapped_data_pkl_is_found_and_its_storages_are_orphaned(samples, tmp_path):
    members = _zip_members(samples["state_dict"])
    members["sd/data.pkl"] = pickle.dumps(_Payload(), protocol=2)
    report = scan_path(_write_zip(tmp_path / "sd.pt", members))
    assert {"MAM-PKL-001", "MAM-TORCH-002"} <= _rules(report)


def test_missing_storage_record_is_found(samples, tmp_path):
    members = _zip_members(samples["state_dict"])
    del members["sd/data/1"]
    report = scan_path(_write_zip(tmp_path / "sd.pt", members))
    assert "MAM-TORCH-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_resized_storage_record_is_found(samples, tmp_path):
    members = _zip_members(samples["state_dict"])
    members["sd/data/0"] += b"\0" * 8
    assert "MAM-TORCH-003" in _rules(scan_path(_write_zip(tmp_path / "sd.pt", members)))


def test_bytes_after_the_pickle_stop_are_found(samples, tmp_path):
    members = _zip_members(samples["state_dict"])
    members["sd/data.pkl"] += pickle.dumps(_Payload(), protocol=2)
    report = scan_path(_write_zip(tmp_path / "sd.pt", members))
    assert "MAM-TORCH-009" in _rules(report)


def test_unexpected_member_is_reported_and_scanned_by_content(samples, tmp_path):
    members = _zip_members(samples["state_dict"])
    members["sd/extra.pkl"] = pickle.dumps(_Payload(), protocol=2)
    report = scan_path(_write_zip(tmp_path / "sd.pt", members))
    assert {"MAM-TORCH-006", "MAM-PKL-001"} <= _rules(report)


def _write_zip_entries(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names, which we want
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


@pytest.mark.parametrize("evil_copy", [1, 2])
def test_every_copy_of_a_duplicated_data_pkl_is_analysed(samples, tmp_path, evil_copy):
    """miniz (torch.load) reads the first archive/data.pkl, zipfile-based tools the last."""
    members = _zip_members(samples["state_dict"])
    evil = pickle.dumps(_Payload(), protocol=2)
    entries = list(members.items())
    if evil_copy == 1:
        entries = [(n, evil if n == "sd/data.pkl" else d) for n, d in entries]
        entries.append(("sd/data.pkl", members["sd/data.pkl"]))
    else:
        entries.append(("sd/data.pkl", evil))
    report = scan_path(_write_zip_entries(tmp_path / "sd.pt", entries))
    assert report.format is FileFormat.TORCH_ZIP
    assert {"MAM-ZIP-003", "MAM-PKL-001"} <= _rules(report)
    hits = {f.location.member for f in report.findings if f.rule_id == "MAM-PKL-001"}
    assert len(hits) == 1
    (member,) = hits
    assert member[0].startswith("sd/data.pkl")
    assert (member[0] == "sd/data.pkl") is (evil_copy == 1)


def test_a_benign_duplicate_of_data_pkl_is_analysed_as_a_torch_pickle(samples, tmp_path):
    """The second copy is read the torch way (persistent ids), not as a foreign pickle."""
    members = _zip_members(samples["state_dict"])
    entries = [*members.items(), ("sd/data.pkl", members["sd/data.pkl"])]
    report = scan_path(_write_zip_entries(tmp_path / "sd.pt", entries))
    assert {f.rule_id for f in report.findings if f.rule_id.startswith("MAM-PKL")} == set()
    assert "MAM-ZIP-003" in _rules(report)


def test_a_duplicated_torchscript_code_file_is_checked_in_every_copy(samples, tmp_path):
    members = _zip_members(samples["script"])
    code = next(n for n in members if n.endswith(".py") and "/code/" in n)
    entries = [*members.items(), (code, b"import os\nos.system('true')\n")]
    report = scan_path(_write_zip_entries(tmp_path / "script.pt", entries))
    hits = [f for f in report.findings if f.rule_id == "MAM-TORCH-022"]
    assert hits
    assert all(f.location.member[0].startswith(f"{code} [copy 2 at offset ") for f in hits)


def test_second_folder_with_its_own_data_pkl_is_ambiguous(samples, tmp_path):
    members = _zip_members(samples["state_dict"])
    members["other/data.pkl"] = pickle.dumps(_Payload(), protocol=2)
    report = scan_path(_write_zip(tmp_path / "sd.pt", members))
    assert {"MAM-TORCH-005", "MAM-PKL-001"} <= _rules(report)


def test_pickle_appended_after_a_zip_checkpoint_is_found(samples):
    data = samples["state_dict"].read_bytes() + pickle.dumps(_Payload(), protocol=2)
    report = scan_bytes(data, "sd.pt")
    assert report.verdict is Verdict.UNSAFE
    assert "MAM-ZIP-006" in _rules(report)


def test_unexpected_control_record_value_is_found(samples, tmp_path):
    members = _zip_members(samples["state_dict"])
    members["sd/byteorder"] = b"middle"
    assert "MAM-TORCH-007" in _rules(scan_path(_write_zip(tmp_path / "sd.pt", members)))


def test_persistent_id_that_is_not_a_storage_is_malformed(samples, tmp_path):
    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("module", "x") if obj == "marker" else None

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(["marker"])
    members = _zip_members(samples["state_dict"])
    members["sd/data.pkl"] = buf.getvalue()
    assert "MAM-TORCH-004" in _rules(scan_path(_write_zip(tmp_path / "sd.pt", members)))


# --- TorchScript code ---------------------------------------------------------------------------


def test_torchscript_that_reads_files_is_critical(samples):
    report = scan_path(samples["file_reader"])
    assert report.format is FileFormat.TORCHSCRIPT
    assert "MAM-TORCH-020" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def _edit_code(samples, tmp_path: Path, extra: str) -> Path:
    members = _zip_members(samples["script"])
    code = next(n for n in members if n.startswith("script/code/") and n.endswith(".py"))
    members[code] += extra.encode()
    return _write_zip(tmp_path / "script.pt", members)


def test_hand_edited_torchscript_calling_os_is_critical(samples, tmp_path):
    report = scan_path(_edit_code(samples, tmp_path, "\nimport os\nos.system('true')\n"))
    assert "MAM-TORCH-022" in _rules(report)


def test_torchscript_calling_a_custom_operator_is_reported(samples, tmp_path):
    report = scan_path(
        _edit_code(samples, tmp_path, "\ndef f(x: Tensor) -> Tensor:\n  return ops.evil.op(x)\n")
    )
    assert "MAM-TORCH-021" in _rules(report)


def test_torchscript_code_that_is_not_python_is_unparseable(samples, tmp_path):
    assert "MAM-TORCH-023" in _rules(scan_path(_edit_code(samples, tmp_path, "\ndef (:\n")))


def test_torchscript_pickle_naming_a_class_not_in_code_is_reported(samples, tmp_path):
    members = _zip_members(samples["script"])
    members["script/data.pkl"] = members["script/data.pkl"].replace(b"\nNet\n", b"\nEvl\n")
    assert "MAM-TORCH-024" in _rules(scan_path(_write_zip(tmp_path / "script.pt", members)))


def test_torchscript_pickle_holding_a_custom_class_object_is_reported(samples, tmp_path):
    members = _zip_members(samples["quantized"])
    members["quantized/data.pkl"] = members["quantized/data.pkl"].replace(
        b"__torch__.torch.classes.quantized\n", b"__torch__.torch.classes.evilnsx\n"
    )
    assert "MAM-TORCH-021" in _rules(scan_path(_write_zip(tmp_path / "q.pt", members)))


def test_pickle_prepended_to_a_torch_zip_is_found(samples):
    data = pickle.dumps(_Payload(), protocol=2) + samples["state_dict"].read_bytes()
    report = scan_bytes(data, "model.pt")
    assert "MAM-PKL-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_code_checker_accepts_the_torchscript_printer_output(samples):
    with zipfile.ZipFile(samples["script"]) as zf:
        for name in zf.namelist():
            if name.endswith(".py"):
                assert check_torchscript_code(zf.read(name)) == []


# --- legacy stacked pickles -----------------------------------------------------------------------


def test_reduce_payload_in_a_legacy_checkpoint_is_critical(samples):
    report = scan_path(samples["legacy_payload"])
    assert report.format is FileFormat.TORCH_LEGACY
    assert "MAM-PKL-001" in _rules(report)


def test_pickle_hidden_after_the_legacy_storages_is_found(samples):
    data = samples["legacy"].read_bytes() + pickle.dumps(_Payload(), protocol=2)
    report = scan_bytes(data, "legacy.pt")
    assert {"MAM-TORCH-009", "MAM-PKL-001"} <= _rules(report)


def test_truncated_legacy_storage_is_found(samples):
    data = samples["legacy"].read_bytes()[:-5]
    assert "MAM-TORCH-010" in _rules(scan_bytes(data, "legacy.pt"))


def test_legacy_storage_with_a_different_element_count_is_found(samples):
    data = bytearray(samples["legacy"].read_bytes())
    # The first storage (6 floats) starts with its int64 element count.
    at = bytes(data).index((6).to_bytes(8, "little"))
    data[at : at + 8] = (5).to_bytes(8, "little")
    assert "MAM-TORCH-003" in _rules(scan_bytes(bytes(data), "legacy.pt"))


def test_legacy_file_with_a_wrong_protocol_version_is_malformed(samples):
    data = samples["legacy"].read_bytes().replace(b"M\xe9\x03.", b"M\xea\x03.", 1)
    assert "MAM-TORCH-008" in _rules(scan_bytes(data, "legacy.pt"))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_mutation_of_a_legacy_file_is_scanned_without_crashing(samples, data):
    raw = bytearray(samples["legacy"].read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(raw) // 2, len(raw)))
    report = scan_bytes(bytes(raw[:cut]), "legacy.pt")
    assert not any(f.rule_id == "MAM-GEN-001" for f in report.findings)


# --- the pre-0.4 tar layout -----------------------------------------------------------------------


def _legacy_tar(path: Path, *, extra: dict[str, bytes] | None = None, drop: str = "") -> Path:
    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return "7" if obj == "storage-7" else None

    sys_info = pickle.dumps(
        {
            "protocol_version": 1001,
            "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 8},
        },
        protocol=2,
    )
    main = io.BytesIO()
    _Pickler(main, protocol=2).dump({"weights": "storage-7"})
    storages = io.BytesIO()
    pickle.dump(1, storages, protocol=2)
    pickle.dump(("7", "cpu", torch.FloatStorage), storages, protocol=2)
    storages.write((2).to_bytes(8, "little") + b"\0" * 8)
    pickle.dump([], storages, protocol=2)
    members = {
        "sys_info": sys_info,
        "pickle": main.getvalue(),
        "storages": storages.getvalue(),
        "tensors": pickle.dumps(0, protocol=2),
        **(extra or {}),
    }
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, blob in members.items():
            if name == drop:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def test_legacy_tar_checkpoint_is_recognised_and_safe(tmp_path):
    report = scan_path(_legacy_tar(tmp_path / "old.pt"))
    assert report.format is FileFormat.TORCH_TAR
    assert report.verdict is Verdict.SAFE, report.findings


def test_legacy_tar_with_a_payload_member_is_unsafe(tmp_path):
    path = _legacy_tar(tmp_path / "old.pt", extra={"evil": pickle.dumps(_Payload(), protocol=2)})
    assert {"MAM-TORCH-011", "MAM-PKL-001"} <= _rules(scan_path(path))


def test_legacy_tar_without_its_storages_is_malformed(tmp_path):
    report = scan_path(_legacy_tar(tmp_path / "old.pt", drop="storages"))
    assert {"MAM-TORCH-011", "MAM-TORCH-001"} <= _rules(report)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_mutation_of_a_zip_checkpoint_is_scanned_without_crashing(samples, data):
    raw = bytearray(samples["state_dict"].read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    report = scan_bytes(bytes(raw), "sd.pt")
    assert not any(f.rule_id == "MAM-GEN-001" for f in report.findings), report.findings


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_after_a_legacy_magic_yield_no_crash(tail):
    data = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19." + tail
    report = scan_bytes(data, "legacy.pt")
    assert not any(f.rule_id == "MAM-GEN-001" for f in report.findings)


def test_a_zip_with_a_data_folder_of_other_files_is_not_claimed(tmp_path):
    path = _write_zip(tmp_path / "d.zip", {"ds/data/0.csv": b"a,b\n", "ds/data/1.csv": b"c\n"})
    assert scan_path(path).format is FileFormat.ZIP


@pytest.mark.parametrize("protocol", [1, 4, 5])
def test_legacy_checkpoints_of_every_pickle_protocol_are_recognised(tmp_path, protocol):
    path = tmp_path / "legacy.pt"
    torch.save(
        {"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol
    )
    report = scan_path(path)
    assert report.format is FileFormat.TORCH_LEGACY
    assert report.verdict is Verdict.SAFE, report.findings


# --- pickle.dumps(tensor): torch.storage._load_from_bytes(<a torch.save file>) ----------------
# Plain pickling of a tensor writes its storage as _load_from_bytes(b"<torch.save bytes>")
# (torch/storage.py, TypedStorage.__reduce__), and _load_from_bytes runs torch.load on them.
# The analyser scans such literal bytes by content as a child instead of denying the call.


class _LoadFromBytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.data,))


def _payload_findings(report) -> list:
    return [f for f in report.findings if f.rule_id == "MAM-PKL-001" and "system" in f.message]


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(lambda: torch.arange(4.0), id="tensor"),
        pytest.param(lambda: {"w": torch.ones(2, 2), "b": torch.zeros(2)}, id="dict"),
        pytest.param(lambda: torch.nn.Linear(2, 2).state_dict(), id="state_dict"),
    ],
)
def test_load_from_bytes_literal_is_scanned_as_a_child_so_pickled_tensors_are_safe(obj):
    report = scan_bytes(pickle.dumps(obj()), name="t.pkl")
    assert report.verdict is Verdict.SAFE, report.findings


@pytest.mark.parametrize(
    "zip_format",
    [
        pytest.param(False, id="legacy"),
        pytest.param(True, id="zip"),
    ],
)
def test_load_from_bytes_literal_is_scanned_as_a_child_so_a_hidden_payload_is_found(zip_format):
    buf = io.BytesIO()
    torch.save(
        {"w": torch.ones(2), "x": _Payload()}, buf, _use_new_zipfile_serialization=zip_format
    )
    report = scan_bytes(pickle.dumps(_LoadFromBytes(buf.getvalue())), name="t.pkl")
    assert report.verdict is Verdict.UNSAFE
    assert _payload_findings(report)


def test_load_from_bytes_on_bytes_computed_at_load_time_stays_critical():
    """Only literal bytes can be scanned; anything else is torch.load on unknown data."""
    # _load_from_bytes(bytearray()): the argument is the result of a call, not a constant.
    data = b"\x80\x02ctorch.storage\n_load_from_bytes\ncbuiltins\nbytearray\n)R\x85R."
    report = scan_bytes(data, name="t.pkl")
    assert report.verdict is Verdict.UNSAFE
    assert any(
        f.rule_id == "MAM-PKL-001" and "_load_from_bytes" in f.message for f in report.findings
    )


@pytest.mark.parametrize("stem_length", [20, 21, 22, 40])
def test_a_torch_save_is_a_torch_zip_whatever_the_length_of_its_stem(tmp_path, stem_length):
    # The ZIP64 end record torch writes once shifted the directory by 76 bytes, exactly one
    # record with a 21-character folder name: the archive then read as a plain zip.
    path = tmp_path / ("m" * stem_length + ".pt")
    torch.save({"w": torch.zeros(3)}, path)
    report = scan_path(path)
    assert report.format is FileFormat.TORCH_ZIP
    assert report.verdict is Verdict.SAFE, report.findings


def test_a_torch_archive_whose_names_lie_outside_the_probe_is_still_read_as_torch(tmp_path):
    src = tmp_path / "many.pt"
    torch.save([torch.zeros(1) for _ in range(1500)], src)
    members = _zip_members(src)
    prefix = next(iter(members)).split("/")[0]
    pkl = f"{prefix}/data.pkl"
    # data.pkl last: the head probe sees only storages, the directory is larger than the tail
    # probe, so only the full member list shows the torch layout (torch reads any order).
    reordered = {k: v for k, v in members.items() if k != pkl} | {pkl: members[pkl]}
    report = scan_path(_write_zip(tmp_path / "reordered.pt", reordered))
    assert report.format is FileFormat.TORCH_ZIP
    assert report.verdict is Verdict.SAFE, report.findings


def test_records_are_looked_up_case_insensitively_like_torch(tmp_path):
    src = tmp_path / "m.pt"
    torch.save({"w": 1}, src)
    members = _zip_members(src)
    renamed = {k.replace("data.pkl", "DATA.PKL"): v for k, v in members.items()}
    report = scan_path(_write_zip(tmp_path / "upper.pt", renamed))
    assert report.format is FileFormat.TORCH_ZIP
    assert report.verdict is Verdict.SAFE, report.findings


def test_every_copy_of_a_record_differing_only_by_case_is_analysed(tmp_path):
    src = tmp_path / "m.pt"
    torch.save({"w": 1}, src)
    members = _zip_members(src)
    prefix = next(iter(members)).split("/")[0]
    members[f"{prefix}/Data.pkl"] = pickle.dumps(_Payload(), protocol=2)
    report = scan_path(_write_zip(tmp_path / "dup.pt", members))
    assert {"MAM-ZIP-003", "MAM-PKL-001"} <= _rules(report)
