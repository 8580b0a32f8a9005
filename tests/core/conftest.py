"""Core tests: `Filesystem` driven directly, with no kernel and no network, on the
SSE-C-enforcing `MemoryStore`. Each test takes `autojump_clock` (pytest-trio reads the clock
only from the test's own arguments), so sleeps, TTLs and backoffs cost no wall time."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from ssecfs.attrs import Kind
from ssecfs.config import MountConfig
from ssecfs.errors import NotADirectory, NotFound
from ssecfs.filesystem import Entry, Filesystem
from ssecfs.inodes import ROOT_INODE
from ssecfs.keys import KeyRing, SseCKey
from ssecfs.store.memory import MemoryStore

O_WRONLY, O_RDWR, O_TRUNC = os.O_WRONLY, os.O_RDWR, os.O_TRUNC


@dataclass
class Core:
    fs: Filesystem
    store: MemoryStore
    key: SseCKey

    # ------------------------------------------------------------ path-level helpers
    async def entry(self, path: str) -> Entry:
        ino = ROOT_INODE
        entry: Entry | None = None
        for name in [p for p in path.split("/") if p]:
            entry = await self.fs.lookup(ino, name)
            ino = entry.ino
        assert entry is not None
        return entry

    async def ino(self, path: str) -> int:
        return ROOT_INODE if path in ("", "/") else (await self.entry(path)).ino

    async def parent_and_name(self, path: str) -> tuple[int, str]:
        """As the kernel's path walk: the parent must be a directory (else ENOTDIR)."""
        parent, _, name = path.rpartition("/")
        if parent and (await self.entry(parent)).attr.kind is not Kind.DIR:
            raise NotADirectory(parent)
        return await self.ino(parent), name

    async def create(self, path: str, mode: int = 0o644) -> int:
        parent, name = await self.parent_and_name(path)
        fh, _ = await self.fs.create(parent, name, mode, O_WRONLY, 0, 0)
        return fh

    async def write_file(self, path: str, data: bytes) -> None:
        """open(O_CREAT|O_TRUNC) + write + close, as `echo > path` does."""
        try:
            ino = await self.ino(path)
        except NotFound:
            fh = await self.create(path)
        else:
            fh = await self.fs.open(ino, O_WRONLY | O_TRUNC)
        await self.fs.write(fh, 0, data)
        await self.close(fh)

    async def close(self, fh: int) -> None:
        try:
            await self.fs.flush(fh)
        finally:
            await self.fs.release(fh)

    async def read_file(self, path: str) -> bytes:
        fh = await self.fs.open(await self.ino(path), os.O_RDONLY)
        try:
            out = b""
            while True:
                chunk = await self.fs.read(fh, len(out), 1 << 20)
                if not chunk:
                    return out
                out += chunk
        finally:
            await self.fs.release(fh)

    async def mkdir(self, path: str) -> Entry:
        parent, name = await self.parent_and_name(path)
        return await self.fs.mkdir(parent, name, 0o755, 0, 0)

    async def rename(self, old: str, new: str, flags: int = 0) -> None:
        op, on = await self.parent_and_name(old)
        np, nn = await self.parent_and_name(new)
        await self.fs.rename(op, on, np, nn, flags)

    async def unlink(self, path: str) -> None:
        await self.fs.unlink(*(await self.parent_and_name(path)))

    async def listdir(self, path: str = "") -> list[str]:
        fh = await self.fs.opendir(await self.ino(path))
        names = [name async for page in self.readdir_pages(fh) for name, _ in page]
        self.fs.releasedir(fh)
        return names

    async def readdir_pages(self, fh: int) -> AsyncIterator[list[tuple[str, Entry]]]:
        """The replies of readdir from the start, as the kernel asks for them: each from
        where the last ended, until one is empty."""
        start = 0
        while True:
            page: list[tuple[str, Entry]] = []

            def take(name: str, entry: Entry, nxt: int, page: list[tuple[str, Entry]] = page
                     ) -> bool:
                page.append((name, entry))
                return True

            await self.fs.readdir(fh, start, take)
            if not page:
                return
            start += len(page)
            yield page

    def remount(self, tmp_path: Path, **options: object) -> Core:
        """A second mount of the same bucket with the same key: what another machine sees."""
        other = make_core(tmp_path, **options)
        other.store, other.key = self.store, self.key
        other.fs = Filesystem(self.store, other.fs.cfg, KeyRing(self.key),
                              clock=trio.current_time)
        assert self.fs._nursery is not None
        other.fs.start(self.fs._nursery)
        return other

    def bucket(self) -> dict[str, bytes]:
        return {k: o.body for k, o in self.store.objects.items()}


def make_core(tmp_path: Path, **options: object) -> Core:
    cfg = MountConfig(bucket="b", prefix=str(options.pop("prefix", "")),
                      mountpoint=str(tmp_path / "mnt"), cache_dir=str(tmp_path / "cache"),
                      uid=0, gid=0, **options)  # type: ignore[arg-type]
    key = SseCKey(secrets.token_bytes(32))
    store = MemoryStore()
    # the caches read trio's clock: under autojump_clock a TTL passes in no wall time
    return Core(Filesystem(store, cfg, KeyRing(key), clock=trio.current_time), store, key)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    c = make_core(tmp_path)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        yield c
        nursery.cancel_scope.cancel()
    c.fs.close()
