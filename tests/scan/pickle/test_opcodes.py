"""The opcode table matches CPython's own, so no opcode slips past the reader."""

from __future__ import annotations

import pickletools

from mamori.scan.pickle.opcodes import OPCODES, by_code


def test_every_cpython_opcode_is_in_the_table_with_the_same_encoding() -> None:
    ours = {op.code: op for op in OPCODES}
    for theirs in pickletools.opcodes:
        mine = ours[ord(theirs.code)]
        assert mine.name == theirs.name
        assert mine.proto == theirs.proto
        assert mine.arg.value == (theirs.arg.name if theirs.arg else "none")


def test_the_table_has_no_extra_opcodes() -> None:
    assert len(OPCODES) == len(pickletools.opcodes)


def test_unknown_bytes_are_no_opcode() -> None:
    assert by_code(0xFF) is None
    assert by_code(ord(".")) is not None
