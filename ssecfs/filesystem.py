"""Filesystem: POSIX operations as orchestration. No S3 request is built here.

Parts (each knows one thing): `namespace.Namespace` resolves paths and caches what the bucket
holds; `inodes.InodeTable` numbers paths; `handles` holds open files and the handle table;
`writer.Writer` buffers and uploads file content; `reader.ReadHandle` serves reads of
unchanged files; `locks.PathLocks` orders operations on the same paths.

Ordering (the rule that nothing acknowledged is lost): an upload, a rename and an unlink of
one file are ordered. Namespace changes claim the paths they touch (`PathLocks`), then take
the `OpenFile.lock` of every open file at or below those paths, so they wait for an upload in
flight; an upload (flush, fsync, unmount) holds its file's lock and reads the file's path only
once it holds it, so it lands under the name the file has then. Operations on other paths run
side by side: nothing holds a lock of the whole namespace across a request.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import logging
import stat
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import trio

from . import paths, xattrs
from .attrs import (
    KIND_OF_FORMAT,
    METADATA_MAX,
    SPECIAL,
    Attr,
    Defaults,
    KeyState,
    Kind,
    meta_from_attr,
    metadata_size,
)
from .config import MountConfig
from .content import Content, type_for_name
from .errors import (
    BadHandle,
    Exists,
    InvalidName,
    IsADirectory,
    KeyMismatch,
    MetadataTooLarge,
    NameTooLong,
    NoAttribute,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotSupported,
    ReadOnly,
    SsecfsError,
    UnencryptedRefused,
    one_error,
)
from .handles import DirHandle, Handle, HandleTable, OpenFile
from .inodes import ROOT_INODE, InodeTable
from .keys import KeyRing
from .locks import PathLocks
from .metacache import open_metadata_cache
from .namespace import Namespace
from .ranges import Readahead, ReadBudget
from .reader import ReadHandle
from .spill import SpillFile, remove_stale_spill_files
from .stats import Stats
from .store.base import ListedObject, ObjectStore
from .transfer import Transfers
from .writer import Writer

log = logging.getLogger(__name__)

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
XATTR_CREATE = 1
XATTR_REPLACE = 2
# readdir: a directory's first reply is short, so that a caller that stats what it lists
# (`ls -l`, `ls --color`, rsync, du) shows itself before the rest goes out; the rest then go
# out with their attributes, HEADed before each reply, and the kernel asks nothing per file.
FIRST_REPLY = 32
HEADS_PER_REPLY = 512

DirEntry = tuple[str, Kind, ListedObject | None]


def _entry_name(entry: DirEntry) -> str:
    return entry[0]


def _renamed_content(content: Content, old: str, new: str) -> Content:
    """A renamed file's content headers: a type that its old name gave follows the new
    name (as s3fs does); one some tool chose is kept."""
    if content.type == type_for_name(paths.name_of(old)):
        return content.with_type(type_for_name(paths.name_of(new)))
    return content


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


class Filesystem:
    def __init__(self, store: ObjectStore, cfg: MountConfig, keys: KeyRing,
                 clock: Callable[[], float] = time.monotonic, stats: Stats | None = None) -> None:
        self.store = store
        self.stats = stats or Stats()
        self.cfg = cfg
        self.keys = keys
        defaults = Defaults(uid=cfg.uid, gid=cfg.gid, file_mode=cfg.file_mode,
                            dir_mode=cfg.dir_mode)
        self.ns = Namespace(store, keys, cfg.prefix, defaults, cfg.cache_ttl, clock, self.stats)
        self.inodes = InodeTable()
        self._files: dict[int, OpenFile] = {}
        self.handles: HandleTable[DirEntry] = HandleTable()
        self.locks = PathLocks()
        self.transfers = Transfers(store, keys, cfg.part_size, cfg.upload_concurrency)
        self._spill = SpillFile(cfg.spill_dir(), slot_size=1024 * 1024)
        self.writer = Writer(store, keys, self.ns, self.transfers, self._spill,
                             cfg.write_buffer_memory)
        self._nursery: trio.Nursery | None = None
        self._read_budget = ReadBudget(cfg.read_ahead_memory)
        # inode -> ETag of the object whose content the kernel's page cache may hold
        self._page_etags: dict[int, str] = {}
        # tells the kernel to forget what it cached of an inode's attributes (set by the
        # FUSE adapter; a no-op when the core is driven directly)
        self.kernel_forget_attrs: Callable[[int], None] = lambda ino: None

    # ------------------------------------------------------------------ life cycle
    def start(self, nursery: trio.Nursery) -> None:
        """Give the filesystem the nursery its background reads run in."""
        self._nursery = nursery
        self.writer.nursery = nursery
        remove_stale_spill_files(self.cfg.spill_dir())
        cfg = self.cfg
        if cfg.metadata_cache and cfg.as_of is None:  # a past view has no current HEADs
            self.ns.meta_cache = open_metadata_cache(
                cfg.spill_dir(), self.keys.writer,
                f"{cfg.endpoint_url or ''}|{cfg.region or ''}|{cfg.bucket}|{cfg.prefix}")

    def close(self) -> None:
        """Drop every buffer. The caller has named the dirty files (`dirty_files`) first."""
        for h in self.handles.files():
            if h.reader is not None:
                h.reader.close()
        for f in self._files.values():
            if f.buffer is not None:
                f.buffer.close()
        self._spill.close()
        if self.ns.meta_cache is not None:
            self.ns.meta_cache.close()

    def _path_name(self, f: OpenFile) -> str:
        return self.inodes.path_or_none(f.ino) or f"<inode {f.ino}>"

    def dirty_files(self) -> list[str]:
        return [self._path_name(f) for f in self._files.values() if f.dirty]

    async def flush_all(self) -> list[str]:
        """Upload every dirty file (unmount, SIGTERM). Returns the paths that failed.

        Whatever one file raises, the others are still tried: this is the last chance."""
        failed: list[str] = []
        for f in list(self._files.values()):
            if not f.dirty:
                continue
            try:
                await self._flush_file(f)
            except Exception as exc:
                path = self._path_name(f)
                log.error("could not upload %s: %s", path, exc,
                          exc_info=not hasattr(exc, "errno"))
                failed.append(path)
        await self.writer.settle()  # streams given up: their aborts are done
        await self.transfers.retry_aborts()
        for key, upload_id in self.transfers.unaborted:
            log.warning("an unfinished multipart upload of %s (id %s) is left in the bucket; "
                        "`ssecfs cleanup` removes it", key, upload_id)
        return failed

    # ------------------------------------------------------------------ helpers
    def _entry(self, path: str, attr: Attr) -> Entry:
        return Entry(self.inodes.lookup(path), attr, self.cfg.cache_ttl)

    def _file_at(self, path: str) -> OpenFile | None:
        ino = self.inodes.known(path)
        return self._files.get(ino) if ino is not None else None

    def _files_within(self, *roots: str) -> list[OpenFile]:
        out = []
        for f in self._files.values():
            p = self.inodes.path_or_none(f.ino)
            if p is not None and any(paths.is_within(p, r) for r in roots):
                out.append(f)
        return sorted(out, key=lambda f: f.ino)

    def _local_paths(self) -> list[str]:
        """Paths of files that exist here but maybe not yet in the bucket."""
        return [p for f in self._files.values() if not f.unlinked
                and (p := self.inodes.path_or_none(f.ino)) is not None]

    @staticmethod
    def _name(name: str) -> str:
        if len(paths.encode_name(name)) > paths.NAME_MAX:
            raise NameTooLong(name)
        if not paths.valid_name(name):
            raise InvalidName(name)
        return name

    @contextlib.asynccontextmanager
    async def _claim(self, *where: tuple[int, str] | int) -> AsyncIterator[list[str]]:
        """Claim paths, each named by (parent inode, name) or by its own inode, and lock the
        open files at or below them. The paths are read again once claimed: a rename may
        have moved them meanwhile."""
        def resolve() -> list[str]:
            return [self.inodes.path(w) if isinstance(w, int)
                    else paths.join(self.inodes.path(w[0]), w[1]) for w in where]

        while True:
            wanted = resolve()
            async with self.locks.hold(*wanted):
                if resolve() != wanted:
                    continue
                async with contextlib.AsyncExitStack() as stack:
                    for f in self._files_within(*wanted):
                        await stack.enter_async_context(f.lock)
                    yield wanted
                return

    @staticmethod
    def _existing(name: str) -> str:
        """A name an operation on an existing entry is given: one over NAME_MAX cannot
        exist, and says so (ENAMETOOLONG, as create and mkdir do), not ENOENT."""
        if len(paths.encode_name(name)) > paths.NAME_MAX:
            raise NameTooLong(name)
        return name

    def _fits(self, path: str) -> str:
        """`path` if its object key (with a directory's "/") is within S3's key limit."""
        if len(self.ns.dir_key(path).encode()) > paths.KEY_MAX:
            raise NameTooLong(f"the object key for {path} would be over {paths.KEY_MAX} bytes")
        return path

    def _writable(self) -> None:
        if self.cfg.read_only:
            raise ReadOnly("mounted read-only")

    # ------------------------------------------------------------------ attribute lookup
    async def stat_path(self, path: str) -> Attr:
        """Attributes of `path`: an open file's own, else the namespace's. Raises NotFound."""
        open_file = self._file_at(path)
        if open_file is not None and not open_file.unlinked:
            return open_file.attr
        return await self.ns.stat(path)

    async def lookup(self, parent_ino: int, name: str) -> Entry:
        parent = self.inodes.path(parent_ino)
        if name == ".":
            return self._entry(parent, await self.stat_path(parent))
        if name == "..":
            up = paths.parent_of(parent)
            return self._entry(up, await self.stat_path(up))
        if len(paths.encode_name(name)) > paths.NAME_MAX:
            raise NameTooLong(name)
        if not paths.valid_name(name):
            raise NotFound(name)
        if parent and (await self.stat_path(parent)).kind is not Kind.DIR:
            raise NotADirectory(parent)  # the kernel walks no further; core callers might
        self._looked_up_listed(parent, name)
        path = paths.join(parent, name)
        return self._entry(path, await self.stat_path(path))

    async def getattr(self, ino: int) -> Entry:
        f = self._files.get(ino)
        if f is not None and f.unlinked:
            return Entry(ino, f.attr, 0.0)  # fstat of an open, unlinked file
        path = self.inodes.path(ino)
        return Entry(ino, await self.stat_path(path), self.cfg.cache_ttl)

    def forget(self, ino: int, count: int) -> None:
        self.inodes.forget(ino, count)
        if self.inodes.path_or_none(ino) is None:
            self._page_etags.pop(ino, None)

    async def readlink(self, ino: int) -> str:
        path = self.inodes.path(ino)
        attr = await self.stat_path(path)
        if attr.kind is not Kind.SYMLINK:
            raise InvalidName(f"{path} is not a symlink")  # readlink(2) says EINVAL
        if attr.size > paths.PATH_MAX:
            # another tool marked a large object as a symlink: never download it for this
            self.ns.report_once(self.ns.key(path), "%s is marked as a symlink but holds %d "
                                "bytes, more than a target can be: not read",
                                self.ns.key(path), attr.size)
            raise NameTooLong(f"{path}: a symlink target of {attr.size} bytes")
        data = await self.ns.read_object(self.ns.key(path), attr.key_state is KeyState.PLAIN)
        return paths.decode_name(data)

    # ------------------------------------------------------------------ directories
    async def opendir(self, ino: int) -> int:
        path = self.inodes.path(ino)
        attr = await self.stat_path(path)
        if attr.kind is not Kind.DIR:
            raise NotADirectory(path)
        listing = await self.ns.list(path)
        entries = dict(listing.children)
        # files created here and not yet uploaded are part of the directory too
        for f in self._files.values():
            fpath = self.inodes.path_or_none(f.ino)
            if fpath is not None and not f.unlinked and paths.parent_of(fpath) == path \
                    and fpath != path:
                entries.setdefault(paths.name_of(fpath), (f.attr.kind, None))
        return self.handles.add_dir(
            DirHandle(path, sorted((n, k, o) for n, (k, o) in entries.items())))

    async def readdir(self, fh: int, start: int,
                      reply: Callable[[str, Entry, int], bool]) -> None:
        """Hand entries from index `start` on to `reply` until it returns False.

        Each accepted entry counts as a lookup (readdirplus). Attributes we have not asked the
        bucket for are given with a zero timeout, so the kernel asks again before using them;
        once the caller has looked up entries it was handed, the listed files of each reply
        are HEADed first (concurrently), so they go out with a timeout.
        """
        handle = self.handles.get_dir(fh)
        end = len(handle.entries)
        if handle.statted:
            end = min(end, start + HEADS_PER_REPLY)
            await self.ns.head_listed(
                [p for p in (paths.join(handle.path, name)
                             for name, kind, obj in handle.entries[start:end]
                             if kind is Kind.FILE and obj is not None)
                 if self._known_attr(p) is None])
        elif start == 0:
            end = min(end, FIRST_REPLY)
        for i in range(start, end):
            name, kind, obj = handle.entries[i]
            path = paths.join(handle.path, name)
            attr = self._known_attr(path)
            timeout = self.cfg.cache_ttl
            if attr is None:
                timeout = 0.0
                attr = self.ns.listed_attr(kind, obj)
            entry = Entry(self.inodes.ino_for(path), attr, timeout)
            if not reply(name, entry, i + 1):
                return
            self.inodes.lookup(path)
            handle.handed_out = max(handle.handed_out, i + 1)

    def _looked_up_listed(self, parent: str, name: str) -> None:
        """The kernel looks up `name` in `parent`: an open handle of `parent` that handed it
        out has a caller that stats what it lists."""
        for handle in self.handles.dirs_at(parent):
            if not handle.statted:
                i = bisect.bisect_left(handle.entries, name, key=_entry_name)
                handle.statted = i < handle.handed_out and handle.entries[i][0] == name

    def _known_attr(self, path: str) -> Attr | None:
        f = self._file_at(path)
        if f is not None and not f.unlinked:
            return f.attr
        return self.ns.cached(path)

    def releasedir(self, fh: int) -> None:
        self.handles.pop_dir(fh)

    # ------------------------------------------------------------------ files: open and read
    def _check_readable(self, path: str, attr: Attr) -> None:
        key = self.ns.key(path)
        if attr.key_state is KeyState.MISMATCH:
            self.ns.report_once(key, "%s is encrypted with an SSE-C key outside this mount's "
                                "key ring: it is listed but cannot be read (EACCES)", key)
            raise KeyMismatch(key)
        if attr.key_state is KeyState.PLAIN:
            if self.cfg.encrypted_only:
                self.ns.report_once(key, "%s is stored without SSE-C; refused "
                                    "(-o encrypted_only)", key)
                raise UnencryptedRefused(key)
            self.ns.report_once(key, "%s is stored without SSE-C encryption; reading it as "
                                "it is", key)

    async def _open_file(self, ino: int, path: str) -> OpenFile:
        """The OpenFile of `ino`, made from a fresh HEAD if the file is not open yet."""
        f = self._files.get(ino)
        if f is not None:
            return f
        info = await self.ns.head(path)
        f = self._files.get(ino)  # another task may have opened it meanwhile
        if f is None:
            f = self._files[ino] = OpenFile(ino, self.ns.attr_of(info), info)
        return f

    async def open(self, ino: int, flags: int) -> int:
        fh, _ = await self.open_keeping_cache(ino, flags)
        return fh

    async def open_keeping_cache(self, ino: int, flags: int) -> tuple[int, bool]:
        """Open `ino`; also say whether the kernel may keep the pages it cached of it: only
        when the object is the one (same ETag) whose content those pages hold. Close-to-open
        consistency then costs the open's HEAD, not a download."""
        path = self.inodes.path(ino)
        attr = await self.stat_path(path)
        if attr.kind is Kind.DIR:
            raise IsADirectory(path)
        writable = (flags & (0o1 | 0o2)) != 0 or bool(flags & 0o1000)  # O_WRONLY|O_RDWR|O_TRUNC
        if writable and self.cfg.read_only:
            raise ReadOnly(path)
        f = self._files.get(ino)
        if f is None:
            # claimed, so that a rename of the file or a directory above it cannot move the
            # object between this HEAD and the OpenFile that records it
            async with self._claim(ino) as (path,):
                f = await self._open_file(ino, path)
            if (f.attr.size, f.attr.mtime_ns) != (attr.size, attr.mtime_ns):
                # another client changed the object since the kernel was told its size: a
                # new open must see all of the current object, not the old size's worth
                self.kernel_forget_attrs(ino)
        self._check_readable(path, f.attr)
        if flags & 0o1000 and writable:  # O_TRUNC
            async with f.lock:
                await self.writer.truncate(f, 0)
        etag = f.base.etag if f.base is not None and f.buffer is None else ""
        keep = bool(etag) and self._page_etags.get(ino) == etag
        self.stats.add("opens_keeping_page_cache" if keep else "opens")
        if etag:
            self._page_etags[ino] = etag
        return self._add_handle(f, writable), keep

    def _add_handle(self, f: OpenFile, writable: bool) -> int:
        fh = self.handles.add(Handle(f, writable))
        f.handles += 1
        self.inodes.opened(f.ino)
        return fh

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        h = self.handles.get(fh)
        f = h.file
        if f.buffer is not None:
            async with f.lock:
                if f.buffer is not None:
                    return await self.writer.read(f, offset, size)
        base = f.base
        if base is None:
            return b""
        if h.reader is None or h.reader.etag != base.etag or h.reader.key != base.key:
            if h.reader is not None:
                h.reader.close()
            assert self._nursery is not None
            h.reader = ReadHandle(self.store, base.key, base.size, base.etag,
                                  self.keys.for_md5(base.key_md5),
                                  Readahead(maximum=self.cfg.read_ahead,
                                            depth=self.cfg.read_concurrency), self._nursery,
                                  self._read_budget)
        return await h.reader.read(offset, size)

    # ------------------------------------------------------------------ files: write and flush
    async def write(self, fh: int, offset: int, data: bytes) -> int:
        h = self.handles.get(fh)
        if not h.writable:
            raise BadHandle("write on a handle opened read-only")
        f = h.file
        async with f.lock:
            return await self.writer.write(f, offset, data, self.inodes.path_or_none(f.ino))

    async def flush(self, fh: int) -> None:
        h = self.handles.get(fh)
        if h.writable:
            await self._flush_file(h.file)

    async def fsync(self, fh: int) -> None:
        await self._flush_file(self.handles.get(fh).file)

    async def _flush_file(self, f: OpenFile) -> None:
        async with f.lock:
            await self._flush_locked(f)

    async def _flush_locked(self, f: OpenFile) -> None:
        # the path is read under the lock: a rename waits for this lock, so the upload
        # lands under the name the file has now
        if f.dirty:
            await self.writer.upload(f, self.inodes.path(f.ino))
            if f.base is not None:  # the kernel's pages hold what was just stored
                self._page_etags[f.ino] = f.base.etag

    async def release(self, fh: int) -> None:
        h = self.handles.pop(fh)
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
                log.warning("%s was closed with changes not in the bucket; they are kept and "
                            "retried at the next open, fsync or unmount", self._path_name(f))
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

    def _detach(self, f: OpenFile) -> None:
        """`f`'s name is gone (unlinked, or replaced by a rename): drop its unsaved data."""
        f.unlinked = True
        self.writer.drop_stream(f)
        if f.handles == 0:
            self._drop_closed(f)  # a closed file kept only for a failed upload

    # ------------------------------------------------------------------ namespace changes
    async def _must_not_exist(self, path: str) -> None:
        """Before a create: the parent is a directory and `path` is free."""
        parent = paths.parent_of(path)
        if (await self.stat_path(parent)).kind is not Kind.DIR:
            raise NotADirectory(parent)
        try:
            await self.stat_path(path)
        except NotFound:
            return
        raise Exists(path)

    def _new_attr(self, kind: Kind, mode: int, uid: int, gid: int) -> Attr:
        now = time.time_ns()
        return Attr(kind, stat.S_IMODE(mode), uid, gid, 0, now, ctime_ns=now, atime_ns=now)

    async def create(self, parent_ino: int, name: str, mode: int, flags: int, uid: int,
                     gid: int) -> tuple[int, Entry]:
        self._writable()
        async with self._claim((parent_ino, self._name(name))) as (path,):
            await self._must_not_exist(self._fits(path))
            attr = self._new_attr(Kind.FILE, mode, uid, gid)
            entry = self._entry(path, attr)
            f = self._files[entry.ino] = OpenFile(entry.ino, attr, None, new=True)
            self.ns.creating(path)
            self.ns.entry_changed(path)
        return self._add_handle(f, writable=True), entry

    async def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int) -> Entry:
        self._writable()
        async with self._claim((parent_ino, self._name(name))) as (path,):
            await self._must_not_exist(self._fits(path))
            attr = self._new_attr(Kind.DIR, mode, uid, gid)
            await self.ns.put_small(path, attr, b"")
            self.ns.made_dir(path, empty=True)
            self.ns.stored(path, attr)
            self.ns.entry_changed(path)
            return self._entry(path, attr)

    async def symlink(self, parent_ino: int, name: str, target: str, uid: int,
                      gid: int) -> Entry:
        self._writable()
        async with self._claim((parent_ino, self._name(name))) as (path,):
            await self._must_not_exist(self._fits(path))
            body = paths.encode_name(target)
            attr = self._new_attr(Kind.SYMLINK, 0o777, uid, gid).with_(size=len(body))
            await self.ns.put_small(path, attr, body)
            self.ns.stored(path, attr)
            self.ns.entry_changed(path)
            return self._entry(path, attr)

    async def mknod(self, parent_ino: int, name: str, mode: int, rdev: int, uid: int,
                    gid: int) -> Entry:
        """A regular file (stored empty at once), a FIFO, a socket or a device node: an
        empty object whose x-amz-meta-mode says what it is, as s3fs stores them."""
        self._writable()
        kind = KIND_OF_FORMAT.get(stat.S_IFMT(mode) or stat.S_IFREG)
        if kind is None or kind in (Kind.DIR, Kind.SYMLINK):
            raise InvalidName(f"mknod of file type {stat.S_IFMT(mode):o}")  # as mknod(2)
        async with self._claim((parent_ino, self._name(name))) as (path,):
            await self._must_not_exist(self._fits(path))
            attr = self._new_attr(kind, mode, uid, gid).with_(rdev=rdev if kind in SPECIAL
                                                              else 0)
            await self.ns.put_small(path, attr, b"")
            self.ns.stored(path, attr)
            self.ns.entry_changed(path)
            return self._entry(path, attr)


    async def rmdir(self, parent_ino: int, name: str) -> None:
        self._writable()
        async with self._claim((parent_ino, self._existing(name))) as (path,):
            attr = await self.stat_path(path)
            if attr.kind is not Kind.DIR:
                raise NotADirectory(path)
            if await self.ns.has_children(path, self._local_paths()):
                raise NotEmpty(path)
            await self.store.delete(self.ns.dir_key(path))
            for key in self.ns.take_compat_keys(path):  # a directory object of an older kind
                await self.store.delete(key)
            self.ns.gone(path)
            await self.ns.keep_parent(path)
            self.ns.removed_dir(path)
            self.ns.gone(path)
            self.ns.entry_changed(path)
            self.inodes.unlink(path)

    async def unlink(self, parent_ino: int, name: str) -> None:
        self._writable()
        async with self._claim((parent_ino, self._existing(name))) as (path,):
            # holding the file's lock: an upload in flight has finished, none starts now
            attr = await self.stat_path(path)
            if attr.kind is Kind.DIR:
                raise IsADirectory(path)
            f = self._file_at(path)
            in_bucket = f is None or not f.new
            if f is not None:
                if f.handles:
                    await self.writer.keep_content(f)  # open handles read and write on
                self._detach(f)
            self.ns.gone(path)
            if in_bucket:
                await self.store.delete(self.ns.key(path))
                self.ns.gone(path)
                await self.ns.keep_parent(path)
            self.ns.entry_changed(path)
            self.inodes.unlink(path)

    async def rename(self, old_parent: int, old_name: str, new_parent: int, new_name: str,
                     flags: int) -> None:
        self._writable()
        if flags & RENAME_EXCHANGE:
            raise NotSupported("RENAME_EXCHANGE")
        new_name = self._name(new_name)
        async with self._claim((old_parent, self._existing(old_name)),
                               (new_parent, new_name)) as (old, new):
            for parent in {paths.parent_of(old), paths.parent_of(new)}:
                if (await self.stat_path(parent)).kind is not Kind.DIR:
                    raise NotADirectory(parent)
            src = await self.stat_path(old)
            if old == new:
                return
            self._fits(new)
            if paths.is_within(new, old):
                raise InvalidName(f"cannot move {old} into itself")
            if paths.is_within(old, new):
                raise NotEmpty(new)  # onto its own ancestor: Linux answers ENOTEMPTY
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
                if dst.kind is Kind.DIR and await self.ns.has_children(new,
                                                                       self._local_paths()):
                    raise NotEmpty(new)
            target = self._file_at(new)
            if target is not None and target.handles and target is not self._file_at(old):
                await self.writer.keep_content(target)  # replaced, but still open
            self.ns.invalidate(old)
            self.ns.invalidate(new)
            if src.kind is Kind.DIR:
                await self._rename_dir(old, new, replaces=dst is not None)
            else:
                await self._rename_file(old, new, src, replaces=dst is not None)
            if paths.parent_of(old) != paths.parent_of(new):
                await self.ns.keep_parent(old)
            # a directory target was empty: _rename_dir wrote its marker anew, keep it
            target = self._file_at(new)
            if target is not None and target is not self._file_at(old):
                self._detach(target)
            self.ns.gone(old)
            self.ns.moved_here(new, src.status_changed(time.time_ns()))
            self.ns.entry_changed(old)
            self.ns.entry_changed(new)
            self.inodes.rename(old, new)

    async def _rename_file(self, old: str, new: str, attr: Attr, replaces: bool) -> None:
        """Under the claim and the locks of both files."""
        f = self._file_at(old)
        if f is not None and f.new:
            # not in the bucket yet: it will be uploaded under its new name. What it replaces
            # goes now, or an unlink or rename before that upload would bring it back
            target = self._file_at(new)
            if replaces and (target is None or not target.new):
                await self.store.delete(self.ns.key(new))
            return
        if f is not None and f.dirty:
            await self._flush_locked(f)
        if attr.key_state is KeyState.MISMATCH:
            raise KeyMismatch(self.ns.key(old))
        info = await self.ns.head_object(self.ns.key(old))  # with the key that opens it
        moved = self.ns.attr_of(info).status_changed(time.time_ns())
        await self.transfers.copy(info, self.ns.key(new), meta_from_attr(moved),
                                  _renamed_content(info.content, old, new))
        await self.store.delete(self.ns.key(old))
        if f is not None and f.base is not None:
            await self._rebase(f, self.ns.key(new))

    async def _rename_dir(self, old: str, new: str, replaces: bool) -> None:
        """Under the claim of both trees and the locks of every open file in them."""
        for f in self._files_within(old):
            if f.dirty and not f.new:
                await self._flush_locked(f)
        old_pfx = self.ns.dir_key(old)
        new_pfx = self.ns.dir_key(new)
        keys: list[str] = []
        token: str | None = None
        while True:
            page = await self.store.list_page(old_pfx, delimiter=None, token=token)
            keys.extend(o.key for o in page.objects)
            token = page.next_token
            if token is None:
                break
        too_long = [k for k in keys
                    if len((new_pfx + k[len(old_pfx):]).encode()) > paths.KEY_MAX]
        if too_long:
            raise NameTooLong(f"moving {old} to {new} would make {len(too_long)} object "
                              f"key(s) longer than {paths.KEY_MAX} bytes")
        # copy everything first, delete only when every copy is done: never lose an object
        limiter = trio.CapacityLimiter(self.cfg.upload_concurrency)

        copied: list[str] = []

        async def move(key: str) -> None:
            async with limiter:
                info = await self.ns.head_object(key)
                target = new_pfx + key[len(old_pfx):]
                await self.transfers.copy(info, target, dict(info.metadata), info.content)
                copied.append(target)

        try:
            for wave in paths.parents_first(keys, old_pfx):
                with one_error():
                    async with trio.open_nursery() as nursery:
                        for key in wave:
                            nursery.start_soon(move, key)
            if old_pfx not in keys:
                # an implied directory: give the new one a marker so it exists even when empty
                await self.ns.put_small(new, await self.stat_path(old), b"")
                copied.append(new_pfx)
        except BaseException:
            # the rename failed before anything was deleted: take back the copies made, so
            # that the error leaves one tree, the old one (best effort; a leftover copy is
            # named in the log)
            with trio.CancelScope(shield=True):
                # an empty directory being replaced keeps its marker (with our metadata)
                undo = [k for k in copied if not (replaces and k == new_pfx)]
                try:
                    if undo:
                        await self.store.delete_many(sorted(undo, reverse=True))
                except SsecfsError as exc:
                    log.warning("rename of %s to %s failed; copies under %s are left: %s",
                                old, new, new, exc)
            raise
        # children before the markers of their directories (reverse order puts every key
        # before its prefixes): SeaweedFS keeps listing a directory forever when its marker
        # goes before its last child
        await self.store.delete_many(sorted(keys, reverse=True) + self.ns.take_compat_keys(old))
        self.ns.removed_dir(old)
        self.ns.made_dir(new)
        for f in self._files_within(old):
            fpath = self.inodes.path_or_none(f.ino)
            if fpath and f.base is not None:
                await self._rebase(f, self.ns.key(paths.rebase(fpath, old, new)))

    async def _rebase(self, f: OpenFile, key: str) -> None:
        """`f`'s object was copied to `key`: read on from there. The move is done, so a
        failed HEAD must not fail it: reads then go without an ETag check."""
        assert f.base is not None
        try:
            f.base = await self.ns.head_object(key)
        except SsecfsError as exc:
            log.info("HEAD of %s after a rename failed (%s); reading it unchecked", key, exc)
            f.base = dataclasses.replace(f.base, key=key, etag="")

    # ------------------------------------------------------------------ attributes
    async def setattr(self, ino: int, *, size: int | None = None, mode: int | None = None,
                      uid: int | None = None, gid: int | None = None,
                      mtime_ns: int | None = None, atime_ns: int | None = None,
                      fh: int | None = None) -> Entry:
        """chmod, chown, utimensat, truncate. Every change but a truncate alone moves the
        ctime; `touch -d`, `cp -p` and `mv` keep the mtime they set or had."""
        changes: dict[str, object] = {k: v for k, v in (
            ("mode", None if mode is None else stat.S_IMODE(mode)), ("uid", uid), ("gid", gid),
            ("mtime_ns", mtime_ns), ("atime_ns", atime_ns)) if v is not None}

        def change(attr: Attr) -> Attr:
            if not changes:
                return attr
            return attr.with_(**changes).status_changed(time.time_ns())
        return await self._change(ino, change, size)

    # ------------------------------------------------------------------ extended attributes
    async def getxattr(self, ino: int, name: str) -> bytes:
        value = xattrs.get((await self._attr_of_inode(ino)).xattrs, name)
        if value is None:
            if not xattrs.is_stored_namespace(name):  # see xattrs.py: readers stop asking
                raise NotSupported(f"extended attribute {name!r}: not kept on this mount")
            raise NoAttribute(name)
        return value

    async def listxattr(self, ino: int) -> list[str]:
        return [name for name, _ in (await self._attr_of_inode(ino)).xattrs]

    async def setxattr(self, ino: int, name: str, value: bytes, flags: int = 0) -> None:
        xattrs.check_name(name)

        def change(attr: Attr) -> Attr:
            present = xattrs.get(attr.xattrs, name) is not None
            if flags & XATTR_CREATE and present:
                raise Exists(f"extended attribute {name}")
            if flags & XATTR_REPLACE and not present:
                raise NoAttribute(name)
            new = attr.with_(xattrs=xattrs.with_attr(attr.xattrs, name, value))
            size = metadata_size(meta_from_attr(new))
            if size > METADATA_MAX:
                log.warning("setxattr %s: the object's metadata would be %d bytes, over S3's "
                            "limit of %d (ENOSPC)", name, size, METADATA_MAX)
                raise MetadataTooLarge(f"metadata of {size} bytes")
            return new.status_changed(time.time_ns())
        await self._change(ino, change)

    async def removexattr(self, ino: int, name: str) -> None:
        def change(attr: Attr) -> Attr:
            if xattrs.get(attr.xattrs, name) is None:
                raise NoAttribute(name)
            return attr.with_(xattrs=xattrs.without(attr.xattrs, name)).status_changed(
                time.time_ns())
        await self._change(ino, change)

    async def _attr_of_inode(self, ino: int) -> Attr:
        f = self._files.get(ino)
        if f is not None and f.unlinked:
            return f.attr
        return await self.stat_path(self.inodes.path(ino))

    # ------------------------------------------------------------------ attribute changes
    async def _change(self, ino: int, change: Callable[[Attr], Attr],
                      size: int | None = None) -> Entry:
        """Apply `change` (and a truncate to `size`) to the attributes of `ino` and store
        them: a directory's marker, a symlink or special file anew, a file's object by a copy
        onto itself (or at the next flush, when it is open with changes)."""
        self._writable()
        if ino == ROOT_INODE:
            root = await self.stat_path("")
            if size is not None:
                raise IsADirectory("the mount's root")
            return Entry(ino, await self.ns.set_root(change(root)), self.cfg.cache_ttl)
        f = self._files.get(ino)
        if f is not None and f.unlinked:
            # an open, unlinked file: it has no object any more, only these handles
            async with f.lock:
                if size is not None:
                    await self.writer.truncate(f, size)
                f.attr = change(f.attr)
            return Entry(ino, f.attr, 0.0)
        async with self._claim(ino) as (path,):
            return await self._change_claimed(ino, path, change, size)

    async def _change_claimed(self, ino: int, path: str, change: Callable[[Attr], Attr],
                              size: int | None) -> Entry:
        attr = await self.stat_path(path)
        if attr.kind is Kind.DIR and size is not None:
            raise IsADirectory(path)
        if attr.kind is not Kind.FILE:
            new_attr = change(attr)
            if attr.kind is Kind.SYMLINK:
                new_attr = new_attr.with_(mode=0o777)  # a symlink's mode is always 0777
            if new_attr == attr:
                return Entry(ino, attr, self.cfg.cache_ttl)
            body = b""
            if attr.kind is Kind.SYMLINK:
                # lchown, utimensat(AT_SYMLINK_NOFOLLOW) (rsync -a, tar, cp -a): the small
                # object is written again
                body = await self.ns.read_object(self.ns.key(path),
                                                 attr.key_state is KeyState.PLAIN)
            await self.ns.put_small(path, new_attr, body)
            if attr.kind is Kind.DIR:
                # a directory object of an older kind gives way to the "dir/" marker just
                # stored (s3fs does the same), or it would still be found first
                for key in self.ns.take_compat_keys(path):
                    await self.store.delete(key)
            self.ns.stored(path, new_attr)
            return Entry(ino, new_attr, self.cfg.cache_ttl)
        f = self._files.get(ino)
        temporary = f is None
        if f is None:
            f = await self._open_file(ino, path)
        self._check_readable(path, f.attr)
        # the claim locked the file if it was open; one opened just now is locked here
        async with f.lock if temporary else contextlib.nullcontext():
            if size is not None:
                await self.writer.truncate(f, size)
            new_attr = change(f.attr)
            if new_attr != f.attr:
                f.attr = new_attr
                f.meta_dirty = True
                self.writer.drop_stream(f)  # its metadata was fixed when it started
            elif size is not None:  # to the size it had: the times move all the same
                f.attr = f.attr.content_changed(time.time_ns())
                f.meta_dirty = True
            # an open, changed file is stored at its next flush; otherwise store it now
            if temporary or f.handles == 0 or (f.buffer is None and not f.new):
                try:
                    await self._flush_locked(f)
                finally:
                    if f.handles == 0 and f.dirty:
                        self._pin(f)  # failed: keep the data reachable until a retry
                    elif temporary and not f.dirty:
                        self._files.pop(ino, None)
        return Entry(ino, f.attr, self.cfg.cache_ttl)

    def statfs(self) -> StatFs:
        return StatFs()
