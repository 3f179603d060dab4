"""Fail closed by verdict: how loud bytes are that no format handler recognises.

The engine detects formats by content only; this module decides, from the name a loader
would open the file under and from what is provably harmless, how severe "nothing
recognised these bytes" is (MAM-GEN-004):

* under a name a loader opens (model extensions, pickle-loader names, archives, .data),
  unrecognised bytes are MEDIUM, so the verdict is UNSAFE: a loader handed such a file
  reads it some way mamori does not (torch.load and numpy.load fall back to pickle.load);
* a binary file without extension in a scanned model folder is MEDIUM too (not text, not
  under a dot-folder such as .git): a pickle loader accepts text only as a protocol 0
  pickle, which detection recognises by content. Inside archives such members stay INFO
  (tarballs of extensionless data files, such as zoneinfo, are common and not models);
* LOW for text under a pickle-loader name (site-packages' *.pth files, Git LFS pointers):
  torch.load and numpy.load read it with pickle, which accepts text only as a protocol 0
  pickle; detection claims text that reaches STOP with a global, calls a global, or imports
  a standard-library one before it breaks;
* LOW when every loader of the name ends in pickle.load (.pkl, .pt, .bin, .npy, ...) and
  pickle.load rejects the very first opcode (raw float data starting with a byte that is no
  opcode, an image): nothing can be imported or called. Anything later is not trusted;
* LOW for raw tensor data beside the model that declares it (a .bin/.data or
  extensionless file next to an .onnx model, or an OpenVINO <stem>.xml), and for *.model,
  the name of sentencepiece and xgboost binaries mamori does not parse (gensim's pickled
  *.model files are recognised by content);
* anything else (.txt, .md, .py, images, .gitattributes) is hashed quietly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from mamori.findings import Severity
from mamori.scan._internal.context import Probe
from mamori.scan._internal.source import FileRegion, Source
from mamori.scan.formats.pickle import rejected_at_first_opcode

__all__ = ["grade_unrecognised"]

_LOADER_EXTENSIONS: Final = frozenset(
    {
        ".pkl",
        ".pickle",
        ".pt",
        ".pth",
        ".bin",
        ".ckpt",
        ".model",
        ".joblib",
        ".npy",
        ".npz",
        ".safetensors",
        ".gguf",
        ".onnx",
        ".keras",
        ".h5",
        ".hdf5",
        ".nemo",
        ".msgpack",
        ".pb",
        ".data",
        ".dill",
        ".pkl.gz",
        ".tflite",
        ".mar",
        ".zip",
        ".tar",
        ".tgz",
        ".gz",
        ".bz2",
        ".xz",
        ".lzma",
        ".zst",
        ".lz4",
        ".7z",
    }
)
# Names whose loaders (pickle, torch.load, joblib.load, numpy.load) all end in pickle.load for
# bytes that are not their zip/tar/npy/compressed containers.
_PICKLE_LOADER_EXTENSIONS: Final = frozenset(
    {".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".joblib", ".dill", ".npy", ".data"}
)
_RAW_DATA_EXTENSIONS: Final = frozenset({".bin", ".data", ""})
_UNPARSED_MODEL_EXTENSIONS: Final = frozenset({".model"})
_TEXT_CONTROL: Final = frozenset(b"\t\n\r\f\x1b")
_UTF8_TAIL: Final = 3


def _complete(probe: Probe) -> bool:
    return probe.size is not None and probe.size <= len(probe.head)


def _looks_like_text(head: bytes, *, complete: bool) -> bool:
    """UTF-8 without NUL or other control bytes (a cut probe may split the last character)."""
    if any(b < 0x20 and b not in _TEXT_CONTROL for b in head):  # noqa: PLR2004 - C0 controls
        return False
    for cut in range(1 if complete else _UTF8_TAIL + 1):
        try:
            head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


def grade_unrecognised(
    probe: Probe, source: Source, *, in_folder: bool
) -> tuple[Severity, str] | None:
    """``(severity, why)`` for unrecognised bytes, or ``None`` when they are hashed quietly.

    ``in_folder`` is true for a file of a scanned directory (not an archive member, not under a
    dot-folder such as ``.git``).
    """
    name = probe.name.rsplit("/", 1)[-1]
    ext = Path(name).suffix.lower()
    severity = Severity.MEDIUM
    if ext in _LOADER_EXTENSIONS:
        why = f"named *{ext}, which model loaders open"
        if ext in _UNPARSED_MODEL_EXTENSIONS:
            severity = Severity.LOW
        elif ext in _PICKLE_LOADER_EXTENSIONS and _looks_like_text(
            probe.head, complete=_complete(probe)
        ):
            # Python's own *.pth path files, Git LFS pointers: text no loader runs.
            why = f"text named *{ext}; not a pickle a loader would run"
            severity = Severity.LOW
        elif ext in _PICKLE_LOADER_EXTENSIONS and rejected_at_first_opcode(probe.head):
            why = (
                f"named *{ext}; every loader of that name falls back to pickle.load, "
                "which rejects its first opcode"
            )
            severity = Severity.LOW
    elif (
        not ext
        and in_folder
        and not _looks_like_text(probe.head, complete=_complete(probe))
        and not rejected_at_first_opcode(probe.head)
    ):
        why = "binary file without extension in a model folder"
    else:
        return None
    if severity > Severity.LOW and ext in _RAW_DATA_EXTENSIONS and _declared_raw_data(source):
        why += ", beside the model that declares it as raw tensor data"
        severity = Severity.LOW
    return severity, why


def _declared_raw_data(source: Source) -> bool:
    """Whether a file on disk sits beside an ONNX model or its own OpenVINO ``.xml``.

    Both keep weights as raw bytes in separate files (ONNX external data, OpenVINO IR
    ``<stem>.bin``); the ONNX handler checks that external data stays inside the folder.
    """
    if not isinstance(source, FileRegion) or source.offset != 0:
        return False
    path = Path(source.path)
    try:
        if path.stat().st_size != source.size:
            return False
        if path.with_suffix(".xml").is_file():
            return True
        return any(p.suffix.lower() == ".onnx" for p in path.parent.iterdir() if p.is_file())
    except OSError:
        return False
