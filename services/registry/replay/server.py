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
import logging
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

TOPIC_PROJECTS_PATH = "/opportunities/api/topicProjectsList.json"
DOCUMENT_PATH = "/search-api/prod/rest/document"
CONTROL_PREFIX = "/_replay"
DOCUMENT_API_KEY = "SEDIA_NONH2020_PROD"
DEFAULT_DATA = Path(__file__).parent / "data" / "edf_projects.json"

Route = Literal["topics", "documents"]
FaultKind = Literal["error", "hang", "reset"]
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


@dataclass(frozen=True)
class Fault:
    """One queued failure, for one route or (route None) whichever request comes first."""

    kind: FaultKind
    route: Route | None = None
    status: int = 500
    retry_after: str | None = None
    seconds: float = 30.0


@dataclass
class RecordedRequest:
    """What the server saw, for assertions about the client's requests."""

    route: str
    path: str
    params: dict[str, str]
    status: int = 0
    fault: str | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


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


class ReplayState:
    """Data, queued faults and recorded requests, shared by the handler threads."""

    def __init__(self, topics: Sequence[Mapping[str, Any]] = ()) -> None:
        self._lock = threading.Lock()
        self._topics: list[dict[str, Any]] = [copy.deepcopy(dict(t)) for t in topics]
        self._faults: deque[Fault] = deque()
        self._requests: list[RecordedRequest] = []
        self.stopping = threading.Event()

    # -- controls ---------------------------------------------------------------------------------

    def set_topics(self, topics: Sequence[Mapping[str, Any]]) -> None:
        """Replace the data set."""
        with self._lock:
            self._topics = [copy.deepcopy(dict(t)) for t in topics]

    @property
    def topics(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._topics)

    def fail_next(
        self, count: int = 1, status: int = 500, retry_after: str | None = None, route: Route | None = None
    ) -> None:
        """Answer the next ``count`` requests (of ``route``, or any) with this HTTP status."""
        self._queue(Fault("error", route=route, status=status, retry_after=retry_after), count)

    def hang_next(self, count: int = 1, seconds: float = 30.0, route: Route | None = None) -> None:
        """Stall the next ``count`` requests for ``seconds`` (or until the server stops)."""
        self._queue(Fault("hang", route=route, seconds=seconds), count)

    def reset_next(self, count: int = 1, route: Route | None = None) -> None:
        """Close the connection without answering the next ``count`` requests."""
        self._queue(Fault("reset", route=route), count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _queue(self, fault: Fault, count: int) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    # -- used by the handler ----------------------------------------------------------------------

    def _take_fault(self, route: Route) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.route in (None, route):
                    self._faults.remove(fault)
                    return fault
            return None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

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
    return Reply(status, json.dumps(payload, ensure_ascii=False).encode())


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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("replay %s - %s", self.address_string(), format % args)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if url.path.startswith(CONTROL_PREFIX):
            self._send(self.server.control(url.path[len(CONTROL_PREFIX) :], body))
        else:
            self._send(_error(405, "Request method 'POST' is not supported"))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith(CONTROL_PREFIX):
            self._send(self.server.control(url.path[len(CONTROL_PREFIX) :], b""))
            return
        route: Route
        if url.path == TOPIC_PROJECTS_PATH:
            route = "topics"
        elif url.path.startswith(DOCUMENT_PATH + "/") and len(url.path) > len(DOCUMENT_PATH) + 1:
            route = "documents"
        else:
            self._send(_error(404, f"no route {url.path}"))
            return
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        state = self.server.state
        record = RecordedRequest(route, url.path, params)
        state._record(record)
        fault = state._take_fault(route)
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "reset":
                self.close_connection = True
                return
            if fault.kind == "hang":
                state.stopping.wait(fault.seconds)
                self.close_connection = True
                return
            headers = (("Retry-After", fault.retry_after),) if fault.retry_after is not None else ()
            record.status = fault.status
            self._send(Reply(fault.status, _error(fault.status, "injected failure").body, headers=headers))
            return
        if route == "topics":
            reply = handle_topic_projects(state, params)
        else:
            reply = handle_document(state, url.path[len(DOCUMENT_PATH) + 1 :], params)
        record.status = reply.status
        self._send(reply)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], state: ReplayState) -> None:
        super().__init__(address, _Handler)
        self.state = state

    def control(self, action: str, body: bytes) -> Reply:
        """HTTP controls for a replay server running as a separate process."""
        try:
            args: Any = json.loads(body) if body.strip() else {}
        except ValueError:
            return _error(400, "control body must be JSON")
        state = self.state
        if action == "/topics":
            if body.strip():
                state.set_topics(args["topics"] if isinstance(args, dict) else args)
            return _json_reply(200, {"topics": len(state.topics)})
        if action == "/requests":
            return _json_reply(200, [asdict(r) for r in state.requests])
        if action == "/faults":
            kind = args.get("kind", "error")
            count = int(args.get("count", 1))
            route = args.get("route")
            if route not in (None, "topics", "documents"):
                return _error(400, "route must be 'topics' or 'documents'")
            if kind == "hang":
                state.hang_next(count, float(args.get("seconds", 30)), route=route)
            elif kind == "reset":
                state.reset_next(count, route=route)
            else:
                state.fail_next(count, int(args.get("status", 500)), args.get("retry_after"), route=route)
            return _json_reply(200, {"queued": count})
        if action == "/reset":
            state.clear_faults()
            state.clear_requests()
            return _json_reply(200, {"reset": True})
        return _error(404, f"no control {action}")


class ReplayServer:
    """The replay app on a background thread; port 0 picks a free port."""

    def __init__(
        self,
        topics: Sequence[Mapping[str, Any]] | Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if topics is None:
            topics = DEFAULT_DATA
        self.state = ReplayState(load_topics(topics) if isinstance(topics, Path | str) else topics)
        self._server = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def projects_url(self) -> str:
        """For REGISTRY_FT_PROJECTS_URL."""
        return self.base_url + TOPIC_PROJECTS_PATH

    @property
    def document_url(self) -> str:
        """For REGISTRY_FT_DOCUMENT_URL."""
        return self.base_url + DOCUMENT_PATH

    def start(self) -> ReplayServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Release hanging requests, stop serving and close the socket."""
        self.state.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def run_replay_server(
    topics: Sequence[Mapping[str, Any]] | Path | str | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[ReplayServer]:
    """Start a replay server for the duration of a with-block (default data: data/edf_projects.json)."""
    server = ReplayServer(topics, host, port).start()
    try:
        yield server
    finally:
        server.stop()
