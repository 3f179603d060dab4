"""Red team: calls the CPython unpickler makes outside REDUCE, and helpers that call arguments.

Each test builds a file whose payload creates the harness's marker file through a callable that
is *not* on the denylist (``logging.FileHandler(path)`` opens the file for append, creating
it), proves with ``attack.runs`` that the real loader runs it, and asserts mamori's verdict is
UNSAFE. Before the pickle model followed these call sites, each one ended as "imported but not
called" (MAM-PKL-006, LOW) and the verdict was SAFE.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from mamori.findings import Verdict
from mamori.scan import scan_path

PROTO4 = b"\x80\x04"
STOP = b"."
MARK = b"("
BUILD = b"b"
NEWOBJ = b"\x81"
REDUCE = b"R"
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"
SETITEM = b"s"
APPEND = b"a"
ADDITEMS = b"\x90"
TUPLE1 = b"\x85"
TUPLE = b"t"


def sbu(text: str) -> bytes:
    raw = text.encode()
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + len(raw).to_bytes(4, "little") + raw


def sg(module: str, name: str) -> bytes:
    return sbu(module) + sbu(name) + b"\x93"


def call(func: bytes, *args: bytes) -> bytes:
    return func + MARK + b"".join(args) + TUPLE + REDUCE


def file_handler() -> bytes:
    """``logging.FileHandler``: not denylisted; calling it with a path creates the file."""
    return sg("logging", "FileHandler")


def namespace() -> bytes:
    """A fresh ``argparse.Namespace`` (allowlisted): an instance with a ``__dict__``."""
    return sg("argparse", "Namespace") + EMPTY_TUPLE + NEWOBJ


def plant(name: str, value: bytes) -> bytes:
    """BUILD whose dict state sets ``name`` in the instance's ``__dict__``."""
    return EMPTY_DICT + sbu(name) + value + SETITEM + BUILD


def planted_setstate(marker: Path) -> bytes:
    """Namespace; BUILD plants __setstate__; the next BUILD calls it with the marker path."""
    return PROTO4 + namespace() + plant("__setstate__", file_handler()) + sbu(str(marker)) + BUILD


def _verdict(path: Path) -> Verdict:
    return scan_path(path).verdict


def test_build_planted_setstate_on_an_allowlisted_stdlib_class_is_unsafe(attack, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(planted_setstate(attack.marker) + STOP)
    assert attack.runs("pickle", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_build_planted_setstate_inside_an_object_npy_is_unsafe(attack, tmp_path):
    np = pytest.importorskip("numpy")
    benign = io.BytesIO()
    np.save(benign, np.array([None], dtype=object), allow_pickle=True)
    raw = benign.getvalue()
    header_end = raw.index(b"\n") + 1  # the header is padded and ends with a newline
    path = tmp_path / "array.npy"
    path.write_bytes(raw[:header_end] + planted_setstate(attack.marker) + STOP)
    assert attack.runs("numpy", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_build_planted_setstate_inside_a_real_torch_save_zip_is_unsafe(attack, tmp_path):
    torch = pytest.importorskip("torch")
    benign = tmp_path / "benign.pt"
    torch.save({"step": 1}, benign)
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(benign) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = planted_setstate(attack.marker) + STOP
            dst.writestr(info, data)
    assert attack.runs("torch", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_append_on_an_instance_with_a_planted_append_is_unsafe(attack, tmp_path):
    # APPEND on anything but an exact list looks up extend, then append, on the object.
    data = PROTO4 + namespace() + plant("append", file_handler()) + sbu(str(attack.marker))
    path = tmp_path / "model.pkl"
    path.write_bytes(data + APPEND + STOP)
    assert attack.runs("pickle", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_additems_on_an_instance_with_a_planted_add_is_unsafe(attack, tmp_path):
    data = PROTO4 + namespace() + plant("add", file_handler())
    path = tmp_path / "model.pkl"
    path.write_bytes(data + MARK + sbu(str(attack.marker)) + ADDITEMS + STOP)
    assert attack.runs("pickle", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_setitems_on_a_stdlib_object_calls_its_own_setitem_and_is_unsafe(attack, tmp_path):
    # dbm.dumb._Database.__setitem__ appends the key to its directory file: SETITEMS on an
    # instance whose attributes BUILD chose writes the marker.
    existing = tmp_path / "data.dat"
    existing.write_bytes(b"")
    state = (
        EMPTY_DICT
        + MARK
        + sbu("_dirfile")
        + sbu(str(attack.marker))
        + sbu("_datfile")
        + sbu(str(existing))
        + sbu("_index")
        + EMPTY_DICT
        + sbu("_readonly")
        + b"\x89"
        + sbu("_modified")
        + b"\x89"
        + b"u"
    )
    db = sg("dbm.dumb", "_Database") + EMPTY_TUPLE + NEWOBJ + state + BUILD
    path = tmp_path / "model.pkl"
    path.write_bytes(PROTO4 + db + MARK + sbu("k") + sbu("v") + b"u" + STOP)
    assert attack.runs("pickle", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_callable_nested_two_levels_in_rebuild_from_type_v2_is_unsafe(attack, tmp_path):
    pytest.importorskip("torch")
    rebuild = sg("torch._tensor", "_rebuild_from_type_v2")
    tensor = sg("torch", "Tensor")
    inner_args = MARK + file_handler() + tensor + sbu(str(attack.marker)) + TUPLE1
    inner_args += EMPTY_DICT + TUPLE  # (FileHandler, Tensor, (marker,), {})
    outer = rebuild + MARK + rebuild + tensor + inner_args + EMPTY_DICT + TUPLE + REDUCE
    path = tmp_path / "model.pkl"
    path.write_bytes(PROTO4 + outer + STOP)
    assert attack.runs("torch", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_callable_passed_to_dill_create_array_is_unsafe(attack, tmp_path):
    pytest.importorskip("dill")
    create = sg("dill._dill", "_create_array")
    args = MARK + file_handler() + sbu(str(attack.marker)) + TUPLE1 + b"N" + TUPLE
    path = tmp_path / "model.pkl"
    path.write_bytes(PROTO4 + create + args + REDUCE + STOP)
    assert attack.runs("dill", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_numpy_core_memmap_under_its_defining_module_writes_a_file_and_is_unsafe(attack, tmp_path):
    pytest.importorskip("numpy")
    memmap = sg("numpy._core.memmap", "memmap")
    shape = b"K\x01" + TUPLE1
    args = sbu(str(attack.marker)), sbu("uint8"), sbu("w+"), b"K\x00", shape
    path = tmp_path / "model.pkl"
    path.write_bytes(PROTO4 + call(memmap, *args) + STOP)
    assert attack.runs("pickle", path)
    report = scan_path(path)
    assert report.verdict is Verdict.UNSAFE
    assert "MAM-PKL-001" in {f.rule_id for f in report.findings}


def test_sklearn_named_temporary_file_is_not_trusted_by_its_prefix(attack, tmp_path):
    pytest.importorskip("sklearn")
    ntf = sg("sklearn.datasets._base", "NamedTemporaryFile")
    # Positional: mode, buffering, encoding, newline, suffix, prefix, dir and delete.
    args = (
        sbu("w"),
        b"J\xff\xff\xff\xff",
        b"N",
        b"N",
        sbu(""),
        sbu("ntf-"),
        sbu(str(tmp_path)),
        b"\x89",
    )
    path = tmp_path / "model.pkl"
    path.write_bytes(PROTO4 + call(ntf, *args) + STOP)
    # The file's name is random: the loader script turns "a ntf-* file exists" into the marker.
    loader = (
        "import glob, pickle, pathlib\n"
        "obj = pickle.load(open(P, 'rb'))\n"
        f"if glob.glob({str(tmp_path)!r} + '/ntf-*'): pathlib.Path({str(attack.marker)!r}).touch()"
    )
    assert attack.runs(loader, path)
    assert _verdict(path) is Verdict.UNSAFE


def test_copyreg_reconstructor_calls_its_base_init_and_is_unsafe(attack, tmp_path):
    # _reconstructor(cls, base, state): base.__init__(obj, state) runs FileHandler.__init__.
    recon = sg("copyreg", "_reconstructor")
    args = file_handler(), file_handler(), sbu(str(attack.marker))
    path = tmp_path / "model.pkl"
    path.write_bytes(PROTO4 + call(recon, *args) + STOP)
    assert attack.runs("pickle", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_partial_planted_as_keys_is_called_by_ordered_dict_and_is_unsafe(attack, tmp_path):
    # OrderedDict(obj) calls obj.keys(), looked up on the instance: a planted partial runs.
    partial = call(sg("functools", "partial"), file_handler(), sbu(str(attack.marker)))
    ns = namespace() + plant("keys", partial)
    path = tmp_path / "model.pkl"
    path.write_bytes(PROTO4 + call(sg("collections", "OrderedDict"), ns) + STOP)
    assert attack.runs("pickle", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_calling_a_partial_of_an_unlisted_callable_is_unsafe(attack, tmp_path):
    partial = call(sg("functools", "partial"), file_handler(), sbu(str(attack.marker)))
    path = tmp_path / "model.pkl"
    path.write_bytes(PROTO4 + partial + EMPTY_TUPLE + REDUCE + STOP)
    assert attack.runs("pickle", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_the_same_payload_without_the_plant_runs_nothing(attack, tmp_path):
    # Control: a Namespace BUILD with plain data is a benign pickle and stays SAFE.
    data = PROTO4 + namespace() + plant("name", sbu("x")) + STOP
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    assert not attack.runs("pickle", path)
    assert _verdict(path) is Verdict.SAFE


def test_build_planted_setstate_in_a_joblib_file_is_unsafe(attack, tmp_path):
    pytest.importorskip("joblib")
    path = tmp_path / "model.joblib"
    path.write_bytes(planted_setstate(attack.marker) + STOP)
    assert attack.runs("joblib", path)
    assert _verdict(path) is Verdict.UNSAFE


def test_planted_items_on_a_build_state_runs_under_joblibs_python_unpickler(attack, tmp_path):
    # pickle._Unpickler (joblib) applies a dict-less state with state.items(): a planted
    # items attribute on the state object is called. The C unpickler rejects such a state.
    pytest.importorskip("joblib")
    partial = call(sg("functools", "partial"), file_handler(), sbu(str(attack.marker)))
    state = namespace() + plant("items", partial)
    path = tmp_path / "model.joblib"
    path.write_bytes(PROTO4 + namespace() + state + BUILD + STOP)
    assert attack.runs("joblib", path)
    assert not attack.runs("pickle", path)
    assert _verdict(path) is Verdict.UNSAFE
