"""Hostile and sloppy input gets a 4xx naming the field, never a 500, and nothing is written (#9 §1, §6).

Against the five services' real HTTP apps on PostgreSQL (which refuses NUL in text: the defect class).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from services.registry.models import Company
from shared.limits import DEFAULT_MAX_BODY_BYTES, MAX_DB_BIGINT, MAX_DB_INTEGER, MAX_EVENT_BYTES
from shared.outbox import OutboxRecord
from tests.infra import Databases
from tests.integration.apis import Apis, five_services

pytestmark = pytest.mark.infra


@pytest.fixture
async def apis(databases: Databases) -> AsyncIterator[Apis]:
    async with five_services(databases) as built:
        yield built


def company_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Limits Test NV",
        "country": "BE",
        "city": "Gent",
        "size": "small",
        "domains": ["cybersecurity"],
        "capabilities": ["intrusion detection for tactical networks"],
        "contact_email": "info@limits.example",
    }
    body.update(overrides)
    return body


async def _rows(apis: Apis, service: str, model: Any) -> int:
    async with apis.runtimes[service].db.sessions() as session:
        return int((await session.exec(select(func.count()).select_from(model))).one())


async def _nothing_written(apis: Apis) -> None:
    assert await _rows(apis, "registry", Company) == 0
    assert await _rows(apis, "registry", OutboxRecord) == 0


def _locs(response: httpx.Response) -> list[list[Any]]:
    return [issue["loc"] for issue in response.json()["detail"]]


# --------------------------------------------------------------------------- §1 sizes


async def test_a_body_over_the_limit_is_refused_by_its_content_length_without_being_read(apis: Apis) -> None:
    body = b"{" + b" " * DEFAULT_MAX_BODY_BYTES + b"}"
    response = await apis.clients["registry"].post(
        "/companies", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert _locs(response) == [["body"]]
    await _nothing_written(apis)


async def test_a_streamed_body_without_length_is_cut_off_at_the_limit(apis: Apis) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"name": "'
        for _ in range(64):  # 4 MiB offered in 64 KiB chunks; the guard must stop reading early
            sent += 65_536
            yield b"x" * 65_536
        yield b'"}'

    response = await apis.clients["registry"].post(
        "/companies", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert _locs(response) == [["body"]]
    assert sent <= DEFAULT_MAX_BODY_BYTES + 2 * 65_536, f"read {sent} bytes of a body over the limit"
    await _nothing_written(apis)


async def test_a_profile_too_large_for_one_event_is_refused_naming_the_field_and_nothing_is_written(
    apis: Apis,
) -> None:
    # Every field within its own maximum; together over the event limit (4-byte characters).
    wide = "\U0001d517"  # four bytes in UTF-8
    item = {"programme": "EDF", "title": wide * 200, "summary": wide * 2000, "partners": [wide * 200] * 100}
    body = json.dumps(company_body(history=[item] * 11), ensure_ascii=False).encode()
    assert MAX_EVENT_BYTES < len(body) < DEFAULT_MAX_BODY_BYTES
    response = await apis.clients["registry"].post(
        "/companies", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text[:300]
    assert _locs(response) == [["body", "history"]]
    assert response.json()["detail"][0]["ctx"]["limit"] == MAX_EVENT_BYTES
    await _nothing_written(apis)


async def test_a_website_longer_than_its_column_after_normalisation_is_a_422(apis: Apis) -> None:
    # 300 characters typed, 900 stored: percent-encoding happens before the length is checked.
    response = await apis.clients["registry"].post(
        "/companies", json=company_body(website="https://example.org/" + "é" * 300)
    )
    assert response.status_code == 422, response.text
    assert ["body", "website"] in _locs(response)
    await _nothing_written(apis)


# --------------------------------------------------------------------------- §6 classes


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Acme\x00 NV"),
        ("city", "Gent\ud800"),
        ("capabilities", ["radar\x00"]),
        ("history", [{"programme": "EDF", "title": "ok", "partners": ["a\x00b"]}]),
    ],
)
async def test_nul_and_lone_surrogates_in_a_body_are_a_422_naming_the_field(apis: Apis, field: str, value: Any) -> None:
    # ensure_ascii: a lone surrogate travels as a JSON escape (it has no UTF-8 form).
    body = json.dumps(company_body(**{field: value}), ensure_ascii=True)
    response = await apis.clients["registry"].post(
        "/companies", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert any(loc[:2] == ["body", field] for loc in _locs(response)), response.text
    await _nothing_written(apis)


async def test_nul_in_a_path_or_query_parameter_is_a_422_naming_it(apis: Apis) -> None:
    for service, url, loc in [
        ("registry", "/companies/abc%00def", ["path", "company_id"]),
        ("projects", "/projects/x%00", ["path", "project_id"]),
        ("calls", "/calls/EDF%00", ["path", "call_id"]),
        ("registry", "/companies?q=radar%00", ["query", "q"]),
        ("calls", "/calls?programme=EDF%00", ["query", "programme"]),
    ]:
        response = await apis.clients[service].get(url)
        assert response.status_code == 422, (url, response.text)
        assert loc in _locs(response), (url, response.text)


async def test_patch_with_null_for_a_required_field_is_a_422_and_changes_nothing(apis: Apis) -> None:
    created = await apis.clients["registry"].post("/companies", json=company_body())
    assert created.status_code == 201, created.text
    company_id = created.json()["id"]
    before = await _rows(apis, "registry", OutboxRecord)
    for field in ("name", "country", "city", "size", "domains", "capabilities", "contact_email", "history"):
        response = await apis.clients["registry"].patch(f"/companies/{company_id}", json={field: None})
        assert response.status_code == 422, (field, response.text)
        assert ["body", field] in _locs(response), response.text
    assert (await apis.clients["registry"].patch(f"/companies/{company_id}", json={"website": None})).status_code == 200
    assert await _rows(apis, "registry", OutboxRecord) == before
    current = (await apis.clients["registry"].get(f"/companies/{company_id}")).json()
    assert current["name"] == "Limits Test NV"


async def test_patch_schema_says_which_fields_may_be_null(apis: Apis) -> None:
    schemas = apis.apps["registry"].openapi()["components"]["schemas"]
    props = schemas["CompanyUpdate"]["properties"]
    assert "anyOf" not in props["name"] and props["name"]["type"] == "string"
    assert {"type": "null"} in props["website"]["anyOf"]


async def test_paging_out_of_range_is_a_422_naming_the_parameter(apis: Apis) -> None:
    for service, path in [
        ("registry", "/companies"),
        ("projects", "/projects"),
        ("calls", "/calls"),
        ("registry", "/accounts"),
        ("alerts", "/admin/outbox/parked"),
    ]:
        for params, name in [
            ({"offset": str(10**30)}, "offset"),
            ({"offset": "-1"}, "offset"),
            ({"limit": "0"}, "limit"),
            ({"limit": "100000"}, "limit"),
        ]:
            response = await apis.clients[service].get(path, params=params)
            assert response.status_code == 422, (path, params, response.text)
            assert ["query", name] in _locs(response)


async def test_unknown_enum_values_are_a_422_naming_the_field(apis: Apis) -> None:
    response = await apis.clients["registry"].post("/companies", json=company_body(size="gigantic"))
    assert response.status_code == 422 and ["body", "size"] in _locs(response)
    response = await apis.clients["projects"].get("/projects", params={"status": "paused"})
    assert response.status_code == 422 and ["query", "status"] in _locs(response)
    response = await apis.clients["calls"].get("/calls", params={"status": "maybe"})
    assert response.status_code == 422 and ["query", "status"] in _locs(response)
    await _nothing_written(apis)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None])
async def test_a_json_route_refuses_other_content_types_with_415(apis: Apis, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    client = apis.clients["registry"]
    response = await client.post("/companies", content=b'{"name": "x"}', headers=headers)
    if content_type is None:  # httpx sends no content type: still not JSON as far as we are told
        assert "content-type" not in response.request.headers
    assert response.status_code == 415, response.text
    assert _locs(response) == [["header", "content-type"]]
    await _nothing_written(apis)


async def test_json_with_a_charset_and_plus_json_types_are_accepted(apis: Apis) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        body = json.dumps(company_body(name=f"Charset {content_type[-5:]}")).encode()
        response = await apis.clients["registry"].post(
            "/companies", content=body, headers={"content-type": content_type}
        )
        assert response.status_code == 201, response.text


async def test_an_id_beyond_its_integer_column_is_a_422_not_a_500(apis: Apis) -> None:
    # Found by the fuzzing: 2**62 passed the old bound and PostgreSQL refused it (int4): a 500.
    client = apis.clients["projects"]
    too_large = await client.post(f"/admin/outbox/parked/{MAX_DB_INTEGER + 1}/retry")
    assert too_large.status_code == 422 and ["path", "outbox_id"] in _locs(too_large)
    assert (await client.post(f"/admin/outbox/parked/{MAX_DB_INTEGER}/retry")).status_code == 404


async def test_a_stream_position_beyond_64_bits_is_a_422_not_a_broken_stream(apis: Apis) -> None:
    created = await apis.clients["registry"].post("/companies", json=company_body())
    company_id = created.json()["id"]
    response = await apis.clients["alerts"].get(
        f"/companies/{company_id}/alerts/stream", params={"after": str(MAX_DB_BIGINT + 1)}
    )
    assert response.status_code == 422 and ["query", "after"] in _locs(response)


async def test_a_body_that_is_not_utf8_is_the_400_the_document_lists(apis: Apis) -> None:
    response = await apis.clients["registry"].post(
        "/companies", content=b'{"name": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "400" in apis.apps["registry"].openapi()["paths"]["/companies"]["post"]["responses"]
    await _nothing_written(apis)
