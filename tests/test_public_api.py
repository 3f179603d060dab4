"""Every public module declares its API explicitly, and ``__all__`` matches what it defines."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import mamori

_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(mamori.__path__, "mamori.")
    if "._" not in m.name and not m.name.endswith("__main__")
)


def test_the_top_level_package_exports_the_stable_api():
    submodules = {m.split(".")[1] for m in _MODULES}
    public = {n for n in dir(mamori) if not n.startswith("_")} - submodules - {"annotations"}
    assert public == set(mamori.__all__) - {"__version__"}


@pytest.mark.parametrize("name", _MODULES)
def test_each_public_module_has_an_all_that_names_only_real_attributes(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert sorted(set(exported)) == sorted(exported), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []


def test_the_package_ships_type_information():
    from importlib.resources import files

    assert files("mamori").joinpath("py.typed").is_file()
