"""FileBuffer: the local, not yet uploaded content of one file.

Model: the file is `size` bytes. Its first `base_size` bytes are those of the object already
in the bucket (the "base"), except for pages held locally; bytes past `base_size` that no page
holds are zeros. Pages are PAGE bytes (the last one may be shorter) and live in memory up to
`memory` bytes; beyond that the oldest pages go to the encrypted `SpillFile`. The memory is
a `MemoryPool` that every buffer of a mount shares (`write_buffer_memory` bounds them all, not
each): a buffer that needs room spills its own oldest pages, so the pool is exceeded by at
most one page per buffer.
Remote bytes are asked for through an async `fetch(ByteRange) -> bytes` that the caller gives,
so this module does no network I/O itself.

Rule: a page's bytes past the file size are never stale (truncation cuts the page), so growing
the file again shows zeros.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Protocol

from .ranges import ByteRange

PAGE = 1024 * 1024
Fetch = Callable[[ByteRange], Awaitable[bytes]]


class PageStore(Protocol):
    """Where pages go when memory is full (`spill.SpillFile`: encrypted, on disk)."""

    async def store(self, data: bytes | bytearray) -> int: ...

    async def load(self, slot: int) -> bytearray: ...

    def free(self, slot: int) -> None: ...


class MemoryPool:
    """The pages that the buffers of one mount may hold in memory, `limit` bytes in all."""

    def __init__(self, limit: int) -> None:
        self.limit_pages = max(limit // PAGE, 1)
        # weak: a buffer dropped without close() gives its share back all the same
        self._buffers: weakref.WeakSet[FileBuffer] = weakref.WeakSet()

    def join(self, buf: FileBuffer) -> None:
        self._buffers.add(buf)

    @property
    def pages(self) -> int:
        return sum(b.pages_in_memory for b in self._buffers)

    def full(self) -> bool:
        """Whether one more page would be over the limit."""
        return self.pages + 1 > self.limit_pages


class FileBuffer:
    def __init__(self, base_size: int, spill: PageStore, memory: int | MemoryPool) -> None:
        """`memory`: the mount's pool, or a byte limit for this buffer alone."""
        self.base_size = base_size
        self.size = base_size
        self._spill = spill
        self._pool = memory if isinstance(memory, MemoryPool) else MemoryPool(memory)
        self._pool.join(self)
        self._mem: dict[int, bytearray] = {}
        self._spilled: dict[int, int] = {}  # page index -> spill slot

    # ------------------------------------------------------------ page store
    def _has(self, idx: int) -> bool:
        return idx in self._mem or idx in self._spilled

    async def _get(self, idx: int) -> bytearray:
        page = self._mem.get(idx)
        if page is not None:
            return page
        return await self._spill.load(self._spilled[idx])

    async def _put(self, idx: int, page: bytearray) -> None:
        if idx not in self._mem:
            # room first: if the spill fails (disk full), nothing has changed yet; only our
            # own pages leave (another file's pages may be in use under its lock)
            while self._pool.full() and self._mem:
                victim = min(self._mem)
                # a page leaves memory only once it is safely in the spill file
                self._spilled[victim] = await self._spill.store(self._mem[victim])
                del self._mem[victim]
        slot = self._spilled.pop(idx, None)
        if slot is not None:
            self._spill.free(slot)
        self._mem[idx] = page

    def _drop(self, idx: int) -> None:
        self._mem.pop(idx, None)
        slot = self._spilled.pop(idx, None)
        if slot is not None:
            self._spill.free(slot)

    @property
    def pages_in_memory(self) -> int:
        return len(self._mem)

    @property
    def memory_bytes(self) -> int:
        return sum(len(p) for p in self._mem.values())

    @property
    def spilled_pages(self) -> int:
        return len(self._spilled)

    def clean_ranges(self) -> list[ByteRange]:
        """Ranges that still equal the base object (no local page over them)."""
        limit = min(self.base_size, self.size)
        out: list[ByteRange] = []
        start: int | None = None
        for idx in range(-(-limit // PAGE)):
            if not self._has(idx):
                if start is None:
                    start = idx * PAGE
            elif start is not None:
                out.append(ByteRange(start, idx * PAGE))
                start = None
        if start is not None:
            out.append(ByteRange(start, limit))
        return out

    # ------------------------------------------------------------ file operations
    async def _load_page(self, idx: int, fetch: Fetch) -> bytearray:
        if self._has(idx):
            return await self._get(idx)
        start = idx * PAGE
        remote_end = min(start + PAGE, self.base_size, self.size)
        if remote_end > start:
            return bytearray(await fetch(ByteRange(start, remote_end)))
        return bytearray()

    async def write(self, offset: int, data: bytes | memoryview, fetch: Fetch) -> int:
        """Write `data` at `offset`; the number of bytes written. When the pages cannot be
        kept (the spill disk is full), a write that got some bytes in is short, as on a
        full disk, and one that got none raises."""
        view = memoryview(data)
        pos = offset
        while view:
            idx, within = divmod(pos, PAGE)
            n = min(PAGE - within, len(view))
            try:
                if within == 0 and n == PAGE:
                    page = bytearray(view[:n])  # a whole page: nothing to keep from before
                else:
                    page = await self._load_page(idx, fetch)
                    if len(page) < within:
                        page.extend(bytes(within - len(page)))
                    page[within : within + n] = view[:n]
                await self._put(idx, page)
            except Exception:
                if pos == offset:
                    raise
                return pos - offset
            view = view[n:]
            pos += n
            self.size = max(self.size, pos)
        return pos - offset

    async def read(self, offset: int, size: int, fetch: Fetch) -> bytes:
        return b"".join(await self.pieces(offset, size, fetch))

    async def pieces(self, offset: int, size: int, fetch: Fetch) -> list[bytes | memoryview]:
        """The bytes [offset, offset + size) (clipped to the file) as pieces: views of the
        full pages that hold them (a full page is never resized, so a view of it may live
        on, while a part is sent), copies of short pages, remote bytes and zeros."""
        end = min(offset + size, self.size)
        # first everything that awaits (spilled pages; remote bytes, one request per run of
        # pages not held here), then the pieces, with nothing awaited in between
        plan: list[tuple[int, int, int] | ByteRange | bytes] = []  # (page, start, end) | ...
        held: dict[int, bytearray] = {}  # the pages read, in memory or loaded from the spill
        pos = offset
        while pos < end:
            idx, within = divmod(pos, PAGE)
            stop = min((idx + 1) * PAGE, end)
            if self._has(idx):
                held[idx] = await self._get(idx)
                plan.append((idx, within, stop - idx * PAGE))
            else:
                remote_stop = min(stop, self.base_size)
                if remote_stop > pos:
                    last = plan[-1] if plan else None
                    if isinstance(last, ByteRange) and last.end == pos:
                        plan[-1] = ByteRange(last.start, remote_stop)
                    else:
                        plan.append(ByteRange(pos, remote_stop))
                if stop > max(pos, remote_stop):
                    plan.append(bytes(stop - max(pos, remote_stop)))
            pos = stop
        fetched = {p: await fetch(p) for p in plan if isinstance(p, ByteRange)}
        out: list[bytes | memoryview] = []
        for piece in plan:
            if isinstance(piece, tuple):
                idx, a, b = piece
                page = held[idx]
                if len(page) == PAGE:
                    out.append(memoryview(page)[a:b])
                else:  # a short page may grow: a copy, with the zeros past its end
                    chunk = bytes(page[a:b])
                    out.append(chunk + bytes((b - a) - len(chunk)))
            else:
                out.append(fetched[piece] if isinstance(piece, ByteRange) else piece)
        return out

    async def load_all(self, fetch: Fetch) -> None:
        """Hold every page locally, so that the content no longer needs the base object
        (which is about to be deleted while the file is still open)."""
        for idx in range(-(-min(self.base_size, self.size) // PAGE)):
            if not self._has(idx):
                await self._put(idx, await self._load_page(idx, fetch))
        self.base_size = 0

    async def truncate(self, size: int, fetch: Fetch) -> None:
        if size < self.size:
            idx, within = divmod(size, PAGE)
            gone = [i for i in (*self._mem, *self._spilled) if i > idx or (i == idx and not within)]
            for i in gone:
                self._drop(i)
            if within and self._has(idx):
                await self._put(idx, (await self._get(idx))[:within])
            self.base_size = min(self.base_size, size)
        self.size = size

    def close(self) -> None:
        for idx in list(self._spilled):
            self._drop(idx)
        self._mem.clear()
