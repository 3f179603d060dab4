"""The corpus's malicious samples really reach their payload when a victim loads them.

Each deserialiser sample is loaded in a subprocess by the loader a victim uses, under a
``sys.addaudithook`` that stops the process at the first dangerous audit event (process
start, ``exec``/``compile``, ``marshal.loads``, ``ctypes.dlopen``, a socket, a file opened
for writing, a browser) outside the import system (what a module does while ``find_class``
imports it is that module's code), and records which event it was. Nothing runs: the hook
ends the process before the event's action happens. A sample that never reaches such an
event tests only a name, and must say so in :data:`NAME_ONLY`.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mamori.testing import Sample, all_samples, build_corpus, missing_needs

pytestmark = pytest.mark.xdist_group("corpus")

# What a victim runs, per family. `P` is the sample's path.
_LOADERS: dict[str, str] = {
    "pickle": (
        "import pickle\n"
        "with open(P, 'rb') as f:\n"
        "    while True:\n"  # code that reads every pickle in a stream (stacked pickles)
        "        pickle.load(f)\n"
    ),
    "cloudpickle": "import pickle\nwith open(P, 'rb') as f: pickle.load(f)",
    "dill": "import dill\nwith open(P, 'rb') as f: dill.load(f)",
    "joblib": "import joblib\njoblib.load(P)",
    "numpy": (
        "import numpy\nz = numpy.load(P, allow_pickle=True)\n"
        "if hasattr(z, 'files'):\n    [z[k] for k in z.files]\n"
    ),
    "torch": "import torch\ntorch.load(P, weights_only=False)",
    "sklearn": "import pickle, sklearn\nwith open(P, 'rb') as f: pickle.load(f)",
}


_HOOK = r"""
import os, sys
_fd = int(os.environ["MAMORI_AUDIT_FD"])
_PROC = {"os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
         "os.forkpty", "pty.spawn", "os.startfile", "webbrowser.open", "ctypes.dlopen",
         "ctypes.dlsym", "socket.connect", "socket.getaddrinfo", "socket.bind"}
_CODE = {"exec", "compile", "marshal.loads", "marshal.load", "code.__new__",
         "function.__new__"}

def _from_import_system():
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if "importlib" in name or name == "<frozen zipimport>":
            return True
        frame = frame.f_back
    return False

def _hook(event, args):
    hit = event in _PROC or event in _CODE
    if event == "open" and len(args) > 1:
        mode = args[1] or ""
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        hit = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    # What a module does while find_class imports it is the module's code, not the payload.
    if hit and not _from_import_system():
        os.write(_fd, event.encode())
        os._exit(0)

sys.addaudithook(_hook)
"""

# Samples whose "payload" is only a dangerous name (or runs after load, or needs an extra
# step the victim takes): the scanner must still flag them, but loading them reaches nothing.
NAME_ONLY: dict[str, str] = {
    "pickle-nt-system": "nt exists only on Windows: on this platform find_class fails",
    "pickle-newobj-ex": "NEWOBJ_EX only calls subprocess.Popen.__new__; __init__ never runs",
    "pickle-runpy-run-code": "the helper needs a dict of globals; the direct-call table passes "
    "strings, so it raises before exec",
    "pickle-webbrowser-open": "a headless machine has no browser to launch: the call returns False",
    "pickle-socket-create-connection": "create_connection needs an address tuple; the "
    "direct-call table passes a string, so it raises before connecting",
    "pickle-pip-main": "pip --version starts no process; installing would need the network",
    "pickle-code-interact": "an unbound method called with a string as self raises before "
    "compiling",
    "sklearn-function-transformer-os-system": "the payload runs at predict time, not at load",
    "torch-7z-nullifai": "a victim extracts the 7z first; the extracted file is the "
    "torch-zip-nullifai-broken sample, which does reach its payload",
    "torch-zip-second-archive-prefix": "torch 2.13 rejects an archive whose records have two "
    "prefixes before it unpickles anything",
    "torch-zip-hidden-pickle-member": "torch.load never reads the extra member; it is there for "
    "tools that load every pickle they find",
    "torch-legacy-payload-after-storages": "torch.load stops after the storages; code that "
    "reads the stream on would run the appended pickle",
}

# Families that are not deserialiser payloads (templates, archives, layouts): other tests
# prove their attacks.
_NOT_DESERIALISERS = {"archive", "gguf", "keras", "onnx", "safetensors"}


def _payload_samples() -> list[Sample]:
    return [s for s in all_samples() if s.malicious and s.family not in _NOT_DESERIALISERS]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("corpus-payloads")
    build_corpus(dest, families={s.family for s in _payload_samples()})
    return dest


def _first_dangerous_event(loader: str, path: Path) -> str:
    read, write = os.pipe()
    # The hook goes in after the loader's own import (its first line): importing torch is not
    # the payload.
    first, _, rest = textwrap.dedent(loader).partition("\n")
    script = first + "\n" + _HOOK + f"P = {str(path)!r}\n" + rest
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["MAMORI_AUDIT_FD"] = str(write)
    try:
        subprocess.run(  # noqa: PLW1510 - the loader may raise after (or instead of) the event
            [sys.executable, "-c", script],
            cwd=path.parent,
            env=env,
            capture_output=True,
            timeout=120,
            pass_fds=(write,),
        )
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as pipe:
        return pipe.read().decode()


@pytest.mark.parametrize("sample", _payload_samples(), ids=lambda s: s.name)
def test_malicious_sample_reaches_its_payload_when_loaded(sample: Sample, corpus_dir: Path):
    if missing := missing_needs(sample):
        pytest.skip(f"needs {', '.join(missing)}")
    loader = _LOADERS[sample.family]
    event = _first_dangerous_event(loader, corpus_dir / sample.relpath)
    if sample.name in NAME_ONLY:
        assert not event, f"{sample.name} reaches {event}: remove it from NAME_ONLY"
    else:
        assert event, f"{sample.technique}: loading it reaches no dangerous event"


def test_a_benign_pickle_reaches_no_dangerous_event(tmp_path: Path) -> None:
    path = tmp_path / "benign.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0], "name": "x"}))
    assert _first_dangerous_event(_LOADERS["pickle"], path) == ""


def test_a_plain_os_system_pickle_is_stopped_at_os_system(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"cos\nsystem\n(S'touch PAYLOAD-RAN'\ntR.")
    assert _first_dangerous_event(_LOADERS["pickle"], path) == "os.system"
    assert not (tmp_path / "PAYLOAD-RAN").exists()  # the hook stopped it before it ran


def test_every_name_only_entry_is_a_corpus_sample_with_a_reason() -> None:
    names = {s.name for s in _payload_samples()}
    for name, why in NAME_ONLY.items():
        assert name in names
        assert why.strip()
