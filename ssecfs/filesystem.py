"""Filesystem: POSIX semantics over the object store. No pyfuse3, no boto3 here.

Theory of operation
- A path maps to an object key (`paths`); a directory is a "dir/" marker object or is implied
  by keys below it. Inodes are numbers for paths (`inodes.InodeTable`).
- Attributes come from HeadObject (s3fs metadata, `attrs`) and are cached for `cache_ttl`
  seconds, as are directory listings (ListObjectsV2 with "/" as delimiter). A fresh listing
  of the parent answers "no such file" without a request.
- An object encrypted with another key is listed (size and date come from the listing, which
  needs no key) but cannot be opened: EACCES, logged once with its name.
- Files open for writing get an `OpenFile` with a `FileBuffer`; flush/fsync upload it
  (`transfer.Transfers`) and succeed only once the object is complete in the bucket. A failed
  upload keeps the buffer dirty for the next flush and for unmount.

Concurrency: trio tasks, one per request. Each OpenFile has a lock that serialises its writes,
truncates and uploads; namespace changes (create, rename, unlink, mkdir, rmdir, symlink,
attribute changes) take `_ns_lock` so that caches and the inode table change atomically.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from . import paths
from .attrs import Attr, Defaults, KeyState, Kind, attr_from_meta, content_type_for, meta_from_attr
from .buffer import Fetch, FileBuffer
from .cache import TtlCache
from .config import MountConfig
from .errors import (
    BadHandle,
    Exists,
    InvalidName,
    IsADirectory,
    KeyMismatch,
    NameTooLong,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotSupported,
    ReadOnly,
    SsecfsError,
    StoreError,
    UnencryptedRefused,
)
from .inodes import InodeTable
from .ranges import ByteRange, Readahead
from .reader import ReadHandle
from .spill import SpillFile, remove_stale_spill_files
from .store.base import ListedObject, ObjectInfo, ObjectStore
from .transfer import Transfers

log = logging.getLogger(__name__)

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


@dataclass(frozen=True, slots=True)
class Entry:
    ino: int
    attr: Attr
    timeout: float  # how long the kernel may cache name and attributes


@dataclass(frozen=True, slots=True)
class StatFs:
    block_size: int = 4096
    blocks: int = 1 << 40
    blocks_free: int = 1 << 40
    files: int = 1 << 30
    files_free: int = 1 << 30
    name_max: int = paths.NAME_MAX


@dataclass(slots=True)
class _Listing:
    """One directory's children: name -> (kind, listed object or None for a directory)."""

    children: dict[str, tuple[Kind, ListedObject | None]]


@dataclass(frozen=True, slots=True)
class _DirHandle:
    path: str
    entries: list[tuple[str, Kind, ListedObject | None]]  # a snapshot taken at opendir


@dataclass(eq=False, slots=True)
class OpenFile:
    """A file that is open or has changes not yet in the bucket."""

    ino: int
    attr: Attr
    base: ObjectInfo | None  # the object in the bucket this content starts from
    buffer: FileBuffer | None = None  # None: content equals `base`
    meta_dirty: bool = False  # attributes changed and not yet stored
    new: bool = False  # created here, not yet in the bucket
    unlinked: bool = False
    handles: int = 0
    pinned: bool = False  # holds an inode reference while closed and dirty (Filesystem._pin)
    lock: trio.Lock = field(default_factory=trio.Lock)

    @property
    def dirty(self) -> bool:
        return not self.unlinked and (self.buffer is not None or self.meta_dirty or self.new)


@dataclass(eq=False, slots=True)
class Handle:
    file: OpenFile
    writable: bool
    reader: ReadHandle | None = None


class Filesystem:
    def __init__(self, store: ObjectStore, cfg: MountConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.cfg = cfg
        self.prefix = cfg.prefix
        self.defaults = Defaults(uid=cfg.uid, gid=cfg.gid, file_mode=cfg.file_mode,
                                 dir_mode=cfg.dir_mode)
        self.inodes = InodeTable()
        self._attrs: TtlCache[str, Attr] = TtlCache(cfg.cache_ttl, clock=clock)
        # names known not to exist: tools stat before they create, git a great deal
        self._absent: TtlCache[str, bool] = TtlCache(cfg.cache_ttl, clock=clock)
        self._listings: TtlCache[str, _Listing] = TtlCache(cfg.cache_ttl, max_entries=1000,
                                                            clock=clock)
        self._files: dict[int, OpenFile] = {}
        self._handles: dict[int, Handle] = {}
        self._dir_handles: dict[int, _DirHandle] = {}
        self._next_fh = 1
        self._ns_lock = trio.Lock()
        self._reported: set[str] = set()
        # directories this mount emptied: SeaweedFS keeps listing them as common prefixes
        self._removed_dirs: set[str] = set()
        self._mount_ns = time.time_ns()
        self.transfers = Transfers(store, cfg.part_size, cfg.upload_concurrency)
        self._spill = SpillFile(cfg.spill_dir(), slot_size=1024 * 1024)
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self, nursery: trio.Nursery) -> None:
        """Give the filesystem the nursery its background reads run in."""
        self._nursery = nursery
        remove_stale_spill_files(self.cfg.spill_dir())

    def close(self) -> None:
        for h in self._handles.values():
            if h.reader is not None:
                h.reader.close()
        for f in self._files.values():
            if f.buffer is not None:
                f.buffer.close()
        self._spill.close()

    def dirty_files(self) -> list[str]:
        return [self.inodes.path_or_none(f.ino) or f"<inode {f.ino}>"
                for f in self._files.values() if f.dirty]

    async def flush_all(self) -> list[str]:
        """Upload every dirty file (unmount, SIGTERM). Returns the paths that failed."""
        failed: list[str] = []
        for f in list(self._files.values()):
            if not f.dirty:
                continue
            try:
                await self._flush_file(f)
            except SsecfsError as exc:
                path = self.inodes.path_or_none(f.ino) or f"<inode {f.ino}>"
                log.error("could not upload %s: %s", path, exc)
                failed.append(path)
        return failed

    # ------------------------------------------------------------------ helpers
    def _key(self, path: str) -> str:
        return paths.key_for(self.prefix, path)

    def _entry(self, path: str, attr: Attr, counted: bool = True) -> Entry:
        ino = self.inodes.lookup(path) if counted else self.inodes.ino_for(path)
        return Entry(ino, attr, self.cfg.cache_ttl)

    def _root_attr(self) -> Attr:
        return Attr(Kind.DIR, self.defaults.dir_mode, self.defaults.uid, self.defaults.gid, 0,
                    self._mount_ns)

    def _implied_dir_attr(self) -> Attr:
        return Attr(Kind.DIR, self.defaults.dir_mode, self.defaults.uid, self.defaults.gid, 0,
                    self._mount_ns)

    def _report_once(self, key: str, message: str, *args: object,
                     level: int = logging.WARNING) -> None:
        if key not in self._reported:
            self._reported.add(key)
            log.log(level, message, *args)

    def _forget_path(self, path: str) -> None:
        """Drop cached knowledge of `path`, everything below it and its parent's listing."""
        self._attrs.pop_where(lambda p: paths.is_within(p, path))
        self._absent.pop_where(lambda p: paths.is_within(p, path))
        self._listings.pop_where(lambda p: paths.is_within(p, path))
        self._listings.pop(paths.parent_of(path))

    def _file_at(self, path: str) -> OpenFile | None:
        ino = self.inodes.known(path)
        return self._files.get(ino) if ino is not None else None

    @staticmethod
    def _name(name: str) -> str:
        if len(paths.encode_name(name)) > paths.NAME_MAX:
            raise NameTooLong(name)
        if not paths.valid_name(name):
            raise InvalidName(name)
        return name

    # ------------------------------------------------------------------ attribute lookup
    async def stat_path(self, path: str) -> Attr:
        """Attributes of `path`, from cache or the bucket. Raises NotFound."""
        if path == "":
            return self._root_attr()
        open_file = self._file_at(path)
        if open_file is not None and not open_file.unlinked:
            return open_file.attr
        cached = self._attrs.get(path)
        if cached is not None:
            return cached
        listing = self._listings.get(paths.parent_of(path))
        if self._absent.get(path) or (listing is not None
                                      and paths.name_of(path) not in listing.children):
            raise NotFound(path)
        try:
            attr = await self._resolve(path)
        except NotFound:
            self._absent.put(path, True)
            raise
        self._attrs.put(path, attr)
        return attr

    async def _resolve(self, path: str) -> Attr:
        key = self._key(path)
        try:
            info = await self.store.head(key)
        except NotFound:
            return await self._resolve_dir(path)
        except KeyMismatch:
            return await self._mismatched(path, key)
        if key.endswith("/"):
            return attr_from_meta(dict(info.metadata), 0, info.last_modified_ns, self.defaults,
                                  is_dir=True)
        return self._attr_of(info)

    def _attr_of(self, info: ObjectInfo) -> Attr:
        state = KeyState.OK if info.encrypted else KeyState.PLAIN
        return attr_from_meta(dict(info.metadata), info.size, info.last_modified_ns,
                              self.defaults, key_state=state)

    async def _resolve_dir(self, path: str) -> Attr:
        marker = paths.dir_key(self.prefix, path)
        page = await self.store.list_page(marker, delimiter=None, max_keys=1)
        if not page.objects and not page.prefixes:
            raise NotFound(path)
        if page.objects and page.objects[0].key == marker:
            try:
                info = await self.store.head(marker)
                return attr_from_meta(dict(info.metadata), 0, info.last_modified_ns,
                                      self.defaults, is_dir=True)
            except (KeyMismatch, NotFound):
                return self._implied_dir_attr().with_(mtime_ns=page.objects[0].last_modified_ns)
        return self._implied_dir_attr()

    async def _mismatched(self, path: str, key: str) -> Attr:
        """An object under another key: listed from ListObjects (no key needed), unreadable."""
        self._report_once(key, "%s is encrypted with another SSE-C key: it is listed but "
                          "cannot be read with this key (EACCES)", key)
        page = await self.store.list_page(key, delimiter=None, max_keys=1)
        obj = page.objects[0] if page.objects and page.objects[0].key == key else None
        return Attr(Kind.FILE, self.defaults.file_mode, self.defaults.uid, self.defaults.gid,
                    obj.size if obj else 0, obj.last_modified_ns if obj else self._mount_ns,
                    KeyState.MISMATCH)

    # ------------------------------------------------------------------ lookups
    async def lookup(self, parent_ino: int, name: str) -> Entry:
        parent = self.inodes.path(parent_ino)
        if name == ".":
            return self._entry(parent, await self.stat_path(parent))
        if name == "..":
            up = paths.parent_of(parent)
            return self._entry(up, await self.stat_path(up))
        if not paths.valid_name(name):
            raise NotFound(name)
        path = paths.join(parent, name)
        return self._entry(path, await self.stat_path(path))

    async def getattr(self, ino: int) -> Entry:
        path = self.inodes.path(ino)
        return Entry(ino, await self.stat_path(path), self.cfg.cache_ttl)

    def forget(self, ino: int, count: int) -> None:
        self.inodes.forget(ino, count)

    async def readlink(self, ino: int) -> str:
        path = self.inodes.path(ino)
        attr = await self.stat_path(path)
        if attr.kind is not Kind.SYMLINK:
            raise InvalidName(f"{path} is not a symlink")  # readlink(2) says EINVAL
        data = await self.store.get_range(self._key(path), None,
                                          encrypted=attr.key_state is not KeyState.PLAIN)
        return paths.decode_name(data)

    # ------------------------------------------------------------------ directories
    async def _list(self, path: str) -> _Listing:
        cached = self._listings.get(path)
        if cached is not None:
            return cached
        pfx = paths.list_prefix(self.prefix, path)
        children: dict[str, tuple[Kind, ListedObject | None]] = {}
        token: str | None = None
        while True:
            page = await self.store.list_page(pfx, token=token)
            for p in page.prefixes:
                name = paths.child_name(pfx, p)
                if name is not None and name not in children \
                        and not await self._is_ghost(paths.join(path, name)):
                    children[name] = (Kind.DIR, None)
            for obj in page.objects:
                name = paths.child_name(pfx, obj.key)
                if name is None:
                    continue
                if obj.key.endswith("/"):
                    children.setdefault(name, (Kind.DIR, None))
                else:
                    if children.get(name, (None,))[0] is Kind.DIR:
                        self._report_once(obj.key, "%s is both a file and a directory prefix; "
                                          "showing the file", obj.key, level=logging.INFO)
                    children[name] = (Kind.FILE, obj)
            token = page.next_token
            if token is None:
                break
        listing = _Listing(children)
        self._listings.put(path, listing)
        return listing

    async def _is_ghost(self, path: str) -> bool:
        """A prefix still listed after we removed everything below it (SeaweedFS does this)."""
        if path not in self._removed_dirs:
            return False
        page = await self.store.list_page(paths.dir_key(self.prefix, path), delimiter=None,
                                          max_keys=1)
        if page.objects:
            self._removed_dirs.discard(path)
            return False
        return True

    async def opendir(self, ino: int) -> int:
        path = self.inodes.path(ino)
        attr = await self.stat_path(path)
        if attr.kind is not Kind.DIR:
            raise NotADirectory(path)
        listing = await self._list(path)
        entries = {name: (kind, obj) for name, (kind, obj) in listing.children.items()}
        # files created here and not yet uploaded are part of the directory too
        for f in self._files.values():
            fpath = self.inodes.path_or_none(f.ino)
            if fpath is not None and not f.unlinked and paths.parent_of(fpath) == path \
                    and fpath != path:
                entries.setdefault(paths.name_of(fpath), (f.attr.kind, None))
        fh = self._new_fh()
        self._dir_handles[fh] = _DirHandle(path, sorted((n, k, o) for n, (k, o) in entries.items()))
        return fh

    def readdir(self, fh: int, start: int,
                reply: Callable[[str, Entry, int], bool]) -> None:
        """Hand entries from index `start` on to `reply` until it returns False.

        Each accepted entry counts as a lookup (readdirplus). Attributes we have not asked the
        bucket for are given with a zero timeout, so the kernel asks again before using them.
        """
        handle = self._dir_handles[fh]
        for i in range(start, len(handle.entries)):
            name, kind, obj = handle.entries[i]
            path = paths.join(handle.path, name)
            attr = self._known_attr(path)
            timeout = self.cfg.cache_ttl
            if attr is None:
                timeout = 0.0
                attr = self._listed_attr(kind, obj)
            entry = Entry(self.inodes.ino_for(path), attr, timeout)
            if not reply(name, entry, i + 1):
                return
            self.inodes.lookup(path)

    def _known_attr(self, path: str) -> Attr | None:
        f = self._file_at(path)
        if f is not None and not f.unlinked:
            return f.attr
        return self._attrs.get(path)

    def _listed_attr(self, kind: Kind, obj: ListedObject | None) -> Attr:
        if kind is Kind.DIR or obj is None:
            return self._implied_dir_attr() if kind is Kind.DIR else self._root_attr()
        return Attr(Kind.FILE, self.defaults.file_mode, self.defaults.uid, self.defaults.gid,
                    obj.size, obj.last_modified_ns, KeyState.UNKNOWN)

    def releasedir(self, fh: int) -> None:
        self._dir_handles.pop(fh, None)

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    # ------------------------------------------------------------------ files: open and read
    def _check_readable(self, path: str, attr: Attr) -> None:
        key = self._key(path)
        if attr.key_state is KeyState.MISMATCH:
            self._report_once(key, "%s is encrypted with another SSE-C key: it is listed but "
                              "cannot be read with this key (EACCES)", key)
            raise KeyMismatch(key)
        if attr.key_state is KeyState.PLAIN:
            if self.cfg.encrypted_only:
                self._report_once(key, "%s is stored without SSE-C; refused (-o encrypted_only)",
                                  key)
                raise UnencryptedRefused(key)
            self._report_once(key, "%s is stored without SSE-C encryption; reading it as it is",
                              key)

    async def _open_file(self, ino: int, path: str) -> OpenFile:
        """The OpenFile of `ino`, made from a fresh HEAD if the file is not open yet."""
        f = self._files.get(ino)
        if f is not None:
            return f
        key = self._key(path)
        try:
            info = await self.store.head(key)
        except KeyMismatch:
            self._attrs.put(path, await self._mismatched(path, key))
            raise
        attr = self._attr_of(info)
        self._attrs.put(path, attr)
        f = self._files.get(ino)  # another task may have opened it meanwhile
        if f is None:
            f = self._files[ino] = OpenFile(ino, attr, info)
        return f

    async def open(self, ino: int, flags: int) -> int:
        path = self.inodes.path(ino)
        attr = await self.stat_path(path)
        if attr.kind is Kind.DIR:
            raise IsADirectory(path)
        writable = (flags & (0o1 | 0o2)) != 0 or bool(flags & 0o1000)  # O_WRONLY|O_RDWR|O_TRUNC
        if writable and self.cfg.read_only:
            raise ReadOnly(path)
        f = await self._open_file(ino, path)
        self._check_readable(path, f.attr)
        if flags & 0o1000 and writable:  # O_TRUNC
            async with f.lock:
                await self._truncate(f, 0)
        return self._add_handle(f, writable)

    def _add_handle(self, f: OpenFile, writable: bool) -> int:
        fh = self._new_fh()
        self._handles[fh] = Handle(f, writable)
        f.handles += 1
        self.inodes.opened(f.ino)
        return fh

    def _fetch_base(self, f: OpenFile) -> Fetch:
        """Reads of the object a buffer starts from (zeros where there is none)."""
        async def fetch(rng: ByteRange) -> bytes:
            if f.base is None or len(rng) == 0:
                return bytes(len(rng))
            return await self.store.get_range(f.base.key, rng, encrypted=f.base.encrypted,
                                              etag=f.base.etag or None)
        return fetch

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        h = self._handles[fh]
        f = h.file
        if f.buffer is not None:
            async with f.lock:
                if f.buffer is not None:
                    return await f.buffer.read(offset, size, self._fetch_base(f))
        if f.base is None:
            return b""
        if h.reader is None or h.reader.etag != f.base.etag or h.reader.key != f.base.key:
            if h.reader is not None:
                h.reader.close()
            assert self._nursery is not None
            h.reader = ReadHandle(self.store, f.base.key, f.base.size, f.base.etag,
                                  f.base.encrypted,
                                  Readahead(maximum=self.cfg.read_ahead,
                                            depth=self.cfg.read_concurrency), self._nursery)
        return await h.reader.read(offset, size)

    # ------------------------------------------------------------------ files: write and flush
    def _ensure_buffer(self, f: OpenFile) -> FileBuffer:
        if f.buffer is None:
            f.buffer = FileBuffer(f.base.size if f.base is not None else 0, self._spill,
                                  self.cfg.write_buffer_memory)
        return f.buffer

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        h = self._handles[fh]
        if not h.writable:
            raise BadHandle("write on a handle opened read-only")
        f = h.file
        async with f.lock:
            buf = self._ensure_buffer(f)
            await buf.write(offset, data, self._fetch_base(f))
            f.attr = f.attr.with_(size=buf.size, mtime_ns=time.time_ns())
        return len(data)

    async def _truncate(self, f: OpenFile, size: int) -> None:
        """Truncate under f.lock."""
        if f.buffer is None and f.base is not None and f.base.size == size and not f.new:
            return
        buf = self._ensure_buffer(f)
        await buf.truncate(size, self._fetch_base(f))
        f.attr = f.attr.with_(size=size, mtime_ns=time.time_ns())

    async def flush(self, fh: int) -> None:
        h = self._handles[fh]
        if h.writable:
            await self._flush_file(h.file)

    async def fsync(self, fh: int) -> None:
        await self._flush_file(self._handles[fh].file)

    async def _flush_file(self, f: OpenFile) -> None:
        async with f.lock:
            if not f.dirty:
                return
            path = self.inodes.path(f.ino)
            key = self._key(path)
            meta = meta_from_attr(f.attr)
            ctype = content_type_for(f.attr.kind)
            buf = f.buffer
            try:
                if buf is None and f.base is not None and f.base.key == key and not f.new:
                    await self.transfers.copy(f.base, key, meta, ctype)  # attributes only
                elif buf is None and f.base is None:
                    await self.store.put(key, b"", meta, ctype)
                else:
                    size = buf.size if buf is not None else f.attr.size

                    async def read(rng: ByteRange) -> bytes:
                        if buf is None:
                            return await self._fetch_base(f)(rng)
                        return await buf.read(rng.start, len(rng), self._fetch_base(f))

                    same_object = f.base is not None and f.base.key == key
                    clean = buf.clean_ranges() if buf is not None else []
                    await self.transfers.upload(key, size, meta, ctype, read,
                                                clean if same_object else (),
                                                f.base if same_object else None)
                info = await self.store.head(key)
            except SsecfsError as exc:
                log.error("upload of %s failed, the data stays buffered for a retry: %s",
                          path, exc)
                raise StoreError(f"upload of {path} failed") from exc
            if f.unlinked:
                return
            if not info.encrypted:
                log.error("the server stored %s WITHOUT encryption", key)
                raise StoreError(f"{key} was stored without SSE-C")
            if buf is not None:
                buf.close()
            f.buffer, f.base, f.new, f.meta_dirty = None, info, False, False
            f.attr = self._attr_of(info).with_(mtime_ns=f.attr.mtime_ns)
            self._attrs.put(path, f.attr)
            self._listings.pop(paths.parent_of(path))

    async def release(self, fh: int) -> None:
        h = self._handles.pop(fh)
        f = h.file
        if h.reader is not None:
            h.reader.close()
        f.handles -= 1
        if f.handles == 0 and f.dirty:
            self._pin(f)  # before closed(): that could drop the inode and its path
        self.inodes.closed(f.ino)
        if f.handles == 0:
            if f.dirty:
                # flush failed earlier (close() returned an error): keep the data for unmount
                path = self.inodes.path_or_none(f.ino)
                log.warning("%s was closed with changes not in the bucket; they are kept and "
                            "retried at the next open, fsync or unmount", path)
                return
            self._drop_closed(f)

    def _pin(self, f: OpenFile) -> None:
        """Hold an inode reference for a closed file whose changes are not in the bucket:
        were the inode dropped when the kernel forgets it, the path would lose its inode,
        hiding the kept data and losing it at unmount. `_drop_closed` lets go of it."""
        if not f.pinned:
            f.pinned = True
            self.inodes.opened(f.ino)

    def _drop_closed(self, f: OpenFile) -> None:
        if f.buffer is not None:
            f.buffer.close()
        self._files.pop(f.ino, None)
        if f.pinned:
            f.pinned = False
            self.inodes.closed(f.ino)

    # ------------------------------------------------------------------ namespace changes
    def _writable(self) -> None:
        if self.cfg.read_only:
            raise ReadOnly("mounted read-only")

    async def _must_not_exist(self, path: str) -> None:
        try:
            await self.stat_path(path)
        except NotFound:
            return
        raise Exists(path)

    def _new_attr(self, kind: Kind, mode: int, uid: int, gid: int) -> Attr:
        return Attr(kind, stat.S_IMODE(mode), uid, gid, 0, time.time_ns())

    async def create(self, parent_ino: int, name: str, mode: int, flags: int, uid: int,
                     gid: int) -> tuple[int, Entry]:
        self._writable()
        parent = self.inodes.path(parent_ino)
        path = paths.join(parent, self._name(name))
        async with self._ns_lock:
            await self._must_not_exist(path)
            attr = self._new_attr(Kind.FILE, mode, uid, gid)
            entry = self._entry(path, attr)
            f = self._files[entry.ino] = OpenFile(entry.ino, attr, None, new=True)
            self._forget_path(path)
        return self._add_handle(f, writable=True), entry

    async def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int) -> Entry:
        self._writable()
        parent = self.inodes.path(parent_ino)
        path = paths.join(parent, self._name(name))
        async with self._ns_lock:
            await self._must_not_exist(path)
            attr = self._new_attr(Kind.DIR, mode, uid, gid)
            await self.store.put(paths.dir_key(self.prefix, path), b"", meta_from_attr(attr),
                                 content_type_for(Kind.DIR))
            self._removed_dirs.discard(path)
            self._forget_path(path)
            self._attrs.put(path, attr)
            return self._entry(path, attr)

    async def symlink(self, parent_ino: int, name: str, target: str, uid: int,
                      gid: int) -> Entry:
        self._writable()
        parent = self.inodes.path(parent_ino)
        path = paths.join(parent, self._name(name))
        async with self._ns_lock:
            await self._must_not_exist(path)
            body = paths.encode_name(target)
            attr = Attr(Kind.SYMLINK, 0o777, uid, gid, len(body), time.time_ns())
            await self.store.put(self._key(path), body, meta_from_attr(attr),
                                 content_type_for(Kind.SYMLINK))
            self._forget_path(path)
            self._attrs.put(path, attr)
            return self._entry(path, attr)

    async def _has_children(self, path: str) -> bool:
        marker = paths.dir_key(self.prefix, path)
        page = await self.store.list_page(marker, delimiter=None, max_keys=2)
        if any(o.key != marker for o in page.objects) or page.prefixes:
            return True
        return any(not f.unlinked and paths.is_within(self.inodes.path_or_none(f.ino) or "", path)
                   and self.inodes.path_or_none(f.ino) != path for f in self._files.values())

    async def _keep_parent(self, path: str) -> None:
        """After `path` left its directory: if that directory existed only because of keys
        below it (no marker) and is now empty, give it a marker, as POSIX keeps it."""
        parent = paths.parent_of(path)
        if not parent:
            return
        page = await self.store.list_page(paths.dir_key(self.prefix, parent), delimiter=None,
                                          max_keys=1)
        if page.objects or page.prefixes:
            return
        attr = self._attrs.get(parent) or self._implied_dir_attr()
        await self.store.put(paths.dir_key(self.prefix, parent), b"", meta_from_attr(attr),
                             content_type_for(Kind.DIR))

    async def rmdir(self, parent_ino: int, name: str) -> None:
        self._writable()
        path = paths.join(self.inodes.path(parent_ino), name)
        async with self._ns_lock:
            attr = await self.stat_path(path)
            if attr.kind is not Kind.DIR:
                raise NotADirectory(path)
            if await self._has_children(path):
                raise NotEmpty(path)
            await self.store.delete(paths.dir_key(self.prefix, path))
            await self._keep_parent(path)
            self._removed_dirs.add(path)
            self._forget_path(path)
            self.inodes.unlink(path)

    async def unlink(self, parent_ino: int, name: str) -> None:
        self._writable()
        path = paths.join(self.inodes.path(parent_ino), name)
        async with self._ns_lock:
            attr = await self.stat_path(path)
            if attr.kind is Kind.DIR:
                raise IsADirectory(path)
            f = self._file_at(path)
            if f is not None:
                f.unlinked = True
                if f.handles == 0:
                    self._drop_closed(f)  # a closed file kept only for a failed upload
            if f is None or not f.new:
                await self.store.delete(self._key(path))
                await self._keep_parent(path)
            self._forget_path(path)
            self.inodes.unlink(path)

    async def rename(self, old_parent: int, old_name: str, new_parent: int, new_name: str,
                     flags: int) -> None:
        self._writable()
        if flags & RENAME_EXCHANGE:
            raise NotSupported("RENAME_EXCHANGE")
        old = paths.join(self.inodes.path(old_parent), old_name)
        new = paths.join(self.inodes.path(new_parent), self._name(new_name))
        if old == new:
            return
        if paths.is_within(new, old):
            raise InvalidName(f"cannot move {old} into itself")
        async with self._ns_lock:
            src = await self.stat_path(old)
            try:
                dst: Attr | None = await self.stat_path(new)
            except NotFound:
                dst = None
            if dst is not None:
                if flags & RENAME_NOREPLACE:
                    raise Exists(new)
                if dst.kind is Kind.DIR and src.kind is not Kind.DIR:
                    raise IsADirectory(new)
                if dst.kind is not Kind.DIR and src.kind is Kind.DIR:
                    raise NotADirectory(new)
                if dst.kind is Kind.DIR and await self._has_children(new):
                    raise NotEmpty(new)
            if src.kind is Kind.DIR:
                await self._rename_dir(old, new)
            else:
                await self._rename_file(old, new, src)
            if paths.parent_of(old) != paths.parent_of(new):
                await self._keep_parent(old)
            # a directory target was empty: _rename_dir wrote its marker anew, keep it
            target = self._file_at(new)
            if target is not None and target is not self._file_at(old):
                target.unlinked = True
                if target.handles == 0:
                    self._drop_closed(target)
            self._forget_path(old)
            self._forget_path(new)
            self.inodes.rename(old, new)

    async def _rename_file(self, old: str, new: str, attr: Attr) -> None:
        f = self._file_at(old)
        if f is not None and f.new:
            return  # not in the bucket yet: it will be uploaded under its new name
        if f is not None and f.dirty:
            await self._flush_file(f)
        if attr.key_state is KeyState.MISMATCH:
            raise KeyMismatch(self._key(old))
        info = await self.store.head(self._key(old))
        await self.transfers.copy(info, self._key(new), meta_from_attr(self._attr_of(info)),
                                  content_type_for(attr.kind))
        await self.store.delete(self._key(old))
        if f is not None:
            f.base = await self.store.head(self._key(new))

    async def _rename_dir(self, old: str, new: str) -> None:
        for f in list(self._files.values()):
            fpath = self.inodes.path_or_none(f.ino)
            if fpath and paths.is_within(fpath, old) and f.dirty and not f.new:
                await self._flush_file(f)
        old_pfx = paths.dir_key(self.prefix, old)
        new_pfx = paths.dir_key(self.prefix, new)
        keys: list[str] = []
        token: str | None = None
        while True:
            page = await self.store.list_page(old_pfx, delimiter=None, token=token)
            keys.extend(o.key for o in page.objects)
            token = page.next_token
            if token is None:
                break
        # copy everything first, delete only when every copy is done: never lose an object
        limiter = trio.CapacityLimiter(self.cfg.upload_concurrency)

        async def move(key: str) -> None:
            async with limiter:
                info = await self.store.head(key)
                await self.transfers.copy(info, new_pfx + key[len(old_pfx):],
                                          dict(info.metadata), info.content_type or
                                          content_type_for(Kind.FILE))

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(move, key)
        if old_pfx not in keys:
            # an implied directory: give the new one a marker so it exists even when empty
            attr = await self.stat_path(old)
            await self.store.put(new_pfx, b"", meta_from_attr(attr), content_type_for(Kind.DIR))
        # children before the markers of their directories (reverse order puts every key
        # before its prefixes): SeaweedFS keeps listing a directory forever when its marker
        # goes before its last child
        await self.store.delete_many(sorted(keys, reverse=True))
        self._removed_dirs.add(old)
        self._removed_dirs.discard(new)
        for f in self._files.values():
            fpath = self.inodes.path_or_none(f.ino)
            if fpath and paths.is_within(fpath, old) and f.base is not None:
                f.base = await self.store.head(self._key(paths.rebase(fpath, old, new)))

    # ------------------------------------------------------------------ attributes
    async def setattr(self, ino: int, *, size: int | None = None, mode: int | None = None,
                      uid: int | None = None, gid: int | None = None,
                      mtime_ns: int | None = None, fh: int | None = None) -> Entry:
        self._writable()
        path = self.inodes.path(ino)
        async with self._ns_lock:
            attr = await self.stat_path(path)
            if attr.kind is Kind.DIR and size is not None:
                raise IsADirectory(path)
            changes: dict[str, object] = {}
            if mode is not None:
                changes["mode"] = stat.S_IMODE(mode)
            if uid is not None:
                changes["uid"] = uid
            if gid is not None:
                changes["gid"] = gid
            if mtime_ns is not None:
                changes["mtime_ns"] = mtime_ns
            if attr.kind is Kind.DIR:
                new_attr = attr.with_(**changes)
                if changes:
                    await self.store.put(paths.dir_key(self.prefix, path), b"",
                                         meta_from_attr(new_attr), content_type_for(Kind.DIR))
                    self._attrs.put(path, new_attr)
                return Entry(ino, new_attr, self.cfg.cache_ttl)
            if attr.kind is Kind.SYMLINK:
                # owner and times (lchown, utimensat(AT_SYMLINK_NOFOLLOW): rsync -a, tar, cp -a)
                # are kept by rewriting the small object; a symlink's mode is always 0777
                changes.pop("mode", None)
                if not changes:
                    return Entry(ino, attr, self.cfg.cache_ttl)
                new_attr = attr.with_(**changes)
                key = self._key(path)
                body = await self.store.get_range(key, None,
                                                  encrypted=attr.key_state is not KeyState.PLAIN)
                await self.store.put(key, body, meta_from_attr(new_attr),
                                     content_type_for(Kind.SYMLINK))
                self._attrs.put(path, new_attr)
                return Entry(ino, new_attr, self.cfg.cache_ttl)
            f = self._files.get(ino)
            temporary = f is None
            if f is None:
                f = await self._open_file(ino, path)
            self._check_readable(path, f.attr)
            async with f.lock:
                if size is not None:
                    await self._truncate(f, size)
                    changes.setdefault("mtime_ns", time.time_ns())
                if changes:
                    f.attr = f.attr.with_(**changes)
                    f.meta_dirty = True
            # an open, changed file is stored at its next flush; otherwise store it now
            if temporary or f.handles == 0 or (f.buffer is None and not f.new):
                try:
                    await self._flush_file(f)
                finally:
                    if f.handles == 0 and f.dirty:
                        self._pin(f)  # failed: keep the data reachable until a retry
                    elif temporary and not f.dirty:
                        self._files.pop(ino, None)
            return Entry(ino, f.attr, self.cfg.cache_ttl)

    def statfs(self) -> StatFs:
        return StatFs()

