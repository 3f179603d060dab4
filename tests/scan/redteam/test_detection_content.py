"""Detection by content: bytes a pickle loader accepts are analysed whatever the name.

Issue 11, class 3: a protocol 0/1 pickle (no PROTO magic) followed by any byte after STOP was
recognised as nothing, so under ``.bin``, ``.npy``, ``.data`` or no extension it scanned SAFE.
``pickle.load`` stops at STOP and runs it; ``torch.load`` reads a non-zip file with pickle
(``pytorch_model.bin`` is the Hugging Face name); ``numpy.load(allow_pickle=True)`` falls back
to pickle for anything that is neither ``.npy`` nor a zip.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from mamori.findings import Verdict


def _system_call(command: str, protocol: int) -> bytes:
    """``os.system(command)`` as the given protocol writes it (0/1: no PROTO opcode)."""

    class _Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, (command,))

    data = pickle.dumps(_Payload(), protocol=protocol)
    assert data[:1] != b"\x80"  # no PROTO: protocol 0/1 have no magic
    return data


TRAILER = b"\x00\x01 trailing bytes the loader never reads \xff" * 8


@pytest.mark.parametrize("protocol", [0, 1])
def test_protocol_0_and_1_pytorch_model_bin_with_trailing_bytes_runs_under_torch_load(
    attack, verdict_of, tmp_path: Path, protocol: int
):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(_system_call(attack.payload_command(), protocol) + TRAILER)
    assert attack.runs("torch", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_hugging_face_folder_with_a_protocol_0_pytorch_model_bin_is_unsafe(
    attack, verdict_of, tmp_path: Path
):
    folder = tmp_path / "bert-tiny"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertModel"]}, indent=2)
    )
    (folder / "README.md").write_text("# bert-tiny\n")
    weights = folder / "pytorch_model.bin"
    weights.write_bytes(_system_call(attack.payload_command(), 0) + TRAILER)
    assert attack.runs("torch", weights)
    assert verdict_of(folder) is Verdict.UNSAFE


@pytest.mark.parametrize("name", ["array.npy", "weights.data", "model"])
def test_a_protocol_0_pickle_with_trailing_bytes_runs_under_numpy_load_whatever_its_name(
    attack, verdict_of, tmp_path: Path, name: str
):
    path = tmp_path / name
    path.write_bytes(_system_call(attack.payload_command(), 0) + TRAILER)
    assert attack.runs("numpy", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_protocol_0_pickle_that_breaks_after_its_call_is_analysed_under_a_text_name(
    attack, verdict_of, tmp_path: Path
):
    # nullifAI's broken pickle, in protocol 0: the call runs, then an invalid opcode stops
    # the loader. The head neither reaches STOP nor ends cleanly; it imports a real global.
    data = _system_call(attack.payload_command(), 0)
    path = tmp_path / "notes.txt"
    path.write_bytes(data[: data.rindex(b".")] + b"\xfe this is not an opcode")
    assert attack.runs("pickle", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_protocol_0_pickle_inside_a_zip_member_with_trailing_bytes_is_analysed(
    attack, verdict_of, tmp_path: Path
):
    import zipfile

    inner = tmp_path / "inner.bin"
    inner.write_bytes(_system_call(attack.payload_command(), 0) + TRAILER)
    assert attack.runs("pickle", inner)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(inner, "model/pytorch_model.bin")
    inner.unlink()
    assert verdict_of(archive) is Verdict.UNSAFE
