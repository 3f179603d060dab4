"""The AuthZEN Authorization API 1.0 routes: a thin layer over :mod:`mamori.genai.authzen`.

Two credentials, kept apart: ``Authorization: Bearer mamori_...`` is the calling app's API
token and must carry the ``authz`` scope (a user JWT cannot use this API); the end user is
``X-Mamori-Subject-Token: <JWT>``, forwarded by the app and verified like the library's
sessions. The PDP is ``app.state.authzen`` (an :class:`~mamori.genai.authzen.AuthZenPdp`);
until one is configured every route answers 503, never a decision.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mamori.errors import AccessDeniedError
from mamori.identity.apitokens import Scope, principal_scopes
from mamori.identity.network import RouteGroup
from mamori.identity.principal import Principal
from mamori.service.auth import network_guard, scoped_principal
from mamori.service.problems import problem

if TYPE_CHECKING:
    # mamori.genai needs the [genai] extra; a [service]-only install still imports this module
    # (its routes then answer 503), so the PDP's types are imported where a PDP exists.
    from mamori.genai.authzen import AccessRequest, AuthZenPdp

__all__ = ["router"]

SUBJECT_HEADER: Final = "X-Mamori-Subject-Token"
_MAX_BATCH: Final = 256

# The API route group's allow list applies here too (PEPs sit where API clients do).
router = APIRouter(tags=["authzen"], dependencies=[Depends(network_guard(RouteGroup.API))])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectIn(_Strict):
    """``subject``: must name the verified token's subject; properties are refused."""

    type: str | None = Field(default=None, max_length=256)
    id: str = Field(min_length=1, max_length=1024)
    properties: dict[str, Any] = Field(default_factory=dict)


class ActionIn(_Strict):
    """``action``: a Cedar action name of the configured domain."""

    name: str = Field(min_length=1, max_length=256)


class ResourceIn(_Strict):
    """``resource``: type (bare or namespaced), id, and properties (used without a resolver)."""

    type: str = Field(min_length=1, max_length=256)
    id: str = Field(min_length=1, max_length=1024)
    properties: dict[str, Any] = Field(default_factory=dict)


class EvaluationIn(_Strict):
    """One access evaluation request (section 6)."""

    subject: SubjectIn
    action: ActionIn
    resource: ResourceIn
    context: dict[str, Any] = Field(default_factory=dict)


class PartialEvaluationIn(_Strict):
    """One item of a batch: any field missing is taken from the request's top level."""

    subject: SubjectIn | None = None
    action: ActionIn | None = None
    resource: ResourceIn | None = None
    context: dict[str, Any] | None = None


class OptionsIn(_Strict):
    """Batch options (section 7.1.2)."""

    evaluations_semantic: Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"] = (
        "execute_all"
    )


class EvaluationsIn(_Strict):
    """The batch request: top-level defaults, the items, options (section 7)."""

    subject: SubjectIn | None = None
    action: ActionIn | None = None
    resource: ResourceIn | None = None
    context: dict[str, Any] | None = None
    evaluations: list[PartialEvaluationIn] = Field(default_factory=list, max_length=_MAX_BATCH)
    options: OptionsIn = Field(default_factory=OptionsIn)


class SetTableIn(_Strict):
    """Where a set-valued field's members live: ``(owner_column, value_column)`` rows."""

    table: str
    owner_column: str
    value_column: str


class SqlIn(_Strict):
    """The SQL layout to compile the filter for."""

    table: str
    id_column: str = "id"
    set_tables: dict[str, SetTableIn] = Field(default_factory=dict)
    dialect: Literal["postgresql", "sqlite"] = "postgresql"


class FilterIn(_Strict):
    """The mamori filter extension: which items of ``resource.type`` may ``action`` reach."""

    subject: SubjectIn
    action: ActionIn
    resource: ResourceIn | None = None
    resource_type: str | None = Field(default=None, min_length=1, max_length=256)
    payload_prefix: str = Field(default="acl.", max_length=64, pattern=r"^[A-Za-z0-9_.]*$")
    sql: SqlIn | None = None


def _caller(request: Request) -> Principal:
    """The calling app: an API token with the ``authz`` scope, never a user's own JWT."""
    principal = scoped_principal(request, Scope.AUTHZ)
    if principal_scopes(principal) is None:
        msg = "the decision API takes an API token with the 'authz' scope, not a user token"
        raise AccessDeniedError(msg, policy_ids=("api-token-scope-authz",))
    return principal


Caller = Annotated[Principal, Depends(_caller)]
SubjectToken = Annotated[str, Header(alias=SUBJECT_HEADER, min_length=1, max_length=16 * 1024)]


def _pdp(request: Request) -> AuthZenPdp | JSONResponse:
    pdp: AuthZenPdp | None = getattr(request.app.state, "authzen", None)
    if pdp is None:
        return problem(HTTPStatus.SERVICE_UNAVAILABLE, "the AuthZEN decision API is not configured")
    return pdp


def _request(item: EvaluationIn) -> AccessRequest:
    from mamori.genai.authzen import AccessRequest  # noqa: PLC0415 -- see TYPE_CHECKING above

    return AccessRequest(
        subject_id=item.subject.id,
        subject_type=item.subject.type,
        subject_properties=item.subject.properties,
        action=item.action.name,
        resource_type=item.resource.type,
        resource_id=item.resource.id,
        resource_properties=item.resource.properties,
        context=item.context,
    )


def _echo(request: Request) -> dict[str, str]:
    # AuthZEN 1.0 section 10.1: the PDP echoes the PEP's request id.
    request_id = request.headers.get("x-request-id")
    return {"X-Request-ID": request_id[:256]} if request_id else {}


@router.post("/access/v1/evaluation", summary="AuthZEN access evaluation")
def evaluation(
    body: EvaluationIn, request: Request, _caller: Caller, token: SubjectToken
) -> JSONResponse:
    """One decision for the forwarded end user; any failure is ``decision: false``."""
    pdp = _pdp(request)
    if isinstance(pdp, JSONResponse):
        return pdp
    decision = pdp.evaluate(token, _request(body))
    return JSONResponse(decision.to_json(), headers=_echo(request))


@router.post("/access/v1/evaluations", summary="AuthZEN access evaluations (batch)")
def evaluations(
    body: EvaluationsIn, request: Request, _caller: Caller, token: SubjectToken
) -> JSONResponse:
    """A batch; each item inherits missing fields from the top level.

    Without items the request is a single evaluation and so is the answer (section 7.1).
    """
    pdp = _pdp(request)
    if isinstance(pdp, JSONResponse):
        return pdp
    items = body.evaluations or [PartialEvaluationIn()]
    requests: list[AccessRequest] = []
    for index, item in enumerate(items):
        merged = {
            "subject": item.subject or body.subject,
            "action": item.action or body.action,
            "resource": item.resource or body.resource,
        }
        missing = sorted(k for k, v in merged.items() if v is None)
        if missing:
            detail = f"evaluations[{index}] has no {', '.join(missing)} and no top-level default"
            return problem(HTTPStatus.BAD_REQUEST, detail)
        context = item.context if item.context is not None else (body.context or {})
        requests.append(_request(EvaluationIn.model_validate({**merged, "context": context})))
    from mamori.genai.authzen import EvaluationsSemantic  # noqa: PLC0415 -- see TYPE_CHECKING

    semantic = EvaluationsSemantic(body.options.evaluations_semantic)
    decisions = pdp.evaluate_many(token, requests, semantic)
    if not body.evaluations:
        return JSONResponse(decisions[0].to_json(), headers=_echo(request))
    return JSONResponse({"evaluations": [d.to_json() for d in decisions]}, headers=_echo(request))


@router.post("/access/v1/filter", summary="mamori extension: the residual filter")
def residual_filter(
    body: FilterIn, request: Request, _caller: Caller, token: SubjectToken
) -> JSONResponse:
    """The items of a resource type the end user may act on, as JSON, Qdrant and SQL filters.

    ``{"const": false}`` means nothing (and no query should run); a rejected subject token or
    a forged ``subject`` is that same empty filter.
    """
    pdp = _pdp(request)
    if isinstance(pdp, JSONResponse):
        return pdp
    resource_type = body.resource_type or (body.resource.type if body.resource else None)
    if resource_type is None:
        return problem(HTTPStatus.BAD_REQUEST, "name the resource type: resource.type")
    from mamori.genai.authzen import SqlMapping  # noqa: PLC0415 -- see TYPE_CHECKING above

    mapping = None
    if body.sql is not None:
        mapping = SqlMapping(
            body.sql.table,
            body.sql.id_column,
            {k: (v.table, v.owner_column, v.value_column) for k, v in body.sql.set_tables.items()},
        )
    result = pdp.residual_filter(token, body.action.name, resource_type, subject_id=body.subject.id)
    out: dict[str, Any] = {
        "filter": result.to_json(),
        "qdrant": result.qdrant(body.payload_prefix),
    }
    if mapping is not None and body.sql is not None:
        out["sql"] = result.sql(mapping, body.sql.dialect)
    return JSONResponse(out, headers=_echo(request))


@router.get("/.well-known/authzen-configuration", summary="AuthZEN PDP metadata")
def configuration(request: Request) -> dict[str, str]:
    """PDP metadata (section 9): where the evaluation endpoints are."""
    base = str(request.base_url).rstrip("/")
    return {
        "policy_decision_point": base,
        "access_evaluation_endpoint": f"{base}/access/v1/evaluation",
        "access_evaluations_endpoint": f"{base}/access/v1/evaluations",
        "mamori_filter_endpoint": f"{base}/access/v1/filter",
    }
