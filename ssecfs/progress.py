"""Progress of a long command (rotate-key, check) on stderr (pure: no I/O library; the
stream and the clock are passed in).

On a terminal: ONE line, rewritten in place with "\\r" at most every `interval` seconds
(objects and bytes done of the total, rate, time left); notes (a failed object) are printed
above it, so they scroll and the line stays at the bottom. Elsewhere (a log, a pipe): every
note is a line of its own and the progress line is printed every `log_interval` seconds.
Object keys are printed with control characters escaped: a key may hold a newline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; bytes below 1 KiB are whole."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """65 -> '1m05s', 3725 -> '1h02m', 9 -> '9s'."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def eta(done_objects: int, total_objects: int, done_bytes: int, total_bytes: int,
        elapsed: float) -> float | None:
    """Seconds left, from the rate so far: by bytes when there are bytes to do, else by
    objects; None before anything is done."""
    if elapsed <= 0:
        return None
    if total_bytes > 0 and done_bytes > 0:
        return (total_bytes - done_bytes) / (done_bytes / elapsed)
    if done_objects > 0:
        return (total_objects - done_objects) / (done_objects / elapsed)
    return None


def format_line(done_objects: int, total_objects: int, done_bytes: int, total_bytes: int,
                elapsed: float) -> str:
    """'12/200 objects, 1.5 MiB/24.0 MiB, 3.0 MiB/s, 7s left'."""
    rate = done_bytes / elapsed if elapsed > 0 else 0.0
    left = eta(done_objects, total_objects, done_bytes, total_bytes, elapsed)
    tail = "" if left is None or done_objects >= total_objects else \
        f", {human_duration(left)} left"
    return (f"{done_objects}/{total_objects} objects, {human_bytes(done_bytes)}/"
            f"{human_bytes(total_bytes)}, {human_bytes(rate)}/s{tail}")


def printable(key: str) -> str:
    """An object key fit for one line: control characters as escapes."""
    if key.isprintable():
        return key
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in key)


class Progress:
    def __init__(self, stream: TextIO, *, tty: bool, total_objects: int, total_bytes: int,
                 clock: Callable[[], float] = time.monotonic, interval: float = 0.2,
                 log_interval: float = 30.0, label: str = "") -> None:
        self.stream = stream
        self.tty = tty
        self.total_objects = total_objects
        self.total_bytes = total_bytes
        self.done_objects = 0
        self.done_bytes = 0
        self._clock = clock
        self._started = clock()
        self._interval = interval if tty else log_interval
        self._last = self._started
        self._label = label
        self._shown = False  # a progress line is on the terminal now

    def line(self) -> str:
        text = format_line(self.done_objects, self.total_objects, self.done_bytes,
                           self.total_bytes, self._clock() - self._started)
        return f"{self._label}{text}"

    def advance(self, objects: int = 1, nbytes: int = 0) -> None:
        self.done_objects += objects
        self.done_bytes += nbytes
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._show()

    def note(self, text: str) -> None:
        """One line that stays (an object that failed), printed above the progress line."""
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False
        self.stream.write(text + "\n")
        if self.tty:
            self._show()
        self.stream.flush()

    def _show(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line())
            self._shown = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """The final state; on a terminal the line is kept and ended."""
        self._show()
        if self.tty:
            self.stream.write("\n")
            self._shown = False
        self.stream.flush()
