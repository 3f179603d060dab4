"""pushback: peeked bytes come back first, then the rest of the stream."""

from __future__ import annotations

import io

from mamori.scan._internal.pushback import pushback


def test_peeked_bytes_are_served_before_the_rest():
    inner = io.BytesIO(b"abcdef")
    first = inner.read(2)
    assert pushback(first, inner).read() == b"abcdef"


def test_small_reads_cross_the_boundary():
    inner = io.BytesIO(b"xyz")
    stream = pushback(inner.read(1), inner)
    assert [stream.read(1) for _ in range(4)] == [b"x", b"y", b"z", b""]
