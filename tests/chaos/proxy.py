"""A TCP proxy that adds latency: ``tc netem`` does not exist on these machines, so delay is added here.

Every chunk read from one side is written to the other ``delay_s`` later, in order (a FIFO per direction
with due times), which is what a slow link does to a byte stream. The delay can be changed while
connections are open. The proxies run on their own event loop in a thread, so the load generator's work
does not add jitter to the delay it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
CHUNK = 64 * 1024


@dataclass
class LatencyProxy:
    """Listens on ``listen_port`` and forwards to ``upstream_port`` on 127.0.0.1, ``delay_s`` late."""

    name: str
    listen_port: int
    upstream_port: int
    delay_s: float = 0.0
    connections: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError as exc:
            # The upstream is down (a killed broker): the client sees the connection close, as it would.
            log.debug("%s: upstream %d refused: %r", self.name, self.upstream_port, exc)
            client_w.close()
            return
        self.connections += 1
        pumps = [
            asyncio.ensure_future(self._pump(client_r, up_w)),
            asyncio.ensure_future(self._pump(up_r, client_w)),
        ]
        for pump in pumps:
            self._tasks.add(pump)
            pump.add_done_callback(self._tasks.discard)
        # One side closing closes the other: a half-open proxied connection would hang the client.
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for writer in (client_w, up_w):
            writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                chunk = await reader.read(CHUNK)
                await queue.put((time.monotonic() + self.delay_s, chunk))
                if not chunk:
                    break
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender


class ProxyHost:
    """Runs proxies on a private event loop in a daemon thread; methods are called from any thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxies", daemon=True)
        self._thread.start()
        self.proxies: dict[str, LatencyProxy] = {}

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def add(self, name: str, *, listen_port: int, upstream_port: int) -> LatencyProxy:
        proxy = LatencyProxy(name, listen_port, upstream_port)
        self._run(proxy.start())
        self.proxies[name] = proxy
        return proxy

    def set_delay(self, prefix: str, delay_s: float) -> list[str]:
        """Set the delay of every proxy whose name starts with ``prefix``; returns their names."""
        names = [n for n in self.proxies if n.startswith(prefix)]
        if not names:
            raise KeyError(f"no proxy named {prefix}*")
        for name in names:
            # A float assignment is atomic; the pumps read it per chunk.
            self.proxies[name].delay_s = delay_s
        return names

    def close(self) -> None:
        for proxy in self.proxies.values():
            self._run(proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
