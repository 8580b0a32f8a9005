"""A fault-injecting proxy between ssecfs and a test server (127.0.0.1 only).

Modes (`Proxy.set_mode`):

- "pass": carry everything both ways.
- "refuse": accept and reset at once (the server is "down").
- "stall": accept and never answer (a hung gateway): the client's timeout must act.
- `delay` (seconds, any mode): each chunk the server sends is held that long (a slow link).
- "small": reset a connection after `limit` bytes from the client (large request bodies fail,
  small requests such as AbortMultipartUpload still pass).
- "cut_down": reset it after `limit` bytes from the server (a GET's body is cut after its
  headers).
- "error": answer requests itself with an S3 error (503 SlowDown by default; 500, 408, 429,
  502 or 504 on request), as a
  throttling or failing server does; optionally only requests whose line ("PUT /b/k?...")
  matches a pattern. Needs TLS termination (below).
- "flaky" (`Proxy.flaky`): a seeded share of connections is cut after a random number of
  bytes in either direction, and a seeded share of requests is answered 503 or 500. The
  draws come from one `random.Random(seed)`, so a failing seed replays.

With `budget`, only that many connections (for "error": answered requests) get the mode,
then the proxy passes again. `connections`, `broken` (connections refused, stalled or given a
limit to be cut at), `cuts` (connections actually cut) and `answered` (requests answered with
an error; `answers` lists them as "503 PUT /bucket/key") prove that a fault happened.

Theory of operation. One trio event loop in a daemon thread serves every connection; the
test's thread changes the mode under a lock, and `set_mode` resets the open connections
(from inside the loop), so a pooled connection cannot slip a request through in the old mode.
Each carried connection is two tasks, client -> server and server -> client. Without `tls`
the proxy carries TCP bytes, and TLS runs end to end through it (the server's certificate is
for 127.0.0.1, which the proxy's address is too): it can cut, refuse and stall, but not see a
request. With `tls=(ca.crt, server.crt, server.key)` (tests/servers.py `ensure_tls`) it ends
the client's TLS with the server's own certificate, which the mount, verifying against the
test CA, accepts, and opens a new TLS connection to the server for each client connection.
Then `RequestReader` (sans-io, below) splits the client's bytes into request heads and bodies
(Content-Length framing, all that boto3 sends), and each request is passed or answered as it
comes, also on a kept-alive connection. An answer is the whole reply: a request that announced
`Expect: 100-continue` (boto3 does for every PutObject and UploadPart) is answered at its
head, which HTTP allows (the client then does not send the body); otherwise its body is read
and dropped first. Then the connection is closed ("Connection: close"), as an S3 front end may
do. A request the reader cannot frame (Transfer-Encoding) is passed, and so is the rest of its
connection. Replies from the server are not parsed: they are carried, and cut when asked.
The byte limits count what the proxy sees: plaintext when it ends TLS, TLS records when not.
A refused or stalled connection never gets as far as a TLS handshake.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio

CHUNK = 65536
MODES = ("pass", "refuse", "small", "cut_down", "flaky", "stall", "error")

# status -> reason phrase, S3 error code, message (as AWS words them)
ERRORS = {
    500: ("Internal Server Error", "InternalError",
          "We encountered an internal error. Please try again."),
    503: ("Slow Down", "SlowDown", "Please reduce your request rate."),
    408: ("Request Timeout", "RequestTimeout",
          "Your socket connection to the server was not read from or written to within the "
          "timeout period."),
    429: ("Too Many Requests", "TooManyRequests", "Please reduce your request rate."),
    502: ("Bad Gateway", "BadGateway", "The gateway got no valid answer."),
    504: ("Gateway Timeout", "GatewayTimeout", "The gateway timed out."),
}

# one direction of a connection: (conn, src, dst, byte limit)
Pump = Callable[["_Conn", trio.abc.Stream, trio.abc.Stream, "int | None"], Awaitable[None]]

# what ends one connection without being a fault of the proxy
_NETWORK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                   trio.TooSlowError)


# --------------------------------------------------------------------------- HTTP, sans-io


def error_response(status: int, *, head_only: bool = False, request_id: str = "fault") -> bytes:
    """A complete S3 error reply that closes the connection; `head_only` for a HEAD request
    (the headers announce the body's length, the body is not sent)."""
    reason, code, message = ERRORS[status]
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>").encode()
    head = (f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-amz-request-id: {request_id}\r\n"
            "Connection: close\r\n"
            "\r\n").encode()
    return head if head_only else head + body


@dataclass(frozen=True)
class RequestHead:
    """A request's line and headers as the client sent them (`raw`, passed on unchanged)."""

    raw: bytes
    method: str
    target: str
    content_length: int
    expects_continue: bool

    @property
    def line(self) -> str:
        """"PUT /bucket/key?partNumber=2": what `match` patterns are matched against. Holds
        no header, so no key material."""
        return f"{self.method} {self.target}"


@dataclass(frozen=True)
class RequestEnd:
    """The request last announced by a `RequestHead` has all its body."""


END = RequestEnd()
Piece = RequestHead | RequestEnd | bytes


def parse_head(raw: bytes) -> RequestHead | None:
    """The head of one request (ending in an empty line), or None when it is not one this
    proxy can frame: malformed, chunked or otherwise transfer-encoded."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        return None
    lengths: set[str] = set()
    expects = False
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or name != name.strip():
            return None
        name, value = name.lower(), value.strip()
        if name == "transfer-encoding":
            return None
        if name == "content-length":
            lengths.add(value)
        elif name == "expect":
            expects = value.lower() == "100-continue"
    if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
        return None
    return RequestHead(raw=raw, method=parts[0], target=parts[1],
                       content_length=int(lengths.pop()) if lengths else 0,
                       expects_continue=expects)


class RequestReader:
    """Splits the bytes a client sends into pieces: a `RequestHead` once a head is complete,
    `bytes` of a body, `END` once a body is complete. Bytes it cannot frame make it `lost`:
    they, and everything after them, come out as `bytes`. Pure: no I/O."""

    MAX_HEAD = 64 * 1024

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left: int | None = None  # body bytes still to come; None: between requests
        self.lost = False

    def feed(self, data: bytes | bytearray) -> list[Piece]:
        if self.lost:
            return [bytes(data)] if data else []
        out: list[Piece] = []
        self._buf += data
        while self._buf:
            if self._left is not None:
                n = min(self._left, len(self._buf))
                out.append(bytes(self._buf[:n]))
                del self._buf[:n]
                self._left -= n
                if self._left == 0:
                    out.append(END)
                    self._left = None
                continue
            if self._buf.startswith(b"\r\n"):  # an empty line between requests is allowed
                out.append(b"\r\n")
                del self._buf[:2]
                continue
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self.MAX_HEAD:
                    out.append(self._lose())
                break
            raw = bytes(self._buf[:end + 4])
            head = parse_head(raw)
            if head is None:
                out.append(self._lose())
                break
            del self._buf[:end + 4]
            out.append(head)
            if head.content_length:
                self._left = head.content_length
            else:
                out.append(END)
        return out

    def _lose(self) -> bytes:
        self.lost = True
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


# --------------------------------------------------------------------------- the proxy


class _Conn:
    """One client connection and, once made, its connection to the server."""

    def __init__(self, client: trio.SocketStream) -> None:
        self.client = client
        self.upstream: trio.SocketStream | None = None
        self.scope = trio.CancelScope()
        self.reset = False  # end with an RST (a fault), not a FIN
        self.client_send = trio.Lock()  # both tasks may write to the client

    def end(self, *, reset: bool) -> None:
        self.reset = self.reset or reset
        self.scope.cancel()

    def close(self) -> None:
        for s in (self.client, self.upstream):
            if s is not None:
                _close(s.socket, reset=self.reset)


class Proxy:
    """127.0.0.1 proxy in front of one port of a test server (see the module docstring).
    With `tls` (ca.crt, server.crt, server.key) it terminates TLS and can answer requests."""

    def __init__(self, target_port: int, limit: int = 256 * 1024,
                 tls: tuple[Path, Path, Path] | None = None) -> None:
        self.target_port = target_port
        self.limit = limit
        self.rng = random.Random(0)
        self.flaky_rate = 0.0
        self.flaky_errors = 0.0
        self.mode = "pass"
        self.budget: int | None = None
        self.status = 503  # of the "error" mode's answers
        self.delay = 0.0  # seconds added before each chunk the server sends (any mode)
        self.match: re.Pattern[str] | None = None
        self.connections = 0
        self.broken = 0  # connections refused, stalled, or given a limit to be cut at
        self.cuts = 0  # connections actually cut mid-stream
        self.answered = 0  # requests answered with an error by the proxy
        self.answers: list[str] = []  # "503 PUT /bucket/key" per answered request
        self.failures: list[str] = []  # the proxy's own errors (bugs), for the fixture
        self._server_tls: ssl.SSLContext | None = None
        self._client_tls: ssl.SSLContext | None = None
        if tls is not None:
            ca, crt, key = tls
            self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._server_tls.load_cert_chain(str(crt), str(key))
            self._client_tls = ssl.create_default_context(cafile=str(ca))
        self._live: set[_Conn] = set()  # touched in the loop's thread only
        self._lock = threading.Lock()  # the mode and the counters, shared with the test
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope = trio.CancelScope()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy's event loop did not start")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def terminates_tls(self) -> bool:
        return self._server_tls is not None

    # ---------------------------------------------------------------- the test's side
    def flaky(self, seed: int, rate: float, errors: float = 0.0) -> None:
        """Cut a `rate` share of new connections after a random byte count, and answer an
        `errors` share of requests with 503 SlowDown or 500 InternalError (all seeded)."""
        if errors and not self.terminates_tls:
            raise ValueError("answering requests needs tls=(ca, crt, key)")
        with self._lock:
            self.rng = random.Random(seed)
            self.flaky_rate = rate
            self.flaky_errors = errors
        self.set_mode("flaky")

    def set_mode(self, mode: str, budget: int | None = None, status: int = 503,
                 match: str | None = None) -> None:
        """Switch modes; open connections are reset so pooled ones cannot slip through.
        With `budget`, only that many new connections get the mode (for "error": that many
        requests are answered), later ones pass. "error" answers `status` (a key of ERRORS) to
        every request, or to those whose line matches the regular expression `match`."""
        assert mode in MODES, mode
        assert status in ERRORS, status
        if mode == "error" and not self.terminates_tls:
            raise ValueError('mode "error" needs tls=(ca, crt, key)')
        with self._lock:
            self.mode = mode
            self.budget = budget
            self.status = status
            self.match = re.compile(match) if match is not None else None
        if not self._closed:
            self._in_loop(self._reset_live)

    def close(self) -> None:
        if self._closed:
            return
        self.set_mode("refuse")
        self._closed = True
        with contextlib.suppress(trio.RunFinishedError):
            self._in_loop(self._scope.cancel)
        self._thread.join(5)
        self._listener.close()

    def _in_loop(self, fn: Callable[[], object]) -> None:
        """Run `fn` in the event loop's thread and wait for it."""
        assert self._token is not None
        trio.from_thread.run_sync(fn, trio_token=self._token)

    # ---------------------------------------------------------------- the loop's side
    def _run(self, ready: threading.Event) -> None:
        try:
            trio.run(self._serve, ready)
        except BaseException as exc:  # a bug: reported by the fixture, not a silent hang
            self.failures.append(f"event loop: {type(exc).__name__}: {exc}")
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._token = trio.lowlevel.current_trio_token()
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._listener))
        with self._scope:
            ready.set()
            await trio.serve_listeners(self._connection, [listener])

    def _reset_live(self) -> None:
        live, self._live = list(self._live), set()
        for conn in live:
            conn.end(reset=True)
            conn.close()  # now: the client sees the reset before set_mode returns

    def _admit(self) -> tuple[str, int | None, int | None]:
        """A new connection's mode and its byte limits (client -> server, server -> client)."""
        with self._lock:
            mode = self.mode
            self.connections += 1
            if self.budget is not None and mode != "error":
                self.budget -= 1
                if self.budget <= 0:
                    self.mode, self.budget = "pass", None
            up = down = None
            broken = mode in ("refuse", "stall", "small", "cut_down")
            if mode == "small":
                up = self.limit
            elif mode == "cut_down":
                down = self.limit
            elif mode == "flaky":
                cut = self.rng.random() < self.flaky_rate
                at = self.rng.randrange(256 * 1024, 4 * 1024 * 1024)
                upward = self.rng.random() < 0.5
                if cut:
                    broken = True
                    up, down = (at, None) if upward else (None, at)
            if broken:
                self.broken += 1
        return mode, up, down

    def _answer_for(self, head: RequestHead) -> int | None:
        """The status to answer this request with, or None to pass it."""
        with self._lock:
            if self.mode == "error":
                if self.match is not None and not self.match.search(head.line):
                    return None
                status = self.status
                if self.budget is not None:
                    self.budget -= 1
                    if self.budget <= 0:
                        self.mode, self.budget = "pass", None
            elif (self.mode == "flaky" and self.flaky_errors
                    and self.rng.random() < self.flaky_errors):
                status = self.rng.choice((503, 500))
            else:
                return None
            self.answered += 1
            self.answers.append(f"{status} {head.line}")
        return status

    async def _connection(self, client: trio.SocketStream) -> None:
        conn = _Conn(client)
        mode, up_limit, down_limit = self._admit()
        if mode == "refuse":
            _close(client.socket, reset=True)
            return
        self._live.add(conn)
        try:
            with conn.scope:
                if mode == "stall":  # accepted, then silence: the client's timeout must act
                    conn.reset = True
                    await trio.sleep_forever()
                try:
                    with trio.fail_after(10):
                        conn.upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                except _NETWORK_ERRORS:
                    conn.reset = True
                    return
                to_client: trio.abc.Stream = client
                to_server: trio.abc.Stream = conn.upstream
                if self._server_tls is not None and self._client_tls is not None:
                    to_client = trio.SSLStream(client, self._server_tls, server_side=True,
                                               https_compatible=True)
                    to_server = trio.SSLStream(conn.upstream, self._client_tls,
                                               server_hostname="127.0.0.1",
                                               https_compatible=True)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, self._upward, conn, to_client, to_server,
                                       up_limit)
                    nursery.start_soon(self._guard, self._downward, conn, to_server, to_client,
                                       down_limit)
        finally:
            self._live.discard(conn)
            conn.close()

    async def _guard(self, pump: Pump, conn: _Conn, src: trio.abc.Stream,
                     dst: trio.abc.Stream, limit: int | None) -> None:
        """Run one direction; whatever ends it ends the connection."""
        try:
            await pump(conn, src, dst, limit)
        except _NETWORK_ERRORS:
            conn.end(reset=True)
        except Exception as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
            conn.end(reset=True)

    def _cut(self, conn: _Conn) -> None:
        with self._lock:
            self.cuts += 1
        conn.end(reset=True)

    async def _receive(self, conn: _Conn, src: trio.abc.Stream, limit: int | None,
                       carried: list[int]) -> bytes | None:
        """The next chunk from `src`; None once the connection is ended: at EOF, or cut
        because `carried[0]` (bytes so far in this direction) went past `limit`."""
        data = await src.receive_some(CHUNK)
        if not data:
            conn.end(reset=False)
            return None
        carried[0] += len(data)
        if limit is not None and carried[0] > limit:
            self._cut(conn)
            return None
        return data

    async def _upward(self, conn: _Conn, src: trio.abc.Stream, dst: trio.abc.Stream,
                      limit: int | None) -> None:
        """Client -> server: carry, cut after `limit` bytes, or answer a request."""
        reader = RequestReader() if self.terminates_tls else None
        pending: tuple[int, RequestHead] | None = None  # answer it once its body is in
        carried = [0]
        while True:
            data = await self._receive(conn, src, limit, carried)
            if data is None:
                return
            if reader is None:
                await dst.send_all(data)
                continue
            out = bytearray()
            answer_now = False
            for piece in reader.feed(data):
                if isinstance(piece, RequestHead):
                    status = self._answer_for(piece)
                    if status is None:
                        out += piece.raw
                    else:
                        pending = (status, piece)
                        answer_now = piece.expects_continue  # the body will not come
                elif isinstance(piece, RequestEnd):
                    answer_now = pending is not None
                elif pending is None:
                    out += piece
                if answer_now:
                    break
            if out:
                await dst.send_all(bytes(out))
            if answer_now and pending is not None:
                await self._answer(conn, src, *pending)
                return

    async def _answer(self, conn: _Conn, client: trio.abc.Stream, status: int,
                      head: RequestHead) -> None:
        reply = error_response(status, head_only=head.method == "HEAD",
                               request_id=f"fault-proxy-{self.answered}")
        async with conn.client_send:
            await client.send_all(reply)
        # a lingering close: FIN after the reply, then wait for the client to close (it
        # reads the reply first), so that nothing unread turns our close into an RST
        with contextlib.suppress(OSError):
            conn.client.socket.shutdown(socket.SHUT_WR)
        with trio.move_on_after(2), contextlib.suppress(*_NETWORK_ERRORS):
            while await conn.client.receive_some(CHUNK):
                pass
        conn.end(reset=False)

    async def _downward(self, conn: _Conn, src: trio.abc.Stream, dst: trio.abc.Stream,
                        limit: int | None) -> None:
        """Server -> client: carry, or cut after `limit` bytes."""
        carried = [0]
        while True:
            data = await self._receive(conn, src, limit, carried)
            if data is None:
                return
            if self.delay:  # a slow link or an overloaded server: late, but it answers
                await trio.sleep(self.delay)
            async with conn.client_send:
                await dst.send_all(data)


def _close(s: trio.socket.SocketType, *, reset: bool) -> None:
    """Close; with `reset`, with an RST (SO_LINGER 0): the peer sees ECONNRESET, not EOF."""
    if reset:
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()
