"""Namespace: path <-> object resolution, directory listings and their caches.

Theory of operation
- A path maps to an object key (`paths`); a directory is a "dir/" marker object or is implied
  by keys below it.
- Attributes come from HeadObject (s3fs metadata, `attrs`) and are cached for `cache_ttl`
  seconds, as are directory listings (ListObjectsV2 with "/" as delimiter) and names known
  not to exist. A fresh listing of the parent answers "no such file" without a request.
- Key ring (`keys.KeyRing`): an object opens with any key of the ring. `head_object` tries
  the key remembered for the object (else the writer), then the others, each once
  (`head_with_ring`); a server that names the object's key MD5 in its refusal sends it
  straight to that key. A key other than the writer that opened an object is remembered
  for it (`_openers`, by object key), so that its next HEADs and GETs cost no extra request;
  the memory is a hint only (a wrong one costs one refused request, then the ring is tried
  again), so it needs no ChangeLog check. Objects the mount stores are under the writer:
  their hint goes.
- An object encrypted with a key outside the ring is listed (size and date come from the
  listing, which needs no key) but cannot be opened: EACCES, logged once with its name.
- SeaweedFS keeps listing a directory after everything below it was removed ("ghosts"): the
  directories this mount emptied are checked once more before they are shown.

Requests saved (issue: fewer requests per operation):
- A cached listing is kept up to date by the mount's own changes (`stored`, `gone`) instead of
  being dropped, and a directory made here starts with an empty one: creating many files in
  one directory needs no lookup request per file.
- A name that is not a file (HEAD 404) is looked up in its parent's listing, fetched once
  (one page; a larger directory is remembered as such and asked about the one name), to tell
  whether it is a directory: the next misses in that directory cost one HEAD, no listing.
  Such a listing does not answer "no such file" by itself (an object another client has
  just put is found at once); one from readdir, or of a directory the mount made, does.
- `ls -l` after a listing: the first stat of a listed file HEADs the next `STAT_BATCH`
  listed siblings too, concurrently, so the stats that follow are answered from the cache;
  readdir asks `head_listed` for the files of a reply once its caller shows it stats them
  (`Filesystem.readdir`), so they reach the kernel with their attributes.
- Directories known to have a marker object need no listing to keep them after their last
  entry goes (`keep_parent`).

Rule: every cache fill that follows an `await` checks the `ChangeLog` first, so a HEAD or a
listing in flight during an unlink or rename cannot bring back what that change removed.
Every change of the bucket made through the mount calls `invalidate(path)`.

The filesystem sees this module through `NamespaceView`. The read-only view of a versioned
bucket "as of a time" (`--as-of`) is not a second implementation of it but a store under this
one (`store/snapshot.SnapshotStore`, see docs/architecture.md): everything here runs unchanged
on the versions it presents as plain objects.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import trio

from . import paths
from .attrs import (
    Attr,
    Defaults,
    KeyState,
    Kind,
    attr_from_meta,
    content_for,
    meta_from_attr,
)
from .cache import ChangeLog, TtlCache
from .errors import KeyMismatch, NotFound, SsecfsError, one_error
from .keys import KeyRing, SseCKey
from .metacache import MetadataCache
from .stats import Stats
from .store.base import ListedObject, ObjectInfo, ObjectStore

log = logging.getLogger(__name__)

FOLDER_SUFFIX = "_$folder$"  # directory objects of old s3 tools (s3fs's compat_dir)
DIR_TIMES_MAX = 10_000  # directories whose in-mount mtime is remembered
STAT_BATCH = 64  # listed siblings HEADed together by the first stat in a listed directory
STAT_CONCURRENCY = 16  # HEADs in flight for such a batch
OPENERS_MAX = 100_000  # objects whose (non-writing) key is remembered


async def head_with_ring(store: ObjectStore, key: str, keys: KeyRing,
                         first: SseCKey | None = None) -> ObjectInfo:
    """HEAD `key` with the ring's key that opens it, trying each key once: `first` (the one
    remembered for the object), the writer, then the readers. A refusal that names the
    object's key MD5 (`KeyMismatch.echoed_md5`) sends the next try to that key; once a key
    was refused, the store need not ask why again (`encrypted=True`: on S3Store, a refused
    key costs one HEAD, not two). Raises the first KeyMismatch when no key of the ring opens
    the object."""
    queue = list(keys.trial_order(first))
    tried: set[SseCKey] = set()
    refused: KeyMismatch | None = None
    while queue:
        sse = queue.pop(0)
        if sse in tried:
            continue
        tried.add(sse)
        try:
            return await store.head(key, sse, encrypted=refused is not None)
        except KeyMismatch as exc:
            refused = refused or exc
            named = keys.known(exc.echoed_md5)
            if named is not None and named not in tried:
                queue.insert(0, named)
    assert refused is not None
    raise refused


@dataclass(slots=True)
class Listing:
    """One directory's children: name -> (kind, listed object or None for a directory)."""

    children: dict[str, tuple[Kind, ListedObject | None]]
    # whether a name missing here may be answered "no such file" without asking the bucket:
    # true for a listing that readdir asked for or that the mount made (a new directory);
    # one fetched for a lookup only tells which names are directories, so that an object
    # another client has just put is found by its HeadObject at once
    answers_absence: bool = True


class NamespaceView(Protocol):
    def key(self, path: str) -> str: ...

    async def stat(self, path: str) -> Attr: ...

    async def list(self, path: str) -> Listing: ...

    def invalidate(self, path: str) -> None: ...


class Namespace:
    def __init__(self, store: ObjectStore, keys: KeyRing, prefix: str, defaults: Defaults,
                 cache_ttl: float, clock: Callable[[], float] = time.monotonic,
                 stats: Stats | None = None) -> None:
        self.store = store
        self.stats = stats or Stats()
        self.keys = keys
        self.prefix = prefix
        self.defaults = defaults
        self.attrs: TtlCache[str, Attr] = TtlCache(cache_ttl, clock=clock)
        # names known not to exist: tools stat before they create, git a great deal
        self._absent: TtlCache[str, bool] = TtlCache(cache_ttl, clock=clock)
        self._listings: TtlCache[str, Listing] = TtlCache(cache_ttl, max_entries=1000,
                                                          clock=clock)
        self.changes = ChangeLog()
        # directories whose listing is more than one page: a lookup miss asks about its name
        self._big_dirs: TtlCache[str, bool] = TtlCache(cache_ttl, clock=clock)
        # directories known to have a "dir/" marker object
        self._markers: TtlCache[str, bool] = TtlCache(cache_ttl, clock=clock)
        self._reported: set[str] = set()
        # object key -> the ring's non-writing key that opened it (a hint: see the docstring)
        self._openers: TtlCache[str, SseCKey] = TtlCache(math.inf, max_entries=OPENERS_MAX)
        # directories this mount emptied: SeaweedFS keeps listing them as common prefixes
        self._removed_dirs: set[str] = set()
        self.mount_ns = time.time_ns()
        # keys of directory objects of an older kind: "dir" with Content-Type
        # application/x-directory or an S_IFDIR mode, and "dir_$folder$"
        self._compat: set[str] = set()
        # directories whose entries changed here: path -> when (their mtime and ctime in the
        # mount; not stored in the bucket, which would cost a request per create)
        self._dir_times: dict[str, int] = {}
        self._root: Attr | None = None  # the root's attributes, kept in memory
        self._root_marker = False  # a prefix mount whose prefix has a marker object
        # HEAD answers kept across mounts (-o metadata_cache; set by the filesystem)
        self.meta_cache: MetadataCache | None = None

    # ------------------------------------------------------------------ helpers
    def key(self, path: str) -> str:
        return paths.key_for(self.prefix, path)

    def dir_key(self, path: str) -> str:
        return paths.dir_key(self.prefix, path)

    def root_attr(self) -> Attr:
        return Attr(Kind.DIR, self.defaults.dir_mode, self.defaults.uid, self.defaults.gid, 0,
                    self.mount_ns)

    implied_dir_attr = root_attr

    async def root(self) -> Attr:
        """The root's attributes: the defaults, or a prefix marker's, read once; then what
        chmod, chown and touch of the mountpoint made them (kept in memory)."""
        if self._root is None:
            attr = self.root_attr()
            if self.prefix:
                try:
                    info = await self.head_object(self.dir_key(""))
                    attr = self.attr_of(info, is_dir=True).with_(key_state=KeyState.OK)
                    self._root_marker = True
                except SsecfsError:
                    pass
            if self._root is None:
                self._root = attr
        return self._root

    async def put_small(self, path: str, attr: Attr, body: bytes = b"") -> None:
        """PutObject of `path` with `attr` under the writing key: a directory's marker, a
        symlink, an empty file or special file."""
        key = self.dir_key(path) if attr.kind is Kind.DIR else self.key(path)
        await self.store.put(key, body, meta_from_attr(attr),
                             content_for(attr, paths.name_of(path)), self.keys.writer)

    async def set_root(self, attr: Attr) -> Attr:
        """The root's attributes changed; a prefix marker gets them too."""
        if self._root_marker:
            await self.put_small("", attr)
        self._root = attr
        self._dir_times.pop("", None)
        return attr

    def entry_changed(self, path: str) -> None:
        """An entry was added to or removed from `path`'s directory: its mtime and ctime
        move (in the mount only)."""
        parent = paths.parent_of(path)
        self._dir_times.pop(parent, None)
        self._dir_times[parent] = time.time_ns()
        while len(self._dir_times) > DIR_TIMES_MAX:
            del self._dir_times[next(iter(self._dir_times))]

    def take_compat_keys(self, path: str) -> list[str]:
        """The directory objects of an older kind known for the directory `path`, which the
        caller is about to delete (they are forgotten here)."""
        key = self.key(path)
        found = [k for k in (key, key + FOLDER_SUFFIX) if k in self._compat]
        self._compat.difference_update(found)
        return found

    def sse_for(self, key: str) -> SseCKey:
        """The key to read object `key` with: the one remembered for it, else the writer."""
        return self._openers.get(key) or self.keys.writer

    def _opened(self, key: str, info: ObjectInfo) -> None:
        opener = self.keys.for_md5(info.key_md5)
        if opener is None or opener == self.keys.writer:
            self._openers.pop(key)
        else:
            self._openers.put(key, opener)

    def _rewritten(self, path: str) -> None:
        """What is at or below `path` was just written or removed by the mount: any object
        there now is under the writing key."""
        key, below = self.key(path), self.dir_key(path)
        self._openers.pop_where(lambda k: k == key or k.startswith(below))

    async def head_object(self, key: str) -> ObjectInfo:
        """HEAD object `key` with the key of the ring that opens it (remembered)."""
        try:
            info = await head_with_ring(self.store, key, self.keys, self._openers.get(key))
        except KeyMismatch:
            self._openers.pop(key)
            raise
        self._opened(key, info)
        if self.meta_cache is not None:
            self.meta_cache.put(info)
        return info

    async def read_object(self, key: str, plain: bool) -> bytes:
        """The whole object `key` (a symlink's target) with the key that opens it; `plain`:
        stored without SSE-C. A remembered key that no longer opens it (another client
        rewrote it) sends a HEAD through the ring, then the GET again."""
        if plain:
            return await self.store.get_range(key, None, None)
        try:
            return await self.store.get_range(key, None, self.sse_for(key))
        except KeyMismatch:
            if len(self.keys) == 1:
                raise
        info = await self.head_object(key)
        return await self.store.get_range(key, None, self.keys.for_md5(info.key_md5))

    def report_once(self, key: str, message: str, *args: object,
                    level: int = logging.WARNING) -> None:
        if key not in self._reported:
            self._reported.add(key)
            log.log(level, message, *args)

    def invalidate(self, path: str) -> None:
        """Drop cached knowledge of `path`, everything below it and its parent's listing."""
        self._forget_within(path)
        self._listings.pop(paths.parent_of(path))

    def _forget_within(self, path: str) -> None:
        self.changes.changed(path)
        for cache in (self.attrs, self._absent, self._listings, self._markers):
            cache.pop_where(lambda p: paths.is_within(p, path))

    def creating(self, path: str) -> None:
        """A file is being made at `path` (not in the bucket before its first upload; a
        directory listing shows it from the open file meanwhile)."""
        self.changes.changed(path)
        self._absent.pop(path)
        self.attrs.pop(path)

    def gone(self, path: str) -> None:
        """The mount removed `path` (and all below it) from the bucket, or moved it away."""
        self._forget_within(path)
        self._rewritten(path)
        self._absent.put(path, True)
        listing = self._listings.get(paths.parent_of(path))
        if listing is not None:
            listing.children.pop(paths.name_of(path), None)

    def moved_here(self, path: str, attr: Attr) -> None:
        """A rename put `attr`'s file or directory at `path`: what was cached below goes."""
        self._forget_within(path)
        self._rewritten(path)
        self.stored(path, attr)

    def learnt(self, path: str, attr: Attr, epoch: int) -> None:
        """Cache `attr` found by a request started at `epoch`, unless `path` changed since."""
        if self.changes.unchanged_since(epoch, path):
            self.attrs.put(path, attr)

    def stored(self, path: str, attr: Attr) -> None:
        """The mount itself just stored `path` with `attr` (new content or attributes).
        What is below it is unchanged: a `chmod` of a directory keeps its children cached."""
        self.changes.changed(path)
        self._openers.pop(self.key(path))
        self._openers.pop(self.dir_key(path))
        self._absent.pop(path)
        self.attrs.put(path, attr)
        if attr.kind is Kind.DIR:
            self._dir_times.pop(path, None)  # its times are the ones just stored
        listing = self._listings.get(paths.parent_of(path))
        if listing is not None:  # kept up to date rather than dropped: no LIST to refill it
            name = paths.name_of(path)
            listing.children[name] = (
                (Kind.DIR, None) if attr.kind is Kind.DIR
                else (Kind.FILE, ListedObject(self.key(path), attr.size, "", attr.mtime_ns)))

    def removed_dir(self, path: str) -> None:
        self._removed_dirs.add(path)

    def made_dir(self, path: str, *, empty: bool = False) -> None:
        """`path` is a directory with a marker object now; `empty`: the mount just made it,
        so its listing is known without asking."""
        self._removed_dirs.discard(path)
        self._markers.put(path, True)
        if empty:
            self._listings.put(path, Listing({}))

    def attr_of(self, info: ObjectInfo, is_dir: bool = False) -> Attr:
        state = KeyState.OK if info.encrypted else KeyState.PLAIN
        problems: list[str] = []
        attr = attr_from_meta(dict(info.metadata), 0 if is_dir else info.size,
                              info.last_modified_ns, self.defaults, is_dir=is_dir,
                              key_state=state, problems=problems, content=info.content)
        if attr.kind is Kind.DIR and not info.key.endswith("/") and info.key != self.prefix:
            self._compat.add(info.key)
        if problems:
            self.report_once(info.key, "%s has metadata ssecfs cannot use (%s): the mount's "
                             "defaults stand in for it", info.key, ", ".join(problems))
        return attr

    def listed_attr(self, kind: Kind, obj: ListedObject | None) -> Attr:
        if kind is Kind.DIR or obj is None:
            return self.implied_dir_attr()
        return Attr(Kind.FILE, self.defaults.file_mode, self.defaults.uid, self.defaults.gid,
                    obj.size, obj.last_modified_ns, KeyState.UNKNOWN)

    # ------------------------------------------------------------------ attributes
    async def stat(self, path: str) -> Attr:
        """Attributes of `path`, from cache or the bucket. Raises NotFound."""
        return self._with_dir_times(path, await self.root() if path == ""
                                    else await self._stat(path))

    def cached(self, path: str) -> Attr | None:
        """The attributes of `path` if they are cached (no request)."""
        attr = self.attrs.get(path)
        return None if attr is None else self._with_dir_times(path, attr)

    def _with_dir_times(self, path: str, attr: Attr) -> Attr:
        changed = self._dir_times.get(path)
        if changed is not None and attr.kind is Kind.DIR and changed > attr.ctime:
            attr = attr.with_(mtime_ns=max(changed, attr.mtime_ns), ctime_ns=changed)
        return attr

    async def _stat(self, path: str) -> Attr:
        cached = self.attrs.get(path)
        if cached is not None:
            self.stats.add("attr_cache_hits")
            return cached
        listing = self._listings.get(paths.parent_of(path))
        if self._absent.get(path) or (listing is not None and listing.answers_absence
                                      and paths.name_of(path) not in listing.children):
            self.stats.add("attr_cache_hits")
            raise NotFound(path)
        self.stats.add("attr_cache_misses")
        epoch = self.changes.epoch
        child = listing.children.get(paths.name_of(path)) if listing is not None else None
        if listing is not None and child is not None and child[0] is Kind.FILE:
            await self._head_batch(path, listing)
            cached = self.attrs.get(path)
            if cached is not None:
                return cached
        try:
            attr = await self._resolve(path)
        except NotFound:
            if self.changes.unchanged_since(epoch, path):
                self._absent.put(path, True)
            raise
        self.learnt(path, attr, epoch)
        return attr

    async def _head_batch(self, path: str, listing: Listing) -> None:
        """HEAD `path` and the listed files after it that are not cached (a stat of each
        listed file follows: `ls -l`)."""
        parent, name = paths.parent_of(path), paths.name_of(path)
        files = sorted(n for n, (kind, _) in listing.children.items() if kind is Kind.FILE)
        start = bisect.bisect_left(files, name)
        await self.head_listed(
            [p for p in (paths.join(parent, n) for n in files[start:start + STAT_BATCH])
             if p == path or self.attrs.get(p) is None])

    async def head_listed(self, files: list[str]) -> None:
        """HEAD the files at `files` concurrently (`STAT_CONCURRENCY` tasks taking the next
        one each) and cache what they answer. Failures are left to the stat of each file."""
        todo = iter(files)

        async def head_next() -> None:
            for p in todo:
                epoch = self.changes.epoch
                try:
                    info = await self.head_object(self.key(p))
                except SsecfsError:
                    continue
                self.learnt(p, self.attr_of(info), epoch)

        with one_error():
            async with trio.open_nursery() as nursery:
                for _ in range(min(STAT_CONCURRENCY, len(files))):
                    nursery.start_soon(head_next)

    async def head(self, path: str) -> ObjectInfo:
        """A fresh HEAD of the file at `path` (an object under another key is recorded)."""
        key = self.key(path)
        epoch = self.changes.epoch
        try:
            info = await self.head_object(key)
        except KeyMismatch:
            self.learnt(path, await self.mismatched(path, key), epoch)
            raise
        self.learnt(path, self.attr_of(info), epoch)
        return info

    async def _resolve(self, path: str) -> Attr:
        key = self.key(path)
        try:
            info = await self.head_object(key)
        except NotFound:
            listing = await self._listing_for_lookup(paths.parent_of(path))
            if listing is not None:
                child = listing.children.get(paths.name_of(path))
                if child is None or child[0] is not Kind.DIR:
                    raise NotFound(path) from None
            return await self._resolve_dir(path)
        except KeyMismatch:
            return await self.mismatched(path, key)
        return self.attr_of(info)

    async def _listing_for_lookup(self, path: str) -> Listing | None:
        """The directory's listing if it is cached or fits one page (then it is cached for
        the next lookups); None for a larger directory."""
        listing = self._listings.get(path)
        if listing is not None or self._big_dirs.get(path):
            return listing
        listing = await self._fetch_listing(path, max_pages=1, answers_absence=False)
        if listing is None:
            self._big_dirs.put(path, True)
        return listing

    async def _resolve_dir(self, path: str) -> Attr:
        marker = self.dir_key(path)
        page = await self.store.list_page(marker, delimiter=None, max_keys=1)
        if not page.objects and not page.prefixes:
            if self.key(path) + FOLDER_SUFFIX in self._compat:
                return self.implied_dir_attr()  # an empty "dir_$folder$" directory
            raise NotFound(path)
        if page.objects and page.objects[0].key == marker:
            self._marker_seen(page.objects[0])
            self._markers.put(path, True)
            try:
                info = await self.head_object(marker)
                return self.attr_of(info, is_dir=True).with_(key_state=KeyState.OK)
            except (KeyMismatch, NotFound):
                return self.implied_dir_attr().with_(mtime_ns=page.objects[0].last_modified_ns)
        return self.implied_dir_attr()

    async def mismatched(self, path: str, key: str) -> Attr:
        """An object under another key: listed from ListObjects (no key needed), unreadable."""
        self.report_once(key, "%s is encrypted with an SSE-C key outside this mount's key "
                         "ring: it is listed but cannot be read (EACCES)", key)
        page = await self.store.list_page(key, delimiter=None, max_keys=1)
        obj = page.objects[0] if page.objects and page.objects[0].key == key else None
        return Attr(Kind.FILE, self.defaults.file_mode, self.defaults.uid, self.defaults.gid,
                    obj.size if obj else 0, obj.last_modified_ns if obj else self.mount_ns,
                    KeyState.MISMATCH)

    # ------------------------------------------------------------------ directories
    async def list(self, path: str) -> Listing:
        cached = self._listings.get(path)
        if cached is not None:
            self.stats.add("listing_cache_hits")
            return cached
        self.stats.add("listing_cache_misses")
        listing = await self._fetch_listing(path)
        assert listing is not None
        return listing

    async def _fetch_listing(self, path: str, max_pages: int | None = None,
                             answers_absence: bool = True) -> Listing | None:
        """List the directory from the bucket and cache it; None if it has more pages than
        `max_pages`."""
        epoch = self.changes.epoch
        pfx = paths.list_prefix(self.prefix, path)
        children: dict[str, tuple[Kind, ListedObject | None]] = {}
        token: str | None = None
        pages = 0
        while True:
            if max_pages is not None and pages == max_pages:
                return None
            pages += 1
            page = await self.store.list_page(pfx, token=token)
            for p in page.prefixes:
                name = paths.child_name(pfx, p)
                if name is None:
                    self._hidden(p)
                elif name not in children \
                        and not await self._is_ghost(paths.join(path, name)):
                    children[name] = (Kind.DIR, None)
            for obj in page.objects:
                name = paths.child_name(pfx, obj.key)
                if name is None:
                    if obj.key == pfx:
                        self._marker_seen(obj)
                        self._markers.put(path, True)
                    else:
                        self._hidden(obj.key)
                    continue
                if obj.key.endswith("/"):
                    self._marker_seen(obj)
                    children.setdefault(name, (Kind.DIR, None))
                elif name.endswith(FOLDER_SUFFIX) and not obj.size \
                        and paths.valid_name(name[:-len(FOLDER_SUFFIX)]):
                    self._compat.add(obj.key)
                    children.setdefault(name[:-len(FOLDER_SUFFIX)], (Kind.DIR, None))
                else:
                    if children.get(name, (None,))[0] is Kind.DIR:
                        self.report_once(obj.key, "%s is both a file and a directory prefix; "
                                         "showing the file", obj.key, level=logging.INFO)
                    children[name] = (Kind.FILE, obj)
            token = page.next_token
            if token is None:
                break
        listing = Listing(children, answers_absence)
        if self.changes.unchanged_since(epoch, path):
            self._listings.put(path, listing)
        if self.meta_cache is not None:
            self._attrs_from_meta_cache(path, listing, epoch)
        return listing

    def _attrs_from_meta_cache(self, path: str, listing: Listing, epoch: int) -> None:
        """Cache the attributes of the listed files that the metadata cache shows unchanged:
        readdir then hands the kernel entries it keeps, and `ls -l` sends no HEAD for them."""
        assert self.meta_cache is not None
        hits = 0
        for name, (kind, obj) in listing.children.items():
            child = paths.join(path, name)
            if kind is not Kind.FILE or obj is None or self.attrs.get(child) is not None:
                continue
            info = self.meta_cache.get(obj)
            if info is not None:
                self._opened(obj.key, info)
                self.learnt(child, self.attr_of(info), epoch)
                hits += 1
        if hits:
            self.stats.add("metadata_cache_hits", hits)

    def _marker_seen(self, obj: ListedObject) -> None:
        if obj.size:
            self.report_once(obj.key, "%s holds %d bytes but its name ends in '/': it is "
                             "shown as a directory and its bytes are not reachable through "
                             "the mount", obj.key, obj.size)

    def _hidden(self, key: str) -> None:
        self.report_once(key, "%r cannot be a file name (an empty, '.' or '..' part, or a "
                         "name over %d bytes): not shown", key, paths.NAME_MAX,
                         level=logging.INFO)

    async def _is_ghost(self, path: str) -> bool:
        """A prefix still listed after we removed everything below it (SeaweedFS does this)."""
        if path not in self._removed_dirs:
            return False
        page = await self.store.list_page(self.dir_key(path), delimiter=None, max_keys=1)
        if page.objects:
            self._removed_dirs.discard(path)
            return False
        return True

    async def has_children(self, path: str, local: Iterable[str] = ()) -> bool:
        """Whether the directory holds anything: in the bucket, or in `local` (paths of files
        created here and not uploaded yet)."""
        marker = self.dir_key(path)
        page = await self.store.list_page(marker, delimiter=None, max_keys=2)
        if any(o.key != marker for o in page.objects) or page.prefixes:
            return True
        return any(p != path and paths.is_within(p, path) for p in local)

    async def keep_parent(self, path: str) -> None:
        """After `path` left its directory: if that directory existed only because of keys
        below it (no marker) and is now empty, give it a marker, as POSIX keeps it."""
        parent = paths.parent_of(path)
        if not parent or self._markers.get(parent):
            return
        page = await self.store.list_page(self.dir_key(parent), delimiter=None, max_keys=1)
        if page.objects or page.prefixes:
            return
        await self.put_small(parent, self.attrs.get(parent) or self.implied_dir_attr())
        self._markers.put(parent, True)
