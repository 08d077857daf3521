"""Slow and vanishing clients against a real `railguard serve` (stub upstream), over raw sockets.

Headers or a body that stall or trickle are cut off within the configured bound (1 s here) with a 408 in
OpenAI's shape and the connection closed; a connection that sends nothing is closed; oversize headers
get a 431. Clients that hang up mid-body or mid-stream are handled quietly: no traceback in the
server's log, their slots freed (the key may have two requests in flight, and later ones are answered).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.servers import gateway, stub_upstream

pytestmark = pytest.mark.integration

BOUND_S = 1.0
SLACK_S = 1.0  # scheduling on a busy machine; the point is "about the bound", not "after 100 s"
CHAT = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("slow")
    with stub_upstream(token_delay_ms=20) as upstream:
        config = tmp / "railguard.yaml"
        limits = {"header_read_timeout_s": BOUND_S, "body_read_timeout_s": BOUND_S, "max_concurrency": 2,
                  "max_header_bytes": 8192}  # fmt: skip
        config.write_text(
            yaml.safe_dump(
                {"upstream": {"url": upstream}, "classifiers": {"enabled": False}, "limits": limits}
            )
        )
        with gateway(config, cache_dir=tmp) as url:
            port = int(url.rsplit(":", 1)[1])
            yield {"url": url, "port": port, "log": tmp / f"gateway-{port}.log"}


def _connect(served: dict[str, Any]) -> socket.socket:
    return socket.create_connection(("127.0.0.1", served["port"]), timeout=10)


def _read_until_closed(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def _error(reply: bytes, status: int) -> dict[str, Any]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), reply[:300]
    assert b"connection: close" in head.lower(), head
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


def _trickle(sock: socket.socket, piece: bytes, every_s: float, for_s: float) -> float:
    """Send `piece` every `every_s` until the server stops taking it (or `for_s`); when it stopped."""
    started = time.monotonic()
    try:
        while time.monotonic() - started < for_s:
            sock.sendall(piece)
            time.sleep(every_s)
    except OSError:  # the server closed the connection: a broken pipe or a reset
        pass
    return time.monotonic() - started


def _assert_quiet(served: dict[str, Any]) -> None:
    time.sleep(0.3)  # let the server write what it would
    log = served["log"].read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_a_stalled_body_gets_a_408_within_the_bound(served: dict[str, Any]) -> None:
    with _connect(served) as sock:
        sock.sendall(CHAT + b"Content-Length: 1000\r\n\r\n" + b'{"model": "stub-model"')
        reply, took = _read_until_closed(sock)
    assert BOUND_S * 0.9 < took < BOUND_S + SLACK_S, took
    assert _error(reply, 408)["code"] == "request_timeout"
    _assert_quiet(served)


def test_a_trickled_body_is_cut_off_at_the_bound_not_kept_alive_by_each_byte(served: dict[str, Any]) -> None:
    with _connect(served) as sock:
        sock.sendall(CHAT + b"Content-Length: 100000\r\n\r\n")
        took = _trickle(sock, b" ", every_s=0.05, for_s=10)
        reply, _ = _read_until_closed(sock)
    assert took < BOUND_S + SLACK_S, took
    assert _error(reply, 408)["code"] == "request_timeout"


def test_stalled_or_trickled_headers_get_a_408_within_the_bound(served: dict[str, Any]) -> None:
    with _connect(served) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")
        reply, took = _read_until_closed(sock)
    assert BOUND_S * 0.9 < took < BOUND_S + SLACK_S, took
    assert _error(reply, 408)["code"] == "request_timeout"
    with _connect(served) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
        took = _trickle(sock, b"X-Slow: 1\r\n", every_s=0.05, for_s=10)
        reply, _ = _read_until_closed(sock)
    assert took < BOUND_S + SLACK_S, took
    assert _error(reply, 408)["code"] == "request_timeout"


def test_a_connection_that_sends_nothing_is_closed(served: dict[str, Any]) -> None:
    with _connect(served) as sock:
        reply, took = _read_until_closed(sock)
    assert reply == b"" and took < BOUND_S + SLACK_S, took


def test_oversize_headers_get_a_431(served: dict[str, Any]) -> None:
    with _connect(served) as sock:  # in one piece
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n")
        reply, _ = _read_until_closed(sock)
    assert _error(reply, 431)["code"] == "request_header_fields_too_large"
    with _connect(served) as sock:  # never ending
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        _trickle(sock, b"X-More: " + b"a" * 1000 + b"\r\n", every_s=0.01, for_s=5)
        reply, took = _read_until_closed(sock)
    assert _error(reply, 431)["code"] == "request_header_fields_too_large" and took < BOUND_S


def test_a_body_sent_in_pieces_within_the_bound_is_answered(served: dict[str, Any]) -> None:
    body = json.dumps({"model": "stub-model", "messages": [{"role": "user", "content": "say: in time"}]})
    with _connect(served) as sock:
        sock.sendall(CHAT + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        for i in range(0, len(body), 20):
            sock.sendall(body[i : i + 20].encode())
            time.sleep(0.1)
        reply, _ = _read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:300]
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["choices"][0]["message"]["content"] == "in time"


def test_clients_that_leave_mid_body_or_mid_stream_are_handled_quietly(served: dict[str, Any]) -> None:
    long = "say: " + " ".join(["word"] * 200)  # ~4 s of stream at the stub's 20 ms a word
    body = json.dumps(
        {"model": "stub-model", "stream": True, "messages": [{"role": "user", "content": long}]}
    )
    for _ in range(3):  # more than the two requests the key may have in flight
        with _connect(served) as sock:  # gone mid-body
            sock.sendall(CHAT + b"Content-Length: 1000\r\n\r\n" + b'{"model": "stu')
            time.sleep(0.1)
        with _connect(served) as sock:  # gone mid-stream
            sock.sendall(CHAT + f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
            assert sock.recv(200).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.2)
    time.sleep(0.5)
    small = {"model": "stub-model", "messages": [{"role": "user", "content": "say: still here"}]}
    r = httpx.post(served["url"] + "/v1/chat/completions", json=small, timeout=10)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "still here"
    metrics = httpx.get(served["url"] + "/metrics").text
    closed = [
        line
        for line in metrics.splitlines()
        if line.startswith("railguard_requests_total{") and 'status="499"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in closed) >= 6, closed
    _assert_quiet(served)
