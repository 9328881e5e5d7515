"""The common part of the local replay servers that stand in for the Funding & Tenders Portal in tests and demos.

A replay server is a stdlib :class:`~http.server.ThreadingHTTPServer` serving a service's data set. This
module holds what every replay has: the state's fault queue (fail the next N requests with a status and
an optional ``Retry-After``, hang them, or drop the connection) and request log; the handler's reply and
fault-injection helpers; the ``/_replay`` controls (``/faults``, ``/requests``, ``/reset``, plus the
service's own); the server's lifecycle (daemon thread, context manager); and the command line. A service
subclasses :class:`BaseReplayState`, :class:`BaseReplayHandler` and :class:`BaseReplayServer` and adds its
endpoints and data.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_replay"

FaultKind = Literal["error", "hang", "reset"]


@dataclass(frozen=True)
class Fault:
    """One queued failure: an HTTP error status, a hang, or a connection closed without answer.

    ``route`` limits it to one of the server's routes; None lets whichever request comes first take it.
    """

    kind: FaultKind
    route: str | None = None
    status: int = 500
    retry_after: str | None = None
    seconds: float = 30.0


@dataclass(frozen=True)
class Reply:
    """An HTTP response to send."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class Recorded(Protocol):
    """What a recorded request must have for fault injection to fill in (services use dataclasses)."""

    status: int
    fault: str | None


def json_reply(status: int, payload: Any, *, ensure_ascii: bool = True) -> Reply:
    """``payload`` as a JSON reply."""
    return Reply(status, json.dumps(payload, ensure_ascii=ensure_ascii).encode())


def query_params(query: str) -> dict[str, str]:
    """A URL's query as a dict; a repeated parameter keeps its last value."""
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


RecordT = TypeVar("RecordT", bound=Recorded)


class BaseReplayState(Generic[RecordT]):
    """Queued faults and recorded requests, shared by the handler threads; subclasses add the data.

    Subclasses guard their own fields with ``self._lock`` too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._requests: list[RecordT] = []
        self.stopping = threading.Event()
        """Set when the server stops: releases hanging requests."""

    # -- controls ---------------------------------------------------------------------------------

    def fail_next(
        self, count: int = 1, status: int = 500, retry_after: str | None = None, route: str | None = None
    ) -> None:
        """Answer the next ``count`` requests (of ``route``, or any) with this HTTP status."""
        self._queue(Fault("error", route=route, status=status, retry_after=retry_after), count)

    def hang_next(self, count: int = 1, seconds: float = 30.0, route: str | None = None) -> None:
        """Stall the next ``count`` requests for ``seconds`` (or until the server stops)."""
        self._queue(Fault("hang", route=route, seconds=seconds), count)

    def reset_next(self, count: int = 1, route: str | None = None) -> None:
        """Close the connection without answering the next ``count`` requests."""
        self._queue(Fault("reset", route=route), count)

    def clear_faults(self) -> None:
        """Drop queued faults."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RecordT]:
        """Requests received so far (a copy)."""
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

    def take_fault(self, route: str | None = None) -> Fault | None:
        """The next fault for ``route`` (any fault when None), removed from the queue."""
        with self._lock:
            for fault in self._faults:
                if route is None or fault.route in (None, route):
                    self._faults.remove(fault)
                    return fault
            return None

    def record(self, request: RecordT) -> None:
        """Log a request (the handler fills in its status afterwards)."""
        with self._lock:
            self._requests.append(request)


class BaseReplayHandler(BaseHTTPRequestHandler):
    """Reply helpers, the control route and fault injection; subclasses add ``do_GET``/``do_POST``."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; with Nagle on, each reply waits ~40 ms for an ACK.
    disable_nagle_algorithm = True
    server: _HTTPServer

    @property
    def app(self) -> BaseReplayServer[Any]:
        """The replay server this handler serves."""
        return self.server.app

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

    def _control(self, path: str, body: bytes) -> bool:
        """Answer a ``/_replay/...`` control request; False when ``path`` is not one."""
        if not path.startswith(CONTROL_PREFIX):
            return False
        self._send(self.app.control(path[len(CONTROL_PREFIX) :], body))
        return True

    def _inject_fault(self, record: Recorded, route: str | None = None) -> bool:
        """Apply the next queued fault for ``route`` to this request; False when none is queued."""
        state = self.app.state
        fault = state.take_fault(route)
        if fault is None:
            return False
        record.fault = fault.kind
        if fault.kind == "reset":
            self.close_connection = True
            return True
        if fault.kind == "hang":
            state.stopping.wait(fault.seconds)
            self.close_connection = True
            return True
        headers = (("Retry-After", fault.retry_after),) if fault.retry_after is not None else ()
        record.status = fault.status
        self._send(Reply(fault.status, self.app.error(fault.status, "injected failure").body, headers=headers))
        return True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseReplayHandler], app: BaseReplayServer[Any]) -> None:
        super().__init__(address, handler)
        self.app = app


StateT = TypeVar("StateT", bound=BaseReplayState[Any])


class BaseReplayServer(Generic[StateT]):
    """A replay app on a background thread (or the current one); port 0 picks a free port.

    Subclasses set ``handler``, ``controls`` (the names listed by the command line) and, when faults may
    name a route, ``fault_routes``; they answer their own controls in :meth:`data_control` and errors in
    their portal's shape in :meth:`error`.
    """

    handler: ClassVar[type[BaseReplayHandler]]
    controls: ClassVar[tuple[str, ...]] = ("faults", "requests", "reset")
    fault_routes: ClassVar[tuple[str, ...]] = ()
    """Routes a fault may be queued for over HTTP; empty: a ``route`` in ``/faults`` is ignored."""
    ensure_ascii: ClassVar[bool] = True

    def __init__(self, state: StateT, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self._server = _HTTPServer((host, port), self.handler, self)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """http://host:port"""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- replies ----------------------------------------------------------------------------------

    def json_reply(self, status: int, payload: Any) -> Reply:
        return json_reply(status, payload, ensure_ascii=self.ensure_ascii)

    def error(self, status: int, message: str) -> Reply:
        """An error reply shaped like the portal's."""
        return self.json_reply(status, {"status": status, "error": message})

    def control(self, action: str, body: bytes) -> Reply:
        """HTTP controls for a replay server running as a separate process."""
        try:
            args: Any = json.loads(body) if body.strip() else {}
        except ValueError:
            return self.error(400, "control body must be JSON")
        state = self.state
        if action == "/requests":
            return self.json_reply(200, [asdict(r) for r in state.requests])
        if action == "/faults":
            kind = args.get("kind", "error")
            count = int(args.get("count", 1))
            route = args.get("route") if self.fault_routes else None
            if route not in (None, *self.fault_routes):
                return self.error(400, "route must be " + " or ".join(f"'{r}'" for r in self.fault_routes))
            if kind == "hang":
                state.hang_next(count, float(args.get("seconds", 30)), route=route)
            elif kind == "reset":
                state.reset_next(count, route=route)
            else:
                state.fail_next(count, int(args.get("status", 500)), args.get("retry_after"), route=route)
            return self.json_reply(200, {"queued": count})
        if action == "/reset":
            state.clear_faults()
            state.clear_requests()
            return self.json_reply(200, {"reset": True})
        reply = self.data_control(action, args, body)
        return reply if reply is not None else self.error(404, f"no control {action}")

    def data_control(self, action: str, args: Any, body: bytes) -> Reply | None:
        """The service's own controls (its data set, ...); None when ``action`` is not one of them."""
        return None

    def describe(self, source: Path) -> list[str]:
        """What the command line prints before serving: the data and the URLs to configure."""
        return []


def replay_main(
    argv: Sequence[str] | None,
    server_class: type[BaseReplayServer[Any]],
    *,
    prog: str,
    description: str | None,
    default_port: int,
    default_data: Path,
    data_help: str,
) -> None:
    """Command line of a replay server: ``--host``, ``--port``, ``--data FILE``; serve until interrupted.

    ``server_class(data, host, port)`` builds the server.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--data", type=Path, default=default_data, help=data_help)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = server_class(args.data, args.host, args.port)
    for line in server.describe(args.data):
        print(line, flush=True)
    print(f"controls: {server.base_url}{CONTROL_PREFIX}/{{{','.join(server.controls)}}}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
