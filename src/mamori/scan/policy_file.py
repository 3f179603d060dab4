"""Load a :class:`~mamori.scan.policy.ScanPolicy` from a TOML policy file.

The file is validated at the boundary with pydantic (``extra="forbid"``), so a misspelt key is
an error, never a silently ignored setting. Every error becomes a one-line
:class:`~mamori.errors.ConfigError` naming the file, the key and the problem, e.g.
``policy.toml: suppress[0].reason: field required``.

Example::

    threshold = "high"          # findings at or above this make the verdict UNSAFE
    md5 = true                  # also compute MD5 digests

    [globals]
    allow = ["mylib.layers.Dense"]      # exact module.qualname only: no wildcards
    deny = ["mylib.unsafe.*"]           # exact names or module.*

    [[globals.override_denylist]]       # a denylisted name is trusted only like this;
    name = "mylib.io.load"              # every report prints the override and its reason
    reason = "our own loader; reviewed in SEC-42"

    [[suppress]]
    rule = "MAM-GEN-004"
    path = "models/*.bin"               # also matches models/a.bin in a scan of models/
    reason = "raw ONNX external-data weights; tracked in JIRA-123"

    [limits]
    max_depth = 4
    max_seconds = 120

    [signatures.clamav]                 # optional; off by default
    enabled = true
    socket = "/run/clamav/clamd.ctl"    # clamd (preferred); omit to run clamscan
    database = "/srv/sigs"              # clamscan only: --database (file or directory)

    [signatures.yara]                   # optional; off by default; needs yara-python
    enabled = true
    rules = ["/srv/rules/models.yar"]   # files or directories of *.yar / *.yara
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator
from pydantic_core import ErrorDetails

from mamori.errors import ConfigError
from mamori.findings import Severity
from mamori.scan.limits import ScanLimits
from mamori.scan.policy import DenylistOverride, ScanPolicy, Suppression
from mamori.scan.rules import RULES
from mamori.scan.signatures import ClamAVConfig, ClamAVMode, SignatureConfig, YaraConfig

__all__ = ["denylist_reason", "load_policy", "parse_policy"]

# module.qualname: dotted Python identifiers, at least one dot (``builtins.eval``, not ``eval``).
_GLOBAL: Final = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
# ``module.*`` denies a whole module; only ever accepted on the deny side.
_GLOBAL_WILDCARD: Final = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\.\*")

_LIMIT_FIELDS: Final = {f.name: f for f in fields(ScanLimits)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _check_allow(name: str) -> str:
    if not name:
        raise ValueError("empty entry")
    if _GLOBAL.fullmatch(name) is None:
        # Wildcards are refused on purpose: ``allow = ["os.*"]`` would silently bless
        # os.system. Allowing is always by exact name.
        msg = f"{name!r} is not an exact module.qualname (wildcards are deny-only)"
        raise ValueError(msg)
    return name


def _check_deny(name: str) -> str:
    if not name:
        raise ValueError("empty entry")
    if _GLOBAL.fullmatch(name) is None and _GLOBAL_WILDCARD.fullmatch(name) is None:
        msg = f"{name!r} is not a module.qualname or module.*"
        raise ValueError(msg)
    return name


def _check_glob(glob: str) -> str:
    """Reject globs that fnmatch would accept but that cannot mean what was written."""
    if not glob:
        raise ValueError("empty glob")
    if "\x00" in glob:
        raise ValueError("NUL character in glob")
    i = 0
    while i < len(glob):
        if glob[i] == "[":
            # fnmatch treats an unclosed '[' as a literal character, so "models/[ab*" would
            # match nothing and the suppression would silently never apply.
            j = i + 1
            if j < len(glob) and glob[j] == "!":
                j += 1
            if j < len(glob) and glob[j] == "]":
                j += 1
            j = glob.find("]", j)
            if j < 0:
                msg = f"unclosed '[' at position {i} in glob {glob!r}"
                raise ValueError(msg)
            i = j
        i += 1
    try:
        re.compile(fnmatch.translate(glob))
    except re.error as exc:
        msg = f"invalid glob {glob!r}: {exc}"
        raise ValueError(msg) from exc
    return glob


def denylist_reason(name: str) -> str | None:
    """Why the built-in denylist covers the global ``name``, or ``None`` when it does not.

    Asked of the pickle analyser itself (with an empty policy), for every way of splitting
    ``name`` into module and qualname, so this check and the scan can never disagree.
    """
    # Lazy: the pickle analyser is only needed when a policy allows something.
    from mamori.scan.pickle.classify import classify  # noqa: PLC0415
    from mamori.scan.pickle.uses import UseKind  # noqa: PLC0415
    from mamori.scan.pickle.values import GlobalRef  # noqa: PLC0415

    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        ref = GlobalRef(".".join(parts[:cut]), ".".join(parts[cut:]))
        verdict = classify(ref, {UseKind.CALLED})
        if verdict.rule_id == _DENY_RULE:
            return verdict.reason
    return None


_DENY_RULE: Final = "MAM-PKL-001"


class _Override(_Strict):
    name: str
    reason: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_allow(value)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value:
            # The reason is printed in every report: an override must say why.
            raise ValueError("must not be empty")
        return value


class _Globals(_Strict):
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    override_denylist: list[_Override] = Field(default_factory=list)

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            try:
                _check_allow(name)
            except ValueError as exc:
                msg = f"[{index}]: {exc}"
                raise ValueError(msg) from None
        return value

    @field_validator("deny")
    @classmethod
    def _deny(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            try:
                _check_deny(name)
            except ValueError as exc:
                msg = f"[{index}]: {exc}"
                raise ValueError(msg) from None
        return value


class _Suppress(_Strict):
    rule: str
    path: str
    reason: str

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if value not in RULES:
            msg = f"unknown rule id {value!r} (see `mamori rules`)"
            raise ValueError(msg)
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value:
            # Every silenced finding must say why; the reason is printed in every report.
            raise ValueError("must not be empty")
        return value

    @field_validator("path")
    @classmethod
    def _glob(cls, value: str) -> str:
        return _check_glob(value)


class _ClamAV(_Strict):
    enabled: StrictBool = False
    mode: Literal["auto", "clamd", "clamscan"] = "auto"
    socket: str | None = None
    binary: str = "clamscan"
    database: str | None = None
    timeout_s: float = Field(default=300.0, gt=0)


class _Yara(_Strict):
    enabled: StrictBool = False
    rules: list[str] = Field(default_factory=list)
    timeout_s: int = Field(default=60, gt=0)


class _Signatures(_Strict):
    clamav: _ClamAV = Field(default_factory=_ClamAV)
    yara: _Yara = Field(default_factory=_Yara)

    def to_config(self) -> SignatureConfig:
        c, y = self.clamav, self.yara
        return SignatureConfig(
            clamav=ClamAVConfig(
                enabled=c.enabled,
                mode=ClamAVMode(c.mode),
                socket=c.socket,
                binary=c.binary,
                database=c.database,
                timeout_s=c.timeout_s,
            ),
            yara=YaraConfig(enabled=y.enabled, rules=tuple(y.rules), timeout_s=y.timeout_s),
        )


class _PolicyFile(_Strict):
    threshold: str = "medium"
    md5: StrictBool = False
    globals_: _Globals = Field(default_factory=_Globals, alias="globals")
    suppress: list[_Suppress] = Field(default_factory=list)
    limits: dict[str, Any] = Field(default_factory=dict)
    signatures: _Signatures = Field(default_factory=_Signatures)

    @field_validator("threshold")
    @classmethod
    def _severity(cls, value: str) -> str:
        Severity.parse(value)  # raises ValueError listing the valid names
        return value


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part_name = "globals" if part == "globals_" else part
            out += f".{part_name}" if out else part_name
    return out


def _describe(error: ErrorDetails) -> str:
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    message = message.removeprefix("Value error, ")
    where = _location(tuple(error["loc"]))
    # Our list validators prefix "[i]: " to point at the offending entry.
    if message.startswith("[") and "]: " in message:
        index, _, message = message.partition(": ")
        where += index
    message = message[:1].lower() + message[1:]
    return f"{where}: {message}" if where else message


def _limits(raw: Mapping[str, Any], source: str) -> ScanLimits:
    values: dict[str, int | float] = {}
    for key, value in raw.items():
        spec = _LIMIT_FIELDS.get(key)
        if spec is None:
            names = ", ".join(sorted(_LIMIT_FIELDS))
            msg = f"{source}: limits.{key}: unknown key; expected one of: {names}"
            raise ConfigError(msg)
        wants_int = spec.type in {"int", int}
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"{source}: limits.{key}: must be a number, got {value!r}"
            raise ConfigError(msg)
        if wants_int and not isinstance(value, int):
            msg = f"{source}: limits.{key}: must be an integer, got {value!r}"
            raise ConfigError(msg)
        values[key] = value
    try:
        return ScanLimits(**values)  # type: ignore[arg-type]  # keys checked against the fields
    except ValueError as exc:
        msg = f"{source}: limits: {exc}"
        raise ConfigError(msg) from exc


def _to_policy(parsed: _PolicyFile, source: str) -> ScanPolicy:
    allow = frozenset(parsed.globals_.allow)
    deny = frozenset(parsed.globals_.deny)
    if both := sorted(allow & deny):
        msg = f"{source}: globals: {', '.join(both)} both allowed and denied"
        raise ConfigError(msg)
    overrides = _overrides(parsed.globals_, deny, source)
    for index, name in enumerate(parsed.globals_.allow):
        reason = denylist_reason(name)
        if reason is not None and name not in {o.name for o in overrides}:
            msg = (
                f"{source}: globals.allow[{index}]: {name!r} is on the built-in denylist "
                f"({reason}); to trust it anyway add it to globals.override_denylist "
                "with a reason (every report will show it)"
            )
            raise ConfigError(msg)
    return ScanPolicy(
        threshold=Severity.parse(parsed.threshold),
        allowed_globals=allow | {o.name for o in overrides},
        denylist_overrides=overrides,
        denied_globals=deny,
        suppressions=tuple(
            Suppression(rule_id=s.rule, path_glob=s.path, reason=s.reason) for s in parsed.suppress
        ),
        limits=_limits(parsed.limits, source),
        md5=parsed.md5,
        signatures=parsed.signatures.to_config(),
    )


def _overrides(parsed: _Globals, deny: frozenset[str], source: str) -> tuple[DenylistOverride, ...]:
    out: list[DenylistOverride] = []
    seen: set[str] = set()
    for index, entry in enumerate(parsed.override_denylist):
        where = f"{source}: globals.override_denylist[{index}]"
        if entry.name in seen:
            msg = f"{where}: {entry.name!r} is listed twice"
            raise ConfigError(msg)
        seen.add(entry.name)
        if entry.name in deny:
            msg = f"{where}: {entry.name!r} is also in globals.deny"
            raise ConfigError(msg)
        if denylist_reason(entry.name) is None:
            # An override that overrides nothing is a typo or a stale entry; a typo here
            # must not go unnoticed because the next edit might "fix" it into a real one.
            msg = f"{where}: {entry.name!r} is not on the built-in denylist; use globals.allow"
            raise ConfigError(msg)
        out.append(DenylistOverride(name=entry.name, reason=entry.reason))
    return tuple(out)


def parse_policy(text: str, *, source: str = "<policy>") -> ScanPolicy:
    """Parse policy TOML held in a string; ``source`` names it in error messages.

    Raises:
        ConfigError: the TOML is malformed or does not match the policy schema.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{source}: invalid TOML: {exc}"
        raise ConfigError(msg) from exc
    try:
        parsed = _PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        # "from None": the message already lists every problem; pydantic's own text (input
        # values, documentation URLs) would only bloat the one-line error.
        msg = f"{source}: {problems}"
        raise ConfigError(msg) from None
    return _to_policy(parsed, source)


def load_policy(path: str | os.PathLike[str]) -> ScanPolicy:
    """Read and validate the TOML policy file at ``path``.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 TOML, or breaks the schema. The
            message names the file and the offending key.
    """
    source = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        msg = f"{source}: cannot read policy file: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{source}: policy file is not UTF-8: {exc.reason}"
        raise ConfigError(msg) from exc
    return parse_policy(text, source=source)
