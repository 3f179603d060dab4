"""The rule catalogue: every detection mamori can report, as one table.

A rule id is stable across releases: reports, suppressions and SARIF results refer to it. A
rule that is retired keeps its id reserved. Bump :data:`RULESET_VERSION` whenever a rule is
added, removed, or its severity or matching changes, so the service knows to rescan.

MITRE ATLAS ids used here:
  AML.T0010.003  ML supply chain compromise: model
  AML.T0011.000  User execution: unsafe ML artifacts
  AML.T0029      Denial of ML service
  AML.T0051      LLM prompt injection (template-borne)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from mamori.findings import Finding, Location, Severity

__all__ = ["RULES", "RULESET_VERSION", "Rule", "rule"]

RULESET_VERSION: Final = "2026.11.1"

SUPPLY_CHAIN: Final = ("AML.T0010.003", "AML.T0011.000")
DOS: Final = ("AML.T0029",)


@dataclass(frozen=True, slots=True)
class Rule:
    """One detection: its stable id, default severity, taxonomy ids and a description."""

    id: str
    severity: Severity
    title: str
    cwe: tuple[str, ...]
    atlas: tuple[str, ...]
    description: str

    def finding(
        self,
        message: str,
        *,
        location: Location | None = None,
        evidence: str | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        """Build a :class:`Finding` of this rule. ``severity`` overrides the default."""
        return Finding(
            rule_id=self.id,
            severity=self.severity if severity is None else severity,
            message=message,
            location=Location() if location is None else location,
            evidence=evidence,
            cwe=self.cwe,
            atlas=self.atlas,
        )


def _r(  # noqa: PLR0917 - positional on purpose: the table reads as rows
    rule_id: str,
    severity: Severity,
    title: str,
    cwe: tuple[str, ...],
    atlas: tuple[str, ...],
    description: str,
) -> Rule:
    return Rule(rule_id, severity, title, cwe, atlas, description)


# N is INFO: a bare I would be ambiguous (E741).
C, H, M, L, N = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO

_TABLE: Final[tuple[Rule, ...]] = (
    # --- engine, limits and generic input problems (owned by scan/engine.py) ---------------
    _r("MAM-GEN-001", H, "Unreadable member", ("CWE-20",), SUPPLY_CHAIN,
       "A member of the artifact could not be read or decoded, so it was not analysed."),
    _r("MAM-GEN-002", H, "File changed during scan", ("CWE-367",), SUPPLY_CHAIN,
       "The file's size, inode or mtime changed while it was scanned; the digest may not "
       "describe the bytes analysed."),
    _r("MAM-GEN-003", N, "Unknown format inside a model container", ("CWE-20",), (),
       "A member was not recognised as any format mamori understands; it was hashed only."),
    _r("MAM-GEN-004", M, "Unrecognised top-level file", ("CWE-20",), SUPPLY_CHAIN,
       "A file with a model-like extension whose bytes match no known format."),
    _r("MAM-GEN-005", H, "Ambiguous format (polyglot)", ("CWE-436",), SUPPLY_CHAIN,
       "The bytes are valid as two different formats; loaders may disagree with the scanner."),
    _r("MAM-GEN-006", H, "Symbolic link leaves the scanned tree", ("CWE-59",), SUPPLY_CHAIN,
       "A directory entry is a symlink that resolves outside the scanned directory."),
    _r("MAM-GEN-007", L, "Extension does not match content", ("CWE-436",), (),
       "The file extension suggests one format but the content is another."),
    _r("MAM-GEN-008", H, "Member checksum mismatch", ("CWE-354", "CWE-436"), SUPPLY_CHAIN,
       "A member's bytes do not match the checksum its container declares; loaders that skip "
       "the check read different content than those that enforce it."),
    _r("MAM-LIM-001", H, "Decompressed size limit exceeded", ("CWE-409",), DOS,
       "Decompressing the artifact would exceed the configured size limit (decompression bomb)."),
    _r("MAM-LIM-002", H, "Nesting depth limit exceeded", ("CWE-674",), DOS,
       "Containers are nested deeper than the configured limit."),
    _r("MAM-LIM-003", H, "Member count limit exceeded", ("CWE-400",), DOS,
       "The container holds more members than the configured limit."),
    _r("MAM-LIM-004", H, "Scan time limit exceeded", ("CWE-400",), DOS,
       "The scan ran past its wall-clock budget; the rest of the artifact was not analysed."),
    _r("MAM-LIM-005", H, "Opcode count limit exceeded", ("CWE-400",), DOS,
       "A pickle stream holds more opcodes than the configured limit."),
    _r("MAM-LIM-006", H, "Compression ratio limit exceeded", ("CWE-409",), DOS,
       "A compressed member expands by more than the configured ratio (decompression bomb)."),
    # --- pickle analyser (owned by scan/pickle/) ----------------------------------------------
    # --- containers: zip, tar, compression, torch, numpy, joblib (owned by their modules) ----
    # zip differentials (owned by scan/_internal/zipread.py)
    _r("MAM-ZIP-001", H, "Malformed zip structure", ("CWE-20",), SUPPLY_CHAIN,
       "The end record or central directory of a zip archive cannot be parsed consistently; "
       "loaders may read different members than the scanner, or none."),
    _r("MAM-ZIP-002", H, "Local header disagrees with central directory", ("CWE-436",),
       SUPPLY_CHAIN,
       "A member's local file header names a different file, size, method, CRC or flags than "
       "its central directory entry; loaders that trust one or the other see different bytes."),
    _r("MAM-ZIP-003", H, "Duplicate member name", ("CWE-436",), SUPPLY_CHAIN,
       "Two members share a name, possibly after case folding or path normalisation; which one "
       "a loader uses differs between implementations."),
    _r("MAM-ZIP-004", H, "Overlapping member data", ("CWE-436", "CWE-409"), SUPPLY_CHAIN,
       "Members share bytes or overlap the central directory, as in overlapping-file zip bombs "
       "and archives crafted to show different content to different readers."),
    _r("MAM-ZIP-005", H, "Data before the first zip member", ("CWE-436",), SUPPLY_CHAIN,
       "Bytes precede the first local header (a prepended file such as a pickle+zip "
       "polyglot); a loader that reads from the start may see something other than the zip."),
    _r("MAM-ZIP-006", M, "Data after the zip end record", ("CWE-436",), SUPPLY_CHAIN,
       "Bytes follow the end of central directory record and its comment; they are ignored by "
       "zip readers but can carry a second payload."),
    _r("MAM-ZIP-007", H, "Several end-of-central-directory records", ("CWE-436",),
       SUPPLY_CHAIN,
       "More than one plausible end record was found; readers that search differently open "
       "different archives from the same bytes."),
    _r("MAM-ZIP-008", H, "Archive comment hides content", ("CWE-436",), SUPPLY_CHAIN,
       "The archive comment contains zip structures or other magic bytes: a second archive "
       "hidden where most tools never look."),
    _r("MAM-ZIP-009", H, "Inconsistent ZIP64 records", ("CWE-436", "CWE-20"), SUPPLY_CHAIN,
       "ZIP64 end records, locator or extra fields contradict each other or the classic "
       "fields; 32-bit and 64-bit aware readers disagree about the archive."),
    _r("MAM-ZIP-010", M, "Suspicious member name", ("CWE-20", "CWE-176"), SUPPLY_CHAIN,
       "A member name contains NUL or control characters, backslashes or undecodable bytes; "
       "tools on different platforms interpret it differently."),
    _r("MAM-ZIP-011", H, "Member size differs from its declaration", ("CWE-436", "CWE-409"),
       SUPPLY_CHAIN,
       "A member decompresses to a different length than the directory declares; loaders that "
       "stop at the declared size see different bytes than those that read to the end."),
    _r("MAM-ZIP-012", H, "Corrupt member data", ("CWE-20",), SUPPLY_CHAIN,
       "A member's compressed data is corrupt or truncated, so it could not be analysed."),
    _r("MAM-ZIP-013", H, "Entry count disagrees with the end record", ("CWE-436",),
       SUPPLY_CHAIN,
       "The end record announces a different number of entries or directory size than the "
       "central directory holds; readers that trust the count see a different member list."),
    # generic archives: zip, tar, 7z, compressed streams (owned by scan/formats/*)
    _r("MAM-ARC-001", H, "Path traversal in member name", ("CWE-22",), SUPPLY_CHAIN,
       "A member name contains '..' components; extracting it writes outside the target."),
    _r("MAM-ARC-002", H, "Absolute member path", ("CWE-36",), SUPPLY_CHAIN,
       "A member name is an absolute path or carries a drive letter; extracting it writes "
       "anywhere on the file system."),
    _r("MAM-ARC-003", H, "Link member escapes the archive", ("CWE-59", "CWE-22"),
       SUPPLY_CHAIN,
       "A symbolic or hard link member points outside the extraction directory, so a later "
       "member or a loader following it reaches arbitrary files."),
    _r("MAM-ARC-004", M, "Link member", ("CWE-59",), SUPPLY_CHAIN,
       "A member is a symbolic or hard link; model archives have no reason to carry links, "
       "and its target was not scanned as content."),
    _r("MAM-ARC-005", H, "Device or special file member", ("CWE-20", "CWE-67"), SUPPLY_CHAIN,
       "A member is a device node, FIFO or other special file; extracting it can block or "
       "reach hardware."),
    _r("MAM-ARC-006", H, "Encrypted member", ("CWE-311",), SUPPLY_CHAIN,
       "A member is encrypted, so its content could not be analysed."),
    _r("MAM-ARC-007", H, "Unsupported compression method", ("CWE-20",), SUPPLY_CHAIN,
       "A member or stream uses a compression method mamori cannot decode; it was not "
       "analysed."),
    _r("MAM-ARC-008", M, "Sparse file member", ("CWE-20",), SUPPLY_CHAIN,
       "A tar member is a sparse file; its logical content differs from the stored bytes."),
    _r("MAM-ARC-009", H, "Malformed or truncated archive", ("CWE-20",), SUPPLY_CHAIN,
       "An archive or compressed stream is truncated or has corrupt headers or data; part of "
       "it could not be analysed."),
    _r("MAM-ARC-010", M, "Trailing data after a compressed stream", ("CWE-436",),
       SUPPLY_CHAIN,
       "Bytes that are not part of the compressed stream follow it; decoders differ on whether "
       "they are ignored, rejected or decoded as another stream."),
    # --- model formats: keras, tf, onnx, safetensors, gguf, nemo, flax, signatures ----------
)


def _index(table: tuple[Rule, ...]) -> Mapping[str, Rule]:
    index: dict[str, Rule] = {}
    for entry in table:
        if entry.id in index:
            msg = f"duplicate rule id {entry.id}"
            raise RuntimeError(msg)
        index[entry.id] = entry
    return MappingProxyType(index)


RULES: Final[Mapping[str, Rule]] = _index(_TABLE)


def rule(rule_id: str) -> Rule:
    """Return the catalogue entry for ``rule_id``; a typo is a programming error (KeyError)."""
    return RULES[rule_id]
