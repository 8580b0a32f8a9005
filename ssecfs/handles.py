"""Open-file state and the handle table.

An `OpenFile` exists for a file that is open, or closed with changes not yet in the bucket; one
per inode, shared by all its handles. Its `lock` orders everything that touches its content or
its object: writes, truncates, buffered reads, the upload, and the rename or unlink of the file
(see `locks.py` for the order in which locks are taken). A file handle is an index into
`HandleTable`; an unknown one is EBADF, never a KeyError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

from .attrs import Attr
from .buffer import FileBuffer
from .errors import BadHandle
from .reader import ReadHandle
from .store.base import ObjectInfo
from .stream import PartStream

T = TypeVar("T")


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
    pinned: bool = False  # holds an inode reference while closed and dirty
    stream: PartStream | None = None  # a multipart upload sent while the file is written
    streamable: bool = True  # False once a rename, unlink or chmod made streaming stop
    lock: trio.Lock = field(default_factory=trio.Lock)

    @property
    def dirty(self) -> bool:
        return not self.unlinked and (self.buffer is not None or self.meta_dirty or self.new)


@dataclass(eq=False, slots=True)
class Handle:
    file: OpenFile
    writable: bool
    reader: ReadHandle | None = None


@dataclass(eq=False, slots=True)
class DirHandle(Generic[T]):
    path: str
    entries: list[T]  # a snapshot taken at opendir
    handed_out: int = 0  # entries given to the kernel so far
    statted: bool = False  # its caller looked up what it was handed (`ls -l`)


class HandleTable(Generic[T]):
    """File and directory handles by number; numbers are never reused."""

    def __init__(self) -> None:
        self._files: dict[int, Handle] = {}
        self._dirs: dict[int, DirHandle[T]] = {}
        self._next = 1

    def _new(self) -> int:
        fh = self._next
        self._next += 1
        return fh

    def add(self, handle: Handle) -> int:
        fh = self._new()
        self._files[fh] = handle
        return fh

    def get(self, fh: int) -> Handle:
        try:
            return self._files[fh]
        except KeyError:
            raise BadHandle(f"no open file handle {fh}") from None

    def pop(self, fh: int) -> Handle:
        handle = self.get(fh)
        del self._files[fh]
        return handle

    def add_dir(self, handle: DirHandle[T]) -> int:
        fh = self._new()
        self._dirs[fh] = handle
        return fh

    def get_dir(self, fh: int) -> DirHandle[T]:
        try:
            return self._dirs[fh]
        except KeyError:
            raise BadHandle(f"no open directory handle {fh}") from None

    def pop_dir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    def dirs_at(self, path: str) -> list[DirHandle[T]]:
        """The open handles of directory `path`."""
        return [d for d in self._dirs.values() if d.path == path]

    def files(self) -> list[Handle]:
        return list(self._files.values())

    def any_file_open(self) -> bool:
        return bool(self._files)
