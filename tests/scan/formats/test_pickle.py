"""FileFormat.PICKLE: content detection for every protocol and the handler end to end."""

from __future__ import annotations

import os
import pickle

import pytest

from mamori.findings import FileFormat, Verdict
from mamori.scan import scan_bytes
from mamori.scan.formats.interface import Probe
from mamori.scan.formats.pickle import PickleHandler


def probe(data: bytes) -> Probe:
    return Probe(head=data[:65536], tail=data[-65536:], size=len(data), name="x")


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol_is_detected(protocol: int) -> None:
    data = pickle.dumps({"a": [1, 2, "x"]}, protocol=protocol)
    assert PickleHandler().sniff(probe(data))
    assert scan_bytes(data).format is FileFormat.PICKLE


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world.", b"PK\x03\x04", b"\x80", b"(this is text)\n", b"\x89PNG\r\n\x1a\n"],
)
def test_non_pickles_are_not_claimed(data: bytes) -> None:
    assert not PickleHandler().sniff(probe(data))


def test_protocol_0_head_cut_mid_stream_is_still_claimed() -> None:
    data = pickle.dumps(list(range(20000)), protocol=0)
    head = data[:65536]
    assert PickleHandler().sniff(Probe(head=head, tail=data[-100:], size=len(data), name="x"))


def test_unsupported_protocol_with_an_opcode_after_it_is_claimed() -> None:
    assert PickleHandler().sniff(probe(b"\x80\x07K\x01."))


def test_handler_reports_a_malicious_pickle_as_unsafe() -> None:
    class E:
        def __reduce__(self):
            return (os.system, ("true",))

    assert scan_bytes(pickle.dumps(E()), name="model.pkl").verdict is Verdict.UNSAFE


def test_a_protocol_0_pickle_with_a_global_followed_by_other_bytes_is_detected():
    data = pickle.dumps(Verdict.SAFE, protocol=0) + b"\x00 trailing bytes"
    assert scan_bytes(data, "x.bin").format is FileFormat.PICKLE


def test_plain_data_followed_by_other_bytes_is_no_claim_but_fails_closed_under_bin():
    # Without a global nothing runs, and random binary reads as such a pickle too often.
    data = pickle.dumps({"a": [1, 2]}, protocol=0) + b"\x00 trailing bytes"
    report = scan_bytes(data, "x.bin")
    assert report.format is FileFormat.UNKNOWN
    assert report.verdict is Verdict.UNSAFE


def test_random_binary_blocks_are_not_taken_for_protocol_0_pickles():
    import random

    rng = random.Random(11)
    handler = PickleHandler()
    for _ in range(3000):
        block = rng.randbytes(4096)
        if block[0] == 0x80:
            continue
        assert not handler.sniff(Probe(block, block, 1 << 20, "w.bin")), block[:16]


def test_a_word_list_whose_first_lines_read_as_a_global_is_not_a_pickle():
    # "c" is GLOBAL: "cat\ndog\n" imports at.dog and calls nothing before the stream breaks.
    report = scan_bytes(b"cat\ndog\nmouse\nbird\n", "words.txt")
    assert report.format is FileFormat.UNKNOWN
    assert report.verdict is Verdict.SAFE


def test_a_protocol_0_pickle_that_breaks_after_importing_a_stdlib_global_is_detected():
    # picklescan's broken_model.pkl: builtins.exec is imported, then a string is truncated.
    data = b"cbuiltins\nexec\n(X>\nf = open('my_file.txt', 'a')"
    report = scan_bytes(data, "notes.txt")
    assert report.format is FileFormat.PICKLE
    assert report.verdict is Verdict.UNSAFE
