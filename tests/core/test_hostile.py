"""Objects written by other tools, other clients changing the bucket, and input edges: each
gets a defined answer, never EIO for the rest of the directory."""

from __future__ import annotations

import errno
import logging
import os

import pytest
import trio

from ssecfs.inodes import ROOT_INODE
from ssecfs.parts import MAX_OBJECT
from tests.core.conftest import Core
from tests.core.test_operations import errno_of

Clock = trio.abc.Clock


@pytest.mark.parametrize("field, value", [
    ("uid", "-1"), ("uid", "99999999999"), ("gid", "x"), ("mtime", "9e30"),
    ("mtime", "99999999999999999999"), ("mode", "-5"), ("mode", "4294967295"),
    ("mode", str(0o010644)),  # a FIFO's type bits
])
async def test_hostile_metadata_takes_the_default_and_is_logged_once(
        core: Core, autojump_clock: Clock, caplog: pytest.LogCaptureFixture, field: str,
        value: str) -> None:
    core.store.put_object("d/bad", b"readable", core.key, metadata={field: value})
    core.store.put_object("d/good", b"fine", core.key, metadata={"mode": "33188"})
    with caplog.at_level(logging.WARNING):
        assert sorted(await core.listdir("d")) == ["bad", "good"]
        attr = (await core.entry("d/bad")).attr
        assert await core.read_file("d/bad") == b"readable"
        await core.entry("d/bad")
    assert 0 <= attr.uid < 2**32 - 1 and 0 <= attr.gid < 2**32 - 1
    assert 0 <= attr.mode <= 0o7777 and abs(attr.mtime_ns) < 2**63
    assert attr.uid == 0 and attr.gid == 0 if field in ("uid", "gid") else True
    lines = [r for r in caplog.records if "d/bad" in r.getMessage()]
    assert len(lines) == 1 and field in lines[0].getMessage()


async def test_readlink_of_a_huge_object_marked_as_a_symlink_reads_nothing(
        core: Core, autojump_clock: Clock) -> None:
    core.store.put_object("link", b"x" * 100_000, core.key, metadata={"mode": str(0o120777)})
    gets = core.store.requests["GetObject"]
    assert await errno_of(core.fs.readlink(await core.ino("link"))) == errno.ENAMETOOLONG
    assert core.store.requests["GetObject"] == gets


async def test_names_the_bucket_cannot_hold(core: Core, autojump_clock: Clock) -> None:
    long = "n" * 256
    table = {
        "unlink": core.fs.unlink(ROOT_INODE, long),
        "rmdir": core.fs.rmdir(ROOT_INODE, long),
        "lookup": core.fs.lookup(ROOT_INODE, long),
        "rename from": core.fs.rename(ROOT_INODE, long, ROOT_INODE, "x", 0),
    }
    assert {k: await errno_of(v) for k, v in table.items()} == \
        dict.fromkeys(table, errno.ENAMETOOLONG)
    # a path whose key would pass S3's 1,024 bytes: refused at create, mkdir and rename
    deep = ""
    for part in "abcd":  # 4 x 250 bytes and 3 slashes: 1,004 bytes with the marker's "/"
        deep = f"{deep}/{part * 250}".lstrip("/")
        await core.mkdir(deep)
    ino = await core.ino(deep)
    assert await errno_of(core.fs.create(ino, "e" * 30, 0o644, os.O_WRONLY, 0, 0)) \
        == errno.ENAMETOOLONG
    assert await errno_of(core.fs.mkdir(ino, "e" * 30, 0o755, 0, 0)) == errno.ENAMETOOLONG
    await core.write_file("short", b"s")
    assert await errno_of(core.fs.rename(ROOT_INODE, "short", ino, "e" * 30, 0)) \
        == errno.ENAMETOOLONG
    fh, _ = await core.fs.create(ino, "e" * 10, 0o644, os.O_WRONLY, 0, 0)  # still fits
    await core.close(fh)
    assert await errno_of(core.fs.setattr(await core.ino("short"), size=MAX_OBJECT + 1)) \
        == errno.EFBIG


async def test_keys_that_cannot_be_names_are_hidden_and_logged_once(
        core: Core, autojump_clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    for key in ("a//b", "../x", "ok", "d/", "data-dir/"):
        core.store.put_object(key, b"" if key != "data-dir/" else b"bytes", core.key)
    with caplog.at_level(logging.INFO):
        assert sorted(await core.listdir()) == ["a", "d", "data-dir", "ok"]
        assert (await core.entry("data-dir")).attr.kind.value == "dir"  # as ls -l asks
        assert await core.listdir("a") == []  # "a//b" has an empty name part
        await core.listdir()
    text = caplog.text
    assert text.count("'../' cannot be a file name") == 1
    assert "data-dir/" in text and "bytes" in text


async def test_an_object_deleted_between_upload_and_verify_stays_deleted(
        core: Core, autojump_clock: Clock) -> None:
    # a server whose PutObject answer echoes no key MD5, so a HEAD verifies the upload
    core.store.no_write_echo = True
    fh = await core.create("f")
    await core.fs.write(fh, 0, b"stored, then deleted by another client")
    gate = core.store.pause("HeadObject", "f")  # the verifying HEAD, before it is answered
    async with trio.open_nursery() as n:
        n.start_soon(core.close, fh)
        await gate.reached.wait()
        del core.store.objects["f"]  # another client deletes it
        gate.release()
    assert core.fs.dirty_files() == []  # close() succeeded: the data was stored
    assert await core.fs.flush_all() == []
    assert core.bucket() == {}  # and the later deletion stands
