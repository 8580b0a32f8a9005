"""Byte ranges and the read-ahead policy of one open file (pure).

Theory of operation: a reader keeps a few fetched or in-flight segments of the object. For each
read, `Readahead.plan` returns the ranges to request so that the read is covered, and, while
reads stay sequential, enough further segments to keep `depth` ranged GETs in flight. Segment
size starts small (a random 4 KiB read never fetches much) and doubles with each sequential
read up to `maximum`, but stays within twice the bytes read in a row, and the read-ahead
within those bytes: a short run of reads fetches little more than it reads. A seek resets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # exclusive

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad range {self.start}-{self.end}")

    def __len__(self) -> int:
        return self.end - self.start

    def http(self) -> str:
        """The HTTP Range header value (inclusive end)."""
        return f"bytes={self.start}-{self.end - 1}"


def clip(offset: int, size: int, file_size: int) -> ByteRange | None:
    """The part of [offset, offset+size) inside the file, or None if nothing is."""
    if offset >= file_size or size <= 0:
        return None
    return ByteRange(offset, min(offset + size, file_size))


def covered_until(offset: int, have: Sequence[ByteRange]) -> int:
    """End of the contiguous run of `have` that contains `offset` (`offset` if none does)."""
    pos = offset
    for r in sorted(have, key=lambda r: r.start):
        if r.start <= pos < r.end:
            pos = r.end
    return pos


def missing(want: ByteRange, have: Sequence[ByteRange]) -> list[ByteRange]:
    """The sub-ranges of `want` that no range in `have` covers, in order."""
    gaps: list[ByteRange] = []
    pos = want.start
    for r in sorted(have, key=lambda r: r.start):
        if r.end <= pos or r.start >= want.end:
            continue
        if r.start > pos:
            gaps.append(ByteRange(pos, r.start))
        pos = max(pos, r.end)
        if pos >= want.end:
            break
    if pos < want.end:
        gaps.append(ByteRange(pos, want.end))
    return gaps


class ReadBudget:
    """Bytes of read-ahead the whole mount may hold: fetched ahead of the readers, not yet
    read past. What a read asks for is always fetched; read-ahead only within the budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        self.held = max(0, self.held - n)


class Readahead:
    """Sequential-read detector and request sizer for one open file."""

    def __init__(self, initial: int = 256 * KiB, maximum: int = 16 * MiB, depth: int = 4) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.depth = max(1, depth)
        self.request_size = initial
        self.sequential = False
        self._next = 0  # where a sequential reader reads next
        self._run = 0  # bytes read one after the other so far (this sequential run)

    def advise(self, offset: int, size: int) -> None:
        """Record a read; grow the request size while reads follow each other."""
        self.sequential = offset == self._next and offset > 0
        if self.sequential:
            self.request_size = min(self.request_size * 2, self.maximum)
            self._run += size
        else:
            if offset != self._next:
                self.request_size = self.initial
            self._run = size
        self._next = offset + size

    def _segment_size(self) -> int:
        # grow with what the reader has read in a row, not with the number of READs: the
        # kernel splits one 1 MiB read(2) (Python's buffer is st_blksize) into 8 sequential
        # READs, which must not turn a small read of a big object into depth x 16 MiB of GETs
        return min(self.request_size, max(2 * self._run, self.initial))

    def plan(self, want: ByteRange, have: Sequence[ByteRange], file_size: int) -> list[ByteRange]:
        """Ranges to request now: what `want` lacks, then read-ahead while sequential."""
        out: list[ByteRange] = []
        segment = self._segment_size()
        for gap in missing(want, have):
            # one request per gap, stretched to the request size (bounded by the file)
            out.append(ByteRange(gap.start, min(max(gap.end, gap.start + segment), file_size)))
        if self.sequential:
            pos = covered_until(want.start, [*have, *out])
            horizon = min(file_size, want.end + min(segment * self.depth, self._run))
            while pos < horizon:
                end = min(pos + segment, file_size)
                out.append(ByteRange(pos, end))
                pos = end
        return _merge_overlaps(out, have)


def _merge_overlaps(new: list[ByteRange], have: Sequence[ByteRange]) -> list[ByteRange]:
    """Trim new ranges so none overlaps `have` or an earlier new range."""
    out: list[ByteRange] = []
    for r in new:
        for gap in missing(r, [*have, *out]):
            out.append(gap)
    return out
