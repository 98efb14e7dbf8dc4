"""A TCP proxy the fault tests put between a worker and RabbitMQ or PostgreSQL.

The services are shared with other engineers' tests, so a test may never restart them or
close every connection on them. Instead the worker under test connects through this proxy,
and the test cuts *its* connections (``cut``) and refuses new ones for a while
(``outage``): to the worker that is exactly a server gone away and back.

The fleet harness (tests/fleet) also puts it between worker hosts (network namespaces)
and the services, listening on an address of its own (``listen_host``) and delaying
every byte by ``delay`` seconds in each direction (a WAN: 20 ms one way by default
there), without limiting throughput: chunks are timestamped as they arrive and written
in order once their time has come.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Proxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, listen_host: str = "127.0.0.1",
                 delay: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.delay = delay
        self.down = False
        self.accepted = 0
        self.refused = 0
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, self.listen_host, 0, backlog=1024))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()

        async def cancel_rest() -> None:
            rest = asyncio.all_tasks() - {asyncio.current_task()}
            for task in rest:
                task.cancel()
            await asyncio.wait(rest, timeout=2) if rest else None  # let them finish cancelling

        self._call(cancel_rest())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro):  # run a coroutine on the proxy's loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def url(self, scheme_and_creds: str, path: str) -> str:
        return f"{scheme_and_creds}{self.listen_host}:{self.port}{path}"

    def upstream_ports(self) -> set[int]:
        """Local ports of the proxy's connections to the service (the service's peer ports)."""
        async def ports() -> set[int]:
            return {up.get_extra_info("sockname")[1] for _, up in self._pairs if up.get_extra_info("sockname")}
        return self._call(ports())

    def cut(self) -> int:
        """Close every connection through the proxy (both ends); returns how many."""
        async def close_all() -> int:
            pairs = list(self._pairs)
            for down, up in pairs:
                for w in (down, up):
                    w.transport.abort()
            self._pairs.clear()
            return len(pairs)
        return self._call(close_all())

    @contextmanager
    def outage(self, seconds: float | None) -> Iterator[None]:
        """Refuse (accept, then drop at once) new connections and cut the open ones for
        ``seconds``, or, with None, for as long as the body runs; the body runs at the
        start of the outage."""
        self.down = True
        self.cut()
        until = time.monotonic() + (seconds or 0.0)
        try:
            yield
            time.sleep(max(0.0, until - time.monotonic()))  # the outage lasts its length: under test
        finally:
            self.down = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            if self.delay > 0:
                await asyncio.gather(_delayed_pipe(reader, up_writer, self.delay),
                                     _delayed_pipe(up_reader, writer, self.delay))
            else:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the proxy is closing
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


async def _delayed_pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Like _pipe, each chunk written ``delay`` seconds after it was read (order kept)."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await reader.read(65536):
                chunks.put_nowait((loop.time() + delay, data))
        except (ConnectionError, OSError):
            pass
        finally:
            chunks.put_nowait((loop.time() + delay, None))

    async def write() -> None:
        try:
            while True:
                due, data = await chunks.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    reading = asyncio.ensure_future(read())
    try:
        await write()
    finally:
        reading.cancel()
