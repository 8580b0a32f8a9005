"""`ssecfs rotate-key`: re-encrypt objects from an old SSE-C key to a new one, in place.

Theory of operation, per object (current versions only: S3 cannot rewrite a past version):

1. `scan.probe` with the old and the new key. Under the new key: "skipped" (so a run that
   was interrupted is resumed by running it again). Under neither, or stored without SSE-C:
   "failed", with the reason. The HEAD gives the ETag, the size, the x-amz-meta-* metadata
   (s3fs's mode/uid/gid/mtime among them) and the content headers, all written again.
2. The rewrite, by the cheapest way the server allows, learnt once per run (`RotateCaps`):
   - server-side: CopyObject of the object onto itself with the new key
     (MetadataDirective=REPLACE, CopySourceIfMatch=ETag), or for objects over 5 GiB a
     multipart copy (UploadPartCopy, CopySourceIfMatch). No data passes through this machine.
     Ceph RGW < v20 answers 501 (and SeaweedFS 501 to UploadPartCopy): the first such answer
     switches the rest of the run to streaming.
   - streamed: ranged GETs with the old key (If-Match: ETag) into one PutObject, or into
     UploadParts of a multipart upload, with the new key. Plaintext is held in memory only,
     at most `jobs` chunks of `part_size` at a time (`_buffers`), never on disk.
3. An object is replaced only while it is still the version that was read. A streamed write
   is preceded by a HEAD that must still show the ETag, and a PutObject carries If-Match.
   Servers differ on its form (RGW 16 honours only the bare hex, AWS the quoted ETag): a 412
   while a HEAD still shows the ETag means the server refused our form, so the next form is
   tried (quoted -> bare -> none, for the rest of the run), never the write unconditioned
   without that HEAD. A multipart upload is completed only after that HEAD and aborted
   otherwise, and on any failure or interruption. An object that changed is "changed" and
   left as it is; the run never deletes an object.
4. The result is verified: the write's answer echoes the new key's MD5, or a HEAD with the
   new key does (CompleteMultipartUpload echoes nothing).

`before_write` is a test seam: awaited with the object's HEAD and the operation's name right
before each write that would replace the object (PutObject, CopyObject — also one that turns
out not to be implemented — and CompleteMultipartUpload), after the checks that precede it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .errors import (
    KeyMismatch,
    NotFound,
    ServerNotImplemented,
    SsecfsError,
    Stale,
    StoreError,
    one_error,
)
from .keys import SseCKey
from .parts import COPY_CHUNK, MAX_PART, PartPlan, plan_parts
from .ranges import ByteRange
from .report import Outcome
from .scan import probe
from .store.base import ListedVersion, ObjectHead, ObjectStore, Part, Stored

log = logging.getLogger(__name__)

MAX_COPY = 5 * 1024**3  # CopyObject's limit: larger objects are copied in parts
IF_MATCH_FORMS = ("quoted", "bare", "none")

Hook = Callable[[ObjectHead, str], Awaitable[None]]  # (object, S3 operation about to run)


def is_bare_marker(head: ObjectHead) -> bool:
    """An empty "dir/" marker stored without SSE-C: no data to protect. SeaweedFS stores
    directory markers as directories, without SSE-C, whatever the request said."""
    return head.key.endswith("/") and head.size == 0 and head.key_md5 is None


class Changed(SsecfsError):
    """The object is no longer the version that was read (or is gone)."""


@dataclass(slots=True)
class RotateCaps:
    """What the server turned out to allow, learnt from its answers during this run."""

    copy: bool = True  # CopyObject that changes the key (RGW < v20: 501)
    part_copy: bool = True  # UploadPartCopy that changes the key (RGW: 400, SeaweedFS: 501)
    if_match: str = "quoted"  # the form of If-Match on PutObject the server honours
    copy_if_match: bool = True  # CopySourceIfMatch honoured
    copied: bool = False  # a key-changing CopyObject worked in this run

    def refuse(self, what: str, why: str) -> None:
        if getattr(self, what):
            setattr(self, what, False)
            log.info("the server refused a key-changing %s (%s): the bytes go through this "
                     "machine for the rest of the run", what.replace("_", " "), why)

    @property
    def method(self) -> str:
        return "server-side copy" if self.copy else "streamed through this machine"


class Rotator:
    def __init__(self, store: ObjectStore, old: SseCKey, new: SseCKey, *,
                 part_size: int = 8 * 1024**2, jobs: int = 8, dry_run: bool = False,
                 caps: RotateCaps | None = None, before_write: Hook | None = None) -> None:
        if old == new:
            raise ValueError("the old and the new key are the same key")
        self.store = store
        self.old = old
        self.new = new
        self.part_size = part_size
        self.dry_run = dry_run
        self.caps = caps or RotateCaps()
        self.before_write = before_write
        # plaintext chunks in memory at once (each up to part_size)
        self._buffers = trio.CapacityLimiter(max(1, jobs))
        self._order = (old, new)  # the key that opened the last object is tried first

    # ---------------------------------------------------------------- one object
    async def rotate(self, obj: ListedVersion) -> Outcome:
        """Rotate one object; never raises an SsecfsError (the outcome tells)."""
        def out(result: str, error: str | None = None, size: int = obj.size) -> Outcome:
            return Outcome(obj.key, obj.version_id, result, size, error)

        try:
            found = await probe(self.store, obj.key, self._order)
        except NotFound:
            return out("changed", "deleted since it was listed")
        except SsecfsError as exc:
            return out("failed", str(exc))
        if found.key is None or found.head is None:
            if found.unencrypted and found.head is not None and is_bare_marker(found.head):
                return out("skipped", "an empty directory marker stored without SSE-C "
                                      "(SeaweedFS stores every marker so): nothing to encrypt")
            if found.unencrypted:
                return out("failed", "stored without SSE-C (not encrypted): rotate-key only "
                                     "rewrites objects under the --from key")
            return out("failed", "encrypted with an unknown key: neither the --from nor the "
                                 "--to key opens it")
        head = found.head
        if found.key is not self._order[0]:
            self._order = (found.key, self._order[0])
        if found.key == self.new:
            return out("skipped", size=head.size)
        if self.dry_run:
            return out("would_rotate", size=head.size)
        try:
            stored = await self._rewrite(head)
            await self._verify(head, stored)
        except (Changed, Stale) as exc:
            return out("changed", f"changed since it was read, left as it is ({exc})",
                       head.size)
        except NotFound:
            return out("changed", "deleted since it was read", head.size)
        except SsecfsError as exc:
            return out("failed", str(exc), head.size)
        return out("rotated", size=head.size)

    async def _rewrite(self, head: ObjectHead) -> Stored:
        if head.size > 0 and self.caps.copy and head.size <= MAX_COPY:
            try:
                stored = await self._copy(head)
                self.caps.copied = True
                return stored
            except StoreError as exc:
                if not self._unsupported(exc):
                    raise
                if not self.caps.copied:  # never worked in this run: stop asking
                    self.caps.refuse("copy", str(exc))
        elif head.size > MAX_COPY and self.caps.copy and self.caps.part_copy:
            try:
                return await self._multipart(head, copy=True)
            except StoreError as exc:
                if not self._unsupported(exc):
                    raise
                self.caps.refuse("part_copy", str(exc))
        if head.size <= self.part_size:
            async with self._buffers:
                body = b"" if head.size == 0 else await self.store.get_range(
                    head.key, ByteRange(0, head.size), self.old, etag=head.etag)
                return await self._put(head, body)
        return await self._multipart(head, copy=False)

    @staticmethod
    def _unsupported(exc: StoreError) -> bool:
        # 501: not implemented (RGW < v20); 400: a server that refuses this copy's form
        return isinstance(exc, ServerNotImplemented) or exc.status == 400

    async def _still(self, head: ObjectHead) -> None:
        """Raise Changed unless the object is still the version that was read."""
        try:
            now = await self.store.head_as(head.key, self.old)
        except (KeyMismatch, NotFound):
            raise Changed(f"{head.key} is no longer under the --from key") from None
        if now.etag != head.etag:
            raise Changed(f"ETag {head.etag} is now {now.etag}")

    def _if_match(self, etag: str) -> str | None:
        form = self.caps.if_match
        return None if form == "none" else etag if form == "quoted" else etag.strip('"')

    async def _put(self, head: ObjectHead, body: bytes) -> Stored:
        await self._still(head)
        if self.before_write is not None:
            await self.before_write(head, "PutObject")
        while True:
            used = self.caps.if_match
            cond = self._if_match(head.etag)
            try:
                return await self.store.put(head.key, body, head.metadata, head.headers,
                                            self.new, if_match=cond)
            except Stale:
                if cond is None:
                    raise
                await self._still(head)  # Changed if it did change
                # unchanged, yet refused: the server does not honour this form of If-Match
                # (unless another object's write found that out meanwhile)
                if self.caps.if_match == used:
                    form = IF_MATCH_FORMS[IF_MATCH_FORMS.index(used) + 1]
                    log.info("the server refused If-Match %s on an unchanged object; using "
                             "%s", used, form)
                    self.caps.if_match = form

    async def _copy(self, head: ObjectHead) -> Stored:
        while True:
            cond = head.etag if self.caps.copy_if_match else None
            if cond is None:
                await self._still(head)
            if self.before_write is not None:
                await self.before_write(head, "CopyObject")
            try:
                return await self.store.copy(head.key, head.key, head.metadata,
                                             head.headers, self.new, self.old,
                                             source_etag=cond)
            except Stale:
                if cond is None:
                    raise
                await self._still(head)  # Changed if it did change
                log.info("the server refused CopySourceIfMatch on an unchanged object; "
                         "checking with a HEAD before each copy instead")
                self.caps.copy_if_match = False

    async def _multipart(self, head: ObjectHead, *, copy: bool) -> Stored:
        """A multipart upload of the object onto itself under the new key: parts copied
        server-side (`copy`) or streamed; completed only if the object is unchanged."""
        if copy:
            chunk = min(max(COPY_CHUNK, self.part_size), MAX_PART)
            plans = [PartPlan(i + 1, ByteRange(s, min(s + chunk, head.size)), True)
                     for i, s in enumerate(range(0, head.size, chunk))]
        else:
            plans = plan_parts(head.size, self.part_size)
        upload_id = await self.store.create_multipart(head.key, head.metadata, head.headers,
                                                      self.new)
        try:
            parts: list[Part] = []

            async def one(plan: PartPlan) -> None:
                async with self._buffers:
                    if copy:
                        parts.append(await self.store.upload_part_copy(
                            head.key, upload_id, plan.number, head.key, plan.rng, self.new,
                            self.old, source_etag=head.etag))
                        return
                    data = await self.store.get_range(head.key, plan.rng, self.old,
                                                      etag=head.etag)
                    parts.append(await self.store.upload_part(head.key, upload_id,
                                                              plan.number, data, self.new))

            with one_error():
                async with trio.open_nursery() as nursery:
                    for plan in plans:
                        nursery.start_soon(one, plan)
            await self._still(head)
            if self.before_write is not None:
                await self.before_write(head, "CompleteMultipartUpload")
            return await self.store.complete_multipart(head.key, upload_id, parts)
        except BaseException:
            with trio.CancelScope(shield=True):
                try:
                    await self.store.abort_multipart(head.key, upload_id)
                except SsecfsError as exc:
                    log.warning("could not abort the multipart upload of %s (%s): "
                                "`ssecfs cleanup` removes it", head.key, exc)
            raise

    async def _verify(self, head: ObjectHead, stored: Stored) -> None:
        if stored.proves(self.new):
            return
        try:
            now = await self.store.head_as(head.key, self.new)
        except KeyMismatch:
            raise Changed("after the rewrite the --to key does not open it") from None
        if now.key_md5 != self.new.md5_b64:
            raise StoreError(f"{head.key}: after the rewrite the server echoes no key")
