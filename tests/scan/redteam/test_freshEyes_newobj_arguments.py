"""Red team (fresh eyes): NEWOBJ runs class code with the file's arguments.

NEWOBJ, NEWOBJ_EX and ``copyreg.__newobj__`` call only ``cls.__new__``, never ``__init__``,
so the model graded them "instantiated": LOW for a third-party class. But ``__new__`` is class
code that receives arguments from the file, exactly like a call. sympy (a dependency of every
torch install) evaluates strings there: ``sympy.core.containers.Tuple.__new__`` sympifies each
argument, and ``sympify`` of a string is ``eval``. A pickle holding only that class and a string
ran a payload under ``pickle.load``, ``joblib.load`` and ``torch.load`` and scanned SAFE.
"""

from __future__ import annotations

import copyreg
from pathlib import Path

import pytest

from mamori.findings import Verdict

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
STOP = b"."
NEWOBJ = b"\x81"
NEWOBJ_EX = b"\x92"
REDUCE = b"R"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def unicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def sympify_payload(marker: Path) -> str:
    """A string that ``sympify`` evaluates: it reaches ``exec`` through a function's globals."""
    code = f"import os; os.system('touch {marker}')"
    return f"sympify.__globals__['__builtins__']['exec']({code!r})"


def tuple_class() -> bytes:
    return glob("sympy.core.containers", "Tuple")


@pytest.mark.parametrize("loader", ["pickle", "joblib"])
def test_newobj_of_a_class_whose_new_evaluates_its_argument_is_unsafe(
    attack, verdict_of, tmp_path, loader
):
    path = tmp_path / "model.pkl"
    path.write_bytes(
        PROTO2 + tuple_class() + unicode(sympify_payload(attack.marker)) + TUPLE1 + NEWOBJ + STOP
    )
    assert attack.runs(loader, path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_newobj_ex_with_arguments_of_an_unlisted_class_is_unsafe(attack, verdict_of, tmp_path):
    path = tmp_path / "model.pkl"
    args = unicode(sympify_payload(attack.marker)) + TUPLE1
    path.write_bytes(PROTO4 + tuple_class() + args + EMPTY_DICT + NEWOBJ_EX + STOP)
    assert attack.runs("pickle", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_copyreg_newobj_forwarding_arguments_to_new_is_unsafe(attack, verdict_of, tmp_path):
    path = tmp_path / "model.pkl"
    newobj = glob("copyreg", "__newobj__")
    args = tuple_class() + unicode(sympify_payload(attack.marker)) + TUPLE2
    path.write_bytes(PROTO2 + newobj + args + REDUCE + STOP)
    assert attack.runs("pickle", path)
    assert verdict_of(path) is Verdict.UNSAFE


class _SympyTuple:
    """Pickles as NEWOBJ(sympy Tuple, (payload,)), as a real pickler writes it."""

    def __init__(self, payload: str) -> None:
        self.payload = payload

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # the pickler checks __newobj__'s class against this
        from sympy.core.containers import Tuple

        return Tuple

    def __reduce_ex__(self, protocol: object) -> tuple[object, ...]:
        return (copyreg.__newobj__, (self.__class__, self.payload))


def test_newobj_with_arguments_inside_a_real_torch_save_is_unsafe(attack, verdict_of, tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"weights": _SympyTuple(sympify_payload(attack.marker))}, path)
    assert attack.runs("torch", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_newobj_of_an_unlisted_class_without_arguments_stays_safe(attack, verdict_of, tmp_path):
    # What full-module saves of user classes look like: cls.__new__(cls) and nothing else.
    path = tmp_path / "model.pkl"
    path.write_bytes(PROTO2 + tuple_class() + EMPTY_TUPLE + NEWOBJ + STOP)
    assert not attack.runs("pickle", path)
    assert verdict_of(path) is Verdict.SAFE
