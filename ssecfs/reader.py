"""ReadHandle: serves read() calls of one open file from ranged GETs.

Theory of operation: the handle keeps a few `Segment`s, each one ranged GET that is in flight
or done. A read waits for the segments that cover it and copies out of them. `ranges.Readahead`
decides what to request: only what the read lacks for random reads, and up to `depth` further
segments while reads are sequential, so that several GETs are in flight at once. Every GET
carries the ETag seen at open (If-Match), so a handle never mixes two versions of an object;
a changed object makes reads fail with ESTALE.

Fetch tasks run in the filesystem's nursery; they never raise (errors are stored in the
segment and raised by the read that needs them) and are cancelled when the handle closes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from .keys import SseCKey
from .ranges import ByteRange, Readahead, ReadBudget, clip
from .store.base import ObjectStore

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Segment:
    rng: ByteRange
    done: trio.Event = field(default_factory=trio.Event)
    data: bytes = b""
    error: Exception | None = None
    reserved: int = 0  # bytes of the mount's read-ahead budget this segment holds


class ReadHandle:
    def __init__(self, store: ObjectStore, key: str, size: int, etag: str,
                 sse: SseCKey | None, readahead: Readahead, nursery: trio.Nursery,
                 budget: ReadBudget | None = None) -> None:
        self.store = store
        self.key = key
        self.size = size
        self.etag = etag
        self.sse = sse
        self._ra = readahead
        self._nursery = nursery
        self._segments: list[Segment] = []
        self._scopes: set[trio.CancelScope] = set()
        self._budget = budget or ReadBudget(1 << 62)

    async def read(self, offset: int, size: int) -> bytes:
        want = clip(offset, size, self.size)
        if want is None:
            return b""
        self._ra.advise(offset, len(want))
        for rng in self._ra.plan(want, [s.rng for s in self._segments], self.size):
            seg = Segment(rng)
            if rng.start >= want.end:  # read-ahead: only within the mount's budget
                if not self._budget.reserve(len(rng)):
                    continue
                seg.reserved = len(rng)
            elif rng.end > want.end:
                # a GET stretched past the read is read-ahead too: within the budget, or it
                # asks for what the read lacks only (else every sequential reader would hold
                # a whole segment beyond the budget: 8 readers, 8 x 16 MiB)
                if self._budget.reserve(len(rng)):
                    seg.reserved = len(rng)
                else:
                    seg = Segment(ByteRange(rng.start, want.end))
            self._segments.append(seg)
            self._nursery.start_soon(self._fetch, seg)
        covering = sorted((s for s in self._segments
                           if s.rng.start < want.end and s.rng.end > want.start),
                          key=lambda s: s.rng.start)
        if len(covering) == 1 and covering[0].rng.start <= want.start \
                and covering[0].rng.end >= want.end:
            # the common case (a 1 MiB read inside a 16 MiB segment): one copy, not two
            seg = covering[0]
            await seg.done.wait()
            if seg.error is None and seg in self._segments:
                data = seg.data[want.start - seg.rng.start : want.end - seg.rng.start]
                self._drop_behind(want.start)
                return data
        out = bytearray()
        pos = want.start
        for seg in covering:
            await seg.done.wait()
            if seg.error is not None:
                # a later read may try again; a concurrent read may have dropped it already
                if seg in self._segments:
                    self._segments.remove(seg)
                    self._release(seg)
                raise seg.error
            if seg.rng.start > pos or seg.rng.end <= pos:
                continue
            out += memoryview(seg.data)[pos - seg.rng.start : min(want.end, seg.rng.end)
                                        - seg.rng.start]
            pos = min(want.end, seg.rng.end)
        self._drop_behind(want.start)
        return bytes(out)

    def _drop_behind(self, offset: int) -> None:
        # keep the segment that holds `offset` (short backward seeks) and everything ahead
        for s in self._segments:
            if s.rng.end <= offset:
                self._release(s)
        self._segments = [s for s in self._segments if s.rng.end > offset]

    def _release(self, seg: Segment) -> None:
        self._budget.release(seg.reserved)
        seg.reserved = 0

    async def _fetch(self, seg: Segment) -> None:
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                seg.data = await self.store.get_range(self.key, seg.rng, self.sse,
                                                      etag=self.etag)
            except Exception as exc:  # stored, raised by the read that needs this segment
                seg.error = exc
            finally:
                self._scopes.discard(scope)
                seg.done.set()

    def close(self) -> None:
        for scope in self._scopes:
            scope.cancel()
        for seg in self._segments:
            self._release(seg)
        self._segments.clear()
