"""Generic archives: benign models inside zip/tar/gzip/7z, and archive-level attacks."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from pathlib import Path

from mamori.testing.corpus import _asm as a
from mamori.testing.corpus._model import Spec, spec
from mamori.testing.corpus._zipw import Entry, write_7z, write_zip
from mamori.testing.corpus.pickles import BENIGN_DATA, DANGEROUS_GLOBAL, os_system_payload
from mamori.testing.corpus.torch_samples import small_state_dict, torch_zip_bytes

__all__ = ["SPECS"]

_BOMB_BYTES = 64 * 1024 * 1024
"""Expands to 64 MiB: over the 16 MiB ratio floor and ~1000:1, past the 200:1 limit."""


def _benign_pickle() -> bytes:
    return pickle.dumps(BENIGN_DATA, protocol=4)


def _evil_pickle() -> bytes:
    return a.proto(2) + os_system_payload() + a.STOP


def _tar(members: list[tuple[str, bytes]], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]  # mode is a literal at every call site
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@spec(
    "archive-zip-of-pickles",
    "archive/pickles.zip",
    family="archive",
    technique="deflated zip of benign pickles",
)
def _zip_benign(path: Path) -> None:
    entries = [
        Entry("model/weights.pkl", _benign_pickle(), deflate=True),
        Entry("model/README.txt", b"tiny model\n"),
    ]
    path.write_bytes(write_zip(entries))


@spec(
    "archive-tar-gz-of-pickle",
    "archive/pickle.tar.gz",
    family="archive",
    technique="tar.gz holding a benign pickle",
)
def _tgz_benign(path: Path) -> None:
    raw = _tar([("model/data.pkl", _benign_pickle())])
    path.write_bytes(gzip.compress(raw, mtime=0))


@spec(
    "archive-gzip-pickle",
    "archive/data.pkl.gz",
    family="archive",
    technique="gzip of a benign pickle",
)
def _gz_benign(path: Path) -> None:
    path.write_bytes(gzip.compress(_benign_pickle(), mtime=0))


@spec(
    "archive-tar-of-torch",
    "archive/torch-model.tar",
    family="archive",
    technique="tar of a torch.save state dict (the pre-zip torch tar layout aside)",
    needs=("torch",),
)
def _tar_torch(path: Path) -> None:
    path.write_bytes(_tar([("model/pytorch_model.bin", torch_zip_bytes(small_state_dict()))]))


@spec(
    "archive-7z-of-pickle",
    "archive/pickle.7z",
    family="archive",
    technique="7z (LZMA2) holding a benign pickle",
    needs=("py7zr",),
)
def _7z_benign(path: Path) -> None:
    write_7z(path, _benign_pickle(), "data.pkl")


@spec(
    "archive-zip-malicious-pickle",
    "archive/malicious.zip",
    family="archive",
    technique="deflated zip with os.system pickle under an innocent name",
    expected=[DANGEROUS_GLOBAL],
)
def _zip_evil(path: Path) -> None:
    path.write_bytes(write_zip([Entry("weights/params.bin", _evil_pickle(), deflate=True)]))


@spec(
    "archive-zip-nullifai-broken-pickle",
    "archive/nullifai.zip",
    family="archive",
    technique="nullifAI: a zip holding a pickle that runs its payload then breaks",
    expected=[DANGEROUS_GLOBAL, "MAM-PKL-011"],
)
def _zip_nullifai(path: Path) -> None:
    broken = a.proto(2) + os_system_payload() + b"\x00\xff"
    path.write_bytes(write_zip([Entry("model.pkl", broken, deflate=True)]))


@spec(
    "archive-tar-path-traversal",
    "archive/traversal.tar",
    family="archive",
    technique="tar member ../../evil.pkl escapes the extraction directory (CVE-2007-4559)",
    expected=["MAM-ARC-001"],
)
def _tar_traversal(path: Path) -> None:
    path.write_bytes(_tar([("model/ok.pkl", _benign_pickle()), ("../../evil.pkl", b"x\n")]))


@spec(
    "archive-zip-path-traversal",
    "archive/traversal.zip",
    family="archive",
    technique="zip slip: member name ../../evil.sh",
    expected=["MAM-ARC-001"],
)
def _zip_traversal(path: Path) -> None:
    path.write_bytes(write_zip([Entry("../../evil.sh", b"true\n")]))


@spec(
    "archive-gzip-bomb",
    "archive/bomb.gz",
    family="archive",
    technique="gzip expanding ~1000:1 to 64 MiB of zeros (decompression bomb)",
    expected=["MAM-LIM-006"],
)
def _gzip_bomb(path: Path) -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1024 * 1024)
    parts = [comp.compress(chunk) for _ in range(_BOMB_BYTES // len(chunk))]
    path.write_bytes(b"".join(parts) + comp.flush())


@spec(
    "archive-zip-bomb",
    "archive/bomb.zip",
    family="archive",
    technique="zip member deflating ~1000:1 to 64 MiB (decompression bomb)",
    expected=["MAM-LIM-006"],
)
def _zip_bomb(path: Path) -> None:
    path.write_bytes(write_zip([Entry("zeros.bin", bytes(_BOMB_BYTES), deflate=True)]))


SPECS: tuple[Spec, ...] = (
    _zip_benign,
    _tgz_benign,
    _gz_benign,
    _tar_torch,
    _7z_benign,
    _zip_evil,
    _zip_nullifai,
    _tar_traversal,
    _zip_traversal,
    _gzip_bomb,
    _zip_bomb,
)
