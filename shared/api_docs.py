"""What each route's OpenAPI operation says about who may call it and how it refuses (docs/limits.md).

Written by one mechanism from the data the code itself acts on, so the document cannot drift from
the behaviour:

* Refusals of the shared machinery are derived here (:func:`shared_refusals`): 422 on every route
  (``shared.validation.guard_input`` checks every parameter, FastAPI validates the declared ones);
  413 on every POST/PUT/PATCH/DELETE (``shared.limits.BodySizeLimit``, and the event budget of
  writes); 400 (not UTF-8) and 415 (not JSON) where the route takes a JSON body; 401 and 429 on every
  route of ``shared.auth.ACCESS_TABLE`` (a presented token is checked, failures are counted); 403
  where the route's access is restricted to some roles or owners; 404 where ownership is looked up.
* Refusals of a route's own handler (a missing entity, a conflict) are declared on the route with
  ``responses=errors(404, 409)``.
* Security: FastAPI lists the bearer scheme on every route that *reads* a token, which in OpenAPI
  means the token is required. Routes the access table opens to anonymous callers get the
  alternative "no credentials" (``{}``) beside it.

``tests/integration/test_api_fuzz.py`` checks both directions: every status a route answers is
documented (schemathesis' ``status_code_conformance``), and every documented 4xx is answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from shared.auth import ACCESS_TABLE, OWNER_LOOKUP, Access, Endpoint

DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be read (it is not UTF-8 text)",
    401: "A token is needed and none was sent, or the token sent is invalid, expired or revoked",
    403: "The token's account may not do this",
    404: "Not found",
    409: "Conflicts with the current state (the answer says which)",
    413: "The body is over HTTP_MAX_BODY_BYTES, or the result would be an event over the event limit; "
    "`detail[].loc` names the field",
    415: "A body that is not JSON (send `Content-Type: application/json`)",
    422: "A parameter or body field is invalid; `detail[].loc` names it",
    429: "Too many failed authentications from this address; `Retry-After` says when to try again",
    503: "A dependency of this answer (the database, Kafka) is unavailable; try again later",
}

BODY_METHODS = frozenset({"post", "put", "patch", "delete"})
# Access that some valid tokens do not have: 403 for them (internal routes refuse with 401).
RESTRICTED = frozenset(Access) - {Access.PUBLIC, Access.REGISTER, Access.AUTHENTICATED, Access.INTERNAL}
# Anyone may call these, also without a token.
_ANONYMOUS = frozenset({Access.PUBLIC, Access.REGISTER})


class Issue(BaseModel):
    """One refused field or header: where (``loc``), what kind (``type``) and why (``msg``)."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every refusal: a sentence, or a list of issues naming the fields."""

    detail: str | list[Issue] = Field(description="Why the request was refused")


def errors(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the refusals of a route's own handler, e.g. ``errors(404, 409)``.

    A description replaces the generic one by keyword: ``errors(404, d404="No such delivery")``. The
    media type is always JSON, also on an event-stream route (``model=`` would take the route's).
    """
    return {
        status: {**_error_response(status), "description": descriptions.get(f"d{status}", DESCRIPTIONS[status])}
        for status in statuses
    }


def _same_route(template: str, row_path: str) -> bool:
    """``/suggestions/{target_type}/{target_id}`` serves the rows ``/suggestions/project/{target_id}`` etc."""
    t, r = template.strip("/").split("/"), row_path.strip("/").split("/")
    return len(t) == len(r) and all(a == b or a.startswith("{") for a, b in zip(t, r, strict=True))


def rows_of(service: str, method: str, path: str) -> list[Endpoint]:
    """The access table's rows for one route: its own row, else the rows its parameters serve.

    ``/accounts/{account_id}`` has its own row (``/accounts/me`` is another route); the one route
    ``/suggestions/{target_type}/{target_id}`` serves the rows of projects and of calls.
    """
    rows = [e for e in ACCESS_TABLE if e.service == service and e.method == method.upper()]
    exact = [e for e in rows if e.path == path]
    return exact or [e for e in rows if _same_route(path, e.path)]


def access_of(service: str, method: str, path: str) -> set[Access]:
    """Who may call one route (several kinds when one route serves rows of different access)."""
    return {e.access for e in rows_of(service, method, path)}


def shared_refusals(service: str, method: str, path: str, *, json_body: bool) -> set[int]:
    """The 4xx the shared machinery answers on one route (see the module docstring)."""
    statuses = {422}
    if method.lower() in BODY_METHODS:
        statuses.add(413)
    if json_body:
        statuses |= {400, 415}
    access = access_of(service, method, path)
    if access:
        statuses |= {401, 429}
    if access & RESTRICTED:
        statuses.add(403)
    if access & OWNER_LOOKUP.keys():  # shared.auth.check: 404 when the resource to look the owner up in is missing
        statuses.add(404)
    return statuses


def _takes_json(operation: dict[str, Any]) -> bool:
    content = operation.get("requestBody", {}).get("content", {})
    return any(media == "application/json" or media.endswith("+json") for media in content)


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if status == 429:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"description": "The expected credentials", "schema": {}}}
    return response


def document_refusals(schema: dict[str, Any], *, service: str) -> dict[str, Any]:
    """Add the shared refusals and anonymous access to every operation of an OpenAPI document (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in (
        ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs", {}).items()
    ):
        components.setdefault(name, definition)
    components.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if operation.get("security") and access_of(service, method, path) & _ANONYMOUS:
                operation["security"] = [{}, *operation["security"]]
            responses = operation.setdefault("responses", {})
            for status in sorted(shared_refusals(service, method, path, json_body=_takes_json(operation))):
                responses.setdefault(str(status), _error_response(status))
    return schema


def install(app: FastAPI, *, service: str) -> None:
    """Make ``app.openapi()`` document the shared refusals of every route (FastAPI's extension point)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_refusals(generate(), service=service)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = [
    "DESCRIPTIONS",
    "RESTRICTED",
    "ErrorBody",
    "Issue",
    "access_of",
    "document_refusals",
    "errors",
    "install",
    "rows_of",
]
