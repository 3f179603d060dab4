"""Torch archives read the way torch reads them (issue 11, class 4).

torch's ``PyTorchStreamReader`` (caffe2/serialize/inline_container.cc) takes the folder from the
first central-directory entry and finds every record with miniz's ``mz_zip_reader_locate_file``
without the case-sensitive flag: an ASCII case-insensitive binary search over the sorted names.
So ``archive/DATA.PKL`` loads, and among copies of a name (exact or by case) which one torch
reads depends on where the copies sort, not on their order in the archive.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from mamori.findings import Verdict


def _payload(command: str) -> bytes:
    class _Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (command,))

    return pickle.dumps(_Payload(), protocol=2)


def _records(tmp_path: Path) -> list[tuple[str, bytes]]:
    src = tmp_path / "benign.pt"
    torch.save({"w": 1}, src)
    with zipfile.ZipFile(src) as zf:
        records = [(info.filename, zf.read(info)) for info in zf.infolist()]
    src.unlink()
    return records


def _write(path: Path, records: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we want
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in records:
                zf.writestr(name, data)
    return path


def test_an_upper_case_data_pkl_is_loaded_by_torch_and_is_unsafe(attack, verdict_of, tmp_path):
    records = [
        (name.replace("data.pkl", "DATA.PKL"), _payload(attack.payload_command()))
        if name.endswith("/data.pkl")
        else (name, data)
        for name, data in _records(tmp_path)
    ]
    path = _write(tmp_path / "model.pt", records)
    assert attack.runs("torch", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_second_data_pkl_differing_by_case_that_torch_picks_is_unsafe(
    attack, verdict_of, tmp_path
):
    records = _records(tmp_path)
    prefix = records[0][0].split("/")[0]
    # Measured with torch 2.13: at index 3 of this layout the binary search lands on the copy.
    records.insert(3, (f"{prefix}/Data.Pkl", _payload(attack.payload_command())))
    path = _write(tmp_path / "model.pt", records)
    assert attack.runs("torch", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_an_exact_duplicate_data_pkl_that_torch_picks_is_unsafe(attack, verdict_of, tmp_path):
    records = _records(tmp_path)
    prefix = records[0][0].split("/")[0]
    records.insert(1, (f"{prefix}/data.pkl", _payload(attack.payload_command())))
    path = _write(tmp_path / "model.pt", records)
    assert attack.runs("torch", path)
    assert verdict_of(path) is Verdict.UNSAFE
