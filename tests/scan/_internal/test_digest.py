"""Batched member hashing: every member gets its own exact digest, with few pool tasks."""

from __future__ import annotations

import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from mamori.scan._internal import digest as digest_module
from mamori.scan._internal.digest import DigestBatcher
from mamori.scan._internal.source import BytesSource, FileRegion


def _regions(tmp_path, sizes):
    data = os.urandom(sum(sizes))
    path = tmp_path / "blob"
    path.write_bytes(data)
    regions, at = [], 0
    for size in sizes:
        regions.append((FileRegion(path, at, size), data[at : at + size]))
        at += size
    return regions


def test_each_batched_region_gets_its_own_sha256_md5_and_crc(tmp_path) -> None:
    regions = _regions(tmp_path, [0, 1, 4096, 3 << 20, 17, 70_000] * 5)
    with ThreadPoolExecutor(2) as pool:
        batcher = DigestBatcher(pool)
        pending = [batcher.submit(r, md5=True, crc32=True) for r, _ in regions]
        batcher.flush()
        for (_, raw), p in zip(regions, pending, strict=True):
            got = p.result()
            assert got.size == len(raw)
            assert got.sha256 == hashlib.sha256(raw).hexdigest()
            assert got.md5 == hashlib.md5(raw, usedforsecurity=False).hexdigest()
            assert got.crc32 == zlib.crc32(raw)


def test_many_small_members_are_hashed_by_few_tasks(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(digest_module, "_BATCH_COUNT", 1000)
    regions = _regions(tmp_path, [100] * 5000)
    submitted: list[object] = []
    with ThreadPoolExecutor(2) as pool:
        original = pool.submit

        def counting(fn, *args, **kwargs):
            submitted.append(fn)
            return original(fn, *args, **kwargs)

        pool.submit = counting  # type: ignore[method-assign]
        batcher = DigestBatcher(pool)
        pending = [batcher.submit(r, md5=False, crc32=False) for r, _ in regions]
        batcher.flush()
        assert [p.result().sha256 for p in pending] == [
            hashlib.sha256(raw).hexdigest() for _, raw in regions
        ]
    assert len(submitted) == 5


def test_an_unreadable_member_fails_alone(tmp_path) -> None:
    regions = _regions(tmp_path, [10, 10])
    missing = FileRegion.__new__(FileRegion)
    missing.path, missing.offset, missing.size = str(tmp_path / "gone"), 0, 5
    with ThreadPoolExecutor(2) as pool:
        batcher = DigestBatcher(pool)
        first = batcher.submit(regions[0][0], md5=False, crc32=False)
        bad = batcher.submit(missing, md5=False, crc32=False)
        memory = batcher.submit(BytesSource(b"abc"), md5=False, crc32=False)
        batcher.flush()
        assert first.result().sha256 == hashlib.sha256(regions[0][1]).hexdigest()
        assert memory.result().sha256 == hashlib.sha256(b"abc").hexdigest()
        with pytest.raises(FileNotFoundError):
            bad.result()
