"""The fault proxy (tests/fault_proxy.py): its request framing (pure), then its answers on
loopback against a tiny TLS HTTP server, so that an e2e failure is never the proxy's own."""

from __future__ import annotations

import http.client
import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault_proxy import END, Proxy, RequestHead, RequestReader, error_response, parse_head
from tests.servers import ensure_tls


def head(raw: bytes) -> RequestHead:
    h = parse_head(raw)
    assert h is not None
    return h


# ------------------------------------------------------------------ framing, pure


def test_a_head_is_parsed():
    h = head(b"PUT /b/k?partNumber=2 HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n"
             b"Expect: 100-continue\r\n\r\n")
    assert (h.method, h.target, h.content_length, h.expects_continue) == (
        "PUT", "/b/k?partNumber=2", 5, True)
    assert h.line == "PUT /b/k?partNumber=2"
    assert head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").content_length == 0


@pytest.mark.parametrize("raw", [
    b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",  # cannot be framed here
    b"PUT /b HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"PUT /b HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"PUT /b HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
    b"GET /b\r\n\r\n",
    b"\x16\x03\x01\x02\x00\r\n\r\n",  # a TLS ClientHello is not HTTP
])
def test_what_cannot_be_framed_is_refused(raw):
    assert parse_head(raw) is None


def test_requests_are_split_at_any_byte_boundary():
    stream = (b"PUT /b/k HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
              b"GET /b/k HTTP/1.1\r\n\r\n"
              b"\r\nHEAD /b/k HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    for size in (1, 2, 7, len(stream)):
        reader = RequestReader()
        pieces = [p for i in range(0, len(stream), size) for p in reader.feed(stream[i:i + size])]
        heads = [p.line for p in pieces if isinstance(p, RequestHead)]
        assert heads == ["PUT /b/k", "GET /b/k", "HEAD /b/k"]
        assert b"".join(p for p in pieces if isinstance(p, bytes)) == b"hello\r\n"
        assert sum(p is END for p in pieces) == 3
        # every END follows its head and its whole body
        kinds = ["H" if isinstance(p, RequestHead) else "E" if p is END else "b" for p in pieces]
        assert "".join(kinds).replace("b", "") == "HEHEHE"
        assert not reader.lost


def test_a_stream_it_cannot_frame_is_passed_whole():
    reader = RequestReader()
    out = reader.feed(b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    assert reader.lost
    assert out == [b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"]
    assert reader.feed(b"GET / HTTP/1.1\r\n\r\n") == [b"GET / HTTP/1.1\r\n\r\n"]
    big = RequestReader()
    assert big.feed(b"x" * (RequestReader.MAX_HEAD + 1)) == [b"x" * (RequestReader.MAX_HEAD + 1)]
    assert big.lost


def test_the_error_reply_is_an_s3_error():
    reply = error_response(503, request_id="r1")
    head_part, body = reply.split(b"\r\n\r\n", 1)
    assert head_part.startswith(b"HTTP/1.1 503 Slow Down\r\n")
    assert b"Content-Length: %d" % len(body) in head_part
    assert b"Connection: close" in head_part
    assert b"<Code>SlowDown</Code>" in body
    assert b"<Code>InternalError</Code>" in error_response(500)
    assert error_response(500, head_only=True).endswith(b"\r\n\r\n")


# ------------------------------------------------------------------ the proxy, on loopback


class Quiet(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a connection the proxy cut: expected, and not worth a traceback


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers "METHOD PATH BODY-LENGTH" on kept-alive connections (Expect handled by the
    base class: it sends 100 Continue)."""

    protocol_version = "HTTP/1.1"

    def _reply(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        got = self.rfile.read(n)
        body = f"{self.command} {self.path} {len(got)}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = _reply

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    return ensure_tls(tmp_path / "tls")


@pytest.fixture
def upstream(tls) -> Iterator[int]:
    ca, crt, key = tls
    server = Quiet(("127.0.0.1", 0), Echo)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream, tls) -> Iterator[Proxy]:
    p = Proxy(upstream, tls=tls)
    yield p
    p.close()
    assert p.failures == []


def connect(proxy: Proxy, tls) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(tls[0]))
    return http.client.HTTPSConnection("127.0.0.1", proxy.port, context=ctx, timeout=10)


def ask(conn: http.client.HTTPConnection, method: str, path: str,
        body: bytes | None = None) -> tuple[int, bytes, str | None]:
    conn.request(method, path, body=body)
    r = conn.getresponse()
    return r.status, r.read(), r.getheader("Connection")


def test_requests_on_one_connection_are_passed_or_answered_one_by_one(proxy, tls):
    c = connect(proxy, tls)
    assert ask(c, "GET", "/b/one") == (200, b"GET /b/one 0", None)
    proxy.set_mode("error", budget=1, match=r"^PUT ")
    with pytest.raises(OSError):  # set_mode reset the open connection
        ask(c, "GET", "/b/one")
    c = connect(proxy, tls)
    assert ask(c, "GET", "/b/two")[:2] == (200, b"GET /b/two 0")
    kept = c.sock
    status, body, connection = ask(c, "PUT", "/b/two", b"x" * 100_000)  # body drained first
    assert (status, connection) == (503, "close")
    assert kept is not None and c.sock is None  # answered on the kept-alive connection
    assert b"<Code>SlowDown</Code>" in body
    assert ask(c, "PUT", "/b/two", b"abc")[:2] == (200, b"PUT /b/two 3")  # budget spent
    assert proxy.answered == 1 and proxy.answers == ["503 PUT /b/two"]


def test_a_request_expecting_100_continue_is_answered_without_its_body(proxy, tls):
    proxy.set_mode("error", status=500)
    ctx = ssl.create_default_context(cafile=str(tls[0]))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert reply.endswith(b"</Error>")
    c = connect(proxy, tls)
    status, body, _ = ask(c, "HEAD", "/b/k")
    assert (status, body) == (500, b"")  # a HEAD's answer has no body
    assert proxy.answers == ["500 PUT /b/k", "500 HEAD /b/k"]


def test_expect_100_continue_is_carried_when_passing(proxy, tls):
    ctx = ssl.create_default_context(cafile=str(tls[0]))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue\r\n")
        s.sendall(b"abc")
        assert read_until(s, b"PUT /b/k 3").startswith(b"HTTP/1.1 200 OK\r\n")


def read_until(s: socket.socket, end: bytes) -> bytes:
    got = b""
    while not got.endswith(end):
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    return got


def test_flaky_answers_replay_with_their_seed(proxy, tls):
    runs = []
    for _ in range(2):
        proxy.answers.clear()
        proxy.flaky(seed=7, rate=0.0, errors=0.5)
        for i in range(12):
            c = connect(proxy, tls)
            ask(c, "GET", f"/b/{i}")
            c.close()
        runs.append(list(proxy.answers))
    assert runs[0] == runs[1]
    assert 2 <= len(runs[0]) <= 10
    assert {a.split()[0] for a in runs[0]} <= {"500", "503"}


def test_without_tls_the_proxy_carries_bytes_and_cannot_answer(upstream, tls):
    p = Proxy(upstream)
    try:
        with pytest.raises(ValueError):
            p.set_mode("error")
        c = connect(p, tls)  # TLS end to end through the proxy
        assert ask(c, "PUT", "/b/k", b"abcd")[:2] == (200, b"PUT /b/k 4")
        p.set_mode("small", budget=1)
        c = connect(p, tls)
        with pytest.raises(OSError):
            ask(c, "PUT", "/b/k", b"x" * (p.limit + 1))
        assert p.cuts == 1 and p.broken == 1
    finally:
        p.close()
    assert p.failures == []
