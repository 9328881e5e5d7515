"""A stand-in for the SEDIA search API that replays topic rows from a JSON file.

It is strict where the real API is: query, languages and sort must arrive as multipart parts with
content type application/json (anything else is a 500), only bool/must/terms queries filter, and
paging follows pageSize/pageNumber from the URL. Tests and demos can swap the data, queue failures
(HTTP errors, hangs, dropped connections) and make one page malformed.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from shared.replay import CONTROL_PREFIX as CONTROL_PREFIX  # re-exported
from shared.replay import BaseReplayHandler, BaseReplayServer, BaseReplayState, Reply, json_reply, query_params
from shared.replay import Fault as Fault  # re-exported
from shared.replay import FaultKind as FaultKind  # re-exported

SEARCH_PATH = "/search-api/prod/rest/search"
DEFAULT_DATA = Path(__file__).parent / "data" / "edf_topics.json"
REQUIRED_PARTS = ("query", "languages", "sort")
DEFAULT_PAGE_SIZE = 50

MalformedMode = Literal["not-json", "missing-results", "bad-row"]


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


def load_rows(path: Path | str) -> list[dict[str, Any]]:
    """Rows from a JSON file: a list of result rows, or a search response with `results`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = data.get("results") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of rows or an object with 'results'")
    return rows


class ReplayState(BaseReplayState[RecordedRequest]):
    """Topic rows, malformed pages, queued faults and recorded requests, shared by the handler threads."""

    def __init__(self, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__()
        self._rows: list[dict[str, Any]] = [copy.deepcopy(dict(r)) for r in rows]
        self._malformed: dict[int, MalformedMode] = {}
        self._changes: dict[int, deque[list[dict[str, Any]]]] = {}

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

    def malform_page(self, page: int, mode: MalformedMode = "not-json") -> None:
        """Serve page `page` malformed until cleared: not JSON, no `results`, or one broken row."""
        with self._lock:
            self._malformed[page] = mode

    def change_rows_after_page(self, page: int, row_sets: Sequence[Sequence[Mapping[str, Any]]]) -> None:
        """Each time page ``page`` has been served, replace the data with the next of ``row_sets``.

        The portal's index changing under a client that is paging through it: the next page then
        announces another ``totalResults``.
        """
        with self._lock:
            self._changes[page] = deque([copy.deepcopy(dict(r)) for r in rows] for rows in row_sets)

    def page_served(self, page: int) -> None:
        """Apply the next data change queued for this page, if any."""
        with self._lock:
            queued = self._changes.get(page)
            if queued:
                self._rows = queued.popleft()

    def clear_faults(self) -> None:
        """Drop queued faults, malformed pages and queued data changes."""
        with self._lock:
            self._faults.clear()
            self._malformed.clear()
            self._changes.clear()

    def _snapshot(self) -> tuple[list[dict[str, Any]], dict[int, MalformedMode]]:
        with self._lock:
            return copy.deepcopy(self._rows), dict(self._malformed)


def _error(status: int, message: str) -> Reply:
    # Shaped like the Spring error body the portal returns.
    return json_reply(status, {"status": status, "error": "Internal Server Error", "message": message})


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


def _identifier(row: Mapping[str, Any]) -> str | None:
    values = row.get("metadata", {}).get("identifier") or [None]
    return str(values[0]) if values[0] is not None else None


def _filter(rows: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
    """Apply a bool/must/terms query; any other shape is rejected like the real API does.

    A row that lacks a filtered field altogether (the thin duplicate rows the portal returns beside
    a topic's full row) comes with the other rows of its topic when one of those matches.
    """
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
        matching = [r for r in rows if allowed & {str(v) for v in r.get("metadata", {}).get(name, [])}]
        matched, topics = {id(r) for r in matching}, {_identifier(r) for r in matching}
        rows = [
            r for r in rows if id(r) in matched or (not r.get("metadata", {}).get(name) and _identifier(r) in topics)
        ]
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
    state.page_served(page_number)
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
    return json_reply(200, payload), parts


class _Handler(BaseReplayHandler):
    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if self._control(url.path, body):
            return
        if url.path != SEARCH_PATH:
            self._send(_error(404, f"no route {url.path}"))
            return
        params = query_params(url.query)
        content_type = self.headers.get("Content-Type", "")
        state: ReplayState = self.app.state
        record = RecordedRequest("POST", url.path, params, content_type)
        state.record(record)
        if self._inject_fault(record):
            return
        reply, parts = handle_search(state, params, content_type, body)
        record.parts = parts
        record.status = reply.status
        self._send(reply)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if self._control(url.path, b""):
            return
        if url.path == SEARCH_PATH:
            self._send(_error(405, "Request method 'GET' is not supported"))
        else:
            self._send(_error(404, f"no route {url.path}"))

    do_PUT = do_POST


class ReplayServer(BaseReplayServer[ReplayState]):
    """The SEDIA replay on a background thread; port 0 picks a free port."""

    handler = _Handler
    controls = ("rows", "faults", "malformed", "requests", "reset")

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]] | Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if rows is None:
            rows = DEFAULT_DATA
        super().__init__(ReplayState(load_rows(rows) if isinstance(rows, Path | str) else rows), host, port)

    @property
    def endpoint(self) -> str:
        """The search URL to configure the portal client with."""
        return self.base_url + SEARCH_PATH

    def error(self, status: int, message: str) -> Reply:
        return _error(status, message)

    def data_control(self, action: str, args: Any, body: bytes) -> Reply | None:
        state = self.state
        if action == "/rows":
            if body.strip():
                state.set_rows(args["results"] if isinstance(args, dict) else args)
            return json_reply(200, {"rows": len(state.rows)})
        if action == "/malformed":
            state.malform_page(int(args["page"]), args.get("mode", "not-json"))
            return json_reply(200, {"page": int(args["page"])})
        return None

    def describe(self, source: Path) -> list[str]:
        return [f"replaying {len(self.state.rows)} rows from {source}", f"search endpoint: {self.endpoint}"]


@contextmanager
def run_replay_server(
    rows: Sequence[Mapping[str, Any]] | Path | str | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[ReplayServer]:
    """Start a replay server for the duration of a with-block (default data: data/edf_topics.json)."""
    with ReplayServer(rows, host, port) as server:
        yield server
