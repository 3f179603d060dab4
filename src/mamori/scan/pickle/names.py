"""Canonical names: the object path ``find_class`` resolves a GLOBAL's (module, name) to.

CPython's ``Unpickler.find_class`` (``Modules/_pickle.c``) does, in order:

1. with a protocol below 3 (the last PROTO seen, 0 without one) and ``fix_imports`` (the
   default), map ``(module, name)`` through ``_compat_pickle.NAME_MAPPING``, or else the
   module alone through ``IMPORT_MAPPING`` (``__builtin__`` -> ``builtins``,
   ``copy_reg`` -> ``copyreg``, ``commands`` -> ``subprocess``);
2. ``__import__(module)``, which runs the module's code the first time;
3. with protocol 4 or more, split ``name`` on dots and walk the attributes with ``getattr``
   (``("torch.serialization", "os.system")`` is ``os.system``); below 4, one ``getattr``.

:func:`canonical` applies step 1 exactly (the loader's own table), and replaces module shims
that forward every attribute to another module (``numpy.core`` is ``numpy._core`` on numpy 2)
so that one allowlist entry names one object. Allowlist lookups use the canonical name only;
the denylist is matched on every spelling (see :func:`mamori.scan.pickle.classify.spellings`),
because a deny entry must catch re-exports and attribute walks too.
"""

from __future__ import annotations

import _compat_pickle
from types import MappingProxyType
from typing import Final

__all__ = ["MODULE_SHIMS", "canonical"]

MODULE_SHIMS: Final = MappingProxyType(
    {
        "numpy.core": "numpy._core",
    }
)
"""Packages that are pure forwarding shims for another package (and their submodules)."""

_NAME_MAPPING: Final = MappingProxyType(dict(_compat_pickle.NAME_MAPPING))
_IMPORT_MAPPING: Final = MappingProxyType(dict(_compat_pickle.IMPORT_MAPPING))
_COMPAT_BELOW: Final = 3


def canonical(module: str, name: str, protocol: int) -> tuple[str, str]:
    """Return the ``(module, name)`` the loader really imports for this GLOBAL."""
    if protocol < _COMPAT_BELOW:
        mapped = _NAME_MAPPING.get((module, name))
        if mapped is not None:
            module, name = mapped
        else:
            module = _IMPORT_MAPPING.get(module, module)
    for shim, real in MODULE_SHIMS.items():
        if module == shim or module.startswith(shim + "."):
            module = real + module[len(shim) :]
            break
    return module, name
