"""The tool gateway: model-fillable arguments on one side, the trusted context on the other.

A tool is a function ``f(ctx, **arguments)``. The gateway derives the model-visible JSON schema
from the arguments only, refuses any schema field that names a principal, tenant or role,
validates what the model sends against it, authorizes every resource id individually, hides
"not found" behind the same answer as "forbidden", projects the result by classification, and
taints the session with the labels it released so outbound sinks can refuse them.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from mamori.errors import ConfigError, MamoriError, StoreError
from mamori.genai.projection import ClassificationSchema, TextNet, project
from mamori.policy import Entity, EntityUid

if typing.TYPE_CHECKING:
    from mamori.genai.authorizer import Authorizer
    from mamori.genai.context import TrustedContext

__all__ = [
    "DENIED_MESSAGE",
    "ListMode",
    "ResourceResolver",
    "Session",
    "SinkSpec",
    "ToolGateway",
    "ToolResult",
    "lint_schema_fields",
]

#: The one answer for both "no such resource" and "not permitted".
DENIED_MESSAGE = "not found or not permitted"
_IDENTITY_FIELD = re.compile(
    r"(^|_)(principal|tenant|tenants|role|roles|user|userid|subject|sub|identity|impersonate|"
    r"acting|actor|on_behalf|org|organization|clearance|permissions?|scopes?)(_|$)"
)
_JSON_TYPES: Mapping[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    bool: {"type": "boolean"},
    list[str]: {"type": "array", "items": {"type": "string"}},
}


def lint_schema_fields(names: typing.Iterable[str]) -> None:
    """Raise :class:`ConfigError` if a model-visible field names an identity attribute."""
    for name in names:
        normal = re.sub(r"[^a-z0-9]+", "_", name.lower())
        if _IDENTITY_FIELD.search(normal):
            msg = f"tool argument {name!r} looks like identity; inject it instead"
            raise ConfigError(msg)


class ListMode(enum.Enum):
    """What to do when a list argument mixes allowed and forbidden ids."""

    DENY = "deny"
    REDUCE = "reduce"


class ResourceResolver(Protocol):
    """Looks up a resource's trusted attributes in the source system."""

    def __call__(self, entity_type: str, resource_id: str) -> Entity | None:
        """Return the entity, or ``None`` if it does not exist."""


@dataclass(slots=True)
class Session:
    """One conversation: the trusted context and the labels released into it so far."""

    ctx: TrustedContext
    labels: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the model sees."""

    ok: bool
    data: Any = None
    error: str = ""
    withheld: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """An outbound sink and the destinations it may reach."""

    sink_id: str
    destination_arg: str
    allowed_destinations: frozenset[str]
    body_arg: str = "body"

    def destination_allowed(self, destination: str) -> bool:
        """Exact match for addresses, host match for URLs."""
        if "://" in destination:
            parts = urlsplit(destination)
            return parts.scheme == "https" and (parts.hostname or "") in self.allowed_destinations
        return destination.strip().lower() in self.allowed_destinations


@dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    description: str
    func: Callable[..., Any]
    params: Mapping[str, Any]
    action: str | None
    resources: Mapping[str, str]
    list_mode: ListMode
    output: ClassificationSchema | None
    sink: SinkSpec | None


class ToolGateway:
    """Registers tools and runs model tool calls under the session's trusted context."""

    def __init__(
        self,
        authorizer: Authorizer,
        resolver: ResourceResolver,
        *,
        text_net: TextNet | None = None,
        text_labeler: Callable[[str], frozenset[str]] | None = None,
    ) -> None:
        """Bind the authorizer, the trusted resource resolver and the optional free-text net."""
        self._authorizer = authorizer
        self._resolver = resolver
        self._text_net = text_net
        self._text_labeler = text_labeler
        self._tools: dict[str, _Tool] = {}

    def tool(
        self,
        *,
        description: str,
        action: str | None = None,
        resources: Mapping[str, str] | None = None,
        list_mode: ListMode = ListMode.REDUCE,
        output: ClassificationSchema | None = None,
        sink: SinkSpec | None = None,
        name: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a tool; ``resources`` maps argument names to entity types."""

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            params = _model_params(func)
            lint_schema_fields(params)
            for arg in resources or {}:
                if arg not in params:
                    msg = f"resource argument {arg!r} is not a parameter"
                    raise ConfigError(msg)
            if (resources or sink) and action is None:
                raise ConfigError("a tool touching resources or sinks needs an action")
            if output is None and not sink:
                raise ConfigError("a tool returning data needs an output classification schema")
            tool_name = name or func.__name__
            self._tools[tool_name] = _Tool(
                tool_name,
                description,
                func,
                params,
                action,
                dict(resources or {}),
                list_mode,
                output,
                sink,
            )
            return func

        return register

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI-style function schemas: model-fillable arguments only."""
        return [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": {
                        "type": "object",
                        "properties": {n: _JSON_TYPES[a] for n, a in t.params.items()},
                        "required": sorted(t.params),
                        "additionalProperties": False,
                    },
                },
            }
            for t in self._tools.values()
        ]

    def call(  # noqa: PLR0911 -- each early return is one distinct refusal
        self, session: Session, name: str, arguments: Mapping[str, Any]
    ) -> ToolResult:
        """Run one model tool call. Never raises for model input; errors become results."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(ok=False, error=f"unknown tool {name!r}")
        problem = _validate(tool, arguments)
        if problem:
            return ToolResult(ok=False, error=problem)
        args = dict(arguments)
        withheld: list[str] = []
        for arg, entity_type in tool.resources.items():
            ids = args[arg] if isinstance(args[arg], list) else [args[arg]]
            allowed = [i for i in ids if self._authorized(session.ctx, tool, entity_type, i)]
            withheld.extend(i for i in ids if i not in allowed)
            if not allowed or (withheld and tool.list_mode is ListMode.DENY):
                return ToolResult(ok=False, error=DENIED_MESSAGE)
            args[arg] = allowed if isinstance(args[arg], list) else allowed[0]
        if tool.sink is not None:
            denial = self._check_sink(session, tool, tool.sink, args)
            if denial:
                return ToolResult(ok=False, error=denial)
        try:
            raw = tool.func(session.ctx, **args)
        except MamoriError:
            return ToolResult(ok=False, error=DENIED_MESSAGE)
        if tool.output is None:
            return ToolResult(ok=True, data=raw, withheld=tuple(withheld))
        readable = self._authorizer.readable_labels(session.ctx, tool.output.all_labels())
        projection = project(raw, tool.output, readable, text_net=self._text_net)
        session.labels.update(projection.labels)
        return ToolResult(ok=True, data=projection.data, withheld=tuple(withheld))

    def _authorized(self, ctx: TrustedContext, tool: _Tool, entity_type: str, rid: str) -> bool:
        assert tool.action is not None
        entity = self._resolver(ctx.domain.entity_type(entity_type), rid)
        if entity is None:
            # Audit the miss as a deny so that it looks the same in the log as in the answer.
            uid = EntityUid(ctx.domain.entity_type(entity_type), rid)
            # The answer is a deny either way; model input must never make call() raise.
            with contextlib.suppress(StoreError):
                self._authorizer.audit.record(
                    principal=ctx.uid_text,
                    action=tool.action,
                    resource=str(uid),
                    decision="deny",
                    policy_ids=(),
                    reason="not found",
                )
            return False
        return self._authorizer.check(ctx, tool.action, entity).allowed

    def _check_sink(
        self, session: Session, tool: _Tool, sink: SinkSpec, args: Mapping[str, Any]
    ) -> str:
        assert tool.action is not None
        destination = args.get(sink.destination_arg)
        if not isinstance(destination, str) or not sink.destination_allowed(destination):
            return "destination is not allowed for this sink"
        entity = self._resolver(session.ctx.domain.entity_type("Sink"), sink.sink_id)
        if entity is None:
            return DENIED_MESSAGE
        labels = set(session.labels)
        body = args.get(sink.body_arg)
        if isinstance(body, str) and self._text_labeler is not None:
            labels |= self._text_labeler(body)
        decision = self._authorizer.check(
            session.ctx, tool.action, entity, context={"labels": frozenset(labels)}
        )
        return "" if decision.allowed else "this session's data may not be sent to this sink"


def _model_params(func: Callable[..., Any]) -> dict[str, Any]:
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
        if annotation not in _JSON_TYPES:
            msg = f"tool argument {param.name!r} has unsupported type {annotation}"
            raise ConfigError(msg)
        result[param.name] = annotation
    return result


def _validate(tool: _Tool, arguments: Mapping[str, Any]) -> str:  # noqa: PLR0911 -- one message per refusal
    extra = sorted(set(arguments) - set(tool.params))
    if extra:
        return f"unexpected arguments: {extra}"
    missing = sorted(set(tool.params) - set(arguments))
    if missing:
        return f"missing arguments: {missing}"
    for name, annotation in tool.params.items():
        value = arguments[name]
        if annotation == list[str]:
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
