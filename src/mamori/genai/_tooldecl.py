"""What a tool declares about each model-filled argument, checked once at registration.

Every argument the model fills is exactly one of:

* a **resource id** (``resources={"patient_id": "Patient"}``): each id is authorized on its own;
* an **enumerated value** (a ``Literal["a", "b"]`` annotation): anything else is refused;
* **free text** (``free_text={"query"}``): any value of its type, never an identifier;
* a **sink argument** (the destination, allowlisted, and the body, labelled) of a ``SinkSpec``.

An argument that is none of these, or two of them, or free text whose name says it is an id, is
a :class:`ConfigError` when the tool is registered, not a surprise at call time: a tool that
takes ``patient_id`` and forgets ``resources=`` must not run at all (it used to run with no
per-id check and hand p2's record to p1).
"""

from __future__ import annotations

import enum
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from mamori.errors import ConfigError

if typing.TYPE_CHECKING:
    from mamori.genai.gateway import SinkSpec

__all__ = ["ArgKind", "declare", "json_schema", "lint_schema_fields", "model_params", "validate"]

_IDENTITY_FIELD = re.compile(
    r"(^|_)(principal|tenant|tenants|role|roles|user|userid|subject|sub|identity|impersonate|"
    r"acting|actor|on_behalf|org|organization|clearance|permissions?|scopes?)(_|$)"
)
#: Names that say "this selects a record": such an argument must be a declared resource.
_ID_LIKE = re.compile(r"(^|_)(id|ids|uuid|uuids|guid|mrn|ref|refs|key|keys|record|records)$")
_JSON_TYPES: Mapping[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    bool: {"type": "boolean"},
    list[str]: {"type": "array", "items": {"type": "string"}},
}
#: At most this many argument names are quoted in an error (the names come from the model).
_MAX_NAMES = 5


class ArgKind(enum.Enum):
    """How a model-filled argument was declared."""

    RESOURCE = "resource"
    ENUMERATED = "enumerated"
    FREE_TEXT = "free_text"
    SINK = "sink"


def _words(name: str) -> str:
    """``name`` as lower-case words joined by ``_``: ``patientId`` and ``patient-id`` too."""
    split = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", split.lower())


def lint_schema_fields(names: typing.Iterable[str]) -> None:
    """Raise :class:`ConfigError` if a model-visible field names an identity attribute."""
    for name in names:
        if _IDENTITY_FIELD.search(_words(name)):
            msg = f"tool argument {name!r} looks like identity; inject it instead"
            raise ConfigError(msg)


def _choices(annotation: Any) -> tuple[str, ...] | None:
    if typing.get_origin(annotation) is not Literal:
        return None
    values = typing.get_args(annotation)
    if not values or not all(isinstance(v, str) for v in values):
        raise ConfigError("an enumerated argument must be a Literal of strings")
    return tuple(values)


def model_params(func: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only arguments after ``ctx`` and their annotations."""
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func)
    params = list(signature.parameters.values())
    if not params or params[0].name != "ctx":
        raise ConfigError("a tool's first parameter must be the injected 'ctx'")
    result: dict[str, Any] = {}
    for param in params[1:]:
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            msg = f"tool argument {param.name!r} must be keyword-only"
            raise ConfigError(msg)
        annotation = hints.get(param.name)
        if annotation not in _JSON_TYPES and _choices(annotation) is None:
            msg = f"tool argument {param.name!r} has unsupported type {annotation}"
            raise ConfigError(msg)
        result[param.name] = annotation
    return result


def declare(
    tool: str,
    params: Mapping[str, Any],
    *,
    resources: Mapping[str, str],
    free_text: frozenset[str],
    sink: SinkSpec | None,
) -> dict[str, ArgKind]:
    """Classify every argument of ``tool`` or raise :class:`ConfigError` naming the first gap."""
    sink_args = {sink.destination_arg, sink.body_arg} if sink is not None else set()
    for label, names in (
        ("resource", resources.keys()),
        ("free_text", free_text),
        ("sink", sink_args),
    ):
        unknown = sorted(set(names) - set(params))
        if unknown:
            msg = f"tool {tool!r}: {label} argument {unknown[0]!r} is not a parameter"
            raise ConfigError(msg)
    kinds: dict[str, ArgKind] = {}
    for name, annotation in params.items():
        found = [
            kind
            for kind, hit in (
                (ArgKind.RESOURCE, name in resources),
                (ArgKind.ENUMERATED, _choices(annotation) is not None),
                (ArgKind.FREE_TEXT, name in free_text),
                (ArgKind.SINK, name in sink_args),
            )
            if hit
        ]
        if not found:
            msg = (
                f"tool {tool!r}: argument {name!r} is not declared; list it in resources= "
                "(an id, authorized per id), give it a Literal[...] type (an enumerated "
                "value) or list it in free_text="
            )
            raise ConfigError(msg)
        if len(found) > 1:
            kinds_text = " and ".join(k.value for k in found)
            msg = f"tool {tool!r}: argument {name!r} is declared twice ({kinds_text})"
            raise ConfigError(msg)
        kind = found[0]
        if kind is ArgKind.RESOURCE and annotation not in {str, list[str]}:
            msg = f"tool {tool!r}: resource argument {name!r} must be str or list[str]"
            raise ConfigError(msg)
        if kind is ArgKind.FREE_TEXT and _ID_LIKE.search(_words(name)):
            msg = (
                f"tool {tool!r}: argument {name!r} looks like a resource id; declare it in "
                "resources= so that every id is authorized"
            )
            raise ConfigError(msg)
        if kind is ArgKind.SINK and annotation is not str:
            msg = f"tool {tool!r}: sink argument {name!r} must be str"
            raise ConfigError(msg)
        kinds[name] = kind
    return kinds


def json_schema(annotation: Any) -> dict[str, Any]:
    """The model-visible JSON schema of one argument."""
    choices = _choices(annotation)
    if choices is not None:
        return {"type": "string", "enum": list(choices)}
    return dict(_JSON_TYPES[annotation])


def _names(names: list[str]) -> str:
    shown = [repr(n[:64]) for n in names[:_MAX_NAMES]]
    more = f" and {len(names) - _MAX_NAMES} more" if len(names) > _MAX_NAMES else ""
    return "[" + ", ".join(shown) + "]" + more


def validate(params: Mapping[str, Any], arguments: Mapping[str, Any]) -> str:  # noqa: C901, PLR0911 -- one message per refusal
    """Return why ``arguments`` do not fit ``params`` (``""`` when they do)."""
    extra = sorted(str(k) for k in set(arguments) - set(params))
    if extra:
        return f"unexpected arguments: {_names(extra)}"
    missing = sorted(set(params) - set(arguments))
    if missing:
        return f"missing arguments: {_names(missing)}"
    for name, annotation in params.items():
        value = arguments[name]
        choices = _choices(annotation)
        if choices is not None:
            if not isinstance(value, str) or value not in choices:
                return f"argument {name!r} must be one of {list(choices)}"
        elif annotation == list[str]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"argument {name!r} must be a list of strings"
            if not value:
                return f"argument {name!r} must not be empty"
        elif annotation is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return f"argument {name!r} must be an integer"
        elif not isinstance(value, annotation):
            return f"argument {name!r} has the wrong type"
    return ""
