"""What popular packages ship: every model-like file of this venv's site-packages, scanned.

Benign files that real packages install (ONNX test tensors, numpy and joblib test data,
dateutil's zoneinfo tarball, ``*.pth`` path files) must not be flagged. The files that are
flagged are listed below with the reason each is expected, reviewed by hand: a new flagged file
or a finding that disappears fails the test, so the list stays true.

Files are deduplicated by sha256 (ONNX ships the same tensors under many names).
"""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import pytest

from mamori.findings import Verdict
from mamori.scan import scan_path

pytestmark = pytest.mark.slow

SUFFIXES = frozenset(
    {
        ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".npy", ".npz", ".onnx", ".pb",
        ".h5", ".hdf5", ".keras", ".safetensors", ".joblib", ".gguf", ".msgpack", ".tflite",
        ".gz", ".bz2", ".xz", ".lzma", ".zst", ".zip", ".tar", ".tgz", ".7z",
    }
)  # fmt: skip

_JOBLIB_DATA = "joblib/test/data/"
# path relative to site-packages -> rule ids at or above the threshold, and why.
EXPECTED: dict[str, tuple[frozenset[str], str]] = {
    **{
        f"{_JOBLIB_DATA}joblib_0.9.2_pickle_{tag}.pkl": (
            frozenset({"MAM-JOBLIB-003"}),
            (
                "joblib 0.9 NDArrayWrapper: joblib.load opens companion .npy files with "
                "allow_pickle; really risky, stays flagged"
            ),
        )
        for tag in ("py27_np16", "py27_np17", "py33_np18", "py34_np19", "py35_np19")
    },
    f"{_JOBLIB_DATA}joblib_0.9.4.dev0_compressed_cache_size_pickle_py35_np19.gz": (
        frozenset({"MAM-JOBLIB-003"}),
        "joblib 0.9 ZNDArrayWrapper inside a ZF-compressed dump: companion files, as above",
    ),
    "numpy/lib/tests/data/py2-np0-objarr.npy": (
        frozenset({"MAM-PKL-003"}),
        (
            "numpy.core._internal._reconstruct called by a Python 2 object array: not in the "
            "pickle allowlist (scan/pickle owns it)"
        ),
    ),
}


# AWS API definitions: thousands of gzip'd JSON documents, not model files; their doc strings
# carry `{{_placeholders}}` that the conservative template check flags, and the set changes with
# every botocore release.
_NOT_MODELS = ("botocore/data/",)


def _model_like_files() -> dict[str, Path]:
    root = Path(sysconfig.get_paths()["purelib"])
    unique: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in SUFFIXES or path.is_symlink() or not path.is_file():
            continue
        if path.relative_to(root).as_posix().startswith(_NOT_MODELS):
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        unique.setdefault(digest, path)
    return {p.relative_to(root).as_posix(): p for p in unique.values()}


def test_model_like_files_in_site_packages_are_flagged_only_as_reviewed():
    files = _model_like_files()
    assert len(files) > 100  # the venv has numpy, onnx, joblib, torch: a real sample
    flagged: dict[str, frozenset[str]] = {}
    for rel, path in files.items():
        report = scan_path(path)
        if report.verdict is not Verdict.SAFE:
            flagged[rel] = frozenset(
                f.rule_id for f in report.findings if f.severity >= report.threshold
            )
    expected = {rel: rules for rel, (rules, _why) in EXPECTED.items() if rel in files}
    assert flagged == expected
