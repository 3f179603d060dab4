"""PyTorch samples: real ``torch.save`` / TorchScript output, and poisoned variants of it.

Benign samples come straight from torch. Malicious ones start from the same bytes and are
edited the way public proofs of concept do it (fickling ``example/pytorch_poc.py``, the
JFrog and ReversingLabs write-ups); the model is never loaded to do so.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mamori.testing.corpus import _asm as a
from mamori.testing.corpus._model import Spec, spec
from mamori.testing.corpus._zipw import Entry, read_members, write_7z, write_zip
from mamori.testing.corpus.pickles import DANGEROUS_GLOBAL, os_system_payload

__all__ = [
    "SPECS",
    "deterministic_legacy",
    "poisoned_torch_zip",
    "small_state_dict",
    "torch_zip_bytes",
]

_NEEDS = ("torch",)
_DATA_PKL = "archive/data.pkl"


def _torch() -> Any:
    import torch  # noqa: PLC0415 - optional dependency, imported only when building

    torch.manual_seed(0)
    return torch


def small_state_dict() -> dict[str, Any]:
    """A three-entry float state dict (weight, bias, step), identical on every run."""
    torch = _torch()
    return {
        "layer.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10,
        "layer.bias": torch.zeros(3),
        "step": torch.tensor(7),
    }


def torch_zip_bytes(obj: object) -> bytes:
    """``torch.save(obj)`` into memory, zip format, archive name ``archive``."""
    torch = _torch()
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation notice.

    TorchScript files are still published, so the corpus keeps writing them, and pytest turns
    warnings into errors.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _save(path: Path, obj: object, **kwargs: Any) -> None:
    torch = _torch()
    with path.open("wb") as fh:
        torch.save(obj, fh, **kwargs)


def _members() -> list[tuple[str, bytes]]:
    return read_members(torch_zip_bytes(small_state_dict()))


def poisoned_torch_zip() -> bytes:
    """A real state-dict zip whose ``data.pkl`` runs ``os.system("true")`` first."""
    entries = [
        Entry(n, a.inject_after_proto(d, os_system_payload()) if n == _DATA_PKL else d)
        for n, d in _members()
    ]
    return write_zip(entries)


# --- benign -------------------------------------------------------------------------------


def _benign(name: str, technique: str, make: Any, **save_kwargs: Any) -> Spec:
    rel = "torch/" + name.removeprefix("torch-") + (".pth" if "legacy" in name else ".pt")

    @spec(name, rel, family="torch", technique=technique, needs=_NEEDS)
    def build(path: Path) -> None:
        _save(path, make(), **save_kwargs)

    return build


def _dtypes() -> dict[str, Any]:
    torch = _torch()
    base = torch.arange(8)
    return {
        "f16": base.to(torch.float16),
        "bf16": base.to(torch.bfloat16),
        "f64": base.to(torch.float64),
        "i8": base.to(torch.int8),
        "u8": base.to(torch.uint8),
        "bool": base % 2 == 0,
        "c64": base.to(torch.complex64),
    }


def _views() -> dict[str, Any]:
    torch = _torch()
    full = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {"full": full, "slice": full[1:3], "t": full.t(), "strided": full[:, ::2]}


def _checkpoint() -> dict[str, Any]:
    torch = _torch()
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 4)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "config": {"hidden": [4, 2], "name": "tiny", "dropout": 0.0},
    }


def _module() -> Any:
    torch = _torch()
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _parameter() -> Any:
    torch = _torch()
    return {"p": torch.nn.Parameter(torch.ones(2, 2))}


@spec(
    "torchscript-script",
    "torch/torchscript-script.pt",
    family="torch",
    technique="torch.jit.script(module).save()",
    needs=_NEEDS,
)
def _script(path: Path) -> None:
    from mamori.testing.corpus._torchnet import TinyNet  # noqa: PLC0415 - needs torch

    with _quiet_jit():
        _torch().jit.script(TinyNet()).save(str(path))


@spec(
    "torchscript-trace",
    "torch/torchscript-trace.pt",
    family="torch",
    technique="torch.jit.trace(module, example).save()",
    needs=_NEEDS,
)
def _trace(path: Path) -> None:
    torch = _torch()
    with _quiet_jit():
        torch.jit.trace(_module(), torch.ones(1, 4)).save(str(path))


# --- malicious ------------------------------------------------------------------------------


@spec(
    "torch-zip-malicious-data-pkl",
    "torch/malicious-data-pkl.pt",
    family="torch",
    technique="os.system injected in front of a real state dict's data.pkl; the model still "
    "loads (fickling pytorch_poc.py)",
    expected=[DANGEROUS_GLOBAL],
    needs=_NEEDS,
)
def _poisoned(path: Path) -> None:
    path.write_bytes(poisoned_torch_zip())


def _broken_pickle() -> bytes:
    return a.proto(2) + os_system_payload() + b"\xff"


@spec(
    "torch-zip-nullifai-broken-data-pkl",
    "torch/nullifai-broken.pt",
    family="torch",
    technique="nullifAI (ReversingLabs, 2025): data.pkl holds the payload then breaks, so "
    "torch.load executes it and then fails",
    expected=[DANGEROUS_GLOBAL, "MAM-PKL-011"],
    needs=_NEEDS,
)
def _nullifai_zip(path: Path) -> None:
    entries = [Entry(n, _broken_pickle() if n == _DATA_PKL else d) for n, d in _members()]
    path.write_bytes(write_zip(entries))


@spec(
    "torch-7z-nullifai",
    "torch/nullifai-model.7z",
    family="torch",
    technique="nullifAI: broken-pickle PyTorch model compressed with 7z, which picklescan "
    "never opened",
    expected=[DANGEROUS_GLOBAL, "MAM-PKL-011"],
    needs=(*_NEEDS, "py7zr"),
)
def _nullifai_7z(path: Path) -> None:
    entries = [Entry(n, _broken_pickle() if n == _DATA_PKL else d) for n, d in _members()]
    write_7z(path, write_zip(entries), "model.pt")


@spec(
    "torch-zip-duplicate-data-pkl",
    "torch/duplicate-data-pkl.pt",
    family="torch",
    technique="two archive/data.pkl members: readers that take the first and the last see "
    "different pickles",
    expected=["MAM-ZIP-003", DANGEROUS_GLOBAL],
    needs=_NEEDS,
)
def _duplicate(path: Path) -> None:
    evil = a.proto(2) + os_system_payload() + a.STOP
    entries = [Entry(n, d) for n, d in _members()]
    entries.append(Entry(_DATA_PKL, evil))
    path.write_bytes(write_zip(entries))


@spec(
    "torch-zip-second-archive-prefix",
    "torch/second-archive-prefix.pt",
    family="torch",
    technique="a second evil/data.pkl placed first: PyTorchStreamReader takes the archive "
    "name from the first member, so torch loads it while scanners read archive/data.pkl",
    expected=[DANGEROUS_GLOBAL, "MAM-TORCH-005"],
    needs=_NEEDS,
)
def _second_prefix(path: Path) -> None:
    evil = a.proto(2) + os_system_payload() + a.STOP
    entries = [Entry("evil/data.pkl", evil), *(Entry(n, d) for n, d in _members())]
    path.write_bytes(write_zip(entries))


@spec(
    "torch-zip-hidden-pickle-member",
    "torch/hidden-pickle-member.pt",
    family="torch",
    technique="a pickle payload in an extra member with a non-pickle name "
    "(picklescan GHSA-769v-p64c-89pr: non-standard pickle file names)",
    expected=[DANGEROUS_GLOBAL],
    needs=_NEEDS,
)
def _hidden_member(path: Path) -> None:
    evil = a.proto(2) + os_system_payload() + a.STOP
    entries = [*(Entry(n, d) for n, d in _members()), Entry("archive/extra/config.bin", evil)]
    path.write_bytes(write_zip(entries))


@spec(
    "torch-zip-crc-mismatch",
    "torch/crc-mismatch.pt",
    family="torch",
    technique="poisoned data.pkl with a wrong CRC-32: torch ignores it, Python's zipfile "
    "raises and picklescan gave up (CVE-2025-10156, JFrog)",
    expected=["MAM-GEN-008", DANGEROUS_GLOBAL],
    needs=_NEEDS,
)
def _crc(path: Path) -> None:
    entries = []
    for n, d in _members():
        if n == _DATA_PKL:
            evil = a.inject_after_proto(d, os_system_payload())
            entries.append(Entry(n, evil, crc=0xDEADBEEF))
        else:
            entries.append(Entry(n, d))
    path.write_bytes(write_zip(entries))


@spec(
    "torch-zip-local-central-mismatch",
    "torch/local-central-mismatch.pt",
    family="torch",
    technique="the poisoned data.pkl's local header names another file than the central "
    "directory does (zip parser differential)",
    expected=["MAM-ZIP-002", DANGEROUS_GLOBAL],
    needs=_NEEDS,
)
def _mismatch(path: Path) -> None:
    entries = []
    for n, d in _members():
        if n == _DATA_PKL:
            evil = a.inject_after_proto(d, os_system_payload())
            entries.append(Entry(n, evil, local_name="archive/data.pkx"))
        else:
            entries.append(Entry(n, d))
    path.write_bytes(write_zip(entries))


@spec(
    "torch-pickle-zip-polyglot",
    "torch/pickle-zip-polyglot.pt",
    family="torch",
    technique="a malicious pickle followed by a valid torch zip: zip readers find the end "
    "record, torch.load sees no zip magic at offset 0 and unpickles the front",
    expected=[DANGEROUS_GLOBAL, "MAM-GEN-005", "MAM-ZIP-005"],
    needs=_NEEDS,
)
def _polyglot(path: Path) -> None:
    front = a.proto(2) + os_system_payload() + a.STOP
    path.write_bytes(write_zip([Entry(n, d) for n, d in _members()], prefix=front))


def _legacy_bytes() -> bytes:
    torch = _torch()
    # One storage shared by every tensor: legacy files write storages sorted by their memory
    # address, so with several storages the byte order would change from run to run.
    flat = torch.arange(16, dtype=torch.float32) / 10
    state = {"layer.weight": flat[:12].view(3, 4), "layer.bias": flat[12:15], "step": flat[15]}
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    return deterministic_legacy(buf.getvalue())


def deterministic_legacy(data: bytes) -> bytes:
    """Rename a legacy torch file's storage keys (memory addresses) to same-length ordinals.

    ``torch.save(..., _use_new_zipfile_serialization=False)`` keys storages by
    ``str(storage._cdata)``, an address that changes every run. The fifth pickle lists the
    keys; each is renamed everywhere it appears as a BINUNICODE string, keeping its length so
    no opcode argument or offset moves. pickletools only disassembles: nothing is executed.
    """
    import pickletools  # noqa: PLC0415 - a disassembler; it never builds objects

    stream = io.BytesIO(data)
    keys: list[str] = []
    for index in range(5):
        for opcode, arg, _pos in pickletools.genops(stream):
            if index == 4 and isinstance(arg, str) and opcode.name == "BINUNICODE":  # noqa: PLR2004 - the storage-key list is the fifth pickle
                keys.append(arg)
    header_end = stream.tell()
    head = data[:header_end]
    for ordinal, key in enumerate(keys):
        encoded = key.encode()
        new = str(ordinal).zfill(len(encoded)).encode()
        marker = b"X" + len(encoded).to_bytes(4, "little")
        head = head.replace(marker + encoded, marker + new)
    return head + data[header_end:]


@spec(
    "torch-legacy-state-dict",
    "torch/legacy-state-dict.pth",
    family="torch",
    technique="legacy format: _use_new_zipfile_serialization=False (storage keys normalised)",
    needs=_NEEDS,
)
def _legacy_benign(path: Path) -> None:
    path.write_bytes(_legacy_bytes())


@spec(
    "torch-legacy-payload-in-magic-pickle",
    "torch/legacy-payload-first.pth",
    family="torch",
    technique="legacy (pre-1.6) torch file whose first pickle (the magic number) runs "
    "os.system before torch checks it",
    expected=[DANGEROUS_GLOBAL],
    needs=_NEEDS,
)
def _legacy_first(path: Path) -> None:
    path.write_bytes(a.inject_after_proto(_legacy_bytes(), os_system_payload()))


@spec(
    "torch-legacy-payload-after-storages",
    "torch/legacy-payload-after-storages.pth",
    family="torch",
    technique="legacy torch file with a malicious pickle appended after the raw storages "
    "(scanners that stop after the five header pickles miss it)",
    expected=[DANGEROUS_GLOBAL, "MAM-TORCH-009"],
    needs=_NEEDS,
)
def _legacy_after(path: Path) -> None:
    path.write_bytes(_legacy_bytes() + a.proto(2) + os_system_payload() + a.STOP)


SPECS: tuple[Spec, ...] = (
    _benign(
        "torch-zip-state-dict",
        "torch.save of a small float state dict",
        small_state_dict,
    ),
    _benign(
        "torch-zip-dtypes", "state dict of every common dtype (f16, bf16, i8, bool, c64)", _dtypes
    ),
    _benign("torch-zip-views", "tensors sharing one storage: slices, transposes, strides", _views),
    _benign(
        "torch-zip-checkpoint", "model + SGD optimizer state + epoch + config dict", _checkpoint
    ),
    _benign("torch-zip-parameter", "nn.Parameter (torch._utils._rebuild_parameter)", _parameter),
    _benign("torch-zip-full-module", "a whole nn.Sequential saved with torch.save", _module),
    _legacy_benign,
    _script,
    _trace,
    _poisoned,
    _nullifai_zip,
    _nullifai_7z,
    _duplicate,
    _second_prefix,
    _hidden_member,
    _crc,
    _mismatch,
    _polyglot,
    _legacy_first,
    _legacy_after,
)
