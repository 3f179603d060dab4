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

RULESET_VERSION: Final = "2026.12.2"

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
I = N  # noqa: E741 - table shorthand for INFO; the rows read C/H/M/L/I

# One rule per block of lines reads as a table; the formatter would explode it.
# fmt: off
_TABLE: Final[tuple[Rule, ...]] = (
    # --- engine, limits and generic input problems (owned by scan/engine.py) ---------------
    _r("MAM-GEN-001", H, "Unreadable member", ("CWE-20",), SUPPLY_CHAIN,
       "A member of the artifact could not be read or decoded, so it was not analysed."),
    _r("MAM-GEN-002", H, "File changed during scan", ("CWE-367",), SUPPLY_CHAIN,
       "The file's size, inode or mtime changed while it was scanned; the digest may not "
       "describe the bytes analysed."),
    _r("MAM-GEN-003", N, "Unknown format inside a model container", ("CWE-20",), (),
       "A member was not recognised as any format mamori understands; it was hashed only."),
    _r("MAM-GEN-004", M, "Unrecognised file under a loader's name", ("CWE-20",), SUPPLY_CHAIN,
       "A file or member whose name a model loader opens (.bin, .data, .npy, .pt, .pkl, "
       ".zip, ..., or a binary file without extension in a model folder) but whose bytes "
       "match no known format: a loader reads it some way the scanner does not. LOW only for "
       "raw data beside the ONNX or OpenVINO model that declares it."),
    _r("MAM-GEN-005", H, "Ambiguous format (polyglot)", ("CWE-436",), SUPPLY_CHAIN,
       "The bytes are valid as two different formats; loaders may disagree with the scanner."),
    _r("MAM-GEN-006", H, "Symbolic link leaves the scanned tree", ("CWE-59",), SUPPLY_CHAIN,
       "A directory entry is a symlink that resolves outside the scanned directory."),
    _r("MAM-GEN-007", L, "Extension does not match content", ("CWE-436",), (),
       "The file extension suggests one format but the content is another."),
    _r("MAM-GEN-008", H, "Member checksum mismatch", ("CWE-354", "CWE-436"), SUPPLY_CHAIN,
       "A member's bytes do not match the checksum its container declares; loaders that skip "
       "the check read different content than those that enforce it."),
    _r("MAM-GEN-009", H, "Nothing was scanned", ("CWE-20",), SUPPLY_CHAIN,
       "The directory holds no regular file to scan; an empty result is not evidence of "
       "safety (a wrong path, an unmounted volume or a failed download look the same)."),
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
    _r("MAM-LIM-007", H, "Pickle memo limit exceeded", ("CWE-400", "CWE-770"), DOS,
       "A pickle memoizes more objects than the configured limit; the loader would keep all of "
       "them alive. The rest of the pickle was not analysed."),
    _r("MAM-LIM-008", H, "Pickle stack limit exceeded", ("CWE-400", "CWE-770"), DOS,
       "A pickle holds more values on its stack (or nests more MARKs) than the configured "
       "limit. The rest of the pickle was not analysed."),
    _r("MAM-LIM-009", H, "Pickle analysis memory limit exceeded", ("CWE-400", "CWE-770"), DOS,
       "Analysing the pickle grew the scanner's memory past the configured budget; it stopped "
       "with this finding instead of being killed. The rest of the pickle was not analysed."),
    # --- pickle analyser (owned by scan/pickle/) ----------------------------------------------
    _r("MAM-PKL-001", C, "Dangerous global in pickle", ("CWE-502", "CWE-94"), SUPPLY_CHAIN,
       "The pickle imports a callable that executes code, runs processes, touches files or "
       "the network, or deserialises nested data (os.system, builtins.eval, pickle.loads, "
       "...), under any spelling find_class resolves to it (aliases, re-exports, dotted "
       "names). Critical however it is reached: called, planted, or only imported."),
    _r("MAM-PKL-002", H, "Unlisted standard-library callable called", ("CWE-502",),
       SUPPLY_CHAIN,
       "A standard-library callable outside the allowlist is called at load time, by "
       "REDUCE/OBJ/INST or by an allowlisted helper that calls its argument. The standard "
       "library is where pickle gadget chains come from."),
    _r("MAM-PKL-003", M, "Unlisted third-party callable called", ("CWE-502",), SUPPLY_CHAIN,
       "A callable outside the allowlist from a non-standard module is called at load time."),
    _r("MAM-PKL-004", L, "Unlisted class instantiated", ("CWE-502",), SUPPLY_CHAIN,
       "A class outside the allowlist is instantiated and given state (a user's own model "
       "class in a full-module save). Loading needs that code installed and runs its "
       "__setstate__."),
    _r("MAM-PKL-005", M, "Unlisted standard-library class instantiated", ("CWE-502",),
       SUPPLY_CHAIN,
       "A standard-library class outside the allowlist is instantiated and given state; its "
       "__setstate__ runs at load time."),
    _r("MAM-PKL-006", L, "Unlisted global referenced", ("CWE-502",), SUPPLY_CHAIN,
       "A global outside the allowlist is imported, and no opcode path of the unpickler "
       "model can reach it as a callable (not called, not planted, not given to code that "
       "may call it); importing its module still runs that module's code."),
    _r("MAM-PKL-007", H, "Unresolvable global", ("CWE-502", "CWE-20"), SUPPLY_CHAIN,
       "The pickle imports something whose name cannot be determined from the file "
       "(STACK_GLOBAL on non-string operands, EXT extension codes)."),
    _r("MAM-PKL-008", H, "Call of a computed callable", ("CWE-502",), SUPPLY_CHAIN,
       "REDUCE/NEWOBJ/OBJ, or a helper that calls its argument, calls a value produced at "
       "load time (the result of another call, a persistent object) rather than an imported "
       "name: a gadget chain."),
    _r("MAM-PKL-009", H, "Imported object mutated by BUILD", ("CWE-502", "CWE-915"),
       SUPPLY_CHAIN,
       "BUILD, APPENDS, SETITEMS or ADDITEMS act on an imported function, class or module "
       "object itself, which can overwrite attributes such as __code__ or module globals, or "
       "call its extend/append/add/__setitem__."),
    _r("MAM-PKL-010", H, "Malformed pickle", ("CWE-20", "CWE-502"), SUPPLY_CHAIN,
       "The pickle stream is truncated, has no STOP, underflows its stack, misses a MARK, "
       "reads an undefined memo key or has an argument that does not decode. Loaders stop "
       "there, after running everything before (the nullifAI 'broken pickle' trick)."),
    _r("MAM-PKL-011", H, "Unknown pickle opcode", ("CWE-20",), SUPPLY_CHAIN,
       "A byte that is no pickle opcode of protocols 0-5; the rest cannot be analysed."),
    _r("MAM-PKL-012", H, "Unsupported pickle protocol", ("CWE-20",), SUPPLY_CHAIN,
       "PROTO names a protocol above 5; the stream cannot be analysed."),
    _r("MAM-PKL-013", M, "Trailing data after pickle", ("CWE-20", "CWE-436"), SUPPLY_CHAIN,
       "Bytes after the final STOP do not form a pickle. Scanners that stop at STOP never see "
       "them; a loader that reads on may."),
    _r("MAM-PKL-014", L, "Stacked pickles", ("CWE-436",), SUPPLY_CHAIN,
       "The stream holds several pickles back to back. pickle.load reads only the first; "
       "code that calls load repeatedly runs them all (each was analysed)."),
    _r("MAM-PKL-015", M, "Persistent id in a plain pickle", ("CWE-502",), SUPPLY_CHAIN,
       "The pickle uses PERSID/BINPERSID; what the id becomes depends entirely on the "
       "loader's persistent_load."),
    _r("MAM-PKL-016", M, "FRAME length inconsistent", ("CWE-20", "CWE-436"), SUPPLY_CHAIN,
       "A FRAME's declared length does not match the opcodes in it. The C and pure-Python "
       "unpicklers disagree about such streams (parser differential)."),
    _r("MAM-PKL-017", L, "Out-of-band buffer", ("CWE-20",), (),
       "Protocol 5 NEXT_BUFFER: the data lives outside the file and was not analysed."),
    _r("MAM-PKL-018", H, "Nested pickle", ("CWE-502",), SUPPLY_CHAIN,
       "Literal bytes passed to a deserialiser (pickle.loads, torch.load, ...) inside the "
       "pickle; they were analysed as a pickle of their own."),
    _r("MAM-PKL-019", H, "Unlisted global reachable as a callable", ("CWE-502",),
       SUPPLY_CHAIN,
       "A global outside the allowlist is not called by REDUCE, but an opcode path can still "
       "call it: it is an argument of a callable that may call it, a method planted on an "
       "instance, or an item given to an object's own methods (HIGH). Passed to reviewed code "
       "that may call its methods (iterate, hash): MEDIUM."),
    _r("MAM-PKL-020", H, "Method planted on an instance", ("CWE-502", "CWE-915"),
       SUPPLY_CHAIN,
       "A BUILD state (or a helper's state argument) sets __setstate__, extend, append, add, "
       "keys, as_subclass or __class__ on an object to a callable. The unpickler looks these "
       "up on the instance, so the next BUILD/APPENDS/ADDITEMS on it calls the planted "
       "callable with any argument."),
    _r("MAM-PKL-021", M, "Implicit call on an unproven object", ("CWE-502",), SUPPLY_CHAIN,
       "BUILD, APPENDS, SETITEMS or ADDITEMS target a persistent object, an out-of-band buffer "
       "or an unresolvable value: the loader calls a method of an object whose class the "
       "analyser cannot know."),
    # --- containers: zip, tar, compression, torch, numpy, joblib (owned by their modules) ----
    # torch, joblib, numpy (owned by scan/formats/torch*.py, joblib.py, numpy.py)
    _r("MAM-TORCH-001", H, "Torch storage reference without a record", ("CWE-20", "CWE-436"),
       SUPPLY_CHAIN,
       "The pickle references a tensor storage whose data/<key> record is missing from the "
       "archive (or from the legacy storage list); loaders fail or read something else."),
    _r("MAM-TORCH-002", M, "Unreferenced torch storage record", ("CWE-436",), SUPPLY_CHAIN,
       "A data/<key> record or legacy storage is not referenced by the pickle; torch never "
       "reads it, so it can only carry hidden content."),
    _r("MAM-TORCH-003", H, "Torch storage size mismatch", ("CWE-20", "CWE-436"), SUPPLY_CHAIN,
       "A storage's bytes do not match element size x element count declared in the pickle; "
       "the loader either fails or leaves bytes unread that can hide a payload."),
    _r("MAM-TORCH-004", H, "Malformed torch persistent id", ("CWE-20",), SUPPLY_CHAIN,
       "A persistent id in a torch pickle is not a ('storage', <torch storage type>, key, "
       "location, numel) record, so the storage it names cannot be checked."),
    _r("MAM-TORCH-005", H, "Ambiguous torch archive layout", ("CWE-436",), SUPPLY_CHAIN,
       "The archive holds several top-level folders or several data.pkl/constants.pkl "
       "records; torch reads only the folder of the first record, other tools may read "
       "another one."),
    _r("MAM-TORCH-006", L, "Unexpected member in a torch archive", ("CWE-20",), (),
       "A member is not part of the layout torch.save or torch.jit.save writes; torch ignores "
       "it, and it was scanned by content."),
    _r("MAM-TORCH-007", M, "Malformed torch archive record", ("CWE-20",), SUPPLY_CHAIN,
       "A control record (version, .format_version, byteorder, .storage_alignment, "
       "serialization_id) is missing or holds an unexpected value."),
    _r("MAM-TORCH-008", H, "Malformed legacy torch header", ("CWE-20",), SUPPLY_CHAIN,
       "A legacy (pre-1.6) torch file does not start with the magic-number, protocol-version "
       "and sys_info pickles torch expects, so its layout cannot be trusted."),
    _r("MAM-TORCH-009", H, "Data torch never reads", ("CWE-436",), SUPPLY_CHAIN,
       "Bytes follow the last storage of a legacy torch file, or the STOP opcode of a pickle "
       "record in a torch archive; torch never reads them, so they can only carry hidden "
       "content (such as a second pickle)."),
    _r("MAM-TORCH-010", H, "Truncated or inconsistent legacy storages", ("CWE-20",),
       SUPPLY_CHAIN,
       "The raw storages of a legacy torch file do not match the storage keys list and the "
       "sizes the pickle declares."),
    _r("MAM-TORCH-011", H, "Malformed legacy torch tar", ("CWE-20",), SUPPLY_CHAIN,
       "A torch .tar checkpoint lacks one of its sys_info, pickle, storages and tensors "
       "members or carries others."),
    _r("MAM-TORCH-020", C, "TorchScript code reads or writes files",
       ("CWE-73", "CWE-552"), SUPPLY_CHAIN,
       "TorchScript code calls an operator that opens files (torch.from_file, torch.save, "
       "debugprims.load_tensor); running the model reads or overwrites arbitrary files."),
    _r("MAM-TORCH-021", H, "TorchScript code needs a native extension", ("CWE-829",),
       SUPPLY_CHAIN,
       "TorchScript code calls a custom operator (torch.ops.<namespace>) or custom class "
       "(torch.classes) that only exists once a native library is loaded; what it does cannot "
       "be checked."),
    _r("MAM-TORCH-022", C, "TorchScript code reaches outside the TorchScript runtime",
       ("CWE-94",), SUPPLY_CHAIN,
       "TorchScript code names Python escape hatches (os, subprocess, sys, builtins, "
       "__import__, eval, exec, getattr, torch._C, ...) that compiled TorchScript never "
       "contains; the code was edited by hand."),
    _r("MAM-TORCH-023", H, "Unparseable TorchScript code", ("CWE-20",), SUPPLY_CHAIN,
       "A code/ file of a TorchScript archive is not valid UTF-8 Python syntax, so it could "
       "not be analysed."),
    _r("MAM-TORCH-024", H, "Unexpected global in a TorchScript pickle", ("CWE-502",),
       SUPPLY_CHAIN,
       "A TorchScript pickle names a global other than the __torch__ classes and torch "
       "helpers the TorchScript unpickler resolves itself."),
    _r("MAM-JOBLIB-001", H, "Joblib array data does not fit its wrapper", ("CWE-20", "CWE-436"),
       SUPPLY_CHAIN,
       "The raw array bytes that follow a joblib NumpyArrayWrapper are truncated, badly padded "
       "or do not match the wrapper's shape and dtype; the rest of the stream cannot be "
       "located the way joblib reads it."),
    _r("MAM-JOBLIB-002", H, "Unreadable joblib array wrapper", ("CWE-20",), SUPPLY_CHAIN,
       "A joblib NumpyArrayWrapper's shape, order or dtype is not a literal the scanner can "
       "size, so the array bytes after it cannot be skipped safely; or its dtype's object "
       "flag contradicts its type, which numpy follows (an object array built from raw "
       "file bytes)."),
    _r("MAM-JOBLIB-003", H, "Joblib wrapper loads an external file", ("CWE-73", "CWE-22"),
       SUPPLY_CHAIN,
       "A legacy joblib NDArrayWrapper names a companion file that joblib.load opens with "
       "numpy (pickles allowed) relative to the dump, outside the scanned bytes."),
    _r("MAM-JOBLIB-004", M, "Data after the joblib pickle", ("CWE-436",), SUPPLY_CHAIN,
       "Bytes follow the pickle joblib.load reads; joblib ignores them, so they can only carry "
       "hidden content. They were analysed as further pickles."),
    _r("MAM-JOBLIB-005", H, "Possible joblib array wrapper not followed", ("CWE-436",),
       SUPPLY_CHAIN,
       "BUILD applies state to an object that joblib's isinstance check may take for an array "
       "wrapper (its construction involves a wrapper class in a way the scanner does not "
       "mirror); joblib.load would skip raw bytes after it that the scanner read as opcodes."),
    _r("MAM-NPY-001", H, "Malformed .npy header", ("CWE-20",), SUPPLY_CHAIN,
       "The .npy magic, version, header length or header dictionary (descr, fortran_order, "
       "shape) is not what numpy writes, so the array cannot be sized."),
    _r("MAM-NPY-002", H, ".npy data size mismatch", ("CWE-20", "CWE-436"), SUPPLY_CHAIN,
       "The array data is shorter than the header declares, or bytes follow it that numpy "
       "never reads and that can carry hidden content."),
    _r("MAM-NPY-003", L, "Object array stored as a pickle", ("CWE-502",), (),
       "The array has an object dtype, so its data is a pickle; numpy refuses it unless "
       "allow_pickle=True. The pickle was analysed."),  # mamori: safe (text)
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
    _r("MAM-ARC-011", M, "Suspicious member name", ("CWE-20", "CWE-176"), SUPPLY_CHAIN,
       "A tar or 7z member name contains control characters or backslashes; extractors on "
       "different platforms interpret it differently."),
    # --- model formats: keras, tf, onnx, safetensors, gguf, nemo, flax, signatures ----------
    _r("MAM-JSON-001", M, "Model needs remote code (auto_map)", ("CWE-94", "CWE-829"),
       SUPPLY_CHAIN,
       "A config's auto_map (dict or older list form) or custom_pipelines maps classes to "
       "Python files in the repository; loading it with trust_remote_code imports and runs "
       "that code."),
    _r("MAM-JSON-002", M, "JSON document not analysed", ("CWE-20",), SUPPLY_CHAIN,
       "A file that starts like a JSON object or array is not valid JSON (nor JSON Lines) in "
       "the encoding its first bytes declare, or is too large to check; what a lenient reader "
       "makes of it was not checked."),
    _r("MAM-JSON-003", L, "Duplicate JSON key", ("CWE-436",), (),
       "A key appears twice in one object; Python keeps the last value, other parsers the "
       "first, so the scanner and a loader may read different settings."),
    _r("MAM-YAML-001", M, "YAML document not analysed", ("CWE-20",), SUPPLY_CHAIN,
       "A file that starts like a YAML config does not compose, is not UTF-8 or is too large; "
       "the templates and tags in it were not checked."),
    _r("MAM-YAML-002", C, "Python object tag in YAML", ("CWE-502", "CWE-94"), SUPPLY_CHAIN,
       "A !!python/... tag (object/apply, object/new, name, module) makes yaml.load with "
       "PyYAML's Loader/UnsafeLoader (FullLoader before 5.4, CVE-2020-14343) import and call "
       "Python while loading the config."),
    # keras v3, keras hdf5 (owned by scan/formats/keras.py, hdf5.py, _internal/keras_config.py)
    _r("MAM-KERAS-001", C, "Keras Lambda layer embeds Python code", ("CWE-94", "CWE-502"),
       SUPPLY_CHAIN,
       "A Lambda layer carries marshalled bytecode or source that runs when the model is "
       "built: always for HDF5 files (CVE-2025-9905), and with safe_mode off or in old Keras "
       "(CVE-2024-3660)."),
    _r("MAM-KERAS-002", C, "Keras config references a dangerous callable",
       ("CWE-94", "CWE-502"), SUPPLY_CHAIN,
       "An object in the config names a module such as os, subprocess or builtins, or a "
       "non-modeling Keras API such as keras.utils.get_file; old Keras imports and calls it "
       "(CVE-2025-1550, CVE-2025-8747, CVE-2025-9906)."),
    _r("MAM-KERAS-003", M, "Keras custom object outside Keras", ("CWE-829",), SUPPLY_CHAIN,
       "An object names a module outside the Keras packages; loading needs that code from the "
       "user's environment, and Keras < 3.9 imports the module named in the file."),
    _r("MAM-KERAS-004", H, "Keras layer loads an external artifact", ("CWE-829", "CWE-73"),
       SUPPLY_CHAIN,
       "A layer such as TFSMLayer loads a SavedModel from a path in the config, which the "
       "scanner did not see; safe_mode refuses it."),
    _r("MAM-KERAS-005", H, "Malformed Keras config", ("CWE-20",), SUPPLY_CHAIN,
       "A Keras JSON config or metadata is missing, oversized, not UTF-8, not JSON, nested too "
       "deeply or repeats a key; it was not analysed, or loaders may read it differently."),
    _r("MAM-KERAS-006", M, "Unexpected member in a Keras archive", ("CWE-912",), SUPPLY_CHAIN,
       "The .keras zip holds a member Keras never writes (only config.json, metadata.json, "
       "model.weights.h5/.npz and assets/); it can carry a second payload."),
    _r("MAM-H5-001", H, "Malformed HDF5 file", ("CWE-20",), SUPPLY_CHAIN,
       "The HDF5 library could not open or walk the file; it was not fully analysed."),
    _r("MAM-H5-002", H, "HDF5 external link", ("CWE-73", "CWE-22"), SUPPLY_CHAIN,
       "A link points into another file, which the loader opens and the scanner never saw."),
    _r("MAM-H5-003", H, "HDF5 dataset stored outside the file", ("CWE-73", "CWE-22"),
       SUPPLY_CHAIN,
       "A dataset reads its data from external raw files or maps it from other HDF5 files "
       "(virtual dataset); loading reads files outside the artifact."),
    _r("MAM-H5-004", M, "Data before the HDF5 superblock", ("CWE-436",), SUPPLY_CHAIN,
       "A non-empty user block precedes the HDF5 data; HDF5 tools skip it, other readers may "
       "see a different file (polyglot)."),
    # tensorflow savedmodel (owned by scan/formats/savedmodel.py)
    _r("MAM-TF-001", C, "TensorFlow op runs Python code", ("CWE-94",), SUPPLY_CHAIN,
       "The graph uses PyFunc, PyFuncStateless or EagerPyFunc, which call a Python function "
       "when the graph runs."),
    _r("MAM-TF-002", H, "TensorFlow op accesses the file system", ("CWE-73",), SUPPLY_CHAIN,
       "The graph reads, writes or lists files (ReadFile, WriteFile, MatchingFiles, file "
       "readers and datasets, checkpoint ops outside the saver) when it runs."),
    _r("MAM-TF-003", H, "TensorFlow op uses the network", ("CWE-918",), SUPPLY_CHAIN,
       "The graph contacts other hosts (RPC ops, tf.data service) when it runs."),
    _r("MAM-TF-004", M, "TensorFlow op writes output to a file or URL", ("CWE-73",),
       SUPPLY_CHAIN,
       "A print, summary or debug op is configured to write to a file or remote URL."),
    _r("MAM-TF-005", H, "Malformed SavedModel protobuf", ("CWE-20",), SUPPLY_CHAIN,
       "saved_model.pb or keras_metadata.pb does not decode as the protobuf TensorFlow "
       "expects; it was not fully analysed."),
    _r("MAM-TF-006", L, "TensorFlow op reads an asset file", ("CWE-73",), SUPPLY_CHAIN,
       "A lookup table is initialised from a text file (a vocabulary asset, usually benign); "
       "the path is shown as evidence."),
    # nemo (owned by scan/formats/nemo.py)
    _r("MAM-NEMO-001", C, "Dangerous Hydra target in NeMo config", ("CWE-94", "CWE-502"),
       SUPPLY_CHAIN,
       "A _target_ names a callable that runs commands, imports code or resolves other names "
       "(os.system, builtins.exec, subprocess, hydra.utils.get_method); NeMo instantiates it "
       "when the model is restored."),
    _r("MAM-NEMO-002", H, "Hydra target outside the allowlist", ("CWE-829", "CWE-94"),
       SUPPLY_CHAIN,
       "A _target_ names a callable outside NeMo, torch, Lightning and OmegaConf; restoring "
       "the model imports and calls it."),
    _r("MAM-NEMO-003", H, "Malformed NeMo config", ("CWE-20",), SUPPLY_CHAIN,
       "model_config.yaml is missing, oversized or not valid YAML; it was not analysed."),
    # signature engines (owned by scan/signatures.py)
    _r("MAM-SIG-001", C, "ClamAV signature match", ("CWE-506",), SUPPLY_CHAIN,
       "ClamAV matched a malware signature in the file or member; the signature name is the "
       "evidence."),
    _r("MAM-SIG-002", H, "YARA rule match", ("CWE-506",), SUPPLY_CHAIN,
       "A configured YARA rule matched the file or member; the rule name is the evidence."),
    _r("MAM-SIG-003", H, "Signature scan could not run", ("CWE-693",), SUPPLY_CHAIN,
       "A signature engine the policy enables is not installed, misconfigured or failed on "
       "this input, so the check the user asked for did not happen."),
    # safetensors (owned by scan/formats/safetensors.py)
    _r("MAM-ST-001", H, "Malformed safetensors header", ("CWE-20",), SUPPLY_CHAIN,
       "The header length, encoding or JSON syntax breaks the safetensors spec; readers "
       "disagree on such headers or reject them."),
    _r("MAM-ST-002", H, "Invalid safetensors tensor entry", ("CWE-20", "CWE-130"),
       SUPPLY_CHAIN,
       "A tensor entry has unknown keys or dtype, a bad shape, or a byte length that does not "
       "match its shape and dtype."),
    _r("MAM-ST-003", H, "Overlapping or out-of-file tensor data", ("CWE-436", "CWE-125"),
       SUPPLY_CHAIN,
       "Tensor data offsets overlap, leave gaps or point past the end of the file; the "
       "official reader requires them to tile the data section exactly."),
    _r("MAM-ST-004", M, "Trailing data after safetensors tensors", ("CWE-436",), SUPPLY_CHAIN,
       "Bytes after the last tensor are not described by the header and can hide a second "
       "payload (polyglot)."),
    _r("MAM-ST-005", M, "Invalid safetensors __metadata__", ("CWE-20",), SUPPLY_CHAIN,
       "__metadata__ must map strings to strings; other values break readers."),
    _r("MAM-ST-006", H, "safetensors header too large", ("CWE-400",), DOS,
       "The declared header exceeds the configured limit or the official 100 MB cap."),
    _r("MAM-ST-007", H, "Duplicate key in safetensors header", ("CWE-436",), SUPPLY_CHAIN,
       "The JSON header repeats a key; JSON readers keep the first, the last or fail, so "
       "tools see different tensors."),
    # GGUF (owned by scan/formats/gguf.py)
    _r("MAM-GGUF-001", H, "Malformed GGUF metadata", ("CWE-20",), SUPPLY_CHAIN,
       "The GGUF header or key/value metadata is truncated, mistyped or not UTF-8."),
    _r("MAM-GGUF-002", H, "Unknown GGUF version", ("CWE-20",), SUPPLY_CHAIN,
       "The GGUF version is not 1, 2 or 3; the file was not analysed further."),
    _r("MAM-GGUF-003", H, "Invalid GGUF tensor table", ("CWE-20", "CWE-125"), SUPPLY_CHAIN,
       "A tensor info has an unknown type, too many or overflowing dimensions, a misaligned "
       "offset, or data that overlaps another tensor or leaves the file."),
    _r("MAM-GGUF-004", M, "Unreferenced data in GGUF file", ("CWE-436",), SUPPLY_CHAIN,
       "Bytes after the last tensor or between tensors are not described by the tensor "
       "table and can hide a second payload."),
    _r("MAM-GGUF-005", H, "GGUF count or length exceeds limits", ("CWE-400", "CWE-789"), DOS,
       "A declared count or length cannot fit in the file or exceeds mamori's limits; readers "
       "that trust it allocate without bound."),
    _r("MAM-GGUF-006", H, "Duplicate GGUF key or tensor name", ("CWE-436",), SUPPLY_CHAIN,
       "A metadata key or tensor name occurs twice; llama.cpp rejects the file, other readers "
       "keep one of the copies."),
    # Jinja2 chat templates, in GGUF and tokenizer configs (owned by _internal/jinja_check.py)
    _r("MAM-TPL-001", C, "Template injection pattern in chat template",
       ("CWE-1336", "CWE-94"), (*SUPPLY_CHAIN, "AML.T0051"),
       "A Jinja template (GGUF metadata, a config value, a template file) uses what Jinja2 "
       "sandbox escapes need (CVE-2024-34359): dunder or private names, gadget globals, "
       "import-like statements, keys built from strings or computed at render time, calls "
       "outside the str/dict/list methods chat templates use, attributes of global functions, "
       "reads of unknown renderer objects. An unsandboxed render executes code. Severity "
       "depends on the pattern."),
    _r("MAM-TPL-002", H, "Chat template cannot be analysed", ("CWE-1336", "CWE-20"),
       SUPPLY_CHAIN,
       "A chat template does not parse as Jinja2 or is too large; what a renderer would do "
       "with it is unknown."),
    # ONNX (owned by scan/formats/onnx.py)
    _r("MAM-ONNX-001", H, "Malformed ONNX model", ("CWE-20",), SUPPLY_CHAIN,
       "The protobuf structure of the model is invalid or truncated."),
    _r("MAM-ONNX-002", H, "External data path escapes the model directory",
       ("CWE-22", "CWE-59"), SUPPLY_CHAIN,
       "A tensor's external data location is absolute, contains '..' or NUL, or resolves "
       "(through symlinks) outside the model's directory: loading reads arbitrary files."),
    _r("MAM-ONNX-003", M, "External data outside the scanned artifact", ("CWE-829",),
       SUPPLY_CHAIN,
       "A tensor's data lives in a separate file but the model was scanned without its "
       "directory (from bytes or inside an archive), so that data was not checked."),
    _r("MAM-ONNX-004", M, "Custom operator domain", ("CWE-829",), SUPPLY_CHAIN,
       "A node uses an operator domain outside the ONNX standard and ONNX Runtime contrib "
       "sets that no local function defines; running it requires a native custom-op library."),
    _r("MAM-ONNX-005", I, "ONNX Runtime contrib operators", (), (),
       "A node uses a com.microsoft domain operator, built into ONNX Runtime but not standard."),
    _r("MAM-ONNX-006", H, "Inconsistent ONNX tensor", ("CWE-20", "CWE-130"), SUPPLY_CHAIN,
       "A tensor has negative or overflowing dims, an unknown data type, or a data length that "
       "does not match its dims."),
    _r("MAM-ONNX-007", H, "ONNX model exceeds size limits", ("CWE-400",), DOS,
       "The model exceeds protobuf's 2 GiB limit or its structure (without tensor bytes) "
       "exceeds the header limit."),
    _r("MAM-ONNX-008", H, "ONNX graph nesting too deep", ("CWE-674",), DOS,
       "Subgraphs (If/Loop/Scan attributes) or messages nest deeper than the limit."),
    # Flax msgpack (owned by scan/formats/flax.py)
    _r("MAM-FLAX-001", H, "Malformed msgpack checkpoint", ("CWE-20",), SUPPLY_CHAIN,
       "The msgpack stream is truncated, uses reserved bytes, has trailing data, or its root "
       "is not a map with string keys."),
    _r("MAM-FLAX-002", H, "Unknown msgpack extension type", ("CWE-502",), SUPPLY_CHAIN,
       "An extension type other than Flax's ndarray (1), complex (2) and scalar (3) appears; "
       "a custom ext_hook would decode it into arbitrary objects."),
    _r("MAM-FLAX-003", H, "Malformed Flax array", ("CWE-20", "CWE-130"), SUPPLY_CHAIN,
       "An array extension is not (shape, dtype, bytes), names an object or unknown dtype, or "
       "its byte length does not match shape and dtype."),
    _r("MAM-FLAX-004", H, "msgpack nesting or size limit exceeded", ("CWE-400", "CWE-674"),
       DOS, "Containers nest too deeply or declare more items than the file can hold."),
)
# fmt: on


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
