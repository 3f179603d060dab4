"""MemberContext: findings placed in a member, extra allowed globals, dropped findings."""

from __future__ import annotations

from dataclasses import dataclass, field

from mamori.findings import FileFormat, Finding, Location
from mamori.scan._internal.scoped_context import MemberContext
from mamori.scan._internal.source import BytesSource, Source
from mamori.scan.limits import ScanLimits
from mamori.scan.policy import ScanPolicy


@dataclass
class _Parent:
    member_path: tuple[str, ...] = ("outer.zip",)
    policy: ScanPolicy = field(
        default_factory=lambda: ScanPolicy(allowed_globals=frozenset({"a.b"}))
    )
    limits: ScanLimits = field(default_factory=ScanLimits)
    found: list[Finding] = field(default_factory=list)
    children: list[str] = field(default_factory=list)

    def emit(self, finding: Finding) -> None:
        self.found.append(finding)

    def scan_child(self, name: str, source: Source, **_kw: object) -> FileFormat:
        self.children.append(name)
        return FileFormat.UNKNOWN

    def check_deadline(self) -> None:
        pass

    def account_decompressed(self, nbytes: int) -> None:
        pass


def test_findings_are_located_in_the_member():
    parent = _Parent()
    MemberContext(parent, "data.pkl").report("MAM-TORCH-009", "m", offset=7)
    assert parent.found[0].location == Location(("outer.zip", "data.pkl"), 7)


def test_a_context_without_a_name_keeps_the_parents_location():
    parent = _Parent()
    MemberContext(parent, None).report("MAM-TORCH-009", "m")
    assert parent.found[0].location.member == ("outer.zip",)


def test_extra_globals_are_added_to_the_policy_not_substituted():
    ctx = MemberContext(_Parent(), "x", extra_allowed=frozenset({"c.d"}))
    assert ctx.policy.allowed_globals == {"a.b", "c.d"}


def test_dropped_findings_never_reach_the_parent():
    parent = _Parent()
    ctx = MemberContext(parent, "x", drop=lambda f: f.rule_id == "MAM-TORCH-009")
    ctx.report("MAM-TORCH-009", "dropped")
    ctx.report("MAM-TORCH-002", "kept")
    assert [f.rule_id for f in parent.found] == ["MAM-TORCH-002"]


def test_children_are_named_below_the_member():
    parent = _Parent()
    MemberContext(parent, "x").scan_child("y", BytesSource(b""))
    MemberContext(parent, None).scan_child("z", BytesSource(b""))
    assert parent.children == ["x/y", "z"]
