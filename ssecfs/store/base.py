"""What the filesystem needs from an object store, as values and one Protocol.

All SSE-C handling lives behind this seam (in `s3.py`): callers say whether an object is
encrypted (`ObjectInfo.encrypted`) and the store adds or omits the customer-key headers.
Errors are the `ssecfs.errors` types: NotFound, KeyMismatch, AccessDenied, Stale,
ServerNotImplemented (so callers can fall back to another way of copying), StoreError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..ranges import ByteRange


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD tells about one object."""

    key: str
    size: int
    etag: str
    last_modified_ns: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    encrypted: bool = True  # stored with SSE-C under the mount's key
    content_type: str = ""


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


class ObjectStore(Protocol):
    async def head(self, key: str) -> ObjectInfo: ...

    async def get_range(self, key: str, rng: ByteRange | None, *, encrypted: bool = True,
                        etag: str | None = None) -> bytes: ...

    async def list_page(self, prefix: str, *, delimiter: str | None = "/",
                        token: str | None = None, max_keys: int = 1000) -> ListPage: ...

    async def put(self, key: str, body: bytes, metadata: Mapping[str, str],
                  content_type: str) -> None: ...

    async def create_multipart(self, key: str, metadata: Mapping[str, str],
                               content_type: str) -> str: ...

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> Part: ...

    async def upload_part_copy(self, key: str, upload_id: str, number: int, source: str,
                               rng: ByteRange, *, source_encrypted: bool = True) -> Part: ...

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[Part]) -> None: ...

    async def abort_multipart(self, key: str, upload_id: str) -> None: ...

    async def copy(self, source: str, target: str, metadata: Mapping[str, str],
                   content_type: str, *, source_encrypted: bool = True) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def delete_many(self, keys: Sequence[str]) -> None: ...
