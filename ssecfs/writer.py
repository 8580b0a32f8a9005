"""Writer: the local content of dirty files and getting it into the bucket.

Theory of operation: a file's unsaved content is a `FileBuffer` over the object it started
from (`OpenFile.base`); pages beyond `write_buffer_memory` (all dirty files together) spill,
encrypted, to the mount's `SpillFile`. `upload` stores a file under the key it has now:
PutObject, or a multipart upload whose unchanged ranges of the same object are copied
server-side. The object must be shown to be encrypted with the writing key: by the key MD5
the answer echoes (PutObject), else by a HEAD (multipart uploads, copies on servers that do
not echo). Only then is the buffer dropped: a failed upload leaves the file dirty with all
its data, for the next flush, fsync or unmount.

Rule: every method here runs under the file's `OpenFile.lock`, taken by the caller.
"""

from __future__ import annotations

import logging
import time

import trio

from . import paths
from .attrs import content_for, meta_from_attr
from .buffer import Fetch, FileBuffer, MemoryPool
from .errors import NotFound, SsecfsError, StoreError, TooBig
from .handles import OpenFile
from .keys import KeyRing
from .namespace import Namespace
from .parts import MAX_OBJECT
from .ranges import ByteRange
from .spill import SpillFile
from .store.base import Body, Chunks, ObjectInfo, ObjectStore
from .stream import PartStream
from .transfer import Transfers

log = logging.getLogger(__name__)


class Writer:
    def __init__(self, store: ObjectStore, keys: KeyRing, ns: Namespace, transfers: Transfers,
                 spill: SpillFile, memory_limit: int) -> None:
        # where streamed parts are sent from (the filesystem's nursery; None: no streaming)
        self.nursery: trio.Nursery | None = None
        self._given_up: list[PartStream] = []  # streams whose abort may still be running
        self.store = store
        self.keys = keys
        self.ns = ns
        self.transfers = transfers
        self.spill = spill
        self.memory = MemoryPool(memory_limit)  # every dirty file's pages, together

    def fetch_base(self, f: OpenFile) -> Fetch:
        """Reads of the object a buffer starts from (zeros where there is none)."""
        async def fetch(rng: ByteRange) -> bytes:
            base = f.base
            if base is None or len(rng) == 0:
                return bytes(len(rng))
            return await self.store.get_range(base.key, rng, self.keys.for_md5(base.key_md5),
                                              etag=base.etag or None)
        return fetch

    def _buffer(self, f: OpenFile) -> FileBuffer:
        if f.buffer is None:
            f.buffer = FileBuffer(f.base.size if f.base is not None else 0, self.spill,
                                  self.memory)
        return f.buffer

    async def write(self, f: OpenFile, offset: int, data: bytes, path: str | None = None) -> int:
        """Write into `f`'s buffer; with `path` (the file's name now), a file whose content
        is all local streams its full parts to the bucket meanwhile (`stream.PartStream`)."""
        if offset + len(data) > MAX_OBJECT:
            # S3 cannot hold it (10,000 parts of at most 5 GiB, 5 TiB in all): say so now,
            # not at close()
            raise TooBig(f"a write up to byte {offset + len(data)} is past S3's object limit")
        buf = self._buffer(f)
        try:
            n = await buf.write(offset, data, self.fetch_base(f))
        finally:
            f.attr = f.attr.content_changed(time.time_ns()).with_(size=buf.size)
        if f.stream is not None:
            f.stream.touched(offset, offset + n)
        elif (path is not None and self.nursery is not None and f.streamable
              and buf.base_size == 0
              and buf.size > self.transfers.part_size and not f.unlinked):
            f.stream = PartStream(self.store, self.keys.writer, self.ns.key(path),
                                  meta_from_attr(f.attr),
                                  content_for(f.attr, paths.name_of(path)),
                                  self.transfers.part_size, self.nursery, self.transfers)
        if f.stream is not None and not f.stream.dead:
            fetch = self.fetch_base(f)

            async def read(rng: ByteRange) -> Body:
                return Chunks(await buf.pieces(rng.start, len(rng), fetch))

            await f.stream.feed(buf.size, read)
        return n

    def drop_stream(self, f: OpenFile) -> None:
        """`f` is not to be streamed (any more): its name or attributes changed, or it went."""
        f.streamable = False
        if f.stream is not None:
            f.stream.give_up()
            self._track(f.stream)
            f.stream = None

    def _track(self, stream: PartStream) -> None:
        """Remember a stream given up until its abort is done (`settle`)."""
        self._given_up = [s for s in self._given_up if not s.settled.is_set()] + [stream]

    async def settle(self) -> None:
        """Wait until every stream given up has been aborted (before unmounting)."""
        for stream in self._given_up:
            await stream.settled.wait()
        self._given_up = []

    async def read(self, f: OpenFile, offset: int, size: int) -> bytes:
        assert f.buffer is not None
        return await f.buffer.read(offset, size, self.fetch_base(f))

    async def truncate(self, f: OpenFile, size: int) -> None:
        if size > MAX_OBJECT:
            raise TooBig(f"truncate to {size} bytes is past S3's object limit")
        if f.buffer is None and f.base is not None and f.base.size == size and not f.new:
            return
        await self._buffer(f).truncate(size, self.fetch_base(f))
        f.attr = f.attr.content_changed(time.time_ns()).with_(size=size)
        if f.stream is not None:
            f.stream.truncated(size)

    async def keep_content(self, f: OpenFile) -> None:
        """Copy `f`'s whole content into its buffer before its object is deleted or
        replaced while handles are open on it: they read and write on, as POSIX wants."""
        if f.base is None:
            return
        await self._buffer(f).load_all(self.fetch_base(f))
        f.base = None

    async def upload(self, f: OpenFile, path: str) -> None:
        """Store `f` at `path` if it is dirty; raise StoreError (data kept) if that fails."""
        if not f.dirty:
            return
        key = self.ns.key(path)
        meta = meta_from_attr(f.attr)
        content = content_for(f.attr, paths.name_of(path))
        buf = f.buffer
        base = f.base
        try:
            if buf is None and base is not None and base.key == key and not f.new:
                stored = await self.transfers.copy(base, key, meta, content)  # attributes only
                size = base.size
            elif buf is None and base is None:
                stored = await self.store.put(key, b"", meta, content, self.keys.writer)
                size = 0
            else:
                size = buf.size if buf is not None else f.attr.size
                fetch = self.fetch_base(f)

                async def read(rng: ByteRange) -> Body:
                    if buf is None:
                        return await fetch(rng)
                    return Chunks(await buf.pieces(rng.start, len(rng), fetch))

                same_object = base is not None and base.key == key
                clean = buf.clean_ranges() if buf is not None else []
                streamed = None
                if f.stream is not None:
                    stream, f.stream = f.stream, None
                    streamed = await stream.finish(key, size, meta, content, read)
                    if streamed is None:  # it gave itself up
                        self._track(stream)
                stored = streamed or await self.transfers.upload(
                    key, size, meta, content, read, clean if same_object else (),
                    base if same_object else None)
            if stored.proves(self.keys.writer):
                # the answer echoed the writing key's MD5: no HEAD needed to prove it
                info = ObjectInfo(key, size, stored.etag, time.time_ns(), meta,
                                  stored.key_md5, content)
            else:
                try:
                    info = await self.store.head(key, self.keys.writer)
                except NotFound:
                    # stored, then deleted by another client before this HEAD: the later
                    # change wins, as between any two S3 clients; keeping the buffer would
                    # bring the file back at the next flush
                    log.info("%s was deleted by another client right after its upload; the "
                             "deletion stands", key)
                    self._done(f, buf, None)
                    self.ns.invalidate(path)
                    return
        except SsecfsError as exc:
            log.error("upload of %s failed, the data stays buffered for a retry: %s", path, exc)
            if isinstance(exc, TooBig):
                raise
            raise StoreError(f"upload of {path} failed") from exc
        self.verify(key, info)
        self._done(f, buf, info)
        if self.transfers.leftovers:  # the server answers again: abort what an outage left
            await self.transfers.retry_aborts()
        f.attr = self.ns.attr_of(info).with_(mtime_ns=f.attr.mtime_ns, ctime_ns=f.attr.ctime_ns,
                                               atime_ns=f.attr.atime_ns)
        self.ns.stored(path, f.attr)

    @staticmethod
    def _done(f: OpenFile, buf: FileBuffer | None, info: ObjectInfo | None) -> None:
        """The upload is over: the file's content is the object `info` (None: gone)."""
        if buf is not None:
            buf.close()
        f.buffer, f.base, f.new, f.meta_dirty = None, info, False, False

    def verify(self, key: str, info: ObjectInfo) -> None:
        if info.key_md5 != self.keys.writer.md5_b64:
            log.error("the server stored %s WITHOUT encryption under the writing key", key)
            raise StoreError(f"{key} was not stored with the writing SSE-C key")
