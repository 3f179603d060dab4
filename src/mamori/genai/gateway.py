"""The tool gateway: model-fillable arguments on one side, the trusted context on the other.

A tool is a function ``f(ctx, **arguments)``. At registration the gateway derives the
model-visible JSON schema from the arguments only, refuses any schema field that names a
principal, tenant or role, and refuses any argument that is not declared as a resource id, an
enumerated value, free text or a sink argument (:mod:`mamori.genai._tooldecl`). A call then:

1. re-checks the context (``exp``, ``nbf``, revocation in the store);
2. validates what the model sent against the declared schema;
3. authorizes every resource id on its own, hiding "not found" behind the same answer as
   "forbidden" (a resolver that raises is a deny);
4. for a sink, checks the destination allowlist and the conversation's taint from the store;
5. runs the tool, projects the result by classification, and records the released labels in
   the store *before* returning them, keyed by ``(principal, conversation id)``.

Every refusal on that path is exactly one audit record, and nothing the model sends, and no
failure of the application's resolver, tool or the store, makes :meth:`ToolGateway.call` raise.
"""

from __future__ import annotations

import contextlib
import enum
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from mamori.errors import ConfigError, MamoriError, StoreError
from mamori.genai._tooldecl import (
    ArgKind,
    declare,
    json_schema,
    lint_schema_fields,
    model_params,
    validate,
)
from mamori.genai.projection import ClassificationSchema, TextNet, project
from mamori.policy import Entity, EntityUid

if typing.TYPE_CHECKING:
    from collections.abc import Iterable

    from mamori.genai.authorizer import Authorizer
    from mamori.genai.context import TrustedContext

__all__ = [
    "DENIED_MESSAGE",
    "EXPIRED_MESSAGE",
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
#: The answer when the session's token expired or was revoked: the user must sign in again.
EXPIRED_MESSAGE = "this session is no longer authorized; sign in again"
_CALL_ACTION = "call_tool"


class ListMode(enum.Enum):
    """What to do when a list argument mixes allowed and forbidden ids."""

    DENY = "deny"
    REDUCE = "reduce"


class ResourceResolver(Protocol):
    """Looks up a resource's trusted attributes in the source system."""

    def __call__(self, entity_type: str, resource_id: str) -> Entity | None:
        """Return the entity, or ``None`` if it does not exist."""


@dataclass(frozen=True, slots=True)
class Session:
    """One conversation of one verified user: the trusted context and the conversation id.

    It holds no state of its own: what the conversation has read lives in the store under
    ``(principal, conversation_id)``, so a new ``Session`` per HTTP request (or per process)
    keeps the taint. An empty ``conversation_id`` is the principal's default conversation,
    which every session without an id shares (more taint, never less).
    """

    ctx: TrustedContext
    conversation_id: str = ""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the application gets back; ``data``, ``error`` and ``withheld`` are for the model.

    ``redacted`` lists the field paths projected away by classification (for the operator's
    view, e.g. ``mamori demo hospital``); the application decides whether the model sees it.
    """

    ok: bool
    data: Any = None
    error: str = ""
    withheld: tuple[str, ...] = ()
    redacted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """An outbound sink and the destinations it may reach."""

    sink_id: str
    destination_arg: str
    allowed_destinations: frozenset[str]
    body_arg: str = "body"

    def destination_allowed(self, destination: str) -> bool:
        r"""Exact match for addresses, host match for URLs.

        A URL with a backslash, whitespace, a non-printable character or userinfo is refused:
        URL parsers disagree on them (``https://evil\@allowed/`` is ``allowed`` to
        :func:`urllib.parse.urlsplit` and ``evil`` to urllib3 and browsers), and the host
        checked here must be the host the sink's HTTP client connects to.
        """
        if "://" in destination:
            if "\\" in destination or not destination.isprintable() or " " in destination:
                return False
            parts = urlsplit(destination)
            if "@" in parts.netloc:
                return False
            return parts.scheme == "https" and (parts.hostname or "") in self.allowed_destinations
        return destination.strip().lower() in self.allowed_destinations


@dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    description: str
    func: Callable[..., Any]
    params: Mapping[str, Any]
    kinds: Mapping[str, ArgKind]
    action: str | None
    resources: Mapping[str, str]
    list_mode: ListMode
    output: ClassificationSchema | None
    sink: SinkSpec | None


class _Refusal(Exception):  # noqa: N818 -- control flow inside call(), never escapes it
    """Raised inside :meth:`ToolGateway.call` once the refusal has been audited."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


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
        free_text: Iterable[str] = (),
        list_mode: ListMode = ListMode.REDUCE,
        output: ClassificationSchema | None = None,
        sink: SinkSpec | None = None,
        name: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a tool; every model-filled argument must be declared (see the module doc).

        ``resources`` maps argument names to entity types (each id is authorized with
        ``action``); ``Literal[...]`` arguments are enumerated; ``free_text`` names arguments
        the model may fill with any value of their type; a ``sink`` declares its destination
        and body arguments. Anything else raises :class:`ConfigError` here.
        """

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            tool_name = name or func.__name__
            params = model_params(func)
            lint_schema_fields(params)
            kinds = declare(
                tool_name,
                params,
                resources=resources or {},
                free_text=frozenset(free_text),
                sink=sink,
            )
            if (resources or sink) and action is None:
                raise ConfigError("a tool touching resources or sinks needs an action")
            if output is None and not sink:
                raise ConfigError("a tool returning data needs an output classification schema")
            self._tools[tool_name] = _Tool(
                tool_name,
                description,
                func,
                params,
                kinds,
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
                        "properties": {n: json_schema(a) for n, a in t.params.items()},
                        "required": sorted(t.params),
                        "additionalProperties": False,
                    },
                },
            }
            for t in self._tools.values()
        ]

    def labels(self, session: Session) -> frozenset[str]:
        """The classifications released so far into ``session``'s conversation (from the store)."""
        return self._authorizer.state.labels(session.ctx.principal, session.conversation_id)

    def call(self, session: Session, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Run one model tool call. Never raises; every refusal is one audit record."""
        try:
            return self._call(session, name, arguments)
        except _Refusal as refusal:
            return ToolResult(ok=False, error=refusal.error)

    def _call(self, session: Session, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        ctx = session.ctx
        tool = self._tools.get(name)
        action = (tool.action or _CALL_ACTION) if tool is not None else _CALL_ACTION
        target = str(EntityUid(ctx.domain.entity_type("Tool"), name))
        if self._authorizer.refuse_unless_live(ctx, action, target) is not None:
            raise _Refusal(EXPIRED_MESSAGE)
        if tool is None:
            self._refuse(ctx, action, target, "unknown tool", f"unknown tool {name[:64]!r}")
        # Typed as a mapping, but it is whatever the model's JSON decoded to.
        raw: object = arguments
        problem = (
            validate(tool.params, raw)
            if isinstance(raw, Mapping)
            else "arguments must be a JSON object"
        )
        if problem:
            self._refuse(ctx, action, target, f"invalid arguments: {problem}", problem)
        args, withheld = self._authorize_resources(ctx, tool, arguments)
        if tool.sink is not None:
            self._check_sink(session, tool, tool.sink, args)
        try:
            raw = tool.func(ctx, **args)
        except MamoriError as exc:
            self._refuse(ctx, action, target, f"tool refused: {type(exc).__name__}", DENIED_MESSAGE)
        # The application's tool failed: deny (never partial data), record why, keep serving.
        except Exception as exc:  # noqa: BLE001
            self._refuse(ctx, action, target, f"tool failed: {type(exc).__name__}", DENIED_MESSAGE)
        if tool.output is None:
            return ToolResult(ok=True, data=raw, withheld=tuple(withheld))
        readable = self._authorizer.readable_labels(ctx, tool.output.all_labels())
        projection = project(raw, tool.output, readable, text_net=self._text_net)
        try:
            # The taint is on record before the data leaves: a later turn, in any process or
            # with a new Session object, sees it.
            self._authorizer.state.add_labels(
                ctx.principal, session.conversation_id, projection.labels, tool=tool.name
            )
        except (StoreError, ConfigError) as exc:
            self._refuse(ctx, action, target, f"conversation state not recorded: {exc}")
        return ToolResult(
            ok=True,
            data=projection.data,
            withheld=tuple(withheld),
            redacted=tuple(dict.fromkeys(projection.dropped)),
        )

    def _authorize_resources(
        self, ctx: TrustedContext, tool: _Tool, arguments: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """The arguments with only authorized ids left, and the ids withheld."""
        args = dict(arguments)
        withheld: list[str] = []
        for arg, entity_type in tool.resources.items():
            ids = args[arg] if isinstance(args[arg], list) else [args[arg]]
            allowed = [i for i in ids if self._authorized(ctx, tool, entity_type, i)]
            withheld.extend(i for i in ids if i not in allowed)
            if not allowed or (withheld and tool.list_mode is ListMode.DENY):
                raise _Refusal(DENIED_MESSAGE)
            args[arg] = allowed if isinstance(args[arg], list) else allowed[0]
        return args, withheld

    def _refuse(
        self,
        ctx: TrustedContext,
        action: str,
        resource: str,
        reason: str,
        error: str = DENIED_MESSAGE,
    ) -> typing.NoReturn:
        # A refusal that cannot be audited is still a refusal.
        with contextlib.suppress(StoreError):
            self._authorizer.audit.record(
                principal=ctx.uid_text,
                action=action,
                resource=resource,
                decision="deny",
                policy_ids=(),
                reason=reason,
            )
        raise _Refusal(error)

    def _resolve(self, ctx: TrustedContext, action: str, uid: EntityUid) -> Entity:
        """The trusted entity, or an audited refusal if it is missing or the lookup failed."""
        try:
            entity = self._resolver(uid.type, uid.id)
        # The resolver is the application's code (an EHR lookup, a database): whatever it
        # raises, the answer is a deny on the record, never an exception to the caller.
        except Exception as exc:  # noqa: BLE001
            self._refuse(ctx, action, str(uid), f"resource resolver failed: {type(exc).__name__}")
        if entity is None:
            # Audit the miss as a deny so that it looks the same in the log as in the answer.
            self._refuse(ctx, action, str(uid), "not found")
        return entity

    def _authorized(self, ctx: TrustedContext, tool: _Tool, entity_type: str, rid: str) -> bool:
        assert tool.action is not None
        uid = EntityUid(ctx.domain.entity_type(entity_type), rid)
        try:
            entity = self._resolve(ctx, tool.action, uid)
        except _Refusal:
            return False
        return self._authorizer.check(ctx, tool.action, entity).allowed

    def _check_sink(
        self, session: Session, tool: _Tool, sink: SinkSpec, args: Mapping[str, Any]
    ) -> None:
        assert tool.action is not None
        ctx = session.ctx
        uid = EntityUid(ctx.domain.entity_type("Sink"), sink.sink_id)
        destination = args[sink.destination_arg]
        if not sink.destination_allowed(destination):
            self._refuse(
                ctx,
                tool.action,
                str(uid),
                f"destination {destination[:128]!r} is not allowed for this sink",
                "destination is not allowed for this sink",
            )
        entity = self._resolve(ctx, tool.action, uid)
        try:
            labels = set(self.labels(session))
        except (StoreError, ConfigError) as exc:
            self._refuse(ctx, tool.action, str(uid), f"conversation state unavailable: {exc}")
        # The body and every free-text argument leave through the sink: a title or a note
        # carries text as well as the body does, so all of it is labelled.
        texts = [
            value
            for arg, kind in tool.kinds.items()
            if arg == sink.body_arg or kind is ArgKind.FREE_TEXT
            for value in _strings(args.get(arg))
        ]
        if texts and self._text_labeler is not None:
            try:
                for text in texts:
                    labels |= self._text_labeler(text)
            # The labeler is the application's (or Presidio's) code: a failure is a deny.
            except Exception as exc:  # noqa: BLE001
                self._refuse(
                    ctx, tool.action, str(uid), f"body labelling failed: {type(exc).__name__}"
                )
        decision = self._authorizer.check(
            ctx, tool.action, entity, context={"labels": frozenset(labels)}
        )
        if not decision.allowed:
            raise _Refusal("this session's data may not be sent to this sink")


def _strings(value: Any) -> list[str]:
    """The strings a model-filled argument holds (a string or a list of strings)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []
