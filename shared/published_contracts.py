"""What every service publishes about itself, in forms the standard tools accept as they are.

- ``/contracts/asyncapi.json`` and ``/contracts/schemas/<type>.json``: the checked-in contracts/ files,
  byte for byte. The document's relative references (``./schemas/<type>.json``) resolve against its
  own URL, exactly as they resolve in the repository.
- ``/asyncapi`` (and ``/asyncapi.json``): the same document with those references made absolute URLs
  of the serving service, so it resolves wherever it is read from, also once downloaded. The URLs
  are the ones the client used (Host header; behind a TLS proxy uvicorn takes the scheme from
  X-Forwarded-Proto when the proxy is in FORWARDED_ALLOW_IPS).

  Why absolute URLs and not the schemas bundled inline: a JSON Schema 2020-12 bundle keeps each
  schema's ``$id``, and inside it ``#/$defs/...`` means that schema's own definitions; the official
  AsyncAPI parser ignores ``$id`` and looks for ``#/$defs/...`` at the root of the AsyncAPI document
  (tried: an ``invalid-ref`` error for every internal reference). Rewriting the references to
  document pointers would in turn break every JSON Schema tool that honours ``$id``. Served as
  separate files, each schema keeps its ``$id`` and its internal references, identical to
  contracts/schemas/. The ``$id``s (= the events' ``dataschema``) remain names under
  ``shared.events.base.SCHEMA_BASE``; nothing fetches them.
- ``/openapi.json``: FastAPI's document, made valid for the OpenAPI version it declares (3.1.0), see
  :func:`as_openapi_31`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urljoin, urlsplit

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi import Path as PathParameter
from fastapi.responses import JSONResponse, Response

from shared.api_docs import errors
from shared.contracts import CONTRACTS

OPENAPI_VERSION = "3.1.0"
SCHEMA_MEDIA_TYPE = "application/schema+json"
STREAM_DESCRIPTION = "A stream of items; x-itemSchema describes one item (OpenAPI 3.2 itemSchema)."


def contracts_router(contracts: Path = CONTRACTS) -> APIRouter:
    """Routes serving the event contracts; the files are read once, when the router is built."""
    document_bytes = (contracts / "asyncapi.json").read_bytes()
    document = json.loads(document_bytes)
    schemas = {p.name: p.read_bytes() for p in sorted((contracts / "schemas").glob("*.json"))}
    router = APIRouter(tags=["contracts"])

    @router.get("/asyncapi", summary="The AsyncAPI 3 document of the event streams, schemas by absolute URL")
    @router.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi(request: Request) -> JSONResponse:
        return JSONResponse(with_absolute_refs(document, base=str(request.url_for("contracts_asyncapi"))))

    @router.get(
        "/contracts/asyncapi.json",
        name="contracts_asyncapi",
        summary="contracts/asyncapi.json as checked in (schemas by relative reference)",
    )
    async def contracts_asyncapi() -> Response:
        return Response(document_bytes, media_type="application/json")

    @router.get(
        "/contracts/schemas/{name}",
        summary="The JSON Schema (2020-12) of one event type, e.g. bondgenoot.project.posted.v1.json",
        responses=errors(404, d404="No such schema"),
    )
    async def contract_schema(name: Annotated[str, PathParameter(max_length=200)]) -> Response:
        body = schemas.get(name)
        if body is None:
            raise HTTPException(404, f"no schema named {name!r}; the AsyncAPI document at /asyncapi lists them")
        return Response(body, media_type=SCHEMA_MEDIA_TYPE)

    return router


def with_absolute_refs(node: Any, *, base: str) -> Any:
    """A copy of ``node`` with every relative ``$ref`` resolved against ``base`` (the document's URL)."""
    if isinstance(node, dict):
        return {
            key: urljoin(base, value)
            if key == "$ref" and isinstance(value, str) and _is_relative_file_ref(value)
            else with_absolute_refs(value, base=base)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [with_absolute_refs(item, base=base) for item in node]
    return node


def _is_relative_file_ref(ref: str) -> bool:
    # '#/components/...' stays inside the document; 'https://...' is already absolute.
    return not ref.startswith("#") and not urlsplit(ref).scheme


# --------------------------------------------------------------------------- OpenAPI


def as_openapi_31(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document made valid OpenAPI 3.1.0, the version it declares.

    FastAPI (>= 0.135) describes streamed responses (Server-Sent Events, JSON Lines) with
    ``itemSchema``, a keyword of OpenAPI 3.2, while declaring 3.1.0. We post-process instead of
    declaring 3.2.0 because 3.1 is what integrators' client generators, gateways and validators read
    today, and ``itemSchema`` is the only 3.2 construct we emit: each streamed media type gets the
    3.1 description of its body (a string) and keeps the per-item schema as ``x-itemSchema``, an
    extension 3.1 allows, so nothing is lost. An independent validator (openapi-spec-validator)
    checks every service's served document in tests/e2e/test_integrator.py.
    """
    out = copy.deepcopy(document)
    out["openapi"] = OPENAPI_VERSION
    for media_type in _media_type_objects(out):
        if "itemSchema" in media_type:
            media_type["x-itemSchema"] = media_type.pop("itemSchema")
            media_type.setdefault("schema", {"type": "string", "description": STREAM_DESCRIPTION})
    return out


def _media_type_objects(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Media Type Object of requests and responses, in paths and in components."""
    holders: list[dict[str, Any]] = []
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            holders.append(operation.get("requestBody", {}))
            holders.extend(operation.get("responses", {}).values())
    components = document.get("components", {})
    holders.extend(components.get("requestBodies", {}).values())
    holders.extend(components.get("responses", {}).values())
    return [media for holder in holders for media in holder.get("content", {}).values()]


def publish_openapi_31(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI document (``/openapi.json``, ``/docs``) through :func:`as_openapi_31`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # generated once, like FastAPI's own
            app.openapi_schema = as_openapi_31(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise it
