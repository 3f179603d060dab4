"""Red team (fresh eyes): a BUILD slot state runs the class's property setters with file data.

BUILD with a ``(dict, slots)`` state and no ``__setstate__`` calls ``setattr(obj, k, v)`` for
each slot item, which runs the class's property setters and ``__setattr__``. The model graded
that as "given state": LOW for a third-party class. sympy (installed with every torch) has
``sympy.physics.continuum_mechanics.beam.Beam``, whose ``length`` setter sympifies (evals) its
value, so an empty ``Beam`` plus one slot state ran a payload and scanned SAFE.
"""

from __future__ import annotations

from pathlib import Path

from mamori.findings import Verdict

PROTO2 = b"\x80\x02"
STOP = b"."
NEWOBJ = b"\x81"
BUILD = b"b"
TUPLE2 = b"\x86"
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"
SETITEM = b"s"
NONE = b"N"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def unicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def beam(slots: bytes) -> bytes:
    """An empty ``Beam`` (``__new__`` with no arguments), then BUILD ``(None, slots)``."""
    cls = glob("sympy.physics.continuum_mechanics.beam", "Beam")
    return PROTO2 + cls + EMPTY_TUPLE + NEWOBJ + NONE + slots + TUPLE2 + BUILD + STOP


def sympify_payload(marker: Path) -> str:
    code = f"import os; os.system('touch {marker}')"
    return f"sympify.__globals__['__builtins__']['exec']({code!r})"


def test_slot_state_running_a_property_setter_that_evaluates_is_unsafe(
    attack, verdict_of, tmp_path
):
    path = tmp_path / "model.pkl"
    slots = EMPTY_DICT + unicode("length") + unicode(sympify_payload(attack.marker)) + SETITEM
    path.write_bytes(beam(slots))
    assert attack.runs("pickle", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_the_same_class_with_an_empty_slot_state_runs_nothing_and_is_safe(
    attack, verdict_of, tmp_path
):
    path = tmp_path / "model.pkl"
    path.write_bytes(beam(EMPTY_DICT))
    assert not attack.runs("pickle", path)
    assert verdict_of(path) is Verdict.SAFE
