"""What every service's OpenAPI document promises, checked as classes over all five (#9 §6).

The fuzzing (tests/integration/test_api_fuzz.py) found each of these as one failing request; these
tests state the class for every route, so a new route cannot bring the defect back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.api_docs import access_of, shared_refusals
from shared.auth import Access
from shared.limits import MAX_DB_BIGINT
from tests.integration.apis import openapi_documents

DOCUMENTS = openapi_documents()


def operations() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for service, document in DOCUMENTS.items():
        for path, items in document["paths"].items():
            for method, operation in items.items():
                yield service, method.upper(), path, operation


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _integers(document: dict[str, Any], schema: dict[str, Any], where: str, seen: set[str]) -> Iterator[str]:
    """Every integer in a schema that has no maximum a database column holds, by where it is."""
    ref = schema.get("$ref")
    if ref is not None:
        if ref in seen:
            return
        seen = seen | {ref}
    schema = _resolve(document, schema)
    if schema.get("type") == "integer" and schema.get("maximum", MAX_DB_BIGINT + 1) > MAX_DB_BIGINT:
        yield where
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            yield from _integers(document, option, where, seen)
    for name, prop in schema.get("properties", {}).items():
        yield from _integers(document, prop, f"{where}.{name}", seen)
    if isinstance(schema.get("items"), dict):
        yield from _integers(document, schema["items"], f"{where}[]", seen)


def test_every_integer_a_request_sends_has_a_maximum_a_database_column_holds() -> None:
    """An unbounded integer reached PostgreSQL and came back as a 500 (an outbox id, a stream position)."""
    unbounded = []
    for service, method, path, operation in operations():
        document = DOCUMENTS[service]
        for parameter in operation.get("parameters", []):
            where = f"{service} {method} {path} {parameter['in']}.{parameter['name']}"
            unbounded += _integers(document, parameter.get("schema", {}), where, set())
        for media in operation.get("requestBody", {}).get("content", {}).values():
            unbounded += _integers(document, media.get("schema", {}), f"{service} {method} {path} body", set())
    assert unbounded == []


_BOUNDED_FORMATS = frozenset({"uuid", "date", "date-time"})


def _unbounded(document: dict[str, Any], schema: dict[str, Any], where: str, seen: set[str]) -> Iterator[str]:
    """Every string without a maxLength, list without maxItems and open map in a schema, by where it is."""
    ref = schema.get("$ref")
    if ref is not None:
        if ref in seen:
            return
        seen = seen | {ref}
    schema = _resolve(document, schema)
    kind = schema.get("type")
    fixed = "enum" in schema or "const" in schema or schema.get("format") in _BOUNDED_FORMATS
    if kind == "string" and "maxLength" not in schema and not fixed:
        yield f"{where}: string"
    if kind == "array" and "maxItems" not in schema:
        yield f"{where}: list"
    if isinstance(schema.get("additionalProperties"), dict) and "maxProperties" not in schema:
        yield f"{where}: map"
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            yield from _unbounded(document, option, where, seen)
    for name, prop in schema.get("properties", {}).items():
        yield from _unbounded(document, prop, f"{where}.{name}", seen)
    if isinstance(schema.get("items"), dict):
        yield from _unbounded(document, schema["items"], f"{where}[]", seen)


def test_every_string_and_list_a_request_sends_shows_its_maximum() -> None:
    """#9 §1: every request string, list and nested list has a documented maximum (maxLength, maxItems)."""
    unbounded = []
    for service, method, path, operation in operations():
        document = DOCUMENTS[service]
        for parameter in operation.get("parameters", []):
            where = f"{service} {method} {path} {parameter['in']}.{parameter['name']}"
            unbounded += _unbounded(document, parameter.get("schema", {}), where, set())
        for media in operation.get("requestBody", {}).get("content", {}).values():
            unbounded += _unbounded(document, media.get("schema", {}), f"{service} {method} {path} body", set())
    assert unbounded == []


def test_a_route_open_to_anonymous_callers_says_so_and_the_others_require_a_token() -> None:
    """FastAPI lists the bearer scheme on every route that reads a token, which means "required"."""
    wrong = []
    for service, method, path, operation in operations():
        access = access_of(service, method, path)
        if not access:
            continue  # open paths: no token is read at all
        anonymous = bool(access & {Access.PUBLIC, Access.REGISTER})
        security = operation.get("security", [])
        if anonymous != ({} in security) or not [s for s in security if s]:
            wrong.append(f"{service} {method} {path}: {security}")
    assert wrong == []


@pytest.mark.parametrize("status", ["400", "401", "403", "413", "415", "422", "429"])
def test_every_operation_documents_the_refusals_the_shared_machinery_answers_on_it(status: str) -> None:
    missing = []
    for service, method, path, operation in operations():
        json_body = "application/json" in operation.get("requestBody", {}).get("content", {})
        if int(status) in shared_refusals(service, method, path, json_body=json_body):
            response = operation["responses"].get(status)
            if response is None or not response.get("description"):
                missing.append(f"{service} {method} {path}")
    assert missing == []


def test_a_json_body_route_documents_that_a_body_that_is_not_utf8_is_a_400() -> None:
    """FastAPI answers 400 "There was an error parsing the body" to such bytes: documented, not a surprise."""
    document = DOCUMENTS["registry"]
    assert "400" in document["paths"]["/companies"]["post"]["responses"]
    assert "400" not in document["paths"]["/companies"]["get"]["responses"]


def test_every_refusal_is_documented_as_the_json_it_is() -> None:
    """A route's own ``errors(404)`` on an event stream was documented as ``text/event-stream`` (the fuzzing)."""
    wrong = []
    for service, method, path, operation in operations():
        for status, response in operation["responses"].items():
            media = set(response.get("content", {}))
            # The e-mail link routes (unsubscribe, confirm-email) answer people with pages, refusals too.
            page = path.startswith(("/unsubscribe/", "/confirm-email/"))
            if status.startswith("4") and media != {"application/json"} and not page:
                wrong.append(f"{service} {method} {path} {status}: {sorted(media)}")
    assert wrong == []
