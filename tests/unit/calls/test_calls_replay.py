"""The replay server is as strict as the real search API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from services.calls.domain.portal import PortalConfig, build_files
from services.calls.replay.server import SEARCH_PATH, ReplayServer, run_replay_server

ROOT = Path(__file__).resolve().parents[3]
PARAMS = {"apiKey": "SEDIA", "text": "***", "pageSize": "3", "pageNumber": "1"}


def _post(server: ReplayServer, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.endpoint, params=kwargs.pop("params", PARAMS), timeout=5, **kwargs)


def test_multipart_json_parts_are_accepted(replay: ReplayServer) -> None:
    response = _post(replay, files=build_files(PortalConfig()))
    assert response.status_code == 200
    body = response.json()
    assert (body["totalResults"], body["pageNumber"], body["pageSize"]) == (7, 1, 3)
    assert [r["metadata"]["identifier"][0] for r in body["results"]] == [
        "EDF-2026-DA-NAVAL-MCMS",
        "EDF-2026-DA-SPACE-SSAS",
        "EDF-2026-LS-RA-DIS-NT",
    ]


def test_form_fields_get_500(replay: ReplayServer) -> None:
    parts = {k: v[1].decode() for k, v in build_files(PortalConfig()).items()}
    assert _post(replay, data=parts, files={"dummy": ("x", b"x", "text/plain")}).status_code == 500
    assert _post(replay, data=parts).status_code == 500


def test_missing_part_gets_500(replay: ReplayServer) -> None:
    files = build_files(PortalConfig())
    del files["sort"]
    assert _post(replay, files=files).status_code == 500


def test_query_in_url_is_ignored(replay: ReplayServer) -> None:
    files = build_files(PortalConfig())
    files["query"] = ("blob", b'{"bool":{"must":[]}}', "application/json")
    params = {**PARAMS, "query": json.dumps({"bool": {"must": [{"terms": {"status": ["31094503"]}}]}})}
    assert _post(replay, params=params, files=files).json()["totalResults"] == 7


def test_unsupported_query_gets_500(replay: ReplayServer) -> None:
    files = build_files(PortalConfig())
    files["query"] = ("blob", b'{"match":{"title":"space"}}', "application/json")
    assert _post(replay, files=files).status_code == 500


def test_paging_past_the_end(replay: ReplayServer) -> None:
    body = _post(replay, params={**PARAMS, "pageNumber": "9"}, files=build_files(PortalConfig())).json()
    assert body["results"] == [] and body["totalResults"] == 7


def test_get_is_not_allowed(replay: ReplayServer) -> None:
    assert httpx.get(replay.endpoint, timeout=5).status_code == 405


def test_http_controls(replay: ReplayServer) -> None:
    base = replay.base_url + "/_replay"
    assert httpx.put(base + "/rows", json=replay.state.rows[:2], timeout=5).json() == {"rows": 2}
    httpx.post(base + "/faults", json={"kind": "error", "status": 502, "count": 1}, timeout=5)
    assert _post(replay, files=build_files(PortalConfig())).status_code == 502
    assert _post(replay, files=build_files(PortalConfig())).json()["totalResults"] == 2
    recorded = httpx.get(base + "/requests", timeout=5).json()
    assert [r["status"] for r in recorded] == [502, 200]
    httpx.post(base + "/reset", timeout=5)
    assert httpx.get(base + "/requests", timeout=5).json() == []


def test_in_process_helper_takes_rows(make_row) -> None:  # type: ignore[no-untyped-def]
    with run_replay_server([make_row("EDF-2026-RA-CYBER-X")]) as server:
        assert server.endpoint.endswith(SEARCH_PATH)
        assert _post(server, files=build_files(PortalConfig())).json()["totalResults"] == 1


def test_runs_as_a_process(tmp_path: Path, data_rows: list[dict[str, Any]]) -> None:
    data = tmp_path / "rows.json"
    data.write_text(json.dumps(data_rows[:3]))
    with ReplayServer() as probe:  # borrow a free port, then release it for the child
        port = int(probe.base_url.rsplit(":", 1)[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.calls.replay", "--port", str(port), "--data", str(data)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}{SEARCH_PATH}"
        deadline = time.monotonic() + 5
        while True:
            try:
                response = httpx.post(url, params=PARAMS, files=build_files(PortalConfig()), timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "replay process did not start"
                time.sleep(0.05)
        assert response.json()["totalResults"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=5)
