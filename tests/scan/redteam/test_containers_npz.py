"""numpy ``.npz`` members read the way ``numpy.load`` reads them (issue 11, class 4).

``NpzFile`` lists ``files`` with a trailing ``.npy`` stripped and, for a key, opens the member
named exactly so or with ``.npy`` added; whatever the name, a member that starts with the
``.npy`` magic is read with ``format.read_array`` (object arrays unpickled with
``allow_pickle=True``). So the member name decides nothing: every member is scanned by content.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from mamori.findings import Verdict


class _Payload:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def _object_npy(command: str) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([_Payload(command)], dtype=object), allow_pickle=True)
    return buf.getvalue()


def test_an_object_array_member_without_the_npy_suffix_is_loaded_and_unsafe(
    attack, verdict_of, tmp_path: Path
):
    path = tmp_path / "arrays.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("weights.npy", _npy_floats())
        zf.writestr("extra", _object_npy(attack.payload_command()))
    assert attack.runs("numpy-npz", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_later_duplicate_member_that_zipfile_reads_is_unsafe(attack, verdict_of, tmp_path: Path):
    import warnings

    path = tmp_path / "arrays.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("w.npy", _npy_floats())
            zf.writestr("w.npy", _object_npy(attack.payload_command()))
    assert attack.runs("numpy-npz", path)
    assert verdict_of(path) is Verdict.UNSAFE


def _npy_floats() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(4, dtype=np.float32))
    return buf.getvalue()
