"""POSIX operations of `Filesystem` on the memory store: errno, rename and rmdir rules,
cache expiry and the lookup-vs-change race."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import trio

from ssecfs.errors import NotFound, SsecfsError
from ssecfs.filesystem import RENAME_NOREPLACE
from ssecfs.inodes import ROOT_INODE
from ssecfs.parts import MAX_OBJECT
from tests.core.conftest import Core, make_core

Clock = trio.abc.Clock


async def errno_of(awaitable: object) -> int:
    try:
        await awaitable  # type: ignore[misc]
    except SsecfsError as exc:
        return exc.errno
    return 0


# ------------------------------------------------------------------ errno of each operation
async def test_errno_of_operations(core: Core, autojump_clock: Clock) -> None:
    await core.mkdir("d")
    await core.write_file("d/f", b"x")
    await core.write_file("g", b"y")
    await core.mkdir("empty")
    fs = core.fs
    d = await core.ino("d")
    f = await core.ino("d/f")
    table = {
        "lookup of a missing name": (fs.lookup(ROOT_INODE, "nope"), errno.ENOENT),
        "lookup of a name too long": (fs.lookup(ROOT_INODE, "n" * 256), errno.ENAMETOOLONG),
        "create of an existing file": (fs.create(d, "f", 0o644, os.O_WRONLY, 0, 0),
                                       errno.EEXIST),
        "create of a name too long": (fs.create(d, "n" * 256, 0o644, os.O_WRONLY, 0, 0),
                                      errno.ENAMETOOLONG),
        "mkdir of an existing directory": (fs.mkdir(ROOT_INODE, "d", 0o755, 0, 0),
                                           errno.EEXIST),
        "mkdir over a file": (fs.mkdir(ROOT_INODE, "g", 0o755, 0, 0), errno.EEXIST),
        "rmdir of a directory with a file": (fs.rmdir(ROOT_INODE, "d"), errno.ENOTEMPTY),
        "rmdir of a file": (fs.rmdir(ROOT_INODE, "g"), errno.ENOTDIR),
        "rmdir of a missing name": (fs.rmdir(ROOT_INODE, "nope"), errno.ENOENT),
        "unlink of a directory": (fs.unlink(ROOT_INODE, "d"), errno.EISDIR),
        "unlink of a missing name": (fs.unlink(ROOT_INODE, "nope"), errno.ENOENT),
        "rename of a missing name": (core.rename("nope", "x"), errno.ENOENT),
        "rename of a file onto a directory": (core.rename("g", "empty"), errno.EISDIR),
        "rename of a directory onto a file": (core.rename("empty", "g"), errno.ENOTDIR),
        "rename onto a non-empty directory": (core.rename("empty", "d"), errno.ENOTEMPTY),
        "rename into itself": (core.rename("d", "d/sub"), errno.EINVAL),
        "rename with RENAME_NOREPLACE": (core.rename("g", "d/f", RENAME_NOREPLACE),
                                         errno.EEXIST),
        "open of a directory": (fs.open(d, os.O_RDONLY), errno.EISDIR),
        "opendir of a file": (fs.opendir(f), errno.ENOTDIR),
        "readlink of a file": (fs.readlink(f), errno.EINVAL),
        "read of an unknown handle": (fs.read(999, 0, 10), errno.EBADF),
        "write of an unknown handle": (fs.write(999, 0, b"x"), errno.EBADF),
        "flush of an unknown handle": (fs.flush(999), errno.EBADF),
        "release of an unknown handle": (fs.release(999), errno.EBADF),
        "truncate past S3's object limit": (fs.setattr(f, size=MAX_OBJECT + 1), errno.EFBIG),
    }
    got = {what: await errno_of(call) for what, (call, _) in table.items()}
    assert got == {what: want for what, (_, want) in table.items()}
    with pytest.raises(SsecfsError) as info:
        await core.fs.readdir(999, 0, lambda *a: True)
    assert info.value.errno == errno.EBADF
    # nothing above changed the bucket
    assert core.bucket() == {"d/": b"", "d/f": b"x", "g": b"y", "empty/": b""}


async def test_write_on_a_read_only_handle_is_ebadf(core: Core, autojump_clock: Clock) -> None:
    await core.write_file("f", b"x")
    fh = await core.fs.open(await core.ino("f"), os.O_RDONLY)
    assert await errno_of(core.fs.write(fh, 0, b"y")) == errno.EBADF
    await core.fs.release(fh)


async def test_a_write_past_the_object_limit_fails_at_write(core: Core,
                                                            autojump_clock: Clock) -> None:
    fh = await core.create("huge")
    assert await errno_of(core.fs.write(fh, MAX_OBJECT - 1, b"ab")) == errno.EFBIG
    await core.fs.write(fh, 0, b"fine")
    await core.close(fh)
    assert core.bucket() == {"huge": b"fine"}


async def test_a_read_only_mount_refuses_changes(tmp_path: Path, autojump_clock: Clock) -> None:
    c = make_core(tmp_path, read_only=True)
    c.store.put_object("f", b"x", c.key)
    assert await errno_of(c.fs.create(ROOT_INODE, "new", 0o644, os.O_WRONLY, 0, 0)) \
        == errno.EROFS
    assert await errno_of(c.fs.open(await c.ino("f"), os.O_WRONLY)) == errno.EROFS
    assert await errno_of(c.fs.unlink(ROOT_INODE, "f")) == errno.EROFS
    assert await errno_of(c.fs.mkdir(ROOT_INODE, "d", 0o755, 0, 0)) == errno.EROFS


async def test_an_object_under_another_key_is_listed_but_eacces(
        core: Core, autojump_clock: Clock) -> None:
    from ssecfs.keys import SseCKey
    core.store.put_object("theirs", b"secret", SseCKey(bytes(32)))
    assert await core.listdir() == ["theirs"]
    entry = await core.entry("theirs")
    assert entry.attr.size == 6
    assert await errno_of(core.fs.open(entry.ino, os.O_RDONLY)) == errno.EACCES
    assert await errno_of(core.rename("theirs", "mine")) == errno.EACCES
    assert core.bucket() == {"theirs": b"secret"}


# ------------------------------------------------------------------ rename and rmdir rules
async def test_rename_replaces_a_file_and_moves_a_tree(core: Core, autojump_clock: Clock) -> None:
    await core.mkdir("d")
    await core.mkdir("d/sub")
    await core.write_file("d/sub/deep", b"deep")
    await core.write_file("d/top", b"top")
    core.store.put_object("d/implied/child", b"c", core.key)  # a directory without marker
    await core.write_file("a", b"a")
    await core.write_file("b", b"b")
    await core.rename("a", "b")
    await core.rename("d", "e")
    assert core.bucket() == {"b": b"a", "e/": b"", "e/sub/": b"", "e/sub/deep": b"deep",
                             "e/top": b"top", "e/implied/child": b"c"}
    assert sorted(await core.listdir()) == ["b", "e"]
    assert sorted(await core.listdir("e")) == ["implied", "sub", "top"]
    assert await core.read_file("e/sub/deep") == b"deep"
    assert await errno_of(core.entry("d")) == errno.ENOENT


async def test_rename_onto_an_empty_directory_replaces_it(core: Core,
                                                          autojump_clock: Clock) -> None:
    await core.mkdir("src")
    await core.write_file("src/f", b"f")
    await core.mkdir("dst")
    await core.rename("src", "dst")
    assert core.bucket() == {"dst/": b"", "dst/f": b"f"}


async def test_moving_the_last_file_out_keeps_an_implied_directory(
        core: Core, autojump_clock: Clock) -> None:
    core.store.put_object("dir/only", b"1", core.key)
    await core.rename("dir/only", "moved")
    assert core.bucket() == {"dir/": b"", "moved": b"1"}
    assert sorted(await core.listdir()) == ["dir", "moved"]
    await core.fs.rmdir(ROOT_INODE, "dir")
    assert core.bucket() == {"moved": b"1"}
    assert await core.listdir() == ["moved"]


async def test_rmdir_sees_files_not_yet_uploaded(core: Core, autojump_clock: Clock) -> None:
    await core.mkdir("d")
    fh = await core.create("d/pending")
    assert await errno_of(core.fs.rmdir(ROOT_INODE, "d")) == errno.ENOTEMPTY
    assert await core.listdir("d") == ["pending"]
    await core.close(fh)
    assert core.bucket() == {"d/": b"", "d/pending": b""}


async def test_unlink_of_a_renamed_new_file_removes_what_it_replaced(
        core: Core, autojump_clock: Clock) -> None:
    await core.write_file("target", b"old")
    fh = await core.create("tmp")
    await core.fs.write(fh, 0, b"new")
    await core.rename("tmp", "target")
    await core.unlink("target")
    await core.close(fh)
    assert core.bucket() == {}
    assert await core.listdir() == []


# ------------------------------------------------------------------ caches
async def test_changes_by_other_clients_show_after_cache_ttl(tmp_path: Path,
                                                             autojump_clock: Clock) -> None:
    c = make_core(tmp_path, cache_ttl=5.0)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        assert await c.listdir() == []
        assert await errno_of(c.entry("later")) == errno.ENOENT
        c.store.put_object("later", b"hello", c.key)
        assert await c.listdir() == []  # listing and "absent" cached
        assert await errno_of(c.entry("later")) == errno.ENOENT
        heads = c.store.requests["HeadObject"]
        await trio.sleep(6)
        assert await c.listdir() == ["later"]
        assert (await c.entry("later")).attr.size == 5
        assert c.store.requests["HeadObject"] == heads + 1
        nursery.cancel_scope.cancel()
    c.fs.close()


async def test_a_lookup_in_flight_during_unlink_does_not_bring_the_file_back(
        core: Core, autojump_clock: Clock) -> None:
    core.store.put_object("f", b"data", core.key)
    gate = core.store.pause("HeadObject", "f", after=True)
    async with trio.open_nursery() as n:
        n.start_soon(core.entry, "f")  # its HEAD answered "exists" and is on its way back
        await gate.reached.wait()
        await core.unlink("f")
        gate.release()
    assert core.bucket() == {}
    assert await errno_of(core.entry("f")) == errno.ENOENT
    assert await core.listdir() == []


async def test_a_listing_in_flight_during_rename_does_not_bring_the_old_name_back(
        core: Core, autojump_clock: Clock) -> None:
    core.store.put_object("old", b"data", core.key)
    gate = core.store.pause("ListObjectsV2", "", after=True)
    async with trio.open_nursery() as n:
        n.start_soon(core.listdir)
        await gate.reached.wait()
        await core.rename("old", "new")
        gate.release()
    assert await core.listdir() == ["new"]
    assert await errno_of(core.entry("old")) == errno.ENOENT


async def test_attributes_of_a_directory_change_without_forgetting_its_children(
        core: Core, autojump_clock: Clock) -> None:
    # cp -a and rsync -a set a directory's times after its children: SeaweedFS drops a
    # marker's metadata, so what the mount cached is all that holds those times until remount
    await core.mkdir("d")
    await core.mkdir("d/sub")
    await core.fs.setattr(await core.ino("d/sub"), mtime_ns=1_000_000_000)
    await core.fs.setattr(await core.ino("d"), mtime_ns=2_000_000_000)
    heads = core.store.requests["HeadObject"]
    assert (await core.entry("d/sub")).attr.mtime_ns == 1_000_000_000
    assert core.store.requests["HeadObject"] == heads


async def test_an_unlinked_open_file_reads_and_writes_until_its_last_close(
        core: Core, autojump_clock: Clock) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    await core.write_file("f", data)
    ino = await core.ino("f")
    reader = await core.fs.open(ino, os.O_RDONLY)
    writer = await core.fs.open(ino, os.O_RDWR)
    await core.unlink("f")
    assert core.bucket() == {}
    assert await errno_of(core.entry("f")) == errno.ENOENT
    assert await core.fs.read(reader, 0, len(data) + 10) == data
    assert (await core.fs.getattr(ino)).attr.size == len(data)  # fstat
    await core.fs.write(writer, 0, b"changed")
    await core.fs.setattr(ino, size=10)  # ftruncate
    assert await core.fs.read(reader, 0, 100) == b"changed" + data[7:10]
    await core.close(writer)
    await core.close(reader)
    assert core.bucket() == {} and core.fs.dirty_files() == []


async def test_a_file_replaced_by_rename_stays_readable_through_open_handles(
        core: Core, autojump_clock: Clock) -> None:
    await core.write_file("a", b"new content")
    await core.write_file("b", b"old content of b")
    fh = await core.fs.open(await core.ino("b"), os.O_RDONLY)
    await core.rename("a", "b")
    assert await core.fs.read(fh, 0, 100) == b"old content of b"
    await core.fs.release(fh)
    assert core.bucket() == {"b": b"new content"}
    assert await core.read_file("b") == b"new content"


async def test_the_kernel_keeps_its_pages_while_the_object_is_unchanged(
        core: Core, autojump_clock: Clock) -> None:
    """Close-to-open consistency without a download per open: the open's HEAD decides."""
    core.store.put_object("f", b"v1", core.key)
    ino = await core.ino("f")

    async def opened() -> bool:
        fh, keep = await core.fs.open_keeping_cache(ino, os.O_RDONLY)
        await core.fs.release(fh)
        return keep

    assert not await opened()  # nothing cached yet
    assert await opened()  # same ETag: keep
    core.store.put_object("f", b"v2", core.key)  # another client replaces it
    assert not await opened()
    assert await opened()
    fh = await core.fs.open(ino, os.O_WRONLY | os.O_TRUNC)
    await core.fs.write(fh, 0, b"mine")
    await core.close(fh)
    assert await opened()  # the pages hold what this mount wrote and stored


async def test_an_object_put_by_another_client_is_seen_at_once(
        core: Core, autojump_clock: Clock) -> None:
    """A lookup miss caches the parent's listing (to tell directories), but does not let it
    hide a name another client puts right after."""
    core.store.put_object("d/a", b"1", core.key)
    with pytest.raises(NotFound):
        await core.entry("d/missing")
    await core.write_file("d/mine", b"2")
    core.store.put_object("d/theirs", b"3", core.key)  # aws s3 cp, meanwhile
    assert await core.read_file("d/theirs") == b"3"
