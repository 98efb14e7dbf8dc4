"""The HTTP/1.1 connection of ``runner serve``: uvicorn's h11 protocol with the bounds it lacks.

uvicorn closes a keep-alive connection that stays silent after an answer
(``timeout_keep_alive``), but a connection that never finishes its headers (slowloris),
or that sends them and then trickles its body, is kept for ever, and nothing caps how many
connections one process holds until it runs out of descriptors. Here, on every connection:

- a **header timeout**: the request's headers complete within ``header_timeout`` seconds of
  the connection opening (or of the previous answer), or the connection gets ``408`` and is
  closed;
- an **idle timeout**: a request body silent for ``idle_timeout`` seconds closes the
  connection (uvicorn's own keep-alive timeout, set to the same figure, covers the silence
  between requests);
- a **connection limit**: past ``max_connections`` open connections in this process, a new
  one is answered ``503`` with ``Retry-After`` at once and closed, so its descriptor is free
  again before the next accept.

The limits come from :class:`runner.api.config.ApiConfig` carried on uvicorn's Config (it
is pickled to worker processes with it). Refusals are logged at most once a minute each,
with how many there were.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from runner.api.config import DEFAULT_CONFIG, ApiConfig

log = logging.getLogger("urltester.api")



def _raw_answer(status: str, detail: str, *headers: str) -> bytes:
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    head = [f"HTTP/1.1 {status}", "content-type: application/json", *headers, "connection: close",
            f"content-length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


REFUSED = _raw_answer("503 Service Unavailable", "too many open connections; retry shortly", "retry-after: 1")
TIMED_OUT = _raw_answer("408 Request Timeout", "request headers not complete in time")


class RateLimitedLog:
    """One line per ``every`` seconds for a repeated event, saying how many happened."""

    def __init__(self, message: str, every: float = 60.0) -> None:
        self.message = message
        self.every = every
        self.count = 0
        self.last = float("-inf")

    def __call__(self, *args: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            log.warning(self.message + " (%d since the last report)", *args, self.count)
            self.count = 0
            self.last = now


_refused = RateLimitedLog("connection refused: %d open connections is the limit (URLTESTER_API_MAX_CONNECTIONS)")
_timed_out = RateLimitedLog("connection closed: no complete request within %.1f s")


class BoundedH11Protocol(H11Protocol):
    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.bounds: ApiConfig = getattr(config, "urltester_bounds", DEFAULT_CONFIG)
        self._deadline: asyncio.TimerHandle | None = None
        self._last_data = 0.0

    # uvicorn's protocol declares BaseTransport; asyncio hands a stream protocol a Transport
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.bounds.max_connections:
            _refused(self.bounds.max_connections)
            transport.write(REFUSED)
            transport.close()
            return
        self._last_data = self.loop.time()
        self._arm(self.bounds.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is h11.SEND_BODY:
            if self._deadline is None or self._waiting_for_headers:
                self._arm(self.bounds.idle_timeout, headers=False)
        elif self.conn.their_state is not h11.IDLE:
            self._disarm()  # the whole request is in: the app's answer may take its time

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm(self.bounds.header_timeout)  # the next request's headers, in time too

    # ------------------------------------------------------------------ timers

    _waiting_for_headers = True

    def _arm(self, delay: float, *, headers: bool = True) -> None:
        self._disarm()
        self._waiting_for_headers = headers
        self._deadline = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE and self._waiting_for_headers and (self.cycle is None or self.cycle.response_complete):
            _timed_out(self.bounds.header_timeout)
            self.transport.write(TIMED_OUT)
            self.transport.close()
        elif state is h11.SEND_BODY:
            silent = self.loop.time() - self._last_data
            if self.flow.read_paused or silent < self.bounds.idle_timeout:
                # The app has not read what came (reading is paused), or data came lately: look again.
                self._arm(max(0.1, self.bounds.idle_timeout - silent), headers=False)
            else:
                _timed_out(self.bounds.idle_timeout)
                self.transport.close()  # the app's receive() then says the client went away


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio reports each failed accept (out of descriptors: EMFILE) with a traceback; say
    it in one line a minute instead, and leave everything else to the default handler."""
    out_of_descriptors = RateLimitedLog("cannot accept connections: %s; raise LimitNOFILE or lower "
                                        "URLTESTER_API_MAX_CONNECTIONS")

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in str(context.get("message", "")):
            out_of_descriptors(exc.strerror or type(exc).__name__)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
