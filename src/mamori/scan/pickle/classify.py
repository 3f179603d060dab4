"""Turn "global G was used as U" into a verdict: allowed, denied, or unknown with a severity.

Order of precedence (first match wins):

1. the policy's ``denied_globals``                       -> CRITICAL (MAM-PKL-001)
2. an exact built-in denylist entry                      -> CRITICAL (MAM-PKL-001)
3. the policy's ``allowed_globals``, the exact allowlist -> safe
4. a wildcard denylist entry, on any spelling or suffix  -> CRITICAL (MAM-PKL-001)
5. a CamelCase class under an allowlisted package        -> safe
6. a dotted qualname that walks to a dangerous attribute -> CRITICAL (MAM-PKL-001)
7. unknown: severity by use (see :func:`classify`)

Unknown callables are graded by what the loader does with them, to keep real models quiet
(a full-module torch save names the user's own ``__main__.Net``) while a REDUCE of an
unlisted standard-library function (gadget surface) stays HIGH.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from mamori.findings import Severity
from mamori.scan.pickle.allowlist import ALLOWLIST, CLASS_PREFIXES
from mamori.scan.pickle.denylist import DANGEROUS_ATTRS, DENYLIST, MODULE_ALIASES
from mamori.scan.pickle.uses import UseKind
from mamori.scan.pickle.values import GlobalRef

__all__ = ["Verdict", "classify", "is_loader", "is_stdlib", "spellings"]

_MAX_NAME: Final = 1024
_MAX_DOTS: Final = 32
_PY2_NAMES: Final = {"__builtin__", "copy_reg", "cPickle", "commands", "urllib2", "thread"}
_EXACT_DENY: Final = frozenset(k for k in DENYLIST if not k.endswith("*"))
_WILD_DENY: Final = tuple(k[:-1] for k in DENYLIST if k.endswith("*"))
_LOADERS: Final = frozenset(
    {
        "pickle.loads",
        "pickle.load",
        "pickle._loads",
        "dill.loads",
        "dill._dill.loads",
        "cloudpickle.loads",
        "joblib.load",
        "torch.load",
        "torch.serialization.load",
        "torch.storage._load_from_bytes",
        "numpy.load",
        "pandas.read_pickle",
        "pickle.Unpickler",
        "marshal.loads",
    }
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """How to report one global: ``rule_id`` None means allowed (no finding)."""

    rule_id: str | None
    severity: Severity
    reason: str


_SAFE: Final = Verdict(None, Severity.INFO, "allowed")


def is_stdlib(module: str) -> bool:
    """True when ``module`` is part of the standard library (Python 3 or 2 spelling)."""
    top = module.split(".", 1)[0]
    return top in sys.stdlib_module_names or top in _PY2_NAMES or top in MODULE_ALIASES


def spellings(ref: GlobalRef) -> Iterator[str]:
    """Every dotted spelling the loader could resolve ``ref`` to, for deny matching.

    The name as written, with the module alias-normalised (``posix`` -> ``os``), lower-cased
    (case-insensitive file systems), and each suffix of a dotted qualname (protocol 4
    attribute walking: ``argparse`` + ``_os.system``).
    """
    module, name = ref.module, ref.name
    yield f"{module}.{name}"
    top, dot, rest = module.partition(".")
    alias = MODULE_ALIASES.get(top)
    if alias is not None:
        yield f"{alias}{dot}{rest}.{name}"
    lowered = f"{module}.{name}".lower()
    if lowered != f"{module}.{name}":
        yield lowered
    parts = name.split(".")
    for i in range(len(parts) - 1):
        first = MODULE_ALIASES.get(parts[i], parts[i])
        yield ".".join([first, *parts[i + 1 :]])


def _normalised(ref: GlobalRef) -> str:
    top, dot, rest = ref.module.partition(".")
    return f"{MODULE_ALIASES.get(top, top)}{dot}{rest}.{ref.name}"


def _deny_reason(candidates: list[str], *, exact_only: bool) -> str | None:
    for dotted in candidates:
        if dotted in _EXACT_DENY:
            return DENYLIST[dotted]
        if exact_only:
            continue
        for prefix in _WILD_DENY:
            if dotted.startswith(prefix) or dotted == prefix.rstrip("."):
                return DENYLIST[prefix + "*"]
    return None


def _policy_match(dotted: str, patterns: frozenset[str]) -> bool:
    if dotted in patterns:
        return True
    return any(p.endswith("*") and dotted.startswith(p[:-1]) for p in patterns)


def is_loader(ref: GlobalRef) -> bool:
    """True when calling ``ref`` with bytes deserialises them (``pickle.loads``)."""
    if len(ref.module) + len(ref.name) > _CACHED_NAME:
        return _is_loader(ref)
    return _is_loader_cached(ref)


def _is_loader(ref: GlobalRef) -> bool:
    return any(s in _LOADERS for s in spellings(ref))


# The interpreter asks once per call opcode, with the same few globals (a torch state dict
# has one _rebuild_tensor_v2 REDUCE per tensor); short names only, so the cache stays small.
_CACHED_NAME: Final = 256
_is_loader_cached: Final = functools.lru_cache(maxsize=1024)(_is_loader)


_LITERAL_LOAD_ONLY: Final = frozenset({UseKind.REFERENCED, UseKind.LOADS_LITERAL})


def classify(  # noqa: PLR0911 - one return per precedence step, in documented order
    ref: GlobalRef,
    kinds: set[UseKind],
    *,
    allowed: frozenset[str] = frozenset(),
    denied: frozenset[str] = frozenset(),
) -> Verdict:
    """Decide how to report ``ref``, given every way the pickle used it."""
    if len(ref.module) + len(ref.name) > _MAX_NAME or ref.name.count(".") > _MAX_DOTS:
        # No real module path looks like this; and walking every suffix would be quadratic.
        return Verdict("MAM-PKL-007", Severity.HIGH, "implausibly long or deep global name")
    candidates = list(dict.fromkeys(spellings(ref)))
    dotted = ref.dotted
    if any(_policy_match(c, denied) for c in candidates):
        return Verdict("MAM-PKL-001", Severity.CRITICAL, "denied by the scan policy")
    if UseKind.LOADS_LITERAL in kinds and kinds <= _LITERAL_LOAD_ONLY:
        # Only ever called on literal bytes, which were scanned as a file of their own.
        return _SAFE
    reason = _deny_reason(candidates, exact_only=True)
    if reason is not None:
        return Verdict("MAM-PKL-001", Severity.CRITICAL, reason)
    if UseKind.MUTATED in kinds:
        return Verdict(
            "MAM-PKL-009", Severity.HIGH, "BUILD sets attributes on the imported object itself"
        )
    normal = _normalised(ref)
    if dotted in allowed or dotted in ALLOWLIST or normal in ALLOWLIST:
        return _SAFE
    reason = _deny_reason(candidates, exact_only=False)
    if reason is not None:
        return Verdict("MAM-PKL-001", Severity.CRITICAL, reason)
    last = ref.name.rsplit(".", 1)[-1]
    if last[:1].isupper() and any(dotted.startswith(p) for p in CLASS_PREFIXES):
        return _SAFE
    if "." in ref.name and any(p in DANGEROUS_ATTRS for p in ref.name.split(".")[1:]):
        return Verdict(
            "MAM-PKL-001",
            Severity.CRITICAL,
            "dotted name walks to a dangerous attribute through another object",
        )
    return _unknown(ref, kinds)


def _unknown(ref: GlobalRef, kinds: set[UseKind]) -> Verdict:
    stdlib = is_stdlib(ref.module)
    if UseKind.CALLED in kinds:
        if stdlib:
            return Verdict(
                "MAM-PKL-002",
                Severity.HIGH,
                "standard-library callable outside the allowlist is called at load time "
                "(gadget surface)",
            )
        return Verdict(
            "MAM-PKL-003",
            Severity.MEDIUM,
            "third-party callable outside the allowlist is called at load time",
        )
    if kinds & {UseKind.INSTANTIATED, UseKind.BUILT}:
        if stdlib:
            return Verdict(
                "MAM-PKL-005",
                Severity.MEDIUM,
                "standard-library class outside the allowlist is instantiated and given state",
            )
        return Verdict(
            "MAM-PKL-004",
            Severity.LOW,
            "class outside the allowlist is instantiated; loading needs its code installed",
        )
    return Verdict(
        "MAM-PKL-006", Severity.LOW, "global outside the allowlist is imported but not called"
    )
