"""What the filesystem needs from an object store, as values and one Protocol.

Every call that touches object data takes the SSE-C key to use (`sse`), or None for an object
stored without SSE-C: the store adds or omits the customer-key headers, and a copy takes the
source's key and the target's separately. `ObjectInfo.key_md5` is the key MD5 the server
echoed (None: not encrypted), so that a key ring can tell which key opens an object.

Rule: only `ssecfs.errors` types leave a store. NotFound, KeyMismatch, AccessDenied, Stale,
TooBig, ServerNotImplemented (callers fall back to another way of copying) and StoreError for
everything else: a foreign exception (botocore, OSError, ValueError) never crosses this seam.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..content import Content
from ..keys import SseCKey
from ..ranges import ByteRange


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD tells about one object."""

    key: str
    size: int
    etag: str
    last_modified_ns: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    key_md5: str | None = None  # base64 MD5 of the SSE-C key the server echoed; None: plain
    content: Content = field(default_factory=Content)

    @property
    def encrypted(self) -> bool:
        return self.key_md5 is not None


@dataclass(frozen=True, slots=True)
class Stored:
    """What the answer to a write tells about the object it made: its ETag and the key MD5
    the server echoed. An empty ETag or no echo (CompleteMultipartUpload never echoes; Ceph
    RGW answers it with an empty ETag) leaves the check to a HEAD."""

    etag: str = ""
    key_md5: str | None = None

    def proves(self, sse: SseCKey) -> bool:
        """Whether this answer alone shows the object is stored under `sse`."""
        return bool(self.etag) and self.key_md5 == sse.md5_b64


def datetime_ns(dt: datetime.datetime | None) -> int:
    """A time the server gave, in nanoseconds since the epoch (0: none given). Every store
    answer is converted with this one formula: listings, HEADs and the metadata cache
    compare these numbers."""
    return int(dt.timestamp() * 1_000_000_000) if dt is not None else 0


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    etag: str
    last_modified_ns: int


@dataclass(frozen=True, slots=True)
class ListPage:
    objects: tuple[ListedObject, ...]
    prefixes: tuple[str, ...]
    next_token: str | None


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    etag: str


class Chunks:
    """A part's bytes as the pieces they are held in (views of a write buffer's pages), so
    that sending a part needs no joined copy of it: 8 parts in flight otherwise hold 64 MiB
    of copies. The pages a view shows are never resized while it lives (`FileBuffer.pieces`
    gives views of full pages only); `bytes()` joins them, for a store that needs one."""

    __slots__ = ("pieces", "_size")

    def __init__(self, pieces: Sequence[bytes | memoryview]) -> None:
        self.pieces = list(pieces)
        self._size = sum(len(p) for p in self.pieces)

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces)

    def __repr__(self) -> str:
        return f"<Chunks {len(self.pieces)} pieces, {self._size} bytes>"


Body = bytes | Chunks  # what an UploadPart sends


@dataclass(frozen=True, slots=True)
class Upload:
    """An unfinished multipart upload in the bucket."""

    key: str
    upload_id: str
    initiated_ns: int


class ObjectStore(Protocol):
    async def head(self, key: str, sse: SseCKey | None, *,
                   encrypted: bool = False, version_id: str | None = None) -> ObjectInfo:
        """HEAD with `sse`. An object under another key is KeyMismatch; an object stored
        without SSE-C is answered with key_md5=None (whatever `sse` was). `encrypted`: the
        object is known to be under some SSE-C key (an earlier HEAD was a KeyMismatch), so a
        refusal of `sse` is a KeyMismatch without asking why (a key ring's next tries).
        `version_id`: that version of the object (VersionId; "null" for the version made
        before versioning was enabled), else the current one."""

    async def get_range(self, key: str, rng: ByteRange | None, sse: SseCKey | None, *,
                        etag: str | None = None, version_id: str | None = None) -> bytes:
        """GetObject (of `version_id` if given), ranged if `rng` is given, If-Match `etag`."""

    async def list_page(self, prefix: str, *, delimiter: str | None = "/",
                        token: str | None = None, max_keys: int = 1000) -> ListPage: ...

    async def put(self, key: str, body: bytes, metadata: Mapping[str, str],
                  content: Content, sse: SseCKey | None, *,
                  if_match: str | None = None) -> Stored:
        """PutObject; `if_match` is sent as the If-Match header exactly as given (RGW 16
        honours only the bare hex, AWS the quoted form). 412: Stale."""

    async def create_multipart(self, key: str, metadata: Mapping[str, str],
                               content: Content, sse: SseCKey | None) -> str: ...

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body,
                          sse: SseCKey | None) -> Part: ...

    async def upload_part_copy(self, key: str, upload_id: str, number: int, source: str,
                               rng: ByteRange, sse: SseCKey | None,
                               source_sse: SseCKey | None, *,
                               source_etag: str | None = None) -> Part:
        """UploadPartCopy, with CopySourceIfMatch when `source_etag` is given (412: Stale)."""

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: Sequence[Part]) -> Stored: ...

    async def abort_multipart(self, key: str, upload_id: str) -> None: ...

    async def list_uploads(self, prefix: str) -> list[Upload]: ...

    async def copy(self, source: str, target: str, metadata: Mapping[str, str],
                   content: Content, sse: SseCKey | None,
                   source_sse: SseCKey | None, *, source_etag: str | None = None) -> Stored:
        """CopyObject with MetadataDirective=REPLACE, the given metadata and content headers,
        only if the source's ETag is `source_etag` when given (CopySourceIfMatch; 412: Stale).
        501 (Ceph RGW < v20 on SSE-C sources) is ServerNotImplemented."""

    async def delete(self, key: str) -> None: ...

    async def delete_many(self, keys: Sequence[str]) -> None: ...

    # -- key rotation and checks (rotate.py, check.py); the types are defined below
    async def head_as(self, key: str, sse: SseCKey | None, *,
                      version_id: str | None = None) -> ObjectHead:
        """One HEAD with exactly `sse` (or no key), of `version_id` if given; no second
        request. A key the server refuses (400/403) is KeyMismatch with `.status` kept: another
        key, or (AWS) an object stored without SSE-C; no key on an encrypted object is
        KeyMismatch too. An answer without a key echo has key_md5=None."""

    async def list_versions_page(self, prefix: str, *,
                                 marker: tuple[str, str] | None = None,
                                 max_keys: int = 1000,
                                 delimiter: str | None = None) -> VersionPage:
        """One page of ListObjectVersions under `prefix` (with `delimiter`: the keys below
        it rolled up into `VersionPage.prefixes`). A (key, "") marker resumes after that
        key's versions."""

    async def versioning(self) -> str:
        """The bucket's versioning status: "Enabled", "Suspended" or "" (never enabled)."""


# ------------------------------------------------------------------ key rotation and checks
# (rotate.py, check.py): whole-object headers, versions and conditional writes


@dataclass(frozen=True, slots=True)
class ObjectHead:
    """What one HEAD (of one version) tells, every header a rewrite must keep included.
    `key_md5` is the key MD5 the server echoed (None: no echo, the object is stored without
    SSE-C); `version_id` is None on a bucket without versioning."""

    key: str
    size: int
    etag: str
    metadata: Mapping[str, str]
    headers: Content
    key_md5: str | None
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class ListedVersion:
    key: str
    version_id: str | None  # None: the bucket never had versioning ("null" version)
    size: int
    etag: str
    is_latest: bool
    last_modified_ns: int = 0
    delete_marker: bool = False

    @property
    def request_id(self) -> str:
        """The VersionId to ask for this version with ("null": made before versioning)."""
        return self.version_id or "null"


@dataclass(frozen=True, slots=True)
class VersionPage:
    versions: tuple[ListedVersion, ...]  # delete markers are left out (they are below)
    next_marker: tuple[str, str] | None  # (key marker, version id marker)
    delete_markers: tuple[ListedVersion, ...] = ()  # each with delete_marker=True
    prefixes: tuple[str, ...] = ()  # common prefixes, when listed with a delimiter
