"""Build hook: compile the pickle analyser's hot loop with Cython when a C compiler is present.

``src/mamori/scan/pickle/fast.py`` is compiled unchanged (Cython's pure-Python mode; the
``cython.*`` annotations type its locals) into the extension ``mamori.scan.pickle._fastc``.
Bounds checking stays on: the loop parses hostile bytes. Without Cython or a compiler the
build still succeeds, prints why, and mamori runs the pure-Python loop, which gives identical
results (``mamori scan --version`` says which one runs).

Run ``python hatch_build.py`` to build the extension in place (``make ext``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "src" / "mamori" / "scan" / "pickle"
MODULE = "mamori.scan.pickle._fastc"
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": True,  # every buf[i] is checked: the bytes are an attacker's
    "wraparound": True,
    "initializedcheck": True,
    "annotation_typing": True,
}


def build_extension() -> Path:
    """Compile ``fast.py`` into ``src/mamori/scan/pickle/_fastc*.so``; return its path."""
    from Cython.Build import cythonize  # noqa: PLC0415 - a build-time dependency only
    from setuptools import Distribution, Extension  # noqa: PLC0415 - idem

    with tempfile.TemporaryDirectory(prefix="mamori-cy-") as tmp:
        work = Path(tmp)
        source = work / "mamori" / "scan" / "pickle" / "_fastc.py"
        source.parent.mkdir(parents=True)
        shutil.copyfile(PACKAGE / "fast.py", source)
        for pkg in (source.parent, source.parent.parent, source.parent.parent.parent):
            (pkg / "__init__.py").touch()
        ext = Extension(MODULE, [str(source)], extra_compile_args=["-O2"])
        modules = cythonize(
            [ext], compiler_directives=DIRECTIVES, quiet=True, build_dir=str(work / "c")
        )
        dist = Distribution({"ext_modules": modules, "script_name": "hatch_build.py"})
        cmd: Any = dist.get_command_obj("build_ext")
        cmd.build_lib = str(work / "lib")
        cmd.build_temp = str(work / "tmp")
        cmd.ensure_finalized()
        cmd.run()
        built = Path(cmd.get_ext_fullpath(MODULE))
        target = PACKAGE / built.name
        shutil.copyfile(built, target)
    return target


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # running as a script (make ext) without hatchling installed
    BuildHookInterface = object  # type: ignore[assignment,misc]


class CompiledLoopHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatchling hook: build the extension; fall back to pure Python when it cannot."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile before the wheel (or editable wheel) is assembled."""
        if self.target_name != "wheel":
            return
        try:
            built = build_extension()
        except Exception as exc:  # noqa: BLE001 - any build failure means the pure-Python path
            self.app.display_warning(
                f"mamori: compiled pickle loop not built ({type(exc).__name__}: {exc}); "
                "the pure-Python loop will run (identical results, slower)"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it from src/ directly
            build_data["force_include"][str(built)] = f"mamori/scan/pickle/{built.name}"


if __name__ == "__main__":
    # `make ext`: rebuild the extension in place after editing fast.py.
    sys.stdout.write(f"built {build_extension()}\n")
