"""Keep-alive connections the server closes: a stale reused connection is not a failure.

The server here answers the first request of each connection and resets the connection
(RST, no byte of a response) on the second, the way a server that closes an idle
keep-alive connection meets a client that reuses it at that moment.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Iterator

import pytest

from runner.check.checker import Checker
from runner.check.options import parse_options

from .conftest import Certs, Server, _listen, _read_head, _send, _serve


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _one_request_then_reset(conn: socket.socket) -> None:
    try:
        if not _read_head(conn):
            return
        _send(conn, "200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")], b"ok")
        if _read_head(conn):        # the reused connection's request: no answer, a reset
            _reset(conn)
            return
    except OSError:
        pass
    conn.close()


def _reset_at_once(conn: socket.socket) -> None:
    try:
        _read_head(conn)
        _reset(conn)
    except OSError:
        conn.close()


def _server(handler) -> Iterator[Server]:
    listener = _listen()
    threading.Thread(target=_serve, args=(listener, handler), daemon=True).start()
    yield Server(port=listener.getsockname()[1])
    listener.close()


@pytest.fixture(scope="module")
def resets_second() -> Iterator[Server]:
    yield from _server(_one_request_then_reset)


@pytest.fixture(scope="module")
def resets_first() -> Iterator[Server]:
    yield from _server(_reset_at_once)


def _tls_one_request_then_close(context: ssl.SSLContext):
    def handle(raw: socket.socket) -> None:
        try:
            conn = context.wrap_socket(raw, server_side=True)
            if _read_head(conn):
                _send(conn, "200 OK", [("Content-Length", "2")], b"ok")
                _read_head(conn)      # then close without close_notify, as many servers do
        except (OSError, ssl.SSLError):
            pass
        raw.close()
    return handle


@pytest.fixture(scope="module")
def tls_closes_second(certs: Certs) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.good[0]), str(certs.good[1]))
    for server in _server(_tls_one_request_then_close(context)):
        server.scheme, server.host = "https", "localhost"
        yield server


ONE_TRY = parse_options({"retries": "1", "deadline": "5"})


def test_stale_keepalive_connection_is_resent_not_failed(checker: Checker, resets_second: Server) -> None:
    results = [checker.check(resets_second.url(f"/page/{i}"), ONE_TRY) for i in range(40)]
    outcomes = [r.outcome for r in results]
    assert outcomes == ["ok"] * 40, [r.error for r in results if not r.ok]
    assert not any(r.flaky for r in results)
    assert {r.attempts for r in results} == {1}
    assert results[0].stale_connection_retried == 0
    # Every later check met the previous check's connection, which the server reset.
    assert all(r.stale_connection_retried == 1 for r in results[1:])
    assert all(r.reused is False for r in results)       # the answer came on a new connection
    assert results[5].as_dict()["stale_connection_retried"] == 1   # recorded in the detail


def test_reset_on_a_new_connection_is_still_a_failure(checker: Checker, resets_first: Server) -> None:
    result = checker.check(resets_first.url("/"), ONE_TRY)
    assert result.outcome == "invalid_response"
    assert "connection reset by the server" in (result.error or "")
    assert result.stale_connection_retried == 0 and result.attempts == 1


def test_reset_after_the_response_began_is_not_resent(checker: Checker, hostile: Server) -> None:
    # /reset sends headers and part of the body, then resets: bytes came, so no re-send.
    checker.check(hostile.url("/ok"), ONE_TRY)          # leave a connection to reuse
    result = checker.check(hostile.url("/reset"), ONE_TRY)
    assert result.outcome == "invalid_response"
    assert result.stale_connection_retried == 0


def test_stale_tls_connection_closed_without_close_notify(certs: Certs, tls_closes_second: Server) -> None:
    # An EOF without TLS close_notify on a reused connection is the same stale close,
    # not a TLS error.
    checker = Checker(ca_bundle=str(certs.ca))
    try:
        results = [checker.check(tls_closes_second.url(f"/{i}"), ONE_TRY) for i in range(5)]
    finally:
        checker.close()
    assert [r.outcome for r in results] == ["ok"] * 5, [r.error for r in results]
    assert [r.stale_connection_retried for r in results] == [0, 1, 1, 1, 1]
