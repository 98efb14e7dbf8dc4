"""A fast HTTP target for the fault suite that counts every request it answers.

``python -m tests.faults.target``: prints its port, then serves until killed. One asyncio
loop (http.server's thread per connection would measure the target, not urltester):

* any path answers 200 with a small page; ``/status/NNN`` answers NNN;
* ``?ms=N`` waits N ms before answering (keep-alive connections stay usable meanwhile);
* ``GET /__hits`` returns ``{"path?query": count, ...}`` for every other request so far,
  which is how a test sees whether a URL was checked twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from urllib.parse import parse_qs, urlsplit

BODY = b"<html><head><title>ok page</title></head><body>OK</body></html>"
HITS: Counter[str] = Counter()


def _response(status: int, body: bytes, head_only: bool) -> bytes:
    head = (f"HTTP/1.1 {status} X\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head if head_only else head + body


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target = head.split(b" ", 2)[:2]
            parts = urlsplit(target.decode("latin-1"))
            if parts.path == "/__hits":
                writer.write(_response(200, json.dumps(HITS).encode(), False))
                await writer.drain()
                continue
            HITS[f"{parts.path}?{parts.query}" if parts.query else parts.path] += 1
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if "ms" in query:
                await asyncio.sleep(float(query["ms"]) / 1000)
            status = 200
            body = BODY
            if parts.path.startswith("/status/"):
                status = int(parts.path.split("/")[2])
                body = f"status {status}".encode()
            writer.write(_response(status, body, method == b"HEAD"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def main_async() -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    asyncio.run(main_async())


if __name__ == "__main__":
    main()
