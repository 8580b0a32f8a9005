"""Operations: the thin pyfuse3 adapter over `Filesystem`.

Each handler converts arguments, calls Filesystem and converts the result. Errors pass through
`_fuse_errors`, the one place where `pyfuse3.FUSEError` is made: an SsecfsError becomes its
errno; anything else is logged with its traceback and becomes EIO, because any other exception
escaping a handler would end the whole mount (pyfuse3 only catches FUSEError).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from .attrs import Attr
from .errors import SsecfsError
from .filesystem import Entry, Filesystem
from .paths import decode_name, encode_name
from .stats import XATTR as STATS_XATTR

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def _fuse_errors(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except SsecfsError as exc:
            log.debug("%s: %s (%s)", fn.__name__, errno.errorcode.get(exc.errno, exc.errno), exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except OSError as exc:
            log.debug("%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("unexpected error in %s; answering EIO", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None
    return wrapper


def _attributes(entry: Entry) -> pyfuse3.EntryAttributes:
    a: Attr = entry.attr
    out = pyfuse3.EntryAttributes()
    out.st_ino = entry.ino
    out.generation = 0
    out.entry_timeout = entry.timeout
    out.attr_timeout = entry.timeout
    out.st_mode = a.st_mode
    out.st_nlink = 2 if a.kind.value == "dir" else 1
    out.st_uid = a.uid
    out.st_gid = a.gid
    out.st_rdev = a.rdev
    out.st_size = a.size
    out.st_blksize = 1024 * 1024
    out.st_blocks = -(-a.size // 512)
    out.st_atime_ns = a.atime
    out.st_mtime_ns = a.mtime_ns
    out.st_ctime_ns = a.ctime
    return out


def _xattr_name(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def _forget_attrs(ino: int) -> None:
    """The kernel drops its cached attributes (the size) of `ino` and asks again. Only the
    attributes: a page invalidation from inside a request could wait on that request."""
    try:
        pyfuse3.invalidate_inode(ino, attr_only=True)
    except OSError as exc:  # ENOENT: the kernel holds nothing for it
        log.debug("invalidate_inode %d: %s", ino, exc)


class Operations(pyfuse3.Operations):
    """pyfuse3 handlers; `fs` holds the filesystem logic."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, fs: Filesystem, on_idle: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.fs = fs
        self._on_idle = on_idle  # called when the last open file is released
        fs.kernel_forget_attrs = _forget_attrs

    @_fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any) -> Any:
        log.debug("lookup %d %r", parent_inode, name)
        return _attributes(await self.fs.lookup(parent_inode, decode_name(name)))

    @_fuse_errors
    async def getattr(self, inode: int, ctx: Any) -> Any:
        return _attributes(await self.fs.getattr(inode))

    async def forget(self, inode_list: Any) -> None:
        for inode, count in inode_list:  # forget must never raise
            try:
                self.fs.forget(inode, count)
            except Exception:
                log.exception("forget(%d) failed", inode)

    @_fuse_errors
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        return encode_name(await self.fs.readlink(inode))

    @_fuse_errors
    async def opendir(self, inode: int, ctx: Any) -> Any:
        log.debug("opendir %d", inode)
        return await self.fs.opendir(inode)

    @_fuse_errors
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        await self.fs.readdir(fh, start_id, lambda name, entry, nxt: bool(
            pyfuse3.readdir_reply(token, encode_name(name), _attributes(entry), nxt)))

    @_fuse_errors
    async def releasedir(self, fh: int) -> None:
        self.fs.releasedir(fh)

    @_fuse_errors
    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        log.debug("open %d flags=%o", inode, flags)
        fh, keep = await self.fs.open_keeping_cache(inode, flags)
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep)

    @_fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.fs.read(fh, off, size)

    @_fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.fs.write(fh, off, buf)

    @_fuse_errors
    async def flush(self, fh: int) -> None:
        await self.fs.flush(fh)

    @_fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.fs.fsync(fh)

    @_fuse_errors
    async def release(self, fh: int) -> None:
        await self.fs.release(fh)
        if not self.fs.handles.any_file_open():
            self._on_idle()

    @_fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: Any) -> Any:
        log.debug("create %d %r", parent_inode, name)
        fh, entry = await self.fs.create(parent_inode, decode_name(name), mode, flags,
                                         ctx.uid, ctx.gid)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False), _attributes(entry)

    @_fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> Any:
        return _attributes(await self.fs.mkdir(parent_inode, decode_name(name), mode,
                                               ctx.uid, ctx.gid))

    @_fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Any) -> Any:
        return _attributes(await self.fs.symlink(parent_inode, decode_name(name),
                                                 decode_name(target), ctx.uid, ctx.gid))

    @_fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.fs.rmdir(parent_inode, decode_name(name))

    @_fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.fs.unlink(parent_inode, decode_name(name))

    @_fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: Any) -> None:
        await self.fs.rename(parent_inode_old, decode_name(name_old), parent_inode_new,
                             decode_name(name_new), flags)

    @_fuse_errors
    async def setattr(self, inode: int, attr: Any, fields: Any, fh: int | None,
                      ctx: Any) -> Any:
        # pyfuse3 turns UTIME_NOW into update_mtime with the current time already
        entry = await self.fs.setattr(
            inode,
            size=attr.st_size if fields.update_size else None,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None, fh=fh)
        return _attributes(entry)

    @_fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any) -> Any:
        # S3 has no hard links; EPERM is what link(2) answers on filesystems without them
        raise pyfuse3.FUSEError(errno.EPERM)

    @_fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any) -> Any:
        return _attributes(await self.fs.mknod(parent_inode, decode_name(name), mode, rdev,
                                               ctx.uid, ctx.gid))

    @_fuse_errors
    async def statfs(self, ctx: Any) -> Any:
        s = self.fs.statfs()
        out = pyfuse3.StatvfsData()
        out.f_bsize = s.block_size
        out.f_frsize = s.block_size
        out.f_blocks = s.blocks
        out.f_bfree = s.blocks_free
        out.f_bavail = s.blocks_free
        out.f_files = s.files
        out.f_ffree = s.files_free
        out.f_favail = s.files_free
        out.f_namemax = s.name_max
        return out

    @_fuse_errors
    async def access(self, inode: int, mode: int, ctx: Any) -> bool:
        return True  # default_permissions: the kernel has checked the mode bits already

    @_fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        if inode == pyfuse3.ROOT_INODE and name == STATS_XATTR.encode():
            return json.dumps(self.fs.stats.snapshot()).encode()  # `ssecfs stats MOUNTPOINT`
        return await self.fs.getxattr(inode, _xattr_name(name))

    @_fuse_errors
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        return [n.encode("utf-8", "surrogateescape") for n in await self.fs.listxattr(inode)]

    @_fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        # pyfuse3 gives no flags: XATTR_CREATE / XATTR_REPLACE are not passed on
        await self.fs.setxattr(inode, _xattr_name(name), bytes(value))

    @_fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        await self.fs.removexattr(inode, _xattr_name(name))


