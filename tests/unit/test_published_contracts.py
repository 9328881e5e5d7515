"""What a service serves about itself: the contracts byte for byte, and OpenAPI valid for its version."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.sse import EventSourceResponse, ServerSentEvent
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from shared.contracts import CONTRACTS
from shared.events import EVENT_TYPES
from shared.published_contracts import OPENAPI_VERSION, contracts_router, publish_openapi_31, with_absolute_refs

SERVICE = "http://registry.example:8123"


def _client(app: FastAPI, base_url: str = SERVICE) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(contracts_router())
    async with _client(app) as c:
        yield c


async def test_served_asyncapi_names_every_schema_by_an_absolute_url_of_the_serving_service(
    client: httpx.AsyncClient,
) -> None:
    served = (await client.get("/asyncapi")).json()
    checked_in = json.loads((CONTRACTS / "asyncapi.json").read_text())

    for event_type, message in served["components"]["messages"].items():
        assert message["payload"] == {"$ref": f"{SERVICE}/contracts/schemas/{event_type}.json"}
    assert set(served["components"]["messages"]) == set(EVENT_TYPES)
    for message in checked_in["components"]["messages"].values():
        message["payload"]["$ref"] = served["components"]["messages"][message["name"]]["payload"]["$ref"]
    assert served == checked_in, "only the schema references differ from contracts/asyncapi.json"
    assert (await client.get("/asyncapi.json")).json() == served


async def test_every_referenced_schema_is_served_byte_for_byte_with_its_stable_id(client: httpx.AsyncClient) -> None:
    served = (await client.get("/asyncapi")).json()
    for event_type, message in served["components"]["messages"].items():
        answer = await client.get(message["payload"]["$ref"])
        assert answer.status_code == 200, event_type
        assert answer.headers["content-type"] == "application/schema+json"
        assert answer.content == (CONTRACTS / "schemas" / f"{event_type}.json").read_bytes()
        assert answer.json()["$id"] == EVENT_TYPES[event_type].dataschema()


async def test_the_checked_in_document_is_served_as_is_and_its_relative_refs_resolve_against_its_url(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/contracts/asyncapi.json")
    assert answer.content == (CONTRACTS / "asyncapi.json").read_bytes()
    ref = answer.json()["components"]["messages"]["bondgenoot.call.closed.v1"]["payload"]["$ref"]
    assert ref == "./schemas/bondgenoot.call.closed.v1.json"
    resolved = with_absolute_refs({"$ref": ref}, base=f"{SERVICE}/contracts/asyncapi.json")["$ref"]
    assert (await client.get(resolved)).status_code == 200


async def test_only_the_published_schemas_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/contracts/schemas/bondgenoot.project.renamed.v1.json")).status_code == 404
    assert (await client.get("/contracts/schemas/..%2Fasyncapi.json")).status_code == 404
    assert (await client.get("/contracts/schemas/../../pyproject.toml")).status_code == 404


def test_absolute_and_local_refs_are_left_alone() -> None:
    node = {"a": {"$ref": "#/components/schemas/X"}, "b": [{"$ref": "https://example.org/s.json"}]}
    assert with_absolute_refs(node, base=f"{SERVICE}/contracts/asyncapi.json") == node


def _app_with_an_event_stream() -> FastAPI:
    app = FastAPI()

    @app.get("/stream", response_class=EventSourceResponse)
    async def stream() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data="x")

    return app


def test_fastapi_alone_declares_openapi_31_but_emits_the_32_keyword_itemschema() -> None:
    """Why publish_openapi_31 exists: without it the document is invalid for the version it declares."""
    document = _app_with_an_event_stream().openapi()
    assert document["openapi"] == "3.1.0"
    with pytest.raises(OpenAPIValidationError, match="itemSchema"):
        validate(document)


async def test_published_openapi_is_valid_31_and_keeps_the_stream_item_schema() -> None:
    app = _app_with_an_event_stream()
    publish_openapi_31(app)
    async with _client(app) as c:
        document = (await c.get("/openapi.json")).json()

    validate(document)
    assert document["openapi"] == OPENAPI_VERSION
    media = document["paths"]["/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert "itemSchema" not in media
    assert media["schema"]["type"] == "string"
    assert set(media["x-itemSchema"]["properties"]) >= {"data", "event", "id", "retry"}
    assert app.openapi() is app.openapi(), "generated once"
