"""PartStream: a multipart upload that runs while a new file is still being written.

Theory of operation: a file whose content is all local (new, or truncated to nothing) and
that grows past a part is uploaded part by part as the application writes — each full part as
soon as it is written, each part holding one of the mount's part slots until it is answered
(`Transfers.part_slots`, shared with every other upload; the writer waits for a slot: the
application writes at the network's pace), so that `close()` has only the tail to send. The
buffer keeps every page until the upload is complete: a later write over a part already sent
marks it stale (`touched`), and `finish` sends it again from the buffer, as it sends the parts
that failed. `finish` completes the upload only when the stream still fits the file (same key,
same metadata, the part size the file's size needs); otherwise it answers None, the caller
uploads the file the ordinary way and the stream is aborted. Nothing is acknowledged before
`finish` (at close/fsync) has completed the upload, so a stream never weakens "nothing lost".

The object's `x-amz-meta-mtime` is not known when the upload starts (every write moves it):
a streamed object carries none, and its mtime is then the object's Last-Modified, the time the
upload completed (s3fs does the same for objects without it). A file whose times or mode are
set while it is being written is not streamed further.

Rule: `touched`, `feed` and `finish` run under the file's lock (the writer's rule); the part
tasks run in the filesystem's nursery, never raise, and take no lock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import trio

from .content import Content
from .errors import SsecfsError, one_error
from .keys import SseCKey
from .parts import part_size_for
from .ranges import ByteRange
from .store.base import Body, ObjectStore, Part, Stored

log = logging.getLogger(__name__)

Read = Callable[[ByteRange], Awaitable[Body]]


class Uploads(Protocol):
    """What a stream needs of `transfer.Transfers`: uploads it creates, ends and aborts are
    known to the mount (an outage's leftovers are found and aborted there)."""

    async def create_multipart(self, key: str, metadata: Mapping[str, str],
                               content: Content) -> str: ...

    @property
    def part_slots(self) -> trio.Semaphore: ...

    def finished(self, upload_id: str) -> None: ...

    async def abort(self, key: str, upload_id: str) -> None: ...


def streamed_metadata(meta: Mapping[str, str]) -> dict[str, str]:
    """The metadata a stream is created with: all but the times, unknown until the end."""
    return {k: v for k, v in meta.items() if k not in ("mtime", "ctime", "atime")}


class PartStream:
    def __init__(self, store: ObjectStore, sse: SseCKey, key: str, metadata: Mapping[str, str],
                 content: Content, part_size: int, nursery: trio.Nursery,
                 uploads: Uploads) -> None:
        self.store = store
        self.sse = sse
        self.key = key
        self.metadata = streamed_metadata(metadata)
        self.content = content
        self.part_size = part_size
        self._nursery = nursery
        self._uploads = uploads
        self.upload_id: str | None = None
        self.dead = False  # the upload could not be created, or was given up
        self.sent = 0  # parts [0, sent) were handed to a task (by index from 0)
        self._done: dict[int, tuple[ByteRange, Part]] = {}
        self._gen: dict[int, int] = {}  # bumped when a part's bytes change after sending
        self._slots = uploads.part_slots
        self._idle = trio.Event()
        self._idle.set()
        self._running = 0
        self._create_lock = trio.Lock()
        self.settled = trio.Event()  # completed, or given up and its abort done
        self._abort_started = False

    # ------------------------------------------------------------ while writing
    def touched(self, start: int, end: int) -> None:
        """Bytes [start, end) changed: the parts over them that were sent are stale."""
        first, last = start // self.part_size, (max(end, start + 1) - 1) // self.part_size
        for i in range(first, min(last + 1, self.sent)):
            self._gen[i] = self._gen.get(i, 0) + 1
            self._done.pop(i, None)

    def truncated(self, size: int) -> None:
        self.touched(size, self.sent * self.part_size)
        self.sent = min(self.sent, size // self.part_size)

    async def feed(self, size: int, read: Read) -> None:
        """Send each part that `size` bytes of file now fill and that was not sent yet."""
        while not self.dead and (self.sent + 1) * self.part_size <= size:
            i = self.sent
            rng = ByteRange(i * self.part_size, (i + 1) * self.part_size)
            # back-pressure: the writer waits for a free slot, and only then reads the part
            # (the mount's slots bound the parts read out of buffers at a time)
            await self._slots.acquire()
            try:
                data = await read(rng)
            except BaseException:
                self._slots.release()
                raise
            self.sent += 1
            self._running += 1
            self._idle = trio.Event() if self._running == 1 else self._idle
            self._nursery.start_soon(self._send, i, rng, data, self._gen.get(i, 0))

    async def _ensure_upload(self) -> str | None:
        async with self._create_lock:
            if self.upload_id is None and not self.dead:
                try:
                    upload_id = await self._uploads.create_multipart(
                        self.key, self.metadata, self.content)
                except SsecfsError as exc:
                    log.info("streaming the upload of %s failed to start (%s); it is "
                             "uploaded at close", self.key, exc)
                    self.dead = True
                    return None
                self.upload_id = upload_id  # given up meanwhile: `_abort_later` aborts it
            return None if self.dead else self.upload_id

    async def _send(self, i: int, rng: ByteRange, data: Body, gen: int) -> None:
        try:
            upload_id = await self._ensure_upload()
            if upload_id is not None and not self.dead:
                part = await self.store.upload_part(self.key, upload_id, i + 1, data, self.sse)
                if self._gen.get(i, 0) == gen and not self.dead:
                    self._done[i] = (rng, part)
        except Exception as exc:  # a task in the filesystem's nursery must never raise
            log.debug("part %d of %s failed while streaming (%s); sent again at close",
                      i + 1, self.key, exc)
        finally:
            self._running -= 1
            self._slots.release()
            if self._running == 0:
                self._idle.set()

    # ------------------------------------------------------------ at close / fsync
    async def finish(self, key: str, size: int, metadata: Mapping[str, str],
                     content: Content, read: Read) -> Stored | None:
        """Complete the upload as the file's `size` bytes at `key`: the parts already sent
        and unchanged are kept, the others sent now. None: this stream does not fit the file
        any more (it is then aborted); the caller uploads the ordinary way."""
        await self._idle.wait()
        usable = (not self.dead and self.upload_id is not None and key == self.key
                  and size > self.part_size and content == self.content
                  and streamed_metadata(metadata) == self.metadata
                  and part_size_for(size, self.part_size) == self.part_size)
        if not usable:
            self.give_up()
            return None
        assert self.upload_id is not None
        upload_id = self.upload_id
        ranges = [ByteRange(s, min(s + self.part_size, size))
                  for s in range(0, size, self.part_size)]
        parts: dict[int, Part] = {i: part for i, (rng, part) in self._done.items()
                                  if i < len(ranges) and ranges[i] == rng}
        async def send(i: int) -> None:
            async with self._slots:
                parts[i] = await self.store.upload_part(key, upload_id, i + 1,
                                                        await read(ranges[i]), self.sse)

        try:
            with one_error():
                async with trio.open_nursery() as nursery:
                    for i in range(len(ranges)):
                        if i not in parts:
                            nursery.start_soon(send, i)
            stored = await self.store.complete_multipart(
                key, upload_id, [parts[i] for i in range(len(ranges))])
            self._uploads.finished(upload_id)
        except BaseException:
            # aborted before the error is raised, as any failed multipart upload; the retry
            # uploads the ordinary way (the data is all in the buffer still)
            self.dead, self.upload_id = True, None
            with trio.CancelScope(shield=True):
                await self._uploads.abort(key, upload_id)
            self.settled.set()
            raise
        self.dead = True  # complete: nothing to abort
        self.upload_id = None
        self.settled.set()
        return stored

    def give_up(self) -> None:
        """Stop streaming and abort the upload, in the background (`settled` is set when
        that is done; a failed abort is retried later by the transfers' abort list)."""
        self.dead = True
        if not self.settled.is_set() and not self._abort_started:
            self._abort_started = True
            self._nursery.start_soon(self._abort_later)

    async def _abort_later(self) -> None:
        try:
            await self._idle.wait()  # parts in flight first: an abort racing them may leave one
            async with self._create_lock:  # and a CreateMultipartUpload in flight
                upload_id, self.upload_id = self.upload_id, None
            if upload_id is not None:
                await self._uploads.abort(self.key, upload_id)
        except Exception as exc:  # never raise in the nursery
            log.warning("could not abort the streamed upload of %s: %s", self.key, exc)
        finally:
            self.settled.set()
