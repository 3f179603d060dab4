"""The pre-download policy of a Hugging Face pull, as data.

Everything here is decided from the repository *tree* (paths, sizes, digests) and, for remote
code, from the small ``*config.json`` files, before any weight is downloaded. Nothing here
touches the network: :mod:`mamori.lifecycle.hf.pull` feeds it what the hub listed.

Remote code: ``transformers`` imports the ``.py`` files a config's ``auto_map`` names when the
caller passes ``trust_remote_code=True`` (https://huggingface.co/docs/transformers/custom_models).
Those files are code, not data, so mamori does not download them unless the operator asked for
them *and* pinned the revision to a full commit sha: a branch can be moved to new code after the
review (https://huggingface.co/docs/transformers/main/en/model_doc/auto#transformers.AutoModel.from_pretrained
recommends ``revision=`` for the same reason).
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from mamori.config import Settings

__all__ = [
    "ALLOWED_EXTENSIONS",
    "ALLOWED_FILENAMES",
    "FileKind",
    "PullPolicy",
    "TreeEntry",
    "classify",
    "is_commit_sha",
    "path_problem",
    "remote_code_modules",
    "repo_id_problem",
    "revision_problem",
]

ALLOWED_EXTENSIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        ".safetensors": "tensors and a JSON header, no code; parsed by the scanner",
        ".bin": "pytorch_model.bin (torch zip or raw pickle); the pickle is read, never loaded",
        ".pt": "torch checkpoint; the pickle inside is read opcode by opcode, never loaded",
        ".pth": "torch checkpoint; as .pt",
        ".ckpt": "torch/Lightning checkpoint; as .pt",
        ".pkl": "raw pickle (sklearn and friends); scanned, never loaded",
        ".pickle": "raw pickle; as .pkl",
        ".joblib": "joblib pickle stream; scanned, never loaded",
        ".gguf": "llama.cpp weights; header and metadata parsed by the scanner",
        ".onnx": "ONNX protobuf; custom ops and external data are scanner findings",
        ".h5": "Keras/HDF5; Lambda layers are scanner findings",
        ".keras": "Keras v3 zip; Lambda layers and custom objects are scanner findings",
        ".msgpack": "Flax weights (msgpack); data only",
        ".npy": "NumPy array; object arrays (pickles) are scanner findings",
        ".npz": "zip of .npy arrays; as .npy",
        ".nemo": "NeMo tar of config and checkpoints; recursed into by the scanner",
        ".json": "configs, tokenizers, indexes; data (auto_map is checked separately)",
        ".txt": "vocabularies, merges, licences; text",
        ".md": "model card; text, never rendered by mamori",
        ".model": "sentencepiece model (protobuf); data",
        ".tiktoken": "BPE ranks (base64 text); data",
        ".jinja": "chat template; transformers renders it in a sandboxed Jinja environment",
    }
)
"""Extensions a pull downloads. Anything else refuses the pull unless ``--exclude``-d: an
unknown file type is an unknown risk, and skipping it silently would release a partial repo."""

ALLOWED_FILENAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        ".gitattributes": "git LFS attributes of the repo; text",
        "LICENSE": "licence text",
        "NOTICE": "licence notice text",
    }
)
"""Exact file names (any directory) a pull downloads whatever their extension."""

_CODE_EXTENSION: Final = ".py"
_COMMIT_SHA: Final = re.compile(r"[0-9a-f]{40}")
# Hub repo names: letters, digits, '-', '_', '.'; no '--' or '..' (the hub refuses them too,
# and '--' is the HF cache's separator: models--org--name).
_REPO_PART: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION: Final = re.compile(r"[A-Za-z0-9._/-]{1,255}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE: Final = re.compile(r"[A-Za-z]:")
_PATH_MAX: Final = 4096


class FileKind(enum.StrEnum):
    """What the pre-download policy makes of one tree entry."""

    DATA = "data"
    """An allowed model, config or text file: downloaded, verified and scanned."""
    CODE = "code"
    """A ``.py`` file: downloaded only with ``allow_remote_code`` at a pinned commit."""
    EXCLUDED = "excluded"
    """Left out by the operator's ``exclude`` globs: not downloaded, not released."""
    DISALLOWED = "disallowed"
    """A file type the policy does not download: the pull is refused."""


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One file of the repository tree at the resolved commit, as the hub listed it."""

    path: str
    size: int
    git_oid: str
    """The git blob id, ``sha1("blob <size>" NUL content)``, of a file stored in git."""
    lfs_sha256: str | None
    """The LFS object id (SHA-256 of the content) when the file is stored in LFS."""


@dataclass(frozen=True, slots=True)
class PullPolicy:
    """Limits and switches of one pull.

    Attributes:
        max_file_bytes: refuse a repo whose tree lists a larger file.
        max_total_bytes: refuse a repo whose (not excluded) files add up to more.
        allow_remote_code: download ``.py`` files (``auto_map`` remote code), only when the
            requested revision is a full commit sha.
        exclude: ``fnmatch`` globs of tree paths to leave out (not downloaded, not released).
        max_files: refuse a tree with more files (a listing is held in memory).
    """

    max_file_bytes: int = 64 << 30
    max_total_bytes: int = 256 << 30
    allow_remote_code: bool = False
    exclude: tuple[str, ...] = ()
    max_files: int = 100_000

    def __post_init__(self) -> None:
        """Reject nonsensical limits."""
        if self.max_file_bytes < 1 or self.max_total_bytes < 1 or self.max_files < 1:
            msg = "pull limits must be positive"
            raise ValueError(msg)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, allow_remote_code: bool = False, exclude: Sequence[str] = ()
    ) -> PullPolicy:
        """The configured limits plus this pull's switches."""
        return cls(
            max_file_bytes=settings.hf_max_file_bytes,
            max_total_bytes=settings.hf_max_total_bytes,
            allow_remote_code=allow_remote_code,
            exclude=tuple(exclude),
        )


def classify(path: str, policy: PullPolicy) -> FileKind:
    """The kind of a (valid) tree path under ``policy``; extensions are hints, not verdicts.

    The extension only decides whether mamori *downloads* a file. What the bytes are is decided
    by the scanner from their content, whatever the name says.
    """
    if any(fnmatch.fnmatchcase(path, glob) for glob in policy.exclude):
        return FileKind.EXCLUDED
    name = path.rsplit("/", 1)[-1]
    if name in ALLOWED_FILENAMES:
        return FileKind.DATA
    dot = name.rfind(".")
    extension = name[dot:].lower() if dot > 0 else ""
    if extension == _CODE_EXTENSION:
        return FileKind.CODE
    if extension in ALLOWED_EXTENSIONS:
        return FileKind.DATA
    return FileKind.DISALLOWED


def is_commit_sha(revision: str) -> bool:
    """True for a full 40-hex git commit sha (a pinned revision)."""
    return _COMMIT_SHA.fullmatch(revision) is not None


def repo_id_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` is not a hub ``org/name`` (it becomes a path and a URL), or ``None``."""
    parts = repo_id.split("/")
    if len(parts) != 2:  # noqa: PLR2004 - exactly org and name
        return f"expected org/name, got {repo_id[:200]!r}"
    for part in parts:
        if _REPO_PART.fullmatch(part) is None or "--" in part or ".." in part:
            return f"invalid repo name part {part[:100]!r} in {repo_id[:200]!r}"
    return None


def revision_problem(revision: str) -> str | None:
    """Why ``revision`` is unusable as a ref name (it becomes ``refs/<revision>``), or ``None``."""
    if _REVISION.fullmatch(revision) is None:
        return f"invalid revision {revision[:100]!r}"
    if revision.startswith("/") or revision.endswith("/") or ".." in revision:
        return f"invalid revision {revision!r}"
    if any(part in {"", "."} for part in revision.split("/")):
        return f"invalid revision {revision!r}"
    return None


def path_problem(path: str) -> str | None:
    """Why a tree path could escape the quarantine or the cache, or ``None``.

    The hub's listing is untrusted input: a path becomes a file under the quarantine and a
    symlink under ``snapshots/<sha>/``, so ``..``, absolute paths, backslashes (a separator on
    Windows), empty components and control characters are refused outright.
    """
    parts = path.split("/")
    checks = (
        (not path or len(path) > _PATH_MAX, "empty or overlong path"),
        (_CONTROL.search(path) is not None, "control character in path"),
        ("\\" in path, "backslash in path"),
        (path.startswith("/") or _DRIVE.match(path) is not None, "absolute path"),
        (any(part in {"", ".", ".."} for part in parts), "'..', '.' or empty component in path"),
        (any(part.lower() == ".git" for part in parts), "'.git' component in path"),
    )
    return next((why for failed, why in checks if failed), None)


def remote_code_modules(config: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The code a config's ``auto_map`` names: (module files in this repo, foreign references).

    ``auto_map`` maps an Auto class to ``"module.Class"`` (or a list, for tokenizers: slow and
    fast, either may be null). ``"other/repo--module.Class"`` points at code in another repo,
    which a pull of this repo cannot verify. Anything that is not a string or null is reported
    as a foreign reference, so an odd shape is refused rather than ignored.
    """
    if not isinstance(config, dict):
        return (), ()
    auto_map = config.get("auto_map")
    if auto_map is None:
        return (), ()
    if not isinstance(auto_map, dict):
        return (), (repr(auto_map)[:200],)
    local: set[str] = set()
    foreign: set[str] = set()
    for value in auto_map.values():
        refs = value if isinstance(value, list) else [value]
        for ref in refs:
            if ref is None:
                continue
            if not isinstance(ref, str) or "." not in ref:
                foreign.add(repr(ref)[:200])
            elif "--" in ref:
                foreign.add(ref)
            else:
                module = ref.rsplit(".", 1)[0]
                local.add(module.replace(".", "/") + _CODE_EXTENSION)
    return tuple(sorted(local)), tuple(sorted(foreign))
