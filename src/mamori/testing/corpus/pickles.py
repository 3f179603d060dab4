"""Plain pickle samples: benign data at every protocol, and every published RCE technique.

Malicious payloads are harmless (``true``, ``1+1``, a marker under ``/tmp``) but use the same
globals and opcode shapes as the public proofs of concept, and each sample's ``technique``
names the advisory or write-up it reproduces. Bytes are assembled by hand where the pickle
module cannot emit the shape; nothing here is ever unpickled.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from mamori.testing.corpus import _asm as a
from mamori.testing.corpus._model import Spec, spec
from mamori.testing.corpus.gadgets import DIRECT_CALLS, HARMLESS_CMD

__all__ = [
    "BENIGN_DATA",
    "COMPUTED_CALL",
    "DANGEROUS_GLOBAL",
    "SPECS",
    "os_system_payload",
    "reduce_call",
]

DANGEROUS_GLOBAL = "MAM-PKL-001"
COMPUTED_CALL = "MAM-PKL-008"
_MALFORMED = "MAM-PKL-010"
_UNKNOWN_OPCODE = "MAM-PKL-011"
_STACKED = "MAM-PKL-014"
_NESTED = "MAM-PKL-018"
_THIRD_PARTY_CALL = "MAM-PKL-003"


BENIGN_DATA: dict[str, object] = {
    "name": "tiny",
    "layers": [1, 2, 3],
    "weights": [0.5, -1.25, 3.0],
    "meta": {"epochs": 3, "lr": 1e-3, "tags": ("a", "b")},
    "blob": b"\x00\x01\x02",
    "flag": True,
    "missing": None,
}


def reduce_call(module: str, name: str, *args: str, protocol0: bool = False) -> bytes:
    """Ops that call ``module.name(*args)`` through GLOBAL (or STACK_GLOBAL) and REDUCE."""
    if protocol0:
        return a.call(a.global0(module, name), *(a.string0(x) for x in args))
    return a.call(a.stack_global(module, name), *(a.unicode(x) for x in args))


def os_system_payload() -> bytes:
    """``os.system("true")`` as protocol 2 ops (one value left on the stack)."""
    return a.call(a.global0("os", "system"), a.unicode(HARMLESS_CMD))


def _program(*ops: bytes, version: int = 4) -> bytes:
    return a.proto(version) + b"".join(ops) + a.STOP


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


class _Reduce:
    """An object whose ``__reduce__`` names ``os.system`` as a real pickler would save it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os  # noqa: PLC0415 - only the function object is needed, never called

        return (os.system, (HARMLESS_CMD,))


def _simple(
    name: str, module: str, func: str, *args: str, technique: str, protocol0: bool = False
) -> Spec:
    # Outside the standard library mamori does not keep a deny-list: an unlisted third-party
    # callable is MAM-PKL-003 (MEDIUM, so still UNSAFE at the default threshold).
    rule = _THIRD_PARTY_CALL if module.startswith("torch.") else DANGEROUS_GLOBAL

    @spec(name, f"pickle/{name}.pkl", family="pickle", technique=technique, expected=[rule])
    def build(path: Path) -> None:
        ops = reduce_call(module, func, *args, protocol0=protocol0)
        _write(path, (b"" if protocol0 else a.proto(4)) + ops + a.STOP)

    return build


# --- benign -------------------------------------------------------------------------------


def _benign(protocol: int) -> Spec:
    @spec(
        f"pickle-plain-data-protocol-{protocol}",
        f"pickle/plain-data-p{protocol}.pkl",
        family="pickle",
        technique=f"plain builtin data, pickle.dumps protocol {protocol}",
    )
    def build(path: Path) -> None:
        _write(path, pickle.dumps(BENIGN_DATA, protocol=protocol))

    return build


@spec(
    "pickle-ordered-dict",
    "pickle/ordered-dict.pkl",
    family="pickle",
    technique="collections.OrderedDict of lists (what state dicts pickle to)",
)
def _ordered_dict(path: Path) -> None:
    from collections import OrderedDict  # noqa: PLC0415 - keeps the module import light

    _write(path, pickle.dumps(OrderedDict(a=[1, 2], b=[3.0]), protocol=2))


# --- __reduce__ to dangerous callables ------------------------------------------------------


@spec(
    "pickle-os-system-reduce",
    "pickle/os-system-reduce.pkl",
    family="pickle",
    technique="__reduce__ returning os.system (saved as posix.system by the real pickler)",
    expected=[DANGEROUS_GLOBAL],
)
def _os_system_reduce(path: Path) -> None:
    _write(path, pickle.dumps(_Reduce(), protocol=4))


@spec(
    "pickle-getattr-import-chain",
    "pickle/getattr-import-chain.pkl",
    family="pickle",
    technique="builtins.getattr(builtins.__import__('os'), 'system')('true'): only builtins "
    "globals (modelscan#338 introspection chain)",
    expected=[DANGEROUS_GLOBAL, COMPUTED_CALL],
)
def _getattr_chain(path: Path) -> None:
    imported = reduce_call("builtins", "__import__", "os")
    getattr_call = a.call(a.stack_global("builtins", "getattr"), imported, a.unicode("system"))
    _write(path, _program(a.call(getattr_call, a.unicode(HARMLESS_CMD))))


@spec(
    "pickle-importlib-import-module",
    "pickle/importlib-import-module.pkl",
    family="pickle",
    technique="importlib.import_module + getattr (picklescan#66, follow-up to GHSA-vvpj-8cmc-gx39)",
    expected=[DANGEROUS_GLOBAL, COMPUTED_CALL],
)
def _importlib(path: Path) -> None:
    module = reduce_call("importlib", "import_module", "os")
    getattr_call = a.call(a.stack_global("builtins", "getattr"), module, a.unicode("system"))
    _write(path, _program(a.call(getattr_call, a.unicode(HARMLESS_CMD))))


@spec(
    "pickle-pkgutil-resolve-name",
    "pickle/pkgutil-resolve-name.pkl",
    family="pickle",
    technique="pkgutil.resolve_name('os:system') universal bypass (picklescan GHSA-vvpj-8cmc-gx39)",
    expected=[DANGEROUS_GLOBAL, COMPUTED_CALL],
)
def _pkgutil(path: Path) -> None:
    resolved = reduce_call("pkgutil", "resolve_name", "os:system")
    _write(path, _program(a.call(resolved, a.unicode(HARMLESS_CMD))))


@spec(
    "pickle-operator-methodcaller",
    "pickle/operator-methodcaller.pkl",
    family="pickle",
    technique="operator.methodcaller('system', 'true')(os module) gadget "
    "(picklescan GHSA-m273-6v24-x4m4)",
    expected=[DANGEROUS_GLOBAL, COMPUTED_CALL],
)
def _operator(path: Path) -> None:
    caller = reduce_call("operator", "methodcaller", "system", HARMLESS_CMD)
    module = reduce_call("builtins", "__import__", "os")
    _write(path, _program(a.call(caller, module)))


@spec(
    "pickle-operator-attrgetter",
    "pickle/operator-attrgetter.pkl",
    family="pickle",
    technique="_operator.attrgetter('system')(os) then REDUCE (picklescan GHSA-955r-x9j8-7rhh)",
    expected=[DANGEROUS_GLOBAL, COMPUTED_CALL],
)
def _attrgetter(path: Path) -> None:
    getter = reduce_call("_operator", "attrgetter", "system")
    module = reduce_call("builtins", "__import__", "os")
    _write(path, _program(a.call(a.call(getter, module), a.unicode(HARMLESS_CMD))))


@spec(
    "pickle-functools-partial",
    "pickle/functools-partial.pkl",
    family="pickle",
    technique="functools.partial(os.system, 'true')() wrapper (fickling#210)",
    expected=[DANGEROUS_GLOBAL],
)
def _partial(path: Path) -> None:
    partial = a.call(
        a.stack_global("functools", "partial"),
        a.stack_global("os", "system"),
        a.unicode(HARMLESS_CMD),
    )
    _write(path, _program(a.call(partial)))


@spec(
    "pickle-marshal-types-function",
    "pickle/marshal-types-function.pkl",
    family="pickle",
    technique="types.FunctionType(marshal.loads(code), {})() (fickling GHSA-565g-hwwr-4pp3)",
    expected=[DANGEROUS_GLOBAL, COMPUTED_CALL],
)
def _marshal(path: Path) -> None:
    import marshal  # noqa: PLC0415 - dumps only: turns a code object into bytes

    code = marshal.dumps(compile("1 + 1", "<corpus>", "eval"))
    loaded = a.call(a.stack_global("marshal", "loads"), a.binbytes(code))
    func = a.call(a.stack_global("types", "FunctionType"), loaded, a.EMPTY_DICT)
    _write(path, _program(a.call(func)))


@spec(
    "pickle-memo-stack-global",
    "pickle/memo-stack-global.pkl",
    family="pickle",
    technique="STACK_GLOBAL fed from the memo, BINPUT/MEMOIZE mixed so a naive memo model "
    "sees torch._utils (picklescan#14 memo confusion)",
    expected=[DANGEROUS_GLOBAL],
)
def _memo(path: Path) -> None:
    ops = [
        a.unicode("os"),
        a.BINPUT + b"\x00",
        a.unicode("system"),
        a.BINPUT + b"\x01",
        a.unicode("torch._utils"),
        a.MEMOIZE,  # memo[2]: a model that counts only MEMOIZE would call this memo[0]
        a.unicode("_rebuild_tensor_v2"),
        a.MEMOIZE,
        a.POP,
        a.POP,
        a.POP,
        a.POP,
        a.BINGET + b"\x00",
        a.BINGET + b"\x01",
        a.STACK_GLOBAL,
        a.MARK,
        a.unicode(HARMLESS_CMD),
        a.TUPLE,
        a.REDUCE,
    ]
    _write(path, _program(*ops))


@spec(
    "pickle-dotted-qualname",
    "pickle/dotted-qualname.pkl",
    family="pickle",
    technique="STACK_GLOBAL('posixpath', 'os.system'): a harmless-looking module and a dotted "
    "name resolved attribute by attribute (fickling GHSA-q5qq-mvfm-j35x)",
    expected=[DANGEROUS_GLOBAL],
)
def _dotted(path: Path) -> None:
    _write(path, _program(reduce_call("posixpath", "os.system", HARMLESS_CMD)))


# --- protocol shapes ------------------------------------------------------------------------


@spec(
    "pickle-protocol0-inst",
    "pickle/protocol0-inst.pkl",
    family="pickle",
    technique="protocol 0 INST opcode calling os.system (no GLOBAL opcode at all)",
    expected=[DANGEROUS_GLOBAL],
)
def _inst(path: Path) -> None:
    _write(path, a.MARK + a.string0(HARMLESS_CMD) + b"ios\nsystem\n" + a.STOP)


@spec(
    "pickle-protocol1-obj",
    "pickle/protocol1-obj.pkl",
    family="pickle",
    technique="OBJ opcode: MARK, GLOBAL subprocess.Popen, args, OBJ",
    expected=[DANGEROUS_GLOBAL],
)
def _obj(path: Path) -> None:
    ops = a.MARK + a.global0("subprocess", "Popen") + a.string0(HARMLESS_CMD) + b"o" + a.STOP
    _write(path, ops)


@spec(
    "pickle-newobj-ex",
    "pickle/newobj-ex.pkl",
    family="pickle",
    technique="NEWOBJ_EX on subprocess.Popen with args and kwargs (protocol 4)",
    expected=[DANGEROUS_GLOBAL],
)
def _newobj_ex(path: Path) -> None:
    ops = (
        a.stack_global("subprocess", "Popen")
        + a.MARK
        + a.unicode(HARMLESS_CMD)
        + a.TUPLE
        + a.EMPTY_DICT
        + a.NEWOBJ_EX
    )
    _write(path, _program(ops))


@spec(
    "pickle-newobj-build-setstate",
    "pickle/newobj-build.pkl",
    family="pickle",
    technique="NEWOBJ of subprocess.Popen, a BUILD that plants __setstate__ = os.system in its "
    "__dict__, then a BUILD that calls it (the unpickler looks __setstate__ up on the instance)",
    expected=[DANGEROUS_GLOBAL, "MAM-PKL-020"],
)
def _build(path: Path) -> None:
    ops = (
        a.stack_global("subprocess", "Popen")
        + a.EMPTY_TUPLE
        + a.NEWOBJ
        + a.EMPTY_DICT
        + a.unicode("__setstate__")
        + a.stack_global("os", "system")
        + a.SETITEM
        + a.BUILD
        + a.unicode(HARMLESS_CMD)
        + a.BUILD
    )
    _write(path, _program(ops, version=2))


# --- broken, stacked and trailing streams (nullifAI and friends) ----------------------------


@spec(
    "pickle-nullifai-no-stop",
    "pickle/nullifai-no-stop.pkl",
    family="pickle",
    technique="nullifAI (ReversingLabs, 2025): payload REDUCE first, stream ends with no STOP; "
    "pickle.load runs the payload before failing",
    expected=[DANGEROUS_GLOBAL, _MALFORMED],
)
def _nullifai_truncated(path: Path) -> None:
    _write(path, a.proto(2) + os_system_payload())


@spec(
    "pickle-nullifai-corrupt-tail",
    "pickle/nullifai-corrupt-tail.pkl",
    family="pickle",
    technique="nullifAI: payload REDUCE then an invalid opcode; scanners that reject the whole "
    "stream report nothing (picklescan GHSA-9gvj-pp9x-gcfr)",
    expected=[DANGEROUS_GLOBAL, _UNKNOWN_OPCODE],
)
def _nullifai_corrupt(path: Path) -> None:
    _write(path, a.proto(2) + os_system_payload() + b"\xff\xfe garbage")


@spec(
    "pickle-stacked-streams",
    "pickle/stacked-streams.pkl",
    family="pickle",
    technique="benign pickle followed by a second, malicious pickle read by a second "
    "pickle.load (legacy torch reads five in a row)",
    expected=[DANGEROUS_GLOBAL, _STACKED],
)
def _stacked(path: Path) -> None:
    benign = pickle.dumps(BENIGN_DATA, protocol=2)
    _write(path, benign + a.proto(2) + os_system_payload() + a.STOP)


@spec(
    "pickle-payload-after-stop-protocol0",
    "pickle/payload-after-stop.pkl",
    family="pickle",
    technique="benign protocol 4 stream, then a protocol 0 payload after its STOP",
    expected=[DANGEROUS_GLOBAL, _STACKED],
)
def _after_stop(path: Path) -> None:
    benign = pickle.dumps([1, 2, 3], protocol=4)
    _write(path, benign + reduce_call("os", "system", HARMLESS_CMD, protocol0=True) + a.STOP)


@spec(
    "pickle-nested-pickle-loads",
    "pickle/nested-pickle-loads.pkl",
    family="pickle",
    technique="pickle.loads of an inner malicious pickle held as bytes "
    "(picklescan GHSA-84r2-jw7c-4r5q)",
    expected=[DANGEROUS_GLOBAL, _NESTED],
)
def _nested(path: Path) -> None:
    inner = a.proto(2) + os_system_payload() + a.STOP
    _write(path, _program(a.call(a.stack_global("pickle", "loads"), a.binbytes(inner))))


SPECS: tuple[Spec, ...] = (
    *(_benign(p) for p in (0, 1, 2, 3, 4, 5)),
    _ordered_dict,
    _os_system_reduce,
    *(
        _simple(name, mod, func, *args, technique=tech, protocol0=p0)
        for name, mod, func, args, tech, p0 in DIRECT_CALLS
    ),
    _getattr_chain,
    _importlib,
    _pkgutil,
    _operator,
    _attrgetter,
    _partial,
    _marshal,
    _memo,
    _dotted,
    _inst,
    _obj,
    _newobj_ex,
    _build,
    _nullifai_truncated,
    _nullifai_corrupt,
    _stacked,
    _after_stop,
    _nested,
)
