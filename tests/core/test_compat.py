"""s3fs compatibility in the core: what extended attributes, times, other tools' metadata,
mknod and the mount root cost in requests, and what they store (in-memory SSE-C store)."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

import trio
from trio.testing import MockClock as Clock

from ssecfs import xattrs
from ssecfs.content import Content
from ssecfs.inodes import ROOT_INODE
from tests.core.conftest import Core, make_core
from tests.core.test_durability import _cost
from tests.core.test_operations import errno_of


async def test_xattr_requests_and_storage(core: Core, autojump_clock: Clock) -> None:
    await core.write_file("f.txt", b"data")
    ino = await core.ino("f.txt")
    got = {
        "setxattr (closed file)": await _cost(core, core.fs.setxattr(ino, "user.a", b"1")),
        "getxattr": await _cost(core, core.fs.getxattr(ino, "user.a")),
        "listxattr": await _cost(core, core.fs.listxattr(ino)),
        "removexattr": await _cost(core, core.fs.removexattr(ino, "user.a")),
    }
    assert got == {
        # a copy of the object onto itself with the new metadata; the HEAD opens it
        "setxattr (closed file)": {"CopyObject": 1, "HeadObject": 1},
        "getxattr": {},  # from the attributes cached with the last HEAD
        "listxattr": {},
        "removexattr": {"CopyObject": 1, "HeadObject": 1},
    }
    assert "xattr" not in core.store.objects["f.txt"].metadata
    await core.fs.setxattr(ino, "user.b", b"\x00")
    assert core.store.objects["f.txt"].metadata["xattr"] == "%7B%22user.b%22%3A%22AA%3D%3D%22%7D"
    assert await errno_of(core.fs.getxattr(ino, "user.none")) == errno.ENODATA
    # namespaces not kept: "not supported" to a read too, so that `ls -l` stops asking
    for name in ("security.selinux", "system.posix_acl_access"):
        assert await errno_of(core.fs.getxattr(ino, name)) == errno.EOPNOTSUPP
    assert await errno_of(core.fs.setxattr(ino, "security.x", b"")) == errno.EOPNOTSUPP
    # one that s3fs stored is still read back
    core.store.put_object("s3fs.txt", b"x", core.key,
                          {"xattr": xattrs.encode((("security.x", b"v"),))})
    assert await core.fs.getxattr(await core.ino("s3fs.txt"), "security.x") == b"v"
    assert await errno_of(core.fs.setxattr(ino, "user.big", b"x" * 2100)) == errno.ENOSPC
    assert core.bucket()["f.txt"] == b"data"


async def test_an_open_file_stores_its_xattrs_with_its_upload(core: Core,
                                                              autojump_clock: Clock) -> None:
    fh = await core.create("new.bin")
    await core.fs.write(fh, 0, b"x")
    ino = await core.ino("new.bin")
    assert await _cost(core, core.fs.setxattr(ino, "user.k", b"v")) == {}
    assert await _cost(core, core.close(fh)) == {"PutObject": 1}
    assert "xattr" in core.store.objects["new.bin"].metadata


async def test_chmod_moves_ctime_and_keeps_mtime_and_other_metadata(
        core: Core, autojump_clock: Clock) -> None:
    foreign = Content("image/x-custom", cache_control="max-age=1", language="pl")
    core.store.put_object("p", b"pic", core.key, {"mtime": "1600000000", "owner-app": "x"},
                          content=foreign)
    ino = await core.ino("p")
    entry = await core.fs.setattr(ino, mode=0o600)
    assert entry.attr.mtime_ns == 1600000000 * 10**9
    assert entry.attr.ctime > entry.attr.mtime_ns
    obj = core.store.objects["p"]
    assert obj.metadata["owner-app"] == "x" and obj.metadata["mtime"] == "1600000000"
    assert obj.metadata["ctime"] != "1600000000"
    assert obj.content == foreign
    await core.rename("p", "q")
    assert core.store.objects["q"].content == foreign
    assert core.store.objects["q"].metadata["owner-app"] == "x"


async def test_mknod_and_fifos_cost_one_put(core: Core, autojump_clock: Clock) -> None:
    await core.listdir()  # as for create: a directory listed by readdir answers the lookup
    got = {
        "mknod regular": await _cost(core, core.fs.mknod(ROOT_INODE, "a.txt",
                                                        stat.S_IFREG | 0o644, 0, 0, 0)),
        "mkfifo": await _cost(core, core.fs.mknod(ROOT_INODE, "pipe", stat.S_IFIFO | 0o600,
                                                  0, 0, 0)),
    }
    assert got == {"mknod regular": {"PutObject": 1}, "mkfifo": {"PutObject": 1}}
    assert core.store.objects["a.txt"].content.type == "text/plain"
    assert int(core.store.objects["pipe"].metadata["mode"]) == stat.S_IFIFO | 0o600
    assert stat.S_ISFIFO((await core.entry("pipe")).attr.st_mode)
    assert await errno_of(core.fs.mknod(ROOT_INODE, "d", stat.S_IFDIR | 0o755, 0, 0,
                                        0)) == errno.EINVAL


async def test_the_root_keeps_its_attributes_in_memory(core: Core,
                                                       autojump_clock: Clock) -> None:
    got = await _cost(core, core.fs.setattr(ROOT_INODE, mode=0o700, uid=5,
                                            mtime_ns=1600000000 * 10**9))
    assert got == {}
    attr = (await core.fs.getattr(ROOT_INODE)).attr
    assert (attr.mode, attr.uid, attr.mtime_ns) == (0o700, 5, 1600000000 * 10**9)
    await core.fs.setxattr(ROOT_INODE, "user.r", b"1")
    assert await core.fs.getxattr(ROOT_INODE, "user.r") == b"1"
    assert core.store.objects == {}
    assert await errno_of(core.fs.setattr(ROOT_INODE, size=0)) == errno.EISDIR


async def test_a_prefix_marker_holds_the_roots_attributes(tmp_path: Path,
                                                          autojump_clock: Clock) -> None:
    c = make_core(tmp_path, prefix="pfx/")
    c.store.put_object("pfx/", b"", c.key, {"mode": str(stat.S_IFDIR | 0o710)},
                       content=Content("application/x-directory"))
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        assert (await c.fs.getattr(ROOT_INODE)).attr.mode == 0o710
        await c.fs.setattr(ROOT_INODE, mode=0o750)
        assert int(c.store.objects["pfx/"].metadata["mode"]) == stat.S_IFDIR | 0o750
        nursery.cancel_scope.cancel()
    c.fs.close()


async def test_directory_times_move_with_entries_without_a_request(
        core: Core, autojump_clock: Clock) -> None:
    await core.mkdir("d")
    ino = await core.ino("d")
    await core.fs.setattr(ino, mtime_ns=1500000000 * 10**9)
    assert await _cost(core, core.write_file("d/f", b"1")) == {"PutObject": 1}
    assert (await core.fs.getattr(ino)).attr.mtime_ns > 1500000000 * 10**9


async def test_compat_directories(core: Core, autojump_clock: Clock) -> None:
    core.store.put_object("old", b"", core.key, content=Content("application/x-directory"))
    core.store.put_object("old/child", b"2", core.key)
    core.store.put_object("fold_$folder$", b"", core.key)
    assert sorted(await core.listdir()) == ["fold", "old"]
    assert (await core.entry("old")).attr.kind.value == "dir"
    assert (await core.entry("fold")).attr.kind.value == "dir"
    assert await core.listdir("old") == ["child"]
    await core.fs.setattr(await core.ino("old"), mode=0o700)
    assert "old" not in core.store.objects and "old/" in core.store.objects  # as s3fs does
    await core.fs.rmdir(ROOT_INODE, "fold")
    assert "fold_$folder$" not in core.store.objects
