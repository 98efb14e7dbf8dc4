"""A fast asyncio HTTP/1.1 target for benchmarks: ``python -m tests.support.fastserver --delay-ms N``.

http.server spends a thread per connection and tops out at a few hundred requests a second
on two cores, which would measure the target instead of urltester. This one answers any
GET/HEAD with a small page after ``delay`` ms (or the URL's own ``?ms=N``), with keep-alive, on one event loop.
Prints its port, then serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import re

BODY = b"<html><head><title>ok page</title></head><body>OK</body></html>"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
MS = re.compile(rb"[?&]ms=([0-9]+(?:\.[0-9]+)?)")
HEAD_RESPONSE = RESPONSE[: RESPONSE.index(b"\r\n\r\n") + 4]


class _Protocol(asyncio.Protocol):
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            response = HEAD_RESPONSE if head.startswith(b"HEAD ") else RESPONSE
            delay = self.delay
            if (own := MS.search(head.split(b"\r\n", 1)[0])) is not None:
                delay = float(own.group(1)) / 1000  # this URL's own latency (?ms=N)
            if delay:
                asyncio.get_running_loop().call_later(delay, self._send, response)
            else:
                self._send(response)

    def _send(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


async def serve(delay_ms: float, address: str = "127.0.0.1") -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Protocol(delay_ms / 1000), address, 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--address", default="127.0.0.1",
                        help="Address to listen on (the fleet harness gives its own).")
    args = parser.parse_args()
    asyncio.run(serve(args.delay_ms, args.address))


if __name__ == "__main__":
    main()
