"""A local stand-in for the two portal endpoints the project-history importer reads.

* ``GET /opportunities/api/topicProjectsList.json?topicId={ccm2Id}`` answers a JSON array of
  ``{programId, businessIdentifier, acronym, title}`` (an empty array for a topic without projects);
* ``GET /search-api/prod/rest/document/{programId}{businessIdentifier}?apiKey=SEDIA_NONH2020_PROD``
  answers a search-api document whose ``metadata`` values are arrays of strings and whose
  ``participants`` is a JSON string (404 for an unknown project, 403 for another key).

The formats follow what the importer's module ``services.registry.importer.formats`` documents (and
bases on the public harvester of the EDF data set). The data is a JSON file of topics, each with its
projects and their participants written as plain objects; the server renders them in the wire
formats. A project whose ``participants`` is a list of strings has them served verbatim, so tests can
serve split or broken participant strings. Tests and demos can swap the data and queue failures
(HTTP errors with an optional Retry-After, hangs, dropped connections) for either endpoint.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from shared.replay import CONTROL_PREFIX as CONTROL_PREFIX  # re-exported
from shared.replay import BaseReplayHandler, BaseReplayServer, BaseReplayState, Reply, json_reply, query_params
from shared.replay import Fault as Fault  # re-exported
from shared.replay import FaultKind as FaultKind  # re-exported

TOPIC_PROJECTS_PATH = "/opportunities/api/topicProjectsList.json"
DOCUMENT_PATH = "/search-api/prod/rest/document"
DOCUMENT_API_KEY = "SEDIA_NONH2020_PROD"
DEFAULT_DATA = Path(__file__).parent / "data" / "edf_projects.json"

Route = Literal["topics", "documents"]
SUMMARY_FIELDS = ("programId", "businessIdentifier", "acronym", "title")
DOCUMENT_FIELDS = (
    "title",
    "acronym",
    "status",
    "startDate",
    "endDate",
    "overallBudget",
    "euContributionAmount",
    "objective",
    "typeOfAction",
)


@dataclass
class RecordedRequest:
    """What the server saw, for assertions about the client's requests."""

    route: str
    path: str
    params: dict[str, str]
    status: int = 0
    fault: str | None = None


def load_topics(path: Path | str) -> list[dict[str, Any]]:
    """Topics from a JSON file: a list, or an object with ``topics``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    topics = data.get("topics") if isinstance(data, dict) else data
    if not isinstance(topics, list):
        raise ValueError(f"{path}: expected a list of topics or an object with 'topics'")
    return topics


def topic_projects_rows(topic: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The topicProjectsList.json answer for one topic."""
    return [{k: p[k] for k in SUMMARY_FIELDS if k in p} for p in topic.get("projects", [])]


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def project_document(project: Mapping[str, Any]) -> dict[str, Any]:
    """The search-api document for one project: metadata values are arrays of strings."""
    reference = f"{project['programId']}{project['businessIdentifier']}"
    metadata: dict[str, list[str]] = {k: _strings(project.get(k)) for k in DOCUMENT_FIELDS if k in project}
    metadata["projectId"] = [str(project["businessIdentifier"])]
    metadata["programId"] = [str(project["programId"])]
    participants = project.get("participants", [])
    if participants and all(isinstance(p, str) for p in participants):
        metadata["participants"] = list(participants)  # served verbatim
    else:
        metadata["participants"] = [json.dumps(participants, ensure_ascii=False)]
    return {
        "apiVersion": "2.0",
        "reference": reference,
        "url": f"https://example.invalid/projects-details/{project['programId']}/{project['businessIdentifier']}",
        "title": project.get("acronym", ""),
        "summary": project.get("title", ""),
        "language": "en",
        "databaseLabel": DOCUMENT_API_KEY,
        "metadata": metadata,
    }


class ReplayState(BaseReplayState[RecordedRequest]):
    """Topics with their projects, queued faults and recorded requests, shared by the handler threads."""

    def __init__(self, topics: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__()
        self._topics: list[dict[str, Any]] = [copy.deepcopy(dict(t)) for t in topics]

    def set_topics(self, topics: Sequence[Mapping[str, Any]]) -> None:
        """Replace the data set."""
        with self._lock:
            self._topics = [copy.deepcopy(dict(t)) for t in topics]

    @property
    def topics(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._topics)

    def _find_topic(self, ccm2_id: str) -> dict[str, Any] | None:
        with self._lock:
            for topic in self._topics:
                if str(topic.get("ccm2Id")) == ccm2_id:
                    return copy.deepcopy(topic)
        return None

    def _find_project(self, reference: str) -> dict[str, Any] | None:
        with self._lock:
            for topic in self._topics:
                for project in topic.get("projects", []):
                    if f"{project['programId']}{project['businessIdentifier']}" == reference:
                        return copy.deepcopy(project)
        return None


def _json_reply(status: int, payload: Any) -> Reply:
    return json_reply(status, payload, ensure_ascii=False)


def _error(status: int, message: str) -> Reply:
    return _json_reply(status, {"status": status, "error": message})


def handle_topic_projects(state: ReplayState, params: Mapping[str, str]) -> Reply:
    topic_id = params.get("topicId", "").strip()
    if not topic_id:
        return _error(400, "Required request parameter 'topicId' is not present")
    topic = state._find_topic(topic_id)
    return _json_reply(200, topic_projects_rows(topic) if topic is not None else [])


def handle_document(state: ReplayState, reference: str, params: Mapping[str, str]) -> Reply:
    if params.get("apiKey") != DOCUMENT_API_KEY:
        return _error(403, "invalid or missing apiKey")
    project = state._find_project(reference)
    if project is None:
        return _error(404, f"document {reference} not found")
    return _json_reply(200, project_document(project))


class _Handler(BaseReplayHandler):
    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if not self._control(url.path, self._body()):
            self._send(_error(405, "Request method 'POST' is not supported"))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if self._control(url.path, b""):
            return
        route: Route
        if url.path == TOPIC_PROJECTS_PATH:
            route = "topics"
        elif url.path.startswith(DOCUMENT_PATH + "/") and len(url.path) > len(DOCUMENT_PATH) + 1:
            route = "documents"
        else:
            self._send(_error(404, f"no route {url.path}"))
            return
        params = query_params(url.query)
        state: ReplayState = self.app.state
        record = RecordedRequest(route, url.path, params)
        state.record(record)
        if self._inject_fault(record, route):
            return
        if route == "topics":
            reply = handle_topic_projects(state, params)
        else:
            reply = handle_document(state, url.path[len(DOCUMENT_PATH) + 1 :], params)
        record.status = reply.status
        self._send(reply)


class ReplayServer(BaseReplayServer[ReplayState]):
    """The replay app on a background thread; port 0 picks a free port."""

    handler = _Handler
    controls = ("topics", "faults", "requests", "reset")
    fault_routes = ("topics", "documents")
    ensure_ascii = False

    def __init__(
        self,
        topics: Sequence[Mapping[str, Any]] | Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if topics is None:
            topics = DEFAULT_DATA
        super().__init__(ReplayState(load_topics(topics) if isinstance(topics, Path | str) else topics), host, port)

    @property
    def projects_url(self) -> str:
        """For REGISTRY_FT_PROJECTS_URL."""
        return self.base_url + TOPIC_PROJECTS_PATH

    @property
    def document_url(self) -> str:
        """For REGISTRY_FT_DOCUMENT_URL."""
        return self.base_url + DOCUMENT_PATH

    def data_control(self, action: str, args: Any, body: bytes) -> Reply | None:
        if action == "/topics":
            if body.strip():
                self.state.set_topics(args["topics"] if isinstance(args, dict) else args)
            return _json_reply(200, {"topics": len(self.state.topics)})
        return None

    def describe(self, source: Path) -> list[str]:
        topics = self.state.topics
        return [
            f"replaying {len(topics)} topics from {source}",
            *(f"  {topic.get('identifier')}:{topic.get('ccm2Id')}" for topic in topics),
            f"REGISTRY_FT_PROJECTS_URL={self.projects_url}",
            f"REGISTRY_FT_DOCUMENT_URL={self.document_url}",
        ]


@contextmanager
def run_replay_server(
    topics: Sequence[Mapping[str, Any]] | Path | str | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[ReplayServer]:
    """Start a replay server for the duration of a with-block (default data: data/edf_projects.json)."""
    with ReplayServer(topics, host, port) as server:
        yield server
