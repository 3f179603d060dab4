"""``--format sarif``: SARIF 2.1.0 that GitHub code scanning accepts.

Mapping choices, each because of how consumers read SARIF:

* One run, one ``tool.driver`` named ``mamori``. ``rules`` lists only the rules the results
  use (sorted by id), so adding a rule to the catalogue does not renumber every ``ruleIndex``.
* ``properties.security-severity`` on each rule is the numeric string GitHub uses to rank
  security alerts (>= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, < 4.0 low):
  https://docs.github.com/en/code-security/code-scanning/integrating-with-code-scanning/sarif-support-for-code-scanning#reportingdescriptor-object
* A result's physical location is always a file that exists on disk: the scanned file, or for
  a directory scan the file inside it. Members of containers (``model.pt`` → ``data.pkl``)
  cannot be addressed by a repository path, so the member chain is a ``logicalLocation`` and
  is repeated in the message; the byte ``region`` is given only when the offset is inside the
  on-disk file itself (an offset inside a decompressed member is not a file offset).
* ``partialFingerprints`` hash rule id, file, member chain, offset and evidence, never the
  message wording or the scan time, so the same finding keeps its alert across runs.
* Suppressed findings are kept as results with an ``external`` suppression (the policy file)
  carrying the policy's reason, as SARIF 3.35 intends; GitHub does not raise alerts for them.
* Every scanned file and member is an ``artifact`` with its SHA-256 (and MD5 when computed);
  members point to their container through ``parentIndex``.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any, Final, Literal, assert_never
from urllib.parse import quote

from mamori import __version__
from mamori.findings import FileFormat, Finding, ScanReport, Severity
from mamori.scan.policy import OVERRIDE_NOTE_PREFIX
from mamori.scan.report.schema import NORMALIZED_STARTED_AT, severity_label
from mamori.scan.rules import RULES, RULESET_VERSION, Rule

__all__ = [
    "FINGERPRINT_KEY",
    "SARIF_SCHEMA_URI",
    "SARIF_VERSION",
    "build_sarif",
    "render_sarif",
    "sarif_level",
    "security_severity",
]

SARIF_VERSION: Final = "2.1.0"
SARIF_SCHEMA_URI: Final = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
FINGERPRINT_KEY: Final = "mamoriFindingHash/v1"
"""Key in ``partialFingerprints``; the ``/v1`` changes if the hashed fields ever change."""

SarifLevel = Literal["error", "warning", "note"]
_Json = dict[str, Any]


def sarif_level(severity: Severity) -> SarifLevel:
    """The SARIF ``level`` for a severity: high and critical fail a check, medium warns."""
    match severity:
        case Severity.CRITICAL | Severity.HIGH:
            return "error"
        case Severity.MEDIUM:
            return "warning"
        case Severity.LOW | Severity.INFO:
            return "note"
        case _:
            assert_never(severity)


def security_severity(severity: Severity) -> str:
    """GitHub's ``security-severity`` score (a numeric string) for a severity."""
    match severity:
        case Severity.CRITICAL:
            return "9.5"
        case Severity.HIGH:
            return "8.0"
        case Severity.MEDIUM:
            return "5.5"
        case Severity.LOW:
            return "3.0"
        case Severity.INFO:
            return "1.0"
        case _:
            assert_never(severity)


def _project_url() -> str | None:
    """The project home page from the installed metadata, if the package declares one."""
    try:
        meta = metadata.metadata("mamori")
    except metadata.PackageNotFoundError:
        return None
    # hatchling writes ``[project.urls]`` as "Project-URL: <label>, <url>" lines.
    entries: list[str] = meta.get_all("Project-URL") or []
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip().lower() in {"homepage", "home", "source", "repository"}:
            return url.strip()
    return None


def _rule_name(title: str) -> str:
    """``"Unreadable member"`` → ``"UnreadableMember"``: SARIF wants an identifier-like name."""
    return "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", title))


def _tags(cwe: Sequence[str], atlas: Sequence[str]) -> list[str]:
    # "security" makes GitHub treat the rule as a security query; external/cwe/cwe-NNN is the
    # tag form CodeQL uses, which GitHub renders as a CWE link.
    tags = ["security"]
    tags += [f"external/cwe/{c.lower()}" for c in cwe]
    tags += [f"external/mitre-atlas/{a}" for a in atlas]
    return tags


def _descriptor(rule_id: str, entry: Rule | None, example: Finding) -> _Json:
    if entry is None:
        # A finding whose id is not in this catalogue (a report from another version): describe
        # it from the finding itself rather than dropping the result.
        title, description, severity = rule_id, example.message, example.severity
        cwe, atlas = example.cwe, example.atlas
    else:
        title, description, severity = entry.title, entry.description, entry.severity
        cwe, atlas = entry.cwe, entry.atlas
    taxa = ", ".join((*cwe, *atlas)) or "none"
    return {
        "id": rule_id,
        "name": _rule_name(title),
        "shortDescription": {"text": title},
        "fullDescription": {"text": description},
        "help": {
            "text": f"{description} (taxonomy: {taxa})",
            "markdown": f"**{title}** ({rule_id})\n\n{description}\n\nTaxonomy: {taxa}",
        },
        "defaultConfiguration": {"level": sarif_level(severity)},
        "properties": {
            "tags": _tags(cwe, atlas),
            "security-severity": security_severity(severity),
        },
    }


def _report_uri(report_path: str, members: tuple[str, ...], base_dir: Path | None) -> str:
    """The URI of a report's path, or of a file inside it; a scanned URL stays a URL."""
    if "://" in report_path or report_path.startswith("models:/"):
        # `mamori scan hf://org/repo` and friends: the URL is what the user can look up.
        return "/".join([report_path.rstrip("/"), *(quote(m) for m in members)])
    return _uri(PurePath(report_path, *members), base_dir)


def _uri(path: PurePath, base_dir: Path | None) -> str:
    """A URI for a file: relative (to the repository root) when possible, else ``file://``."""
    if path.is_absolute():
        if base_dir is not None and Path(path).is_relative_to(base_dir):
            return quote(Path(path).relative_to(base_dir).as_posix() or ".")
        return Path(path).as_uri()
    norm = posixpath.normpath(path.as_posix())
    if (norm == ".." or norm.startswith("../")) and base_dir is not None:
        return (base_dir / path).resolve().as_uri()
    return quote(norm)


def _timestamp(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Run:
    """Accumulates the artifacts, rules and results of one SARIF run."""

    def __init__(self, rules: Mapping[str, Rule], base_dir: Path | None) -> None:
        self.rules = rules
        self.base_dir = base_dir
        self.artifacts: list[_Json] = []
        self.descriptors: dict[str, _Json] = {}
        self.results: list[_Json] = []
        self._index: dict[tuple[int, tuple[str, ...]], int] = {}

    def add_report(self, number: int, report: ScanReport) -> None:
        on_disk = 1 if report.format is FileFormat.DIRECTORY else 0
        top: _Json = {
            "location": {"uri": _report_uri(report.path, (), self.base_dir)},
            "length": report.size,
            "roles": ["analysisTarget"],
            "properties": {
                "format": report.format.value,
                "verdict": report.verdict.value,
                "threshold": severity_label(report.threshold),
            },
        }
        if on_disk:
            # A directory's digest is of its file manifest, not of any bytes a loader reads.
            top["roles"].append("directory")
            top["properties"]["manifestSha256"] = report.sha256
        else:
            top["hashes"] = _hashes(report.sha256, report.md5)
        self._append(number, (), top)
        for member in sorted(report.members, key=lambda m: m.path):
            artifact = self._member_artifact(number, report, member.path, on_disk)
            artifact["length"] = member.size
            artifact["hashes"] = _hashes(member.sha256, member.md5)
            artifact["properties"] = {"format": member.format.value}
        for finding in report.findings:
            self.results.append(self._result(number, report, finding, on_disk))
        for item in report.suppressed:
            result = self._result(number, report, item.finding, on_disk)
            result["suppressions"] = [
                {"kind": "external", "status": "accepted", "justification": item.reason}
            ]
            self.results.append(result)

    def _append(self, number: int, path: tuple[str, ...], artifact: _Json) -> _Json:
        self._index[number, path] = len(self.artifacts)
        self.artifacts.append(artifact)
        return artifact

    def _member_artifact(
        self, number: int, report: ScanReport, path: tuple[str, ...], on_disk: int
    ) -> _Json:
        """The artifact for ``path`` inside report ``number``, created (with parents) if new."""
        index = self._index.get((number, path))
        if index is not None:
            return self.artifacts[index]
        if len(path) <= on_disk:
            uri = _report_uri(report.path, path, self.base_dir)
            return self._append(number, path, {"location": {"uri": uri}})
        self._member_artifact(number, report, path[:-1], on_disk)
        return self._append(
            number,
            path,
            {
                # A nested artifact's URI is relative to its parent (SARIF 3.24.3).
                "location": {"uri": "/" + quote(path[-1])},
                "parentIndex": self._index[number, path[:-1]],
            },
        )

    def _register_rule(self, finding: Finding) -> None:
        if finding.rule_id not in self.descriptors:
            entry = self.rules.get(finding.rule_id)
            self.descriptors[finding.rule_id] = _descriptor(finding.rule_id, entry, finding)

    def _result(self, number: int, report: ScanReport, finding: Finding, on_disk: int) -> _Json:
        member = finding.location.member
        disk_part, nested = member[:on_disk], member[on_disk:]
        self._member_artifact(number, report, disk_part, on_disk)
        artifact_index = self._index[number, disk_part]
        uri = self.artifacts[artifact_index]["location"]["uri"]
        offset = finding.location.offset
        physical: _Json = {"artifactLocation": {"uri": uri, "index": artifact_index}}
        if offset is not None and not nested:
            physical["region"] = {"byteOffset": offset}
        location: _Json = {"physicalLocation": physical}
        text = finding.message
        if nested:
            chain = "!".join(nested)
            location["logicalLocations"] = [
                {"name": nested[-1], "fullyQualifiedName": chain, "kind": "resource"}
            ]
            where = f"member {chain}" + (f" at byte {offset}" if offset is not None else "")
            text = f"{text} (in {where})"
        if finding.evidence is not None:
            text = f"{text.rstrip('.')}. Evidence: {finding.evidence}"
        properties: _Json = {
            "severity": severity_label(finding.severity),
            "memberChain": list(member),
            "cwe": list(finding.cwe),
            "atlas": list(finding.atlas),
        }
        if offset is not None:
            properties["byteOffset"] = offset
        if finding.evidence is not None:
            properties["evidence"] = finding.evidence
        self._register_rule(finding)
        return {
            "ruleId": finding.rule_id,
            # Set in finish(), once every rule is known and the rule list is sorted.
            "ruleIndex": -1,
            "level": sarif_level(finding.severity),
            "message": {"text": text},
            "locations": [location],
            "partialFingerprints": {
                FINGERPRINT_KEY: _fingerprint(finding, uri, nested),
            },
            "properties": properties,
        }

    def finish(self) -> tuple[list[_Json], list[_Json]]:
        """Sort the rules by id and point every result at its rule's index."""
        ordered = sorted(self.descriptors)
        position = {rule_id: i for i, rule_id in enumerate(ordered)}
        for result in self.results:
            result["ruleIndex"] = position[result["ruleId"]]
        return [self.descriptors[r] for r in ordered], self.results


def _hashes(sha256: str, md5: str | None) -> _Json:
    hashes = {"sha-256": sha256}
    if md5 is not None:
        hashes["md5"] = md5
    return hashes


def _fingerprint(finding: Finding, uri: str, nested: tuple[str, ...]) -> str:
    # Unit separators keep ("a", "bc") and ("ab", "c") apart.
    parts = (
        finding.rule_id,
        uri,
        "\x1f".join(nested),
        "" if finding.location.offset is None else str(finding.location.offset),
        finding.evidence or "",
    )
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:32]


def build_sarif(
    reports: Sequence[ScanReport],
    *,
    base_dir: Path | None = None,
    normalize_volatile: bool = False,
    rules: Mapping[str, Rule] = RULES,
) -> dict[str, Any]:
    """Build the SARIF log (as JSON-ready data) for reports of one run.

    Args:
        reports: one report per scanned path.
        base_dir: absolute paths under this directory become relative URIs (GitHub resolves
            relative URIs against the repository root, so pass the checkout directory).
        normalize_volatile: fixed invocation times, for golden files.
        rules: the catalogue used to describe rules.
    """
    run = _Run(rules, base_dir)
    for number, report in enumerate(reports):
        run.add_report(number, report)
    descriptors, results = run.finish()
    driver: _Json = {
        "name": "mamori",
        "version": reports[0].scanner_version if reports else __version__,
        "semanticVersion": reports[0].scanner_version if reports else __version__,
    }
    url = _project_url()
    if url is not None:
        driver["informationUri"] = url
    driver["rules"] = descriptors
    driver["properties"] = {
        "rulesetVersion": reports[0].ruleset_version if reports else RULESET_VERSION,
    }
    if normalize_volatile or not reports:
        start = end = NORMALIZED_STARTED_AT
    else:
        start = min(r.started_at for r in reports)
        end = max(r.started_at + timedelta(seconds=r.duration_s) for r in reports)
    invocation: _Json = {
        # The scan itself completed; findings are results, not execution failures.
        "executionSuccessful": True,
        "startTimeUtc": _timestamp(start),
        "endTimeUtc": _timestamp(end),
    }
    notes = list(dict.fromkeys(note for r in reports for note in r.notes))
    if notes:
        # Policy notes describe how the tool was configured; a denylist override weakens the
        # scan, so it is a warning beside the results.
        invocation["toolConfigurationNotifications"] = [
            {
                "level": "warning" if note.startswith(OVERRIDE_NOTE_PREFIX) else "note",
                "message": {"text": note},
            }
            for note in notes
        ]
    run_json: _Json = {
        "tool": {"driver": driver},
        "invocations": [invocation],
        "artifacts": run.artifacts,
        "results": results,
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [run_json]}


def render_sarif(
    reports: Sequence[ScanReport],
    *,
    base_dir: Path | None = None,
    normalize_volatile: bool = False,
    rules: Mapping[str, Rule] = RULES,
) -> str:
    """Render reports as a SARIF 2.1.0 log (indented JSON, newline-terminated).

    See :func:`build_sarif` for the arguments.
    """
    log = build_sarif(
        reports, base_dir=base_dir, normalize_volatile=normalize_volatile, rules=rules
    )
    # ASCII only: hostile member names and evidence (bidi overrides, C1 controls such as
    # U+009B CSI) stay escaped when someone cats the file in a terminal.
    return json.dumps(log, indent=2, ensure_ascii=True) + "\n"
