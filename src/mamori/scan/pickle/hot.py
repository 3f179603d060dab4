"""The hot loop that runs: the Cython build of :mod:`.fast` when installed, else :mod:`.fast`.

``hatch_build.py`` compiles ``fast.py`` unchanged into ``_fastc`` when a C compiler is present;
without one, installation still succeeds and the pure-Python loop (identical results, tested
by tests/scan/pickle/test_differential.py) runs instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from mamori.scan.pickle import fast as _pure

__all__ = ["SCANNER_BUILD", "fast_loop", "pure_fast_loop"]

try:
    from mamori.scan.pickle import _fastc  # type: ignore[attr-defined]  # built by hatch_build.py
except ImportError:  # no compiler at install time
    _fastc = None

pure_fast_loop: Final = _pure.fast_loop
fast_loop: Callable[..., bool] = pure_fast_loop if _fastc is None else _fastc.fast_loop
SCANNER_BUILD: Final = "pure-python" if _fastc is None else "compiled"
"""Which hot loop runs: ``compiled`` (Cython) or ``pure-python``."""
