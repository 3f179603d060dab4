"""Names spelled another way resolve to one canonical name; no prefix is trusted."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import warnings

import pytest

from mamori.findings import Severity, Verdict
from mamori.scan import scan_bytes
from mamori.scan.pickle.classify import classify
from mamori.scan.pickle.denylist import DENYLIST
from mamori.scan.pickle.known_classes import SKLEARN_ESTIMATORS, TORCH_MODULES
from mamori.scan.pickle.names import canonical
from mamori.scan.pickle.uses import UseKind
from mamori.scan.pickle.values import GlobalRef

_PACKAGES = ("numpy", "torch", "pandas", "joblib", "dill", "sklearn", "scipy")


def test_python_2_names_map_through_the_loaders_own_table_below_protocol_3() -> None:
    assert canonical("__builtin__", "xrange", 2) == ("builtins", "range")
    assert canonical("copy_reg", "_reconstructor", 0) == ("copyreg", "_reconstructor")
    assert canonical("UserDict", "UserDict", 1) == ("collections", "UserDict")


def test_python_2_names_are_not_mapped_from_protocol_3_on() -> None:
    assert canonical("__builtin__", "xrange", 3) == ("__builtin__", "xrange")


def test_the_numpy_core_shim_resolves_to_numpy_core_underscore() -> None:
    assert canonical("numpy.core.multiarray", "_reconstruct", 2) == (
        "numpy._core.multiarray",
        "_reconstruct",
    )
    assert canonical("numpy.core", "memmap", 4) == ("numpy._core", "memmap")


def test_a_protocol_2_xrange_pickle_is_safe_as_builtins_range() -> None:
    data = b"\x80\x02c__builtin__\nxrange\nK\x00K\x05\x86R."
    assert scan_bytes(data).verdict is Verdict.SAFE


def test_an_unlisted_class_under_sklearn_is_not_trusted() -> None:
    verdict = classify(GlobalRef("sklearn.datasets._base", "NamedTemporaryFile"), {UseKind.CALLED})
    assert verdict.severity >= Severity.MEDIUM


def test_a_listed_sklearn_estimator_is_trusted_by_its_exact_name() -> None:
    ref = GlobalRef("sklearn.linear_model._logistic", "LogisticRegression")
    assert classify(ref, {UseKind.INSTANTIATED, UseKind.BUILT}).rule_id is None


def _deny_targets() -> dict[int, str]:
    objs: dict[int, str] = {}
    for entry in DENYLIST:
        if entry.endswith("*"):
            continue
        module, _, name = entry.rpartition(".")
        try:
            objs[id(getattr(importlib.import_module(module), name))] = entry
        except (ImportError, AttributeError):
            continue
    return objs


def test_every_reexport_of_a_denylisted_object_in_installed_ml_packages_is_denied() -> None:
    warnings.simplefilter("ignore")
    for package in _PACKAGES:
        pytest.importorskip(package)
    objs = _deny_targets()
    missed = []
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.split(".")[0] not in _PACKAGES:
            continue
        for attr, value in list(vars(module).items()):
            entry = objs.get(id(value))
            if entry is None:
                continue
            verdict = classify(GlobalRef(module_name, attr), {UseKind.CALLED})
            if verdict.rule_id != "MAM-PKL-001":
                missed.append(f"{module_name}.{attr} (is {entry})")
    assert missed == []


def _classes_under(package: str, base: type) -> set[str]:
    root = importlib.import_module(package)
    modules = [root]
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), package + "."):
        try:
            modules.append(importlib.import_module(info.name))
        except Exception:  # noqa: BLE001 - optional backends that fail to import here
            continue
    found = set()
    for module in modules:
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, base)
                and value.__module__ == module.__name__
            ):
                found.add(f"{value.__module__}.{value.__qualname__}")
    return found


def test_every_torch_nn_module_class_is_listed_exactly() -> None:
    torch = pytest.importorskip("torch")
    warnings.simplefilter("ignore")
    installed = set()
    for package in (
        "torch.nn.modules",
        "torch.ao.nn",
        "torch.nn.utils.parametrize",
        "torch.nn.utils.parametrizations",
    ):
        installed |= _classes_under(package, torch.nn.Module)
    assert installed - TORCH_MODULES == set()


def test_every_sklearn_estimator_is_listed_exactly() -> None:
    pytest.importorskip("sklearn")
    from sklearn.utils import all_estimators

    installed = {f"{c.__module__}.{c.__qualname__}" for _, c in all_estimators()}
    assert installed - SKLEARN_ESTIMATORS == set()
