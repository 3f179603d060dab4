"""Allow/deny lists are data with a rationale, and classification follows the documented order."""

from __future__ import annotations

import pytest

from mamori.findings import Severity
from mamori.scan.pickle.allowlist import ALLOWLIST, CONDITIONAL
from mamori.scan.pickle.classify import classify, is_loader, is_stdlib, spellings
from mamori.scan.pickle.denylist import DENYLIST
from mamori.scan.pickle.uses import UseKind
from mamori.scan.pickle.values import GlobalRef


@pytest.mark.parametrize("table", [ALLOWLIST, DENYLIST, CONDITIONAL])
def test_every_entry_has_a_one_line_rationale(table) -> None:
    for name, why in table.items():
        assert why.strip(), name
        assert "\n" not in why, name


def test_no_global_is_both_allowed_and_exactly_denied() -> None:
    assert not set(ALLOWLIST) & {k for k in DENYLIST if not k.endswith("*")}


def test_aliases_and_attribute_walks_are_spelled_out() -> None:
    names = set(spellings(GlobalRef("argparse", "_os.system")))
    assert "os.system" in names
    assert "os.system" in set(spellings(GlobalRef("posix", "system")))
    assert "os.system" in set(spellings(GlobalRef("OS", "system")))


def test_stdlib_detection_covers_python_2_names() -> None:
    assert is_stdlib("__builtin__")
    assert is_stdlib("email.message")
    assert not is_stdlib("torch.nn")


def test_loaders_are_recognised_under_their_c_names() -> None:
    assert is_loader(GlobalRef("_pickle", "loads"))
    assert not is_loader(GlobalRef("json", "loads"))


@pytest.mark.parametrize(
    ("ref", "kinds", "expected"),
    [
        (GlobalRef("os", "system"), {UseKind.REFERENCED}, Severity.CRITICAL),
        (GlobalRef("torch._utils", "_rebuild_tensor_v2"), {UseKind.CALLED}, None),
        (GlobalRef("torch.nn.modules.linear", "Linear"), {UseKind.INSTANTIATED}, None),
        (GlobalRef("sklearn.ensemble._forest", "RandomForestClassifier"), {UseKind.BUILT}, None),
        (GlobalRef("sklearn.utils", "load_thing"), {UseKind.CALLED}, Severity.MEDIUM),
        (GlobalRef("__main__", "Net"), {UseKind.INSTANTIATED, UseKind.BUILT}, Severity.LOW),
        (GlobalRef("zipfile", "ZipFile"), {UseKind.CALLED}, Severity.HIGH),
        (GlobalRef("mypkg", "f"), {UseKind.MUTATED}, Severity.HIGH),
        (GlobalRef("torch.serialization", "os.system"), {UseKind.CALLED}, Severity.CRITICAL),
        (GlobalRef("mypkg", "helpers.run"), {UseKind.CALLED}, Severity.CRITICAL),
        (GlobalRef("dill._dill", "_load_type"), {UseKind.CALLED}, None),
    ],
)
def test_classification(ref, kinds, expected) -> None:
    verdict = classify(ref, kinds)
    if expected is None:
        assert verdict.rule_id is None
    else:
        assert verdict.severity is expected


def test_policy_can_deny_by_module_prefix() -> None:
    verdict = classify(
        GlobalRef("torch._utils", "_rebuild_tensor_v2"),
        {UseKind.CALLED},
        denied=frozenset({"torch.*"}),
    )
    assert verdict.rule_id == "MAM-PKL-001"
