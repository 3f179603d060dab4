"""CycloneDX 1.6 ML-BOM of scanned artifacts: what each model is, its digests, and the verdict.

One ``machine-learning-model`` component per scanned path, with its SHA-256 (and MD5 when
computed), the detected format, mamori's verdict, ruleset and findings as ``mamori:*``
properties; every file or archive member inside it is a nested ``file`` component with its
own digest. Built with the official ``cyclonedx-python-lib`` (extra ``[bom]``), so the output
follows the schema that library validates against.
"""

from __future__ import annotations

from collections.abc import Sequence

# Imported at module level on purpose: the CLI imports this module lazily, so a missing
# [bom] extra surfaces before any scan, as one line naming the extra.
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6

from mamori import __version__
from mamori.findings import ScanReport
from mamori.scan.report._labels import severity_label

__all__ = ["render_bom"]


def _hashes(sha256: str, md5: str | None) -> list[HashType]:

    out = [HashType(alg=HashAlgorithm.SHA_256, content=sha256)]
    if md5 is not None:
        out.append(HashType(alg=HashAlgorithm.MD5, content=md5))
    return out


def _properties(report: ScanReport) -> list[Property]:

    props = [
        Property(name="mamori:verdict", value=report.verdict.value),
        Property(name="mamori:format", value=report.format.value),
        Property(name="mamori:threshold", value=severity_label(report.threshold)),
        Property(name="mamori:scanner-version", value=report.scanner_version),
        Property(name="mamori:ruleset-version", value=report.ruleset_version),
    ]
    for finding in report.findings:
        where = "!".join(finding.location.member) or "<file>"
        text = f"{finding.rule_id} {severity_label(finding.severity)} {where}: {finding.message}"
        props.append(Property(name="mamori:finding", value=text))
    props.extend(
        Property(name="mamori:suppressed", value=f"{s.finding.rule_id}: {s.reason}")
        for s in report.suppressed
    )
    props.extend(Property(name="mamori:note", value=note) for note in report.notes)
    return props


def render_bom(reports: Sequence[ScanReport]) -> str:
    """The CycloneDX 1.6 JSON document for ``reports`` (one component per scanned path)."""
    bom = Bom()
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="mamori", version=__version__)
    )
    for number, report in enumerate(reports):
        model = Component(
            type=ComponentType.MACHINE_LEARNING_MODEL,
            name=report.path,
            bom_ref=f"mamori-{number}-{report.sha256[:16]}",
            hashes=_hashes(report.sha256, report.md5),
            properties=_properties(report),
        )
        for index, member in enumerate(report.members):
            model.components.add(
                Component(
                    type=ComponentType.FILE,
                    name="!".join(member.path),
                    bom_ref=f"mamori-{number}-{index}-{member.sha256[:16]}",
                    hashes=_hashes(member.sha256, member.md5),
                    properties=[Property(name="mamori:format", value=member.format.value)],
                )
            )
        bom.components.add(model)
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"
