"""SnapshotStore: a versioned bucket as it was at a time T, as a read-only ObjectStore.

Theory of operation: the mount's whole read path (`Namespace`, `ReadHandle`, the key ring)
runs unchanged on top of this store, which presents the version of each key that was current
at T (`versions.current_at`) as if it were the plain object:

- `list_page` with a delimiter (a directory listing) is ONE ListObjectVersions walk with that
  delimiter (all its pages, KeyMarker/VersionIdMarker), from which the visible version of each
  child is chosen; every common prefix of that walk is a subdirectory only if something below
  it is visible at T, which one more walk of that prefix (no delimiter, stopped at the first
  visible key: usually one page) tells, concurrently and remembered. The result is kept and
  paged from memory, so the namespace's page-by-page loop costs no further request.
- `list_page` without a delimiter (the namespace's "is there anything below dir/?" probes)
  walks the versions under the prefix only until it has the visible keys it was asked for.
- `head` and `get_range` ask for the chosen version by its VersionId ("null" for one made
  before versioning was enabled), so every ranged GET of a file reads the version its HEAD
  saw, with the key of the ring that opens *that version* (each version may have its own).
- Every walk pins what it saw: key -> its version at T, or "none". A key not pinned yet is
  found by a walk of its own name (one request, usually); a file in a directory that was
  listed whole needs none. T is in the past, so what was chosen never changes: pins and
  listings are kept without a TTL (bounded in number).
- Every write is ReadOnly (EROFS); the mount is read-only anyway (`MountConfig.as_of`
  implies `read_only`), this is the second line.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

import trio

from ..cache import TtlCache
from ..content import Content
from ..errors import NotFound, ReadOnly, StoreError
from ..keys import SseCKey
from ..ranges import ByteRange
from ..versions import current_at, visible_at
from .base import (
    Body,
    ListedObject,
    ListedVersion,
    ListPage,
    ObjectHead,
    ObjectInfo,
    ObjectStore,
    Part,
    Stored,
    Upload,
    VersionPage,
)

PINS_MAX = 1_000_000  # keys whose version at T is remembered
LISTINGS_MAX = 256  # directory listings kept for paging (and for a relisting)
DIR_CHECKS = 16  # walks of subdirectory prefixes in flight for one listing
NAME_PAGE = 100  # versions asked per page when looking up one key by its name

Entry = tuple[str, ListedObject | None]  # a key or a common prefix (None), in key order


def as_of_text(as_of_ns: int) -> str:
    when = datetime.datetime.fromtimestamp(as_of_ns / 1e9, datetime.UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _listed(version: ListedVersion) -> ListedObject:
    return ListedObject(version.key, version.size, version.etag, version.last_modified_ns)


class SnapshotStore:
    def __init__(self, inner: ObjectStore, as_of_ns: int) -> None:
        self.inner = inner
        self.as_of_ns = as_of_ns
        self._when = as_of_text(as_of_ns)
        # key -> (its version at T, or None: it did not exist then)
        self._pins: TtlCache[str, tuple[ListedVersion | None]] = TtlCache(
            float("inf"), max_entries=PINS_MAX)
        # prefixes whose direct children were all pinned by a listing
        self._complete: TtlCache[str, bool] = TtlCache(float("inf"), max_entries=PINS_MAX)
        self._dirs: TtlCache[str, bool] = TtlCache(float("inf"), max_entries=PINS_MAX)
        self._listings: TtlCache[tuple[str, str], list[Entry]] = TtlCache(
            float("inf"), max_entries=LISTINGS_MAX)

    def __repr__(self) -> str:
        return f"<SnapshotStore {self.inner!r} as of {self._when}>"

    # ---------------------------------------------------------------- pinning
    def _pin(self, key: str, entries: Sequence[ListedVersion]) -> ListedVersion | None:
        chosen = current_at(entries, self.as_of_ns)
        self._pins.put(key, (chosen,))
        return chosen

    async def _walk(self, prefix: str, delimiter: str | None,
                    marker: tuple[str, str] | None = None,
                    max_keys: int = 1000) -> VersionPage:
        page = await self.inner.list_versions_page(prefix, marker=marker, max_keys=max_keys,
                                                   delimiter=delimiter)
        if page.next_marker is not None and page.next_marker == marker:
            raise StoreError(f"ListObjectVersions {prefix or '/'}: the server answered the "
                             f"same page twice")
        return page

    async def version_of(self, key: str) -> ListedVersion | None:
        """The version of `key` current at T (None: the key did not exist then)."""
        pinned = self._pins.get(key)
        if pinned is not None:
            return pinned[0]
        parent = key[: key.rstrip("/").rfind("/") + 1]
        if not key.endswith("/") and self._complete.get(parent):
            return None  # its directory was listed whole, and it was not in it
        # the versions of `key` come first under the prefix `key` (every other key there is
        # longer); the walk ends as soon as another key shows up
        entries: list[ListedVersion] = []
        marker: tuple[str, str] | None = None
        while True:
            page = await self._walk(key, "/", marker, NAME_PAGE)
            listed = (*page.versions, *page.delete_markers)
            entries += [v for v in listed if v.key == key]
            if any(v.key != key for v in listed) or page.prefixes or page.next_marker is None:
                return self._pin(key, entries)
            marker = page.next_marker

    async def _version_id(self, op: str, key: str) -> str:
        version = await self.version_of(key)
        if version is None:
            raise NotFound(f"{op} {key}: 404 no version of it at {self._when}")
        return version.request_id

    # ---------------------------------------------------------------- reads
    async def head(self, key: str, sse: SseCKey | None, *,
                   encrypted: bool = False, version_id: str | None = None) -> ObjectInfo:
        vid = version_id or await self._version_id("HeadObject", key)
        return await self.inner.head(key, sse, encrypted=encrypted, version_id=vid)

    async def get_range(self, key: str, rng: ByteRange | None, sse: SseCKey | None, *,
                        etag: str | None = None, version_id: str | None = None) -> bytes:
        vid = version_id or await self._version_id("GetObject", key)
        return await self.inner.get_range(key, rng, sse, etag=etag, version_id=vid)

    async def list_page(self, prefix: str, *, delimiter: str | None = "/",
                        token: str | None = None, max_keys: int = 1000) -> ListPage:
        if delimiter:
            entries = await self._directory(prefix, delimiter)
        else:
            entries = await self._flat(prefix, token, max_keys + 1)
        if token is not None:
            entries = [e for e in entries if e[0] > token]
        page, more = entries[:max_keys], len(entries) > max_keys
        return ListPage(tuple(o for _, o in page if o is not None),
                        tuple(k for k, o in page if o is None),
                        page[-1][0] if more and page else None)

    async def _directory(self, prefix: str, delimiter: str) -> list[Entry]:
        """The children of `prefix` at T: one ListObjectVersions walk with the delimiter,
        and a check of each common prefix."""
        cached = self._listings.get((prefix, delimiter))
        if cached is not None:
            return cached
        entries: list[ListedVersion] = []
        prefixes: dict[str, None] = {}
        marker: tuple[str, str] | None = None
        while True:
            page = await self._walk(prefix, delimiter, marker)
            entries += (*page.versions, *page.delete_markers)
            prefixes.update(dict.fromkeys(page.prefixes))
            if page.next_marker is None:
                break
            marker = page.next_marker
        visible = visible_at(entries, self.as_of_ns)
        for key in {v.key for v in entries}:
            self._pins.put(key, (visible.get(key),))
        if delimiter == "/":
            self._complete.put(prefix, True)
        shown = await self._subdirs(list(prefixes))
        out: list[Entry] = [(k, _listed(v)) for k, v in visible.items()]
        out += [(p, None) for p in shown]
        out.sort(key=lambda e: e[0])
        self._listings.put((prefix, delimiter), out)
        return out

    async def _subdirs(self, prefixes: list[str]) -> list[str]:
        """Those of `prefixes` below which something is visible at T."""
        limiter = trio.CapacityLimiter(DIR_CHECKS)
        found: list[str] = []

        async def check(p: str) -> None:
            async with limiter:
                if await self._any_below(p):
                    found.append(p)

        async with trio.open_nursery() as nursery:
            for p in prefixes:
                nursery.start_soon(check, p)
        return found

    async def _any_below(self, prefix: str) -> bool:
        known = self._dirs.get(prefix)
        if known is None:
            known = bool(await self._flat(prefix, None, 1))
            self._dirs.put(prefix, known)
        return known

    async def _flat(self, prefix: str, after: str | None, want: int) -> list[Entry]:
        """Up to `want` keys under `prefix` (after `after`) visible at T, in key order:
        versions are walked only until those are found. Every key seen whole is pinned."""
        out: list[Entry] = []
        group: list[ListedVersion] = []
        marker = (after, "") if after is not None else None

        def close_group() -> None:
            if group:
                chosen = self._pin(group[0].key, group)
                if chosen is not None:
                    out.append((chosen.key, _listed(chosen)))
                group.clear()

        while True:
            page = await self._walk(prefix, None, marker)
            # one key's versions and delete markers, oldest page position first
            listed = sorted((*page.versions, *page.delete_markers), key=lambda v: v.key)
            for v in listed:
                if after is not None and v.key <= after:
                    continue  # Ceph RGW lists the marker's own key again
                if group and v.key != group[0].key:
                    close_group()
                    if len(out) >= want:
                        return out
                group.append(v)
            if page.next_marker is None:
                close_group()
                return out
            marker = page.next_marker

    # ---------------------------------------------------------------- the rest of the seam
    async def versioning(self) -> str:
        return await self.inner.versioning()

    async def head_as(self, key: str, sse: SseCKey | None, *,
                      version_id: str | None = None) -> ObjectHead:
        vid = version_id or await self._version_id("HeadObject", key)
        return await self.inner.head_as(key, sse, version_id=vid)

    async def list_versions_page(self, prefix: str, *,
                                 marker: tuple[str, str] | None = None,
                                 max_keys: int = 1000,
                                 delimiter: str | None = None) -> VersionPage:
        return await self.inner.list_versions_page(prefix, marker=marker, max_keys=max_keys,
                                                   delimiter=delimiter)

    async def list_uploads(self, prefix: str) -> list[Upload]:
        return []  # nothing of this view is being uploaded

    def _refuse(self, op: str, key: str) -> ReadOnly:
        return ReadOnly(f"{op} {key}: the bucket is shown as of {self._when}, read-only")

    async def put(self, key: str, body: bytes, metadata: Mapping[str, str],
                  content: Content, sse: SseCKey | None, *,
                  if_match: str | None = None) -> Stored:
        raise self._refuse("PutObject", key)

    async def create_multipart(self, key: str, metadata: Mapping[str, str],
                               content: Content, sse: SseCKey | None) -> str:
        raise self._refuse("CreateMultipartUpload", key)

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body,
                          sse: SseCKey | None) -> Part:
        raise self._refuse("UploadPart", key)

    async def upload_part_copy(self, key: str, upload_id: str, number: int, source: str,
                               rng: ByteRange, sse: SseCKey | None,
                               source_sse: SseCKey | None, *,
                               source_etag: str | None = None) -> Part:
        raise self._refuse("UploadPartCopy", key)

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: Sequence[Part]) -> Stored:
        raise self._refuse("CompleteMultipartUpload", key)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        raise self._refuse("AbortMultipartUpload", key)

    async def copy(self, source: str, target: str, metadata: Mapping[str, str],
                   content: Content, sse: SseCKey | None,
                   source_sse: SseCKey | None, *, source_etag: str | None = None) -> Stored:
        raise self._refuse("CopyObject", target)

    async def delete(self, key: str) -> None:
        raise self._refuse("DeleteObject", key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        raise self._refuse("DeleteObjects", keys[0] if keys else "")
