"""LoopHttp (store/loop_http.py) against a scripted TLS server on loopback: kept-alive
connections, a connection the server closed while idle, answers it cannot read, timeouts and
an untrusted certificate. Its S3 requests on the real servers: tests/e2e/test_lean_head.py."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from ssecfs.store.loop_http import LoopHttp
from tests.servers import ensure_tls

# (connection number, request number on it, request head, body) -> (answer, close after)
Script = Callable[[int, int, bytes, bytes], tuple[bytes, bool]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: \"e\"\r\n\r\n"


class ScriptedServer:
    def __init__(self, tls: tuple[Path, Path, Path], script: Script) -> None:
        _, crt, key = tls
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(crt, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            n = self.connections
            self.connections += 1
            threading.Thread(target=self._serve, args=(raw, n), daemon=True).start()

    def _serve(self, raw: socket.socket, n: int) -> None:
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
            buf, i = b"", 0
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.requests.append((head, body))
                answer, close = self.script(n, i, head, body)
                i += 1
                if answer:
                    conn.sendall(answer)
                if close:
                    conn.close()
                    return
        except OSError:
            return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    return ensure_tls(tmp_path / "tls")


@pytest.fixture
def serve(tls: tuple[Path, Path, Path]) -> Iterator[Callable[[Script], ScriptedServer]]:
    started: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        started.append(ScriptedServer(tls, script))
        return started[-1]
    yield start
    for s in started:
        s.close()


def client(tls: tuple[Path, Path, Path], server: ScriptedServer, read_timeout: float = 5,
           trusted: bool = True) -> LoopHttp:
    ctx = ssl.create_default_context(cafile=str(tls[0])) if trusted \
        else ssl.create_default_context()
    return LoopHttp("127.0.0.1", server.port, ctx, 4, 5, read_timeout)


def run(http: LoopHttp, *requests: tuple[str, bytes]) -> list[object]:
    async def go() -> list[object]:
        out: list[object] = []
        for method, body in requests:
            headers = {"Host": "x", **({"Content-Length": str(len(body))} if body else {})}
            out.append(await http.request(method, "/b/k?x=1", headers, body))
        return out
    return trio.run(go)


def test_answers_come_back_on_one_kept_alive_connection(tls, serve) -> None:
    server = serve(lambda n, i, head, body: (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Amz-Meta-A: 1\r\nx-amz-meta-a: 2\r\n"
        b"\r\n" + (b"" if head.startswith(b"HEAD") else b"hi"), False))
    got = run(client(tls, server), ("HEAD", b""), ("PUT", b"data"), ("HEAD", b""))
    assert [a.status for a in got] == [200, 200, 200]  # type: ignore[attr-defined]
    assert got[0].headers["x-amz-meta-a"] == "1, 2"  # type: ignore[attr-defined]
    assert server.connections == 1  # the PUT's 2-byte body was read past, not left behind
    assert server.requests[1][0].startswith(b"PUT /b/k?x=1 HTTP/1.1\r\n")
    assert server.requests[1][1] == b"data"


def test_a_connection_closed_while_idle_is_replaced(tls, serve) -> None:
    # the server closes each connection after its first answer without saying so
    server = serve(lambda n, i, head, body: (OK, True))
    got = run(client(tls, server), ("HEAD", b""), ("HEAD", b""), ("PUT", b"x"))
    assert [a.status for a in got] == [200, 200, 200]  # type: ignore[attr-defined]
    assert server.connections == 3


@pytest.mark.parametrize("answer", [
    b"garbage\r\n\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n bad folded line\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n",
])
def test_an_answer_it_cannot_read_is_none(tls, serve, answer: bytes) -> None:
    server = serve(lambda n, i, head, body: (answer, False))
    assert run(client(tls, server), ("HEAD", b"")) == [None]


@pytest.mark.parametrize(("method", "answer", "status"), [
    ("HEAD", OK[:-2] + b"\r\nstray", 200),  # a HEAD answered with a body
    ("HEAD", b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n", 404),
    ("PUT", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
     200),  # a body framing it does not read
])
def test_a_connection_it_cannot_keep_is_not_reused(tls, serve, method: str, answer: bytes,
                                                     status: int) -> None:
    server = serve(lambda n, i, head, body: (answer, False))
    body = b"x" if method == "PUT" else b""
    got = run(client(tls, server), (method, body), (method, body))
    assert [a.status for a in got] == [status, status]  # type: ignore[attr-defined]
    assert server.connections == 2


def test_no_answer_in_time_is_none(tls, serve) -> None:
    server = serve(lambda n, i, head, body: (b"", False))
    assert run(client(tls, server, read_timeout=0.3), ("HEAD", b"")) == [None]


def test_a_certificate_it_does_not_trust_is_refused(tls, serve) -> None:
    server = serve(lambda n, i, head, body: (OK, False))
    assert run(client(tls, server, trusted=False), ("HEAD", b"")) == [None]
    assert server.requests == []


def test_connections_of_an_earlier_trio_run_are_not_reused(tls, serve) -> None:
    server = serve(lambda n, i, head, body: (OK, False))
    http = client(tls, server)
    run(http, ("HEAD", b""))
    run(http, ("HEAD", b""))
    assert server.connections == 2
