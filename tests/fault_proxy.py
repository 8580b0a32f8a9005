"""A fault-injecting TCP proxy between ssecfs and a test server (127.0.0.1 only).

Modes: "pass"; "refuse" (accept and reset at once: the server is "down"); "small" (reset a
connection after `limit` bytes from the client: large request bodies fail); "cut_down" (reset
it after `limit` bytes from the server: a GET's body is cut after its headers); "flaky" (a
seeded share of connections is cut after a random number of bytes in either direction);
"stall" (accept and never answer: a hung gateway).
TLS goes end to end through it: the server's certificate is for 127.0.0.1, which the proxy's
address is too.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading


class Proxy:
    """127.0.0.1 TCP proxy in front of one port. Modes: "pass", "refuse" (accept and reset
    at once), "small" (reset a connection after `limit` bytes from the client), "cut_down"
    (reset it after `limit` bytes from the server)."""

    def __init__(self, target_port: int, limit: int = 256 * 1024) -> None:
        self.target_port = target_port
        self.limit = limit
        self.rng = random.Random(0)
        self.flaky_rate = 0.0
        self.mode = "pass"
        self.budget: int | None = None
        self.connections = 0
        self.broken = 0  # connections refused, or given a limit to be cut at
        self.cuts = 0  # connections actually cut mid-stream
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def flaky(self, seed: int, rate: float) -> None:
        """Cut a `rate` share of new connections after a random byte count (seeded)."""
        self.rng = random.Random(seed)
        self.flaky_rate = rate
        self.set_mode("flaky")

    def set_mode(self, mode: str, budget: int | None = None) -> None:
        """Switch modes; open connections are reset so pooled ones cannot slip through.
        With `budget`, only that many new connections get the mode, later ones pass."""
        assert mode in ("pass", "refuse", "small", "cut_down", "flaky", "stall")
        with self._lock:
            self.mode = mode
            self.budget = budget
            live, self._live = list(self._live), set()
        for s in live:
            _reset(s)

    def close(self) -> None:
        self._closed = True
        self.set_mode("refuse")
        self._thread.join(5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                mode = self.mode
                self.connections += 1
                if self.budget is not None:
                    self.budget -= 1
                    if self.budget <= 0:
                        self.mode, self.budget = "pass", None
                if mode != "pass":
                    self.broken += 1
            if mode == "refuse":
                _reset(client)
                continue
            if mode == "stall":
                with self._lock:  # accepted, then silence: the client's timeout must act
                    self._live.add(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._live.update((client, upstream))
            up_limit = self.limit if mode == "small" else None
            down_limit = self.limit if mode == "cut_down" else None
            if mode == "flaky":
                with self._lock:
                    cut = self.rng.random() < self.flaky_rate
                    at = self.rng.randrange(256 * 1024, 4 * 1024 * 1024)
                    upward = self.rng.random() < 0.5
                if cut:
                    self.broken += 1
                    up_limit, down_limit = (at, None) if upward else (None, at)
                else:
                    self.broken -= 1  # counted above as broken: it is not
            threading.Thread(target=self._pump, args=(client, upstream, up_limit),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, down_limit),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        carried = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                carried += len(data)
                if limit is not None and carried > limit:
                    with self._lock:
                        self.cuts += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            # shutdown first: the other pump thread is blocked in recv() on one of these,
            # and a close() alone would neither wake it nor reach the peer
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            _reset(s)
            with self._lock:
                self._live.discard(s)


def _reset(s: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the peer sees ECONNRESET, not a clean EOF."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()


