"""Multipart upload planning within S3's limits (pure).

Limits: at most 10,000 parts; every part but the last at least 5 MiB; a part at most 5 GiB.
A plan covers [0, size) with parts in order. Ranges that still equal the object already in the
bucket ("clean") and are at least 5 MiB long are copied server-side (UploadPartCopy) instead of
being uploaded; shorter clean ranges, and clean bytes needed to bring a short changed range up
to the 5 MiB minimum, are uploaded like changed data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import TooBig
from .ranges import ByteRange

MiB = 1024 * 1024
MIN_PART = 5 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
MAX_OBJECT = 5 * 1024 * 1024 * MiB
COPY_CHUNK = 1024 * MiB  # server-side copies are cheap; keep parts few


@dataclass(frozen=True, slots=True)
class PartPlan:
    number: int
    rng: ByteRange
    copy: bool  # True: UploadPartCopy from the object in the bucket


def part_size_for(size: int, preferred: int, max_parts: int = MAX_PARTS) -> int:
    """`preferred`, grown in whole MiB so that `size` needs at most `max_parts` parts."""
    part = max(preferred, MIN_PART)
    if size > part * max_parts:
        needed = -(-size // max_parts)
        part = -(-needed // MiB) * MiB
    return min(part, MAX_PART)


def _runs(size: int, clean: Sequence[ByteRange]) -> list[list[int]]:
    """[[start, end, is_clean], …] covering [0, size), clean runs of MIN_PART or more only."""
    runs: list[list[int]] = []
    pos = 0
    for r in sorted(clean, key=lambda r: r.start):
        start, end = max(r.start, pos), min(r.end, size)
        if end - start < MIN_PART:
            continue
        if start > pos:
            runs.append([pos, start, 0])
        runs.append([start, end, 1])
        pos = end
    if pos < size:
        runs.append([pos, size, 0])
    return runs


def _normalise(runs: list[list[int]], size: int) -> list[list[int]]:
    """Grow every changed run that is not last to MIN_PART, taking from the clean run after it."""
    out: list[list[int]] = []
    for run in runs:
        if out and out[-1][2] == run[2]:
            out[-1][1] = run[1]
            continue
        out.append(list(run))
    i = 0
    while i < len(out):
        start, end, is_clean = out[i]
        if not is_clean and end < size and end - start < MIN_PART:
            nxt = out[i + 1]  # a clean run (neighbours alternate)
            take = MIN_PART - (end - start)
            if nxt[1] - (nxt[0] + take) < MIN_PART:
                # what would be left to copy is too short: upload it with the changed data
                out[i][1] = nxt[1]
                del out[i + 1]
                if i + 1 < len(out):  # merge with the changed run that followed
                    out[i][1] = out[i + 1][1]
                    del out[i + 1]
                continue
            out[i][1] = nxt[0] = end + take
        i += 1
    return out


def _chunks(start: int, end: int, chunk: int, final: bool) -> list[ByteRange]:
    """Split [start, end) into `chunk`-sized pieces; a short tail joins the piece before it
    unless it ends the object (only the last part of an upload may be under MIN_PART)."""
    pieces: list[ByteRange] = []
    pos = start
    while pos < end:
        nxt = min(pos + chunk, end)
        if pieces and nxt - pos < MIN_PART and not (final and nxt == end):
            prev = pieces.pop()
            pieces.append(ByteRange(prev.start, nxt))
        else:
            pieces.append(ByteRange(pos, nxt))
        pos = nxt
    return pieces


def plan_parts(size: int, part_size: int, clean: Sequence[ByteRange] = ()) -> list[PartPlan]:
    """Parts for an object of `size` bytes; see the module docstring."""
    if size > MAX_OBJECT:
        raise TooBig(f"{size} bytes: objects larger than 5 TiB cannot be stored in S3")
    runs = _normalise(_runs(size, clean), size)
    # each run may end in one short part of its own: leave room for one per run
    part = part_size_for(size, part_size, MAX_PARTS - len(runs))
    plans: list[PartPlan] = []
    for start, end, is_clean in runs:
        chunk = max(COPY_CHUNK, part) if is_clean else part
        for rng in _chunks(start, end, chunk, final=end == size):
            plans.append(PartPlan(len(plans) + 1, rng, bool(is_clean)))
    if not plans:
        plans.append(PartPlan(1, ByteRange(0, 0), False))
    if len(plans) > MAX_PARTS:
        raise TooBig("too many parts")  # part_size_for makes this unreachable
    return plans
