"""The model loader that runs *inside* the sandbox. Standard library only, no mamori import.

bubblewrap starts it as ``python -I /run/mamori-sandbox/loader.py FLAVOUR MODEL [ENTRY]`` with
the model read-only under ``/run/mamori-sandbox/model`` and a private, writable
``/run/mamori-sandbox/work``. Before any model byte is read it applies Landlock (where the
kernel has it) so that only the work directory and ``/tmp`` are writable even if a bind mount
were wrong. Then it loads the model and answers requests on stdin,
one JSON object per line (``{"op": "predict", "inputs": ...}``), on stdout, one JSON object
per line. Anything the model prints goes to stderr, never into the protocol stream.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

# linux/landlock.h
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_PR_SET_NO_NEW_PRIVS = 38
_READ = (1 << 0) | (1 << 2) | (1 << 3)  # EXECUTE | READ_FILE | READ_DIR
_ALL_V1 = (1 << 13) - 1
_EXTRA_BY_ABI = {2: 1 << 13, 3: 1 << 14}  # REFER, TRUNCATE


def _landlock(writable: list[str]) -> str:
    """Restrict the file system to read-only except ``writable``; say what was applied."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(_SYS_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        return "landlock unavailable"
    handled = _ALL_V1
    for version, bit in _EXTRA_BY_ABI.items():
        if abi >= version:
            handled |= bit
    attr = ctypes.c_uint64(handled)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), 8, 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        for path, access in [("/", _READ), *((p, handled) for p in writable)]:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            rule = bytearray(12)  # struct landlock_path_beneath_attr is packed: u64, s32
            rule[0:8] = (access & handled).to_bytes(8, "little")
            rule[8:12] = fd.to_bytes(4, "little", signed=True)
            buf = (ctypes.c_char * 12).from_buffer(rule)
            if libc.syscall(_SYS_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, buf, 0) < 0:
                raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
            os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return f"landlock abi {abi}"


def _load(flavour: str, model: str, entry: str | None) -> Any:
    if flavour == "joblib":
        import joblib  # type: ignore[import-untyped]  # noqa: PLC0415 - sandbox only

        return joblib.load(model)  # mamori: safe - runs only inside the sandbox
    if flavour == "pickle":
        import pickle  # noqa: PLC0415

        with open(model, "rb") as fh:
            return pickle.load(fh)  # noqa: S301 # mamori: safe - runs only inside the sandbox
    if flavour == "torch":
        import torch  # noqa: PLC0415

        obj = torch.load(model, weights_only=False)  # mamori: safe - inside the sandbox only
        if entry:
            module, _, func = entry.partition(":")
            sys.path.insert(0, os.path.dirname(model))
            return getattr(__import__(module), func)(obj)
        return obj
    if flavour == "onnx":
        import onnxruntime  # type: ignore[import-not-found]  # noqa: PLC0415

        return onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    msg = f"unknown flavour {flavour!r}"
    raise ValueError(msg)


def _predict(flavour: str, model: Any, inputs: Any) -> Any:
    if flavour == "onnx":
        import numpy as np  # noqa: PLC0415

        name = model.get_inputs()[0].name
        return model.run(None, {name: np.asarray(inputs, dtype="float32")})[0].tolist()
    if flavour == "torch":
        import torch  # noqa: PLC0415

        with torch.no_grad():
            return model(torch.tensor(inputs, dtype=torch.float32)).tolist()
    out = model.predict(inputs)
    return out.tolist() if hasattr(out, "tolist") else list(out)


def main() -> int:
    """Load the model, then answer requests until stdin closes."""
    flavour, model = sys.argv[1], sys.argv[2]
    entry = sys.argv[3] if len(sys.argv) > 3 else None  # noqa: PLR2004
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the model's prints go to stderr, never into the protocol stream
    try:
        # /tmp is the sandbox's private tmpfs.
        applied = _landlock(["/run/mamori-sandbox/work", "/tmp"])  # noqa: S108
        loaded = _load(flavour, model, entry)
    except BaseException as exc:  # noqa: BLE001 - any failure is reported, then we exit
        out.write(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 1
    out.write(json.dumps({"ok": True, "ready": True, "layers": [applied]}) + "\n")
    for line in sys.stdin:
        try:
            request = json.loads(line)
            result = _predict(flavour, loaded, request["inputs"])
            out.write(json.dumps({"ok": True, "outputs": result}) + "\n")
        except Exception as exc:  # noqa: BLE001 - a bad request is answered, not fatal
            out.write(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
