"""The importer's portal replay: wire formats, routes, fault injection and HTTP controls."""

from __future__ import annotations

import json

import httpx

from services.registry.replay.server import DEFAULT_DATA, ReplayServer, load_topics, project_document


def test_default_data_is_fictional_and_complete() -> None:
    topics = load_topics(DEFAULT_DATA)
    assert [t["ccm2Id"] for t in topics] == ["90002201", "90002302", "90002104", "90002403"]
    pics = {p["pic"] for t in topics for project in t["projects"] for p in project["participants"]}
    assert all(pic == "" or pic.startswith("99") or pic == "12345" for pic in pics)


async def test_wire_formats(replay: ReplayServer) -> None:
    async with httpx.AsyncClient() as client:
        rows = (await client.get(replay.projects_url, params={"topicId": "90002201"})).json()
        assert rows[0] == {
            "programId": "44181033",
            "businessIdentifier": "199000101",
            "acronym": "QUANTNAV",
            "title": "Quantum-aided navigation in satellite-denied environments",
        }
        assert (await client.get(replay.projects_url, params={"topicId": "90002403"})).json() == []
        assert (await client.get(replay.projects_url)).status_code == 400
        response = await client.get(
            f"{replay.document_url}/44181033199000101", params={"apiKey": "SEDIA_NONH2020_PROD"}
        )
        document = response.json()
        metadata = document["metadata"]
        assert all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in metadata.values())
        (participants,) = metadata["participants"]
        assert json.loads(participants)[0]["legalName"] == "ARDENNE PHOTONICS NV"
        assert metadata["startDate"] == ["2023-12-01T00:00:00.000+0100"]
        assert (await client.get(f"{replay.document_url}/44181033199000101")).status_code == 403
        missing = await client.get(f"{replay.document_url}/1", params={"apiKey": "SEDIA_NONH2020_PROD"})
        assert missing.status_code == 404
        assert (await client.get(replay.base_url + "/elsewhere")).status_code == 404


def test_string_participants_are_served_verbatim() -> None:
    project = {"programId": "1", "businessIdentifier": "2", "participants": ['[{"pic": 1}]', "[]"]}
    assert project_document(project)["metadata"]["participants"] == ['[{"pic": 1}]', "[]"]


async def test_faults_by_route_and_controls(replay: ReplayServer) -> None:
    async with httpx.AsyncClient(base_url=replay.base_url) as client:
        await client.post("/_replay/faults", json={"count": 2, "status": 503, "route": "documents", "retry_after": "1"})
        ok = await client.get(replay.projects_url, params={"topicId": "90002201"})
        assert ok.status_code == 200  # the faults wait for a document request
        failed = await client.get(f"{replay.document_url}/44181033199000101", params={"apiKey": "SEDIA_NONH2020_PROD"})
        assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
        recorded = (await client.get("/_replay/requests")).json()
        assert [(r["route"], r["status"], r["fault"]) for r in recorded] == [
            ("topics", 200, None),
            ("documents", 503, "error"),
        ]
        await client.post("/_replay/reset")
        assert (await client.get("/_replay/requests")).json() == []
        ok = await client.get(f"{replay.document_url}/44181033199000101", params={"apiKey": "SEDIA_NONH2020_PROD"})
        assert ok.status_code == 200  # reset dropped the second queued fault
        assert (await client.post("/_replay/topics", json={"topics": []})).json() == {"topics": 0}
        assert (await client.get(replay.projects_url, params={"topicId": "90002201"})).json() == []
        assert (await client.post("/_replay/faults", json={"route": "nowhere"})).status_code == 400
