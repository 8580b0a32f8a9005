"""`--as-of T` on the memory store with versioning: `Filesystem` over a `SnapshotStore`
shows each key's version current at T, opened with the key of the ring that fits that
version; later versions, deletes before T and keys made after T are handled as S3 would; every
write is EROFS; a directory listing costs one ListObjectVersions walk (plus one per
subdirectory), and reads ask for the pinned version."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ssecfs.attrs import Kind
from ssecfs.config import MountConfig
from ssecfs.errors import SsecfsError
from ssecfs.filesystem import Filesystem
from ssecfs.inodes import ROOT_INODE
from ssecfs.keys import KeyRing, SseCKey
from ssecfs.store.memory import MemoryStore
from ssecfs.store.snapshot import SnapshotStore
from tests.core.conftest import Core
from tests.core.test_operations import errno_of

SECOND = 1_000_000_000


def history(store: MemoryStore, old: SseCKey, new: SseCKey) -> int:
    """Make a history; return T (between the "before" and the "after" changes)."""
    store.enable_versioning()
    store.put_object("kept.txt", b"kept", old)
    store.put_object("over.txt", b"old contents", old,
                     metadata={"mode": str(stat.S_IFREG | 0o600), "mtime": "1700000000"})
    store.put_object("deleted-after.txt", b"was here", old)
    store.put_object("deleted-before.txt", b"gone early", old)
    store.remove("deleted-before.txt")
    store.put_object("dir/a.txt", b"in dir", old)
    store.put_object("marked/", b"", old, metadata={"mode": str(stat.S_IFDIR | 0o750)})
    store.put_object("gone-dir/x", b"x", old)
    store.remove("gone-dir/x")
    store.put_object("link", b"kept.txt", old, metadata={"mode": str(stat.S_IFLNK | 0o777)})
    as_of = store.clock_ns
    store.clock_ns += 5 * SECOND
    store.put_object("over.txt", b"NEW contents, longer", new)
    store.remove("deleted-after.txt")
    store.put_object("created-after.txt", b"new", new)
    store.put_object("newdir/b.txt", b"new", new)
    store.remove("dir/a.txt")
    return as_of


@pytest.fixture
async def snap(tmp_path: Path) -> AsyncIterator[Core]:
    old, new = SseCKey(secrets.token_bytes(32)), SseCKey(secrets.token_bytes(32))
    store = MemoryStore()
    as_of = history(store, old, new)
    cfg = MountConfig(bucket="b", prefix="", mountpoint=str(tmp_path / "mnt"),
                      cache_dir=str(tmp_path / "cache"), uid=0, gid=0, as_of=as_of)
    assert cfg.read_only
    fs = Filesystem(SnapshotStore(store, as_of), cfg, KeyRing(new, (old,)),
                    clock=trio.current_time)
    c = Core(fs, store, new)
    async with trio.open_nursery() as nursery:
        fs.start(nursery)
        yield c
        nursery.cancel_scope.cancel()
    fs.close()


async def test_shows_the_bucket_as_it_was(snap: Core, autojump_clock: trio.abc.Clock) -> None:
    assert sorted(await snap.listdir()) == [
        "deleted-after.txt", "dir", "kept.txt", "link", "marked", "over.txt"]
    assert await snap.read_file("over.txt") == b"old contents"  # under the old key
    assert await snap.read_file("deleted-after.txt") == b"was here"
    assert await snap.listdir("dir") == ["a.txt"]
    assert await snap.read_file("dir/a.txt") == b"in dir"
    over = (await snap.entry("over.txt")).attr
    assert (over.size, over.mode, over.mtime_ns) == (12, 0o600, 1700000000 * SECOND)
    marked = (await snap.entry("marked")).attr
    assert (marked.kind, marked.mode) == (Kind.DIR, 0o750)
    assert await snap.fs.readlink((await snap.entry("link")).ino) == "kept.txt"
    for hidden in ("deleted-before.txt", "created-after.txt", "newdir", "gone-dir"):
        assert await errno_of(snap.entry(hidden)) == errno.ENOENT, hidden


async def test_writes_are_erofs(snap: Core, autojump_clock: trio.abc.Clock) -> None:
    before = dict(snap.store.history)
    ino = await snap.ino("kept.txt")
    assert await errno_of(snap.create("x.txt")) == errno.EROFS
    assert await errno_of(snap.mkdir("d2")) == errno.EROFS
    assert await errno_of(snap.unlink("kept.txt")) == errno.EROFS
    assert await errno_of(snap.rename("kept.txt", "k2")) == errno.EROFS
    assert await errno_of(snap.fs.open(ino, os.O_WRONLY)) == errno.EROFS
    assert await errno_of(snap.fs.setattr(ino, mode=0o600)) == errno.EROFS
    assert await errno_of(snap.fs.setxattr(ino, "user.x", b"1")) == errno.EROFS
    assert await errno_of(snap.fs.setattr(ROOT_INODE, mode=0o700)) == errno.EROFS
    assert snap.store.history == before


async def test_requests(snap: Core, autojump_clock: trio.abc.Clock) -> None:
    """readdir: one walk of the directory and one per common prefix (dir/, gone-dir/,
    marked/, newdir/); then each file HEAD and GET carry the pinned version, and stats of
    listed names need no further listing."""
    snap.store.requests.clear()
    await snap.listdir()
    assert snap.store.requests["ListObjectVersions"] == 5
    assert snap.store.requests["ListObjectsV2"] == 0
    snap.store.requests.clear()
    for name in ("kept.txt", "over.txt", "deleted-after.txt"):
        await snap.read_file(name)
    assert snap.store.requests["ListObjectVersions"] == 0
    assert await errno_of(snap.entry("nothing-here")) == errno.ENOENT
    assert snap.store.requests["ListObjectVersions"] == 0


async def test_many_pages(autojump_clock: trio.abc.Clock) -> None:
    """A directory of more versions than one ListObjectVersions page: every page is walked
    (KeyMarker/VersionIdMarker), the listing is paged from memory, and the flat probes
    resume after a key."""
    key = SseCKey(secrets.token_bytes(32))
    store = MemoryStore()
    store.enable_versioning()
    for i in range(700):  # 1,750 versions and delete markers in all
        store.put_object(f"d/f{i:04}", b"v1", key)
    for i in range(0, 700, 2):
        store.remove(f"d/f{i:04}")
    as_of = store.clock_ns
    store.clock_ns += SECOND
    for i in range(700):
        store.put_object(f"d/f{i:04}", b"v2", key)
    snap = SnapshotStore(store, as_of)
    page = await snap.list_page("d/", max_keys=200)
    names = [o.key for o in page.objects]
    while page.next_token is not None:
        page = await snap.list_page("d/", token=page.next_token, max_keys=200)
        names += [o.key for o in page.objects]
    assert names == [f"d/f{i:04}" for i in range(1, 700, 2)]
    assert store.requests["ListObjectVersions"] == 2  # two pages of 1,000, walked once
    flat = await snap.list_page("d/", delimiter=None, token="d/f0100", max_keys=2)
    assert [o.key for o in flat.objects] == ["d/f0101", "d/f0103"]
    assert flat.next_token == "d/f0103"
    assert await snap.get_range("d/f0001", None, key) == b"v1"
    with pytest.raises(SsecfsError):
        await snap.get_range("d/f0000", None, key)  # deleted before T
