"""Uploads and server-side copies, with the fallbacks that real servers need.

Copy ladder (servers.md): CopyObject -> multipart copy (CreateMultipartUpload + UploadPartCopy,
which Ceph RGW < v20 supports for SSE-C when source and target share the key) -> streaming the
bytes through this process (ranged GET into PutObject/UploadPart, in memory, never to disk).
Ceph RGW 16 answers CopyObject of SSE-C objects with 501; SeaweedFS answers UploadPartCopy with
501. A 501 is remembered in `ServerCaps` for the life of the mount, so each fallback costs one
refused request per mount, not one per file.

Copies from an object under another key of the ring (its own key reads it, the writing key
stores the copy): CopyObject is tried (AWS and SeaweedFS change the key that way; a 400 for
it falls back without being remembered); UploadPartCopy is never used across keys, since Ceph
RGW decrypts the source with the target's key (400) and SeaweedFS does not implement it, so
such copies and the unchanged ranges of a rewrite go through this process.

A failed multipart upload is aborted before the error is raised: none is left behind.

Memory: a part's bytes are read only once it holds one of the mount's `part_slots`
(`upload_concurrency` of them, shared by every upload and `stream.PartStream` of the mount),
and held until its request is answered; so however many files are uploaded at once, at most
that many part bodies are in memory. Server-side part copies hold no bytes and take no slot
(each upload still sends at most `upload_concurrency` requests at a time).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import trio

from .buffer import PAGE
from .content import Content
from .errors import ServerNotImplemented, SsecfsError, StoreError, one_error
from .keys import KeyRing
from .parts import COPY_CHUNK, PartPlan, plan_parts
from .ranges import ByteRange
from .store.base import Body, ObjectInfo, ObjectStore, Part, Stored

log = logging.getLogger(__name__)

LOST_CREATE_MARGIN_NS = 300 * 10**9  # server clock ahead of or behind ours

Reader = Callable[[ByteRange], Awaitable[Body]]


@dataclass(slots=True)
class ServerCaps:
    """What this server turned out not to support (learned from 501 answers)."""

    copy_object: bool = True
    part_copy: bool = True

    def refuse(self, what: str) -> None:
        if getattr(self, what):
            setattr(self, what, False)
            log.info("the server does not implement %s for these objects; using a fallback "
                     "for the rest of this mount", what)


class Transfers:
    def __init__(self, store: ObjectStore, keys: KeyRing, part_size: int, concurrency: int,
                 caps: ServerCaps | None = None) -> None:
        self.store = store
        self.keys = keys
        self.sse = keys.writer  # everything stored is stored under the writing key
        self.part_size = part_size
        self.concurrency = concurrency
        # part bodies in memory at a time, for the whole mount (a Semaphore, not a limiter:
        # a streamed part is taken by the writer and given back by the task that sends it)
        self.part_slots = trio.Semaphore(max(1, concurrency))
        self.caps = caps or ServerCaps()
        # multipart uploads whose abort failed (the server was away): aborted later
        self.unaborted: list[tuple[str, str]] = []
        # keys whose CreateMultipartUpload failed -> when it first did: the server may have
        # made the upload and lost only its answer (a connection cut), leaving an upload
        # this mount never learnt the id of
        self._lost_creates: dict[str, int] = {}
        self._live: set[str] = set()  # upload ids this mount is using now

    @property
    def leftovers(self) -> bool:
        """Whether an outage may have left uploads in the bucket (`retry_aborts`)."""
        return bool(self.unaborted or self._lost_creates)

    async def retry_aborts(self) -> None:
        """Abort the uploads an outage left behind; those that still fail stay listed."""
        pending, self.unaborted = self.unaborted, []
        for key, upload_id in pending:
            try:
                await self.store.abort_multipart(key, upload_id)
                log.info("aborted the multipart upload of %s left by an earlier failure", key)
            except SsecfsError:
                self.unaborted.append((key, upload_id))
        for key, since in list(self._lost_creates.items()):
            try:
                uploads = await self.store.list_uploads(key)
            except SsecfsError:
                continue
            del self._lost_creates[key]
            for up in uploads:
                # the exact key, not in use here, begun around or after the failed create
                # (a margin for the server's clock)
                if up.key == key and up.upload_id not in self._live \
                        and up.initiated_ns >= since - LOST_CREATE_MARGIN_NS:
                    log.info("aborting an upload of %s whose creation this mount saw fail",
                             key)
                    await self.abort(key, up.upload_id)

    async def create_multipart(self, key: str, metadata: Mapping[str, str],
                               content: Content) -> str:
        """CreateMultipartUpload under the writing key; a failed one is remembered, as the
        server may have made the upload anyway (`retry_aborts` looks for it)."""
        started = time.time_ns()
        try:
            upload_id = await self.store.create_multipart(key, metadata, content,
                                                          self.sse)
        except StoreError:
            self._lost_creates.setdefault(key, started)
            raise
        self._live.add(upload_id)
        return upload_id

    def finished(self, upload_id: str) -> None:
        """The upload is complete or aborted: no longer this mount's to keep."""
        self._live.discard(upload_id)

    async def upload(self, key: str, size: int, metadata: Mapping[str, str],
                     content: Content, read: Reader, clean: Sequence[ByteRange] = (),
                     source: ObjectInfo | None = None) -> Stored:
        """Store `size` bytes at `key`. `read` gives the bytes; ranges in `clean` equal the
        object `source` in the bucket and may be copied server-side instead of sent."""
        if size <= self.part_size:
            if size <= PAGE:  # small: not worth a slot (and many small files may go at once)
                return await self._put(key, size, metadata, content, read)
            async with self.part_slots:
                return await self._put(key, size, metadata, content, read)
        copyable = clean if (source is not None and self._part_copyable(source)) else ()
        plans = plan_parts(size, self.part_size, copyable)
        return await self._multipart(key, metadata, content, plans, read, source)

    async def _put(self, key: str, size: int, metadata: Mapping[str, str], content: Content,
                   read: Reader) -> Stored:
        return await self.store.put(key, bytes(await read(ByteRange(0, size))), metadata,
                                    content, self.sse)

    async def _multipart(self, key: str, metadata: Mapping[str, str], content: Content,
                         plans: Sequence[PartPlan], read: Reader,
                         source: ObjectInfo | None) -> Stored:
        upload_id = await self.create_multipart(key, metadata, content)
        if self.leftovers:
            await self.retry_aborts()  # the server answers again
        parts: list[Part] = []
        try:
            limiter = trio.CapacityLimiter(self.concurrency)  # server-side copies too

            async def one(plan: PartPlan) -> None:
                async with limiter:
                    parts.append(await self._part(key, upload_id, plan, read, source))

            with one_error():
                async with trio.open_nursery() as nursery:
                    for plan in plans:
                        nursery.start_soon(one, plan)
            stored = await self.store.complete_multipart(key, upload_id, parts)
            self.finished(upload_id)
            return stored
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.abort(key, upload_id)
            raise

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort an upload; one that cannot be aborted now is kept for `retry_aborts`."""
        self.finished(upload_id)
        try:
            await self.store.abort_multipart(key, upload_id)
        except Exception as exc:
            log.warning("could not abort the multipart upload of %s: %s; trying again later",
                        key, exc)
            self.unaborted.append((key, upload_id))

    async def _part(self, key: str, upload_id: str, plan: PartPlan, read: Reader,
                    source: ObjectInfo | None) -> Part:
        if plan.copy and source is not None and self._part_copyable(source):
            try:
                return await self.store.upload_part_copy(
                    key, upload_id, plan.number, source.key, plan.rng, self.sse,
                    self.keys.for_md5(source.key_md5))
            except ServerNotImplemented:
                self.caps.refuse("part_copy")
        async with self.part_slots:  # the bytes pass through here: a slot of the mount's
            return await self.store.upload_part(key, upload_id, plan.number,
                                                await read(plan.rng), self.sse)

    async def copy(self, source: ObjectInfo, target: str, metadata: Mapping[str, str],
                   content: Content) -> Stored:
        """Make `target` hold the bytes of `source` with new metadata (target may be source)."""
        if source.size == 0:
            return await self.store.put(target, b"", metadata, content, self.sse)
        source_sse = self.keys.for_md5(source.key_md5)
        if self.caps.copy_object:
            try:
                return await self.store.copy(source.key, target, metadata, content,
                                             self.sse, source_sse)
            except ServerNotImplemented:
                self.caps.refuse("copy_object")
            except StoreError as exc:
                # a key change a server refuses (SeaweedFS: a self-copy that changes only
                # the key): this copy streams; same-key copies keep using CopyObject
                if source_sse in (None, self.sse) or exc.transient or exc.status != 400:
                    raise
                log.debug("CopyObject of %s to another key refused (%s): streaming it",
                          source.key, exc)
        if self._part_copyable(source):
            plans = [PartPlan(i + 1, rng, True) for i, rng in
                     enumerate(_copy_ranges(source.size, max(COPY_CHUNK, self.part_size)))]
            try:
                return await self._multipart(target, metadata, content, plans,
                                             self._reader(source), source)
            except ServerNotImplemented:
                self.caps.refuse("part_copy")
        # last resort: the bytes pass through this process (memory only)
        return await self.upload(target, source.size, metadata, content,
                                 self._reader(source))

    def _part_copyable(self, source: ObjectInfo) -> bool:
        """Whether UploadPartCopy may copy from `source`: the server has it, and the source is
        under the writing key (or unencrypted)."""
        return self.caps.part_copy and self.keys.for_md5(source.key_md5) in (None, self.sse)

    def _reader(self, source: ObjectInfo) -> Reader:
        async def read(rng: ByteRange) -> bytes:
            return await self.store.get_range(source.key, rng,
                                              self.keys.for_md5(source.key_md5),
                                              etag=source.etag or None)
        return read


def _copy_ranges(size: int, chunk: int) -> list[ByteRange]:
    return [ByteRange(s, min(s + chunk, size)) for s in range(0, size, chunk)]
