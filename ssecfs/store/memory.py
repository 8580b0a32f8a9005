"""MemoryStore: an in-memory ObjectStore that enforces SSE-C as AWS does, for core tests.

- An object stored with a key opens only with that key: no key or another key is refused
  (KeyMismatch, as `S3Store` reports it); the key's MD5 is echoed in `ObjectInfo.key_md5`. An
  object stored without SSE-C is served whatever key is sent, with `key_md5=None`.
- Multipart uploads enforce the key of CreateMultipartUpload on every part; copies need the
  source's key (`source_sse`).
- `copy_object_501` / `part_copy_501` make CopyObject / UploadPartCopy answer
  ServerNotImplemented, as Ceph RGW 16 and SeaweedFS do for SSE-C objects.
- `names_key_on_mismatch`: a refusal of a wrong key names the object's key MD5
  (`KeyMismatch.echoed_md5`), as a server that echoes the object's own key MD5 does.
- `requests` counts requests by operation name (the S3 API's names).
- Key rotation (`head_as`, `put_if`, `copy_if`, ...): content headers besides the type are
  kept in a side table, valid for the very object they were written with. `if_match_bare_only`
  makes a quoted If-Match on PutObject fail with 412 as Ceph RGW 16 does (only the bare hex
  works); `if_match_ignored` makes PutObject ignore If-Match (a server without conditional
  writes); `copy_if_match_ignored` does the same for CopySourceIfMatch.
- Faults: `fail(op, times, exc)` makes the next calls of `op` fail; `faults` takes a seeded
  schedule (`FaultSchedule`) that fails each request with some probability.
- Versioning (`enable_versioning()`): every write and delete then adds a version (a delete
  adds a delete marker), `head`/`get_range` take a `version_id`, and `list_versions_page`
  lists them newest first, delete markers apart, as boto3 parses ListObjectVersions;
  `clock_ns` is the LastModified the next write gets (it moves on by 1 ms per write).
- `pause(op)` returns a `Gate`: the next call of `op` stops just before it takes effect until
  the test releases it, so a race (a rename while an upload is in flight) is deterministic.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import trio

from ..content import Content
from ..errors import KeyMismatch, NotFound, ServerNotImplemented, Stale, StoreError
from ..keys import SseCKey
from ..ranges import ByteRange
from .base import (
    Body,
    ListedObject,
    ListedVersion,
    ListPage,
    ObjectHead,
    ObjectInfo,
    Part,
    Stored,
    Upload,
    VersionPage,
)


@dataclass(slots=True)
class StoredObject:
    body: bytes
    metadata: dict[str, str]
    content: Content
    key_md5: str | None
    etag: str
    last_modified_ns: int


@dataclass(slots=True)
class _Upload:
    key: str
    metadata: dict[str, str]
    content: Content
    key_md5: str | None
    parts: dict[int, bytes] = field(default_factory=dict)
    initiated_ns: int = field(default_factory=time.time_ns)


@dataclass(eq=False, slots=True)
class Gate:
    """Holds one call of an operation just before it takes effect, or (`after`) once it took
    effect and before its answer reaches the caller: a HEAD or a listing "in flight"."""

    op: str
    key: str | None
    after: bool = False
    reached: trio.Event = field(default_factory=trio.Event)
    _go: trio.Event = field(default_factory=trio.Event)

    def release(self) -> None:
        self._go.set()


class FaultSchedule:
    """Fails requests at random with a fixed seed: the same seed, the same faults."""

    def __init__(self, seed: int, rate: float, ops: Sequence[str] | None = None) -> None:
        self._rng = random.Random(seed)
        self.rate = rate
        self.ops = set(ops) if ops else None
        self.injected = 0

    def __call__(self, op: str) -> bool:
        if self.ops is not None and op not in self.ops:
            return False
        hit = self._rng.random() < self.rate
        self.injected += hit
        return hit


def _md5(sse: SseCKey | None) -> str | None:
    return None if sse is None else sse.md5_b64


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, StoredObject] = {}
        self.uploads: dict[str, _Upload] = {}
        self.requests: Counter[str] = Counter()
        self.copy_object_501 = False
        self.part_copy_501 = False
        self.no_write_echo = False  # answers to writes echo no key MD5 (a HEAD must check)
        self.names_key_on_mismatch = False  # a wrong key's refusal names the object's MD5
        self.if_match_bare_only = False
        self.if_match_ignored = False
        self.copy_if_match_ignored = False
        self.faults: Callable[[str], bool] | None = None
        self._fail: dict[str, list[Exception]] = {}
        self._gates: list[Gate] = []
        self._next_upload = 0
        self.clock_ns = time.time_ns()
        self.versioning_status = ""
        # key -> its versions, oldest first: (version id or None for "null", the object or
        # None for a delete marker, LastModified)
        self.history: dict[str, list[tuple[str | None, StoredObject | None, int]]] = {}
        self._next_version = 0

    # ---------------------------------------------------------------- test controls
    def fail(self, op: str, times: int = 1, exc: Exception | None = None) -> None:
        self._fail.setdefault(op, []).extend(
            [exc or StoreError(f"{op}: injected fault")] * times)

    def pause(self, op: str, key: str | None = None, *, after: bool = False) -> Gate:
        gate = Gate(op, key, after)
        self._gates.append(gate)
        return gate

    def put_object(self, key: str, body: bytes, sse: SseCKey | None = None,
                   metadata: Mapping[str, str] | None = None,
                   content_type: str = "application/octet-stream",
                   content: Content | None = None) -> None:
        """Store an object as another client would (no request counted)."""
        self._store(key, body, dict(metadata or {}), content or Content(content_type),
                    _md5(sse))

    def body(self, key: str) -> bytes:
        return self.objects[key].body

    def enable_versioning(self) -> None:
        """Versioning on: what is stored now becomes each key's "null" version."""
        self.versioning_status = "Enabled"
        for key, obj in self.objects.items():
            self.history.setdefault(key, [(None, obj, obj.last_modified_ns)])

    def _versioned(self, key: str, obj: StoredObject | None) -> None:
        if self.versioning_status:
            self._next_version += 1
            self.history.setdefault(key, []).append(
                (f"v{self._next_version}", obj, self.clock_ns))

    # ---------------------------------------------------------------- plumbing
    async def _request(self, op: str, key: str) -> None:
        self.requests[op] += 1
        await trio.lowlevel.checkpoint()
        queued = self._fail.get(op)
        if queued:
            raise queued.pop(0)
        if self.faults is not None and self.faults(op):
            raise StoreError(f"{op} {key}: injected fault")
        await self._gate(op, key, after=False)

    async def _gate(self, op: str, key: str, *, after: bool) -> None:
        for gate in self._gates:
            if gate.op == op and gate.key in (None, key) and gate.after is after:
                self._gates.remove(gate)
                gate.reached.set()
                await gate._go.wait()
                return

    def _store(self, key: str, body: bytes, metadata: dict[str, str], content: Content,
               key_md5: str | None, etag: str | None = None) -> Stored:
        self.clock_ns += 1_000_000
        obj = self.objects[key] = StoredObject(
            body, {k.lower(): v for k, v in metadata.items()}, content, key_md5,
            etag or f'"{hashlib.md5(body).hexdigest()}"', self.clock_ns)
        self._versioned(key, obj)
        return Stored(obj.etag, None if self.no_write_echo else key_md5)

    def _open(self, key: str, sse: SseCKey | None, op: str,
              version_id: str | None = None) -> StoredObject:
        obj = self.objects.get(key)
        if version_id is not None:
            found = [o for v, o, _ in self.history.get(key, ())
                     if (v or "null") == version_id]
            obj = found[0] if found else None
        if obj is None:
            raise NotFound(f"{op} {key}: 404 NoSuchKey")
        if obj.key_md5 is not None and obj.key_md5 != _md5(sse):
            err = KeyMismatch(f"{op} {key}: encrypted with another key")
            err.status = 400 if sse is None else 403
            if self.names_key_on_mismatch:
                err.echoed_md5 = obj.key_md5
            raise err
        return obj

    @staticmethod
    def _info(key: str, obj: StoredObject) -> ObjectInfo:
        return ObjectInfo(key=key, size=len(obj.body), etag=obj.etag,
                          last_modified_ns=obj.last_modified_ns, metadata=dict(obj.metadata),
                          key_md5=obj.key_md5, content=obj.content)

    # ---------------------------------------------------------------- reads
    async def head(self, key: str, sse: SseCKey | None, *,
                   encrypted: bool = False, version_id: str | None = None) -> ObjectInfo:
        await self._request("HeadObject", key)
        info = self._info(key, self._open(key, sse, "HeadObject", version_id))
        await self._gate("HeadObject", key, after=True)
        return info

    async def get_range(self, key: str, rng: ByteRange | None, sse: SseCKey | None, *,
                        etag: str | None = None, version_id: str | None = None) -> bytes:
        if rng is not None and len(rng) == 0:
            return b""
        await self._request("GetObject", key)
        obj = self._open(key, sse, "GetObject", version_id)
        if etag and etag != obj.etag:
            raise Stale(f"GetObject {key}: 412 PreconditionFailed")
        data = obj.body if rng is None else obj.body[rng.start : rng.end]
        if rng is not None and len(data) != len(rng):
            raise Stale(f"GetObject {key}: asked for {len(rng)} bytes, got {len(data)}")
        return data

    async def list_page(self, prefix: str, *, delimiter: str | None = "/",
                        token: str | None = None, max_keys: int = 1000) -> ListPage:
        await self._request("ListObjectsV2", prefix)
        entries: list[tuple[str, ListedObject | None]] = []
        seen: set[str] = set()
        for key in sorted(k for k in self.objects if k.startswith(prefix)):
            rest = key[len(prefix):]
            if delimiter and delimiter in rest:
                common = prefix + rest[: rest.index(delimiter) + 1]
                if common not in seen:
                    seen.add(common)
                    entries.append((common, None))
                continue
            obj = self.objects[key]
            entries.append((key, ListedObject(key, len(obj.body), obj.etag,
                                              obj.last_modified_ns)))
        if token is not None:
            entries = [e for e in entries if e[0] > token]
        page, more = entries[:max_keys], len(entries) > max_keys
        answer = ListPage(tuple(o for _, o in page if o is not None),
                          tuple(k for k, o in page if o is None),
                          page[-1][0] if more and page else None)
        await self._gate("ListObjectsV2", prefix, after=True)
        return answer

    # ---------------------------------------------------------------- writes
    async def put(self, key: str, body: bytes, metadata: Mapping[str, str],
                  content: Content, sse: SseCKey | None, *,
                  if_match: str | None = None) -> Stored:
        await self._request("PutObject", key)
        if if_match and not self.if_match_ignored:
            current = self.objects.get(key)
            if current is None:
                raise NotFound(f"PutObject {key}: 404 NoSuchKey (If-Match)")
            quoted = if_match.startswith('"')
            if (quoted and self.if_match_bare_only) or \
                    if_match.strip('"') != current.etag.strip('"'):
                raise Stale(f"PutObject {key}: 412 PreconditionFailed")
        return self._store(key, bytes(body), dict(metadata), content, _md5(sse))

    async def create_multipart(self, key: str, metadata: Mapping[str, str],
                               content: Content, sse: SseCKey | None) -> str:
        await self._request("CreateMultipartUpload", key)
        self._next_upload += 1
        upload_id = f"upload-{self._next_upload}"
        self.uploads[upload_id] = _Upload(key, dict(metadata), content, _md5(sse))
        return upload_id

    def _upload(self, key: str, upload_id: str, op: str) -> _Upload:
        up = self.uploads.get(upload_id)
        if up is None or up.key != key:
            raise NotFound(f"{op} {key}: 404 NoSuchUpload")
        return up

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body,
                          sse: SseCKey | None) -> Part:
        await self._request("UploadPart", key)
        up = self._upload(key, upload_id, "UploadPart")
        if up.key_md5 != _md5(sse):
            raise StoreError(f"UploadPart {key}: 400 the key differs from the upload's")
        up.parts[number] = bytes(body)
        return Part(number, f'"{hashlib.md5(up.parts[number]).hexdigest()}"')

    async def upload_part_copy(self, key: str, upload_id: str, number: int, source: str,
                               rng: ByteRange, sse: SseCKey | None,
                               source_sse: SseCKey | None, *,
                               source_etag: str | None = None) -> Part:
        await self._request("UploadPartCopy", key)
        if self.part_copy_501:
            raise ServerNotImplemented(f"UploadPartCopy {key}: 501 NotImplemented")
        up = self._upload(key, upload_id, "UploadPartCopy")
        src = self._open(source, source_sse, "UploadPartCopy")
        if source_etag and src.etag != source_etag:
            raise Stale(f"UploadPartCopy {key}: 412 PreconditionFailed")
        data = src.body[rng.start : rng.end]
        up.parts[number] = data
        return Part(number, f'"{hashlib.md5(data).hexdigest()}"')

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: Sequence[Part]) -> Stored:
        await self._request("CompleteMultipartUpload", key)
        up = self._upload(key, upload_id, "CompleteMultipartUpload")
        numbers = sorted(p.number for p in parts)
        # as S3: the listed parts must have been uploaded; others are discarded
        if not numbers or not set(numbers) <= set(up.parts) or len(set(numbers)) < len(numbers):
            raise StoreError(f"CompleteMultipartUpload {key}: 400 InvalidPart")
        body = b"".join(up.parts[n] for n in numbers)
        digest = hashlib.md5(b"".join(hashlib.md5(up.parts[n]).digest() for n in numbers))
        del self.uploads[upload_id]
        self._store(key, body, up.metadata, up.content, up.key_md5,
                    f'"{digest.hexdigest()}-{len(numbers)}"')
        return Stored("", None)  # as Ceph RGW: no ETag, no key MD5

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self._request("AbortMultipartUpload", key)
        self.uploads.pop(upload_id, None)

    async def copy(self, source: str, target: str, metadata: Mapping[str, str],
                   content: Content, sse: SseCKey | None,
                   source_sse: SseCKey | None, *, source_etag: str | None = None) -> Stored:
        await self._request("CopyObject", target)
        if self.copy_object_501:
            raise ServerNotImplemented(f"CopyObject {target}: 501 NotImplemented")
        src = self._open(source, source_sse, "CopyObject")
        if source_etag and not self.copy_if_match_ignored and source_etag != src.etag:
            raise Stale(f"CopyObject {target}: 412 PreconditionFailed")
        return self._store(target, src.body, dict(metadata), content, _md5(sse))

    def remove(self, key: str) -> None:
        """Delete an object as another client would (no request counted)."""
        self.objects.pop(key, None)
        if self.versioning_status:
            self.clock_ns += 1_000_000
            self._versioned(key, None)

    async def delete(self, key: str) -> None:
        await self._request("DeleteObject", key)
        self.remove(key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        await self._request("DeleteObjects", keys[0] if keys else "")
        for key in keys:
            self.remove(key)

    async def list_uploads(self, prefix: str) -> list[Upload]:
        await self._request("ListMultipartUploads", prefix)
        return [Upload(u.key, uid, u.initiated_ns) for uid, u in self.uploads.items()
                if u.key.startswith(prefix)]

    # ---------------------------------------------------------------- rotation and checks
    async def head_as(self, key: str, sse: SseCKey | None, *,
                      version_id: str | None = None) -> ObjectHead:
        await self._request("HeadObject", key)
        obj = self._open(key, sse, "HeadObject", version_id)
        head = ObjectHead(key=key, size=len(obj.body), etag=obj.etag,
                          metadata=dict(obj.metadata), headers=obj.content,
                          key_md5=obj.key_md5)
        await self._gate("HeadObject", key, after=True)
        return head

    async def list_versions_page(self, prefix: str, *,
                                 marker: tuple[str, str] | None = None,
                                 max_keys: int = 1000,
                                 delimiter: str | None = None) -> VersionPage:
        # without versioning every object is its one ("null") version
        await self._request("ListObjectVersions", prefix)
        keys = sorted(k for k in set(self.objects) | set(self.history) if k.startswith(prefix))
        entries: list[tuple[str, ListedVersion | None]] = []  # (marker, version or prefix)
        for key in keys:
            rest = key[len(prefix):]
            if delimiter and delimiter in rest:
                common = prefix + rest[: rest.index(delimiter) + 1]
                if not entries or entries[-1] != (common, None):
                    entries.append((common, None))
                continue
            history = self.history.get(key) or [(None, self.objects[key],
                                                 self.objects[key].last_modified_ns)]
            for i, (vid, obj, when) in enumerate(reversed(history)):
                entries.append((key, ListedVersion(
                    key, vid, len(obj.body) if obj else 0, obj.etag if obj else "", i == 0,
                    when, obj is None)))
        if marker is not None:
            after = [i for i, (k, v) in enumerate(entries) if k == marker[0] and (
                v is None or not marker[1] or v.request_id == marker[1])]
            start = after[-1] + 1 if after else \
                next((i for i, (k, _) in enumerate(entries) if k > marker[0]), len(entries))
            entries = entries[start:]
        page, more = entries[:max_keys], len(entries) > max_keys
        versions = tuple(v for _, v in page if v is not None)
        nxt = None
        if more and page:
            last_key, last = page[-1]
            nxt = (last_key, last.request_id if last is not None else "")
        return VersionPage(tuple(v for v in versions if not v.delete_marker), nxt,
                           tuple(v for v in versions if v.delete_marker),
                           tuple(k for k, v in page if v is None))

    async def versioning(self) -> str:
        await self._request("GetBucketVersioning", "")
        return self.versioning_status
