"""The unpickler model: every call site MODEL.md lists is graded, and benign uses stay quiet."""

from __future__ import annotations

import functools
import pickle
import typing

import pytest

from mamori.findings import Severity, Verdict
from mamori.scan import scan_bytes

P4 = b"\x80\x04"


def sbu(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def sg(module: str, name: str) -> bytes:
    return sbu(module) + sbu(name) + b"\x93"


def namespace() -> bytes:
    return sg("argparse", "Namespace") + b")\x81"


def rules(data: bytes) -> dict[str, Severity]:
    found: dict[str, Severity] = {}
    for f in scan_bytes(data).findings:
        found[f.rule_id] = max(f.severity, found.get(f.rule_id, Severity.INFO))
    return found


def test_a_planted_setstate_is_reported_and_its_callable_is_reachable() -> None:
    data = P4 + namespace() + b"}" + sbu("__setstate__") + sg("mypkg", "run") + b"sb."
    found = rules(data)
    assert found["MAM-PKL-020"] is Severity.HIGH
    assert found["MAM-PKL-019"] is Severity.HIGH


def test_a_planted_denylisted_callable_is_critical() -> None:
    data = P4 + namespace() + b"}" + sbu("extend") + sg("posix", "system") + b"sb."
    assert rules(data)["MAM-PKL-001"] is Severity.CRITICAL


def test_a_computed_key_in_build_state_may_plant_any_name() -> None:
    key = sg("mypkg", "Key") + b")R"
    data = P4 + namespace() + b"}" + key + sg("mypkg", "run") + b"sb."
    assert "MAM-PKL-020" in rules(data)


def test_plain_attributes_holding_functions_are_not_a_plant() -> None:
    # A module holding a reference to an activation function, as full-module saves do.
    data = P4 + namespace() + b"}" + sbu("act") + sg("builtins", "len") + b"sb."
    assert scan_bytes(data).verdict is Verdict.SAFE


def test_a_slot_state_class_swap_is_a_plant() -> None:
    slot = b"N}" + sbu("__class__") + sg("mypkg", "Evil") + b"s\x86"
    data = P4 + namespace() + slot + b"b."
    assert "MAM-PKL-020" in rules(data)


def test_appends_on_an_imported_object_mutates_it() -> None:
    data = P4 + sg("mypkg", "REGISTRY") + b"(" + sbu("x") + b"e."
    assert rules(data)["MAM-PKL-009"] is Severity.HIGH


def test_items_given_to_an_objects_own_methods_are_reachable() -> None:
    data = P4 + sg("mypkg", "Bag") + b")\x81(" + sg("mypkg", "hook") + b"e."
    assert rules(data)["MAM-PKL-019"] is Severity.HIGH


def test_build_on_a_persistent_object_is_an_unproven_call() -> None:
    data = P4 + sbu("x") + b"Q}b."
    assert rules(data)["MAM-PKL-021"] is Severity.MEDIUM


def test_an_argument_of_an_unlisted_callable_is_reachable() -> None:
    data = P4 + sg("mypkg", "apply") + sg("mypkg", "hook") + b"\x85\x85R."
    found = rules(data)
    assert found["MAM-PKL-019"] is Severity.HIGH


def test_an_unlisted_global_passed_to_reviewed_code_is_medium() -> None:
    data = P4 + sg("builtins", "list") + sg("mypkg", "GEN") + b"\x85R."
    assert rules(data)["MAM-PKL-019"] is Severity.MEDIUM


def test_an_unreachable_unlisted_global_stays_low() -> None:
    data = P4 + sbu("k") + sg("mypkg", "CONSTANT") + b"\x86."
    assert rules(data) == {"MAM-PKL-006": Severity.LOW}


def test_defaultdict_factory_counts_as_called() -> None:
    data = P4 + sg("collections", "defaultdict") + sg("mypkg", "factory") + b"\x85R."
    assert rules(data)["MAM-PKL-003"] is Severity.MEDIUM


@pytest.mark.parametrize(
    "value",
    [
        typing.List[int],  # noqa: UP006 - the typing form is what is pickled
        typing.Dict[str, typing.Optional[int]],  # noqa: UP006, UP045 - idem
        typing.Union[int, str],  # noqa: UP007 - idem
        typing.Tuple[int, ...],  # noqa: UP006 - idem
        typing.Callable[[int], str],
        list[int],
    ],
    ids=repr,
)
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_typing_generics_are_safe(value: object, protocol: int) -> None:
    report = scan_bytes(pickle.dumps(value, protocol=protocol))
    assert report.verdict is Verdict.SAFE, report.findings


def test_getitem_on_something_other_than_a_typing_form_is_critical() -> None:
    data = P4 + sg("_operator", "getitem") + sg("mypkg", "TABLE") + sbu("k") + b"\x86R."
    assert rules(data)["MAM-PKL-001"] is Severity.CRITICAL


def test_a_partial_of_an_allowlisted_function_is_safe() -> None:
    report = scan_bytes(pickle.dumps(functools.partial(len, [1]), protocol=4))
    assert report.verdict is Verdict.SAFE, report.findings


def test_calling_builtins_len_is_safe() -> None:
    data = P4 + sg("builtins", "len") + sbu("abc") + b"\x85R."
    assert scan_bytes(data).verdict is Verdict.SAFE


def test_getattr_of_a_literal_attribute_is_classified_as_the_dotted_name() -> None:
    ok = P4 + sg("builtins", "getattr") + sg("zoneinfo", "ZoneInfo") + sbu("_unpickle") + b"\x86R"
    assert scan_bytes(ok + b".").verdict is Verdict.SAFE
    bad = P4 + sg("builtins", "getattr") + sg("torch", "serialization") + sbu("load") + b"\x86R"
    assert rules(bad + b".")["MAM-PKL-001"] is Severity.CRITICAL


def test_getattr_on_a_computed_object_stays_critical() -> None:
    obj = sg("collections", "OrderedDict") + b")R"
    data = P4 + sg("builtins", "getattr") + obj + sbu("update") + b"\x86R."
    assert rules(data)["MAM-PKL-001"] is Severity.CRITICAL


def test_type_with_three_arguments_builds_a_class_and_is_high() -> None:
    data = P4 + sg("builtins", "type") + sbu("X") + b")}\x87R."
    assert rules(data)["MAM-PKL-002"] is Severity.HIGH
