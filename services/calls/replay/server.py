"""A stand-in for the SEDIA search API that replays topic rows from a JSON file.

It is strict where the real API is: query, languages and sort must arrive as multipart parts with
content type application/json (anything else is a 500), only bool/must/terms queries filter, and
paging follows pageSize/pageNumber from the URL. Tests and demos can swap the data, queue failures
(HTTP errors, hangs, dropped connections) and make one page malformed.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

SEARCH_PATH = "/search-api/prod/rest/search"
CONTROL_PREFIX = "/_replay"
DEFAULT_DATA = Path(__file__).parent / "data" / "edf_topics.json"
REQUIRED_PARTS = ("query", "languages", "sort")
DEFAULT_PAGE_SIZE = 50

FaultKind = Literal["error", "hang", "reset"]
MalformedMode = Literal["not-json", "missing-results", "bad-row"]


@dataclass(frozen=True)
class Fault:
    """One queued failure: an HTTP error status, a hang, or a connection closed without answer."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    seconds: float = 30.0


@dataclass(frozen=True)
class Part:
    """A multipart part as received."""

    name: str
    filename: str | None
    content_type: str
    body: str


@dataclass
class RecordedRequest:
    """What the server saw, for assertions about the client's request shape."""

    method: str
    path: str
    params: dict[str, str]
    content_type: str
    parts: dict[str, Part] = field(default_factory=dict)
    status: int = 0
    fault: str | None = None


@dataclass(frozen=True)
class Reply:
    """An HTTP response to send."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def load_rows(path: Path | str) -> list[dict[str, Any]]:
    """Rows from a JSON file: a list of result rows, or a search response with `results`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = data.get("results") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of rows or an object with 'results'")
    return rows


class ReplayState:
    """Data, queued faults and recorded requests, shared by the handler threads."""

    def __init__(self, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = [copy.deepcopy(dict(r)) for r in rows]
        self._faults: deque[Fault] = deque()
        self._malformed: dict[int, MalformedMode] = {}
        self._requests: list[RecordedRequest] = []
        self.stopping = threading.Event()

    # -- controls ---------------------------------------------------------------------------------

    def set_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Replace the data set."""
        with self._lock:
            self._rows = [copy.deepcopy(dict(r)) for r in rows]

    def load(self, path: Path | str) -> None:
        """Replace the data set with a JSON file."""
        self.set_rows(load_rows(path))

    @property
    def rows(self) -> list[dict[str, Any]]:
        """A copy of the current rows."""
        with self._lock:
            return copy.deepcopy(self._rows)

    def fail_next(self, count: int = 1, status: int = 500, retry_after: str | None = None) -> None:
        """Answer the next `count` search requests with this HTTP status."""
        self._queue(Fault("error", status=status, retry_after=retry_after), count)

    def hang_next(self, count: int = 1, seconds: float = 30.0) -> None:
        """Stall the next `count` search requests for `seconds` (or until the server stops)."""
        self._queue(Fault("hang", seconds=seconds), count)

    def reset_next(self, count: int = 1) -> None:
        """Close the connection without answering the next `count` search requests."""
        self._queue(Fault("reset"), count)

    def malform_page(self, page: int, mode: MalformedMode = "not-json") -> None:
        """Serve page `page` malformed until cleared: not JSON, no `results`, or one broken row."""
        with self._lock:
            self._malformed[page] = mode

    def clear_faults(self) -> None:
        """Drop queued faults and malformed pages."""
        with self._lock:
            self._faults.clear()
            self._malformed.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Search requests received so far (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self._requests.clear()

    def _queue(self, fault: Fault, count: int) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    # -- used by the handler ----------------------------------------------------------------------

    def _take_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _snapshot(self) -> tuple[list[dict[str, Any]], dict[int, MalformedMode]]:
        with self._lock:
            return copy.deepcopy(self._rows), dict(self._malformed)


def _json_reply(status: int, payload: Any) -> Reply:
    return Reply(status, json.dumps(payload).encode())


def _error(status: int, message: str) -> Reply:
    # Shaped like the Spring error body the portal returns.
    return _json_reply(status, {"status": status, "error": "Internal Server Error", "message": message})


def parse_multipart(content_type: str, body: bytes) -> dict[str, Part]:
    """Parts of a multipart/form-data body by name (stdlib email parser, no extra dependency)."""
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        return {}
    parts: dict[str, Part] = {}
    for raw in cast(EmailMessage, message).iter_parts():
        part = cast(EmailMessage, raw)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload or "")
        parts[name] = Part(name, part.get_filename(), part.get_content_type(), text)
    return parts


def _filter(rows: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
    """Apply a bool/must/terms query; any other shape is rejected like the real API does."""
    must = query.get("bool", {}).get("must") if isinstance(query, dict) else None
    if not isinstance(must, list):
        raise ValueError("only bool/must queries are supported")
    for clause in must:
        terms = clause.get("terms") if isinstance(clause, dict) else None
        if not isinstance(terms, dict) or len(terms) != 1:
            raise ValueError(f"unsupported clause {clause!r}")
        ((name, wanted),) = terms.items()
        if not isinstance(wanted, list):
            raise ValueError(f"terms.{name} must be a list")
        allowed = {str(w) for w in wanted}
        rows = [r for r in rows if allowed & {str(v) for v in r.get("metadata", {}).get(name, [])}]
    return rows


def _sort(rows: list[dict[str, Any]], sort: Any) -> list[dict[str, Any]]:
    if not isinstance(sort, dict) or "field" not in sort:
        raise ValueError("sort must be an object with a field")
    name = str(sort["field"])
    descending = str(sort.get("order", "ASC")).upper() == "DESC"

    def key(row: dict[str, Any]) -> str:
        values = row.get("metadata", {}).get(name) or [""]
        return str(values[0])

    return sorted(rows, key=key, reverse=descending)


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    value = int(params.get(name, default))
    if value < 1:
        raise ValueError(f"{name} must be positive")
    return value


def handle_search(
    state: ReplayState, params: Mapping[str, str], content_type: str, body: bytes
) -> tuple[Reply, dict[str, Part]]:
    """Answer one search request (faults aside) the way the portal would."""
    if "multipart/form-data" not in content_type:
        return _error(500, "Current request is not a multipart request"), {}
    parts = parse_multipart(content_type, body)
    decoded: dict[str, Any] = {}
    for name in REQUIRED_PARTS:
        part = parts.get(name)
        if part is None:
            return _error(500, f"Required part '{name}' is not present."), parts
        if part.content_type != "application/json":
            return _error(500, f"Content type '{part.content_type}' not supported for part '{name}'"), parts
        try:
            decoded[name] = json.loads(part.body)
        except ValueError:
            return _error(500, f"JSON parse error in part '{name}'"), parts
    try:
        page_size = _int_param(params, "pageSize", DEFAULT_PAGE_SIZE)
        page_number = _int_param(params, "pageNumber", 1)
    except ValueError as exc:
        return _error(400, str(exc)), parts
    rows, malformed = state._snapshot()
    try:
        rows = _sort(_filter(rows, decoded["query"]), decoded["sort"])
    except ValueError as exc:
        return _error(500, str(exc)), parts
    page_rows = rows[(page_number - 1) * page_size : page_number * page_size]
    mode = malformed.get(page_number)
    if mode == "not-json":
        return Reply(200, b"<html><body><h1>Service temporarily unavailable</h1></body></html>", "text/html"), parts
    payload: dict[str, Any] = {
        "apiVersion": "2.0",
        "terms": "***",
        "text": "***",
        "pageNumber": page_number,
        "pageSize": page_size,
        "sort": f"{decoded['sort'].get('field')}:{decoded['sort'].get('order', 'ASC')}",
        "totalResults": len(rows),
        "results": page_rows,
        "warnings": [],
    }
    if mode == "missing-results":
        del payload["results"]
    elif mode == "bad-row" and page_rows:
        page_rows[0] = {**page_rows[0], "metadata": {**page_rows[0]["metadata"], "identifier": []}}
    return _json_reply(200, payload), parts


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; with Nagle on, each reply waits ~40 ms for an ACK.
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
            return
        if url.path != SEARCH_PATH:
            self._send(_error(404, f"no route {url.path}"))
            return
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        content_type = self.headers.get("Content-Type", "")
        state = self.server.state
        record = RecordedRequest("POST", url.path, params, content_type)
        state._record(record)
        fault = state._take_fault()
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
        reply, parts = handle_search(state, params, content_type, body)
        record.parts = parts
        record.status = reply.status
        self._send(reply)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith(CONTROL_PREFIX):
            self._send(self.server.control(url.path[len(CONTROL_PREFIX) :], b""))
        elif url.path == SEARCH_PATH:
            self._send(_error(405, "Request method 'GET' is not supported"))
        else:
            self._send(_error(404, f"no route {url.path}"))

    do_PUT = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], state: ReplayState) -> None:
        super().__init__(address, _Handler)
        self.state = state

    def control(self, action: str, body: bytes) -> Reply:
        """HTTP controls for a replay server running as a separate process."""
        try:
            args: dict[str, Any] = json.loads(body) if body.strip() else {}
        except ValueError:
            return _error(400, "control body must be JSON")
        state = self.state
        if action == "/rows":
            if body.strip():
                state.set_rows(args["results"] if isinstance(args, dict) else args)
            return _json_reply(200, {"rows": len(state.rows)})
        if action == "/requests":
            return _json_reply(200, [asdict(r) for r in state.requests])
        if action == "/faults":
            kind = args.get("kind", "error")
            count = int(args.get("count", 1))
            if kind == "hang":
                state.hang_next(count, float(args.get("seconds", 30)))
            elif kind == "reset":
                state.reset_next(count)
            else:
                state.fail_next(count, int(args.get("status", 500)), args.get("retry_after"))
            return _json_reply(200, {"queued": count})
        if action == "/malformed":
            state.malform_page(int(args["page"]), args.get("mode", "not-json"))
            return _json_reply(200, {"page": int(args["page"])})
        if action == "/reset":
            state.clear_faults()
            state.clear_requests()
            return _json_reply(200, {"reset": True})
        return _error(404, f"no control {action}")


class ReplayServer:
    """The replay app on a background thread; port 0 picks a free port."""

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]] | Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if rows is None:
            rows = DEFAULT_DATA
        self.state = ReplayState(load_rows(rows) if isinstance(rows, Path | str) else rows)
        self._server = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """http://host:port"""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def endpoint(self) -> str:
        """The search URL to configure the portal client with."""
        return self.base_url + SEARCH_PATH

    def start(self) -> ReplayServer:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the current thread (process mode)."""
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
    rows: Sequence[Mapping[str, Any]] | Path | str | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[ReplayServer]:
    """Start a replay server for the duration of a with-block (default data: data/edf_topics.json)."""
    server = ReplayServer(rows, host, port).start()
    try:
        yield server
    finally:
        server.stop()
