"""A mount with a key ring (`--key-file W --old-key-file O1 --old-key-file O2`) on the memory
store: objects under any key of the ring read normally; what the mount stores is under the
writing key; which key opens an object is remembered, so that it costs no extra request after
the first access; a key outside the ring stays EACCES."""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ssecfs.attrs import Attr, Kind, meta_from_attr
from ssecfs.errors import UserError
from ssecfs.filesystem import Filesystem
from ssecfs.keys import KeyRing, SseCKey
from tests.core.conftest import Core, make_core
from tests.core.test_operations import errno_of

Clock = trio.abc.Clock
MiB = 1024 * 1024


class RingCore(Core):
    old: SseCKey
    older: SseCKey


def make_ring_core(tmp_path: Path, **options: object) -> RingCore:
    base = make_core(tmp_path, **options)
    old, older = SseCKey(secrets.token_bytes(32)), SseCKey(secrets.token_bytes(32))
    ring = KeyRing(base.key, (old, older))
    c = RingCore(Filesystem(base.store, base.fs.cfg, ring, clock=trio.current_time),
                 base.store, base.key)
    c.old, c.older = old, older
    return c


@pytest.fixture
async def ring(tmp_path: Path) -> AsyncIterator[RingCore]:
    c = make_ring_core(tmp_path)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        yield c
        nursery.cancel_scope.cancel()
    c.fs.close()


def md5_of(c: Core, key: str) -> str | None:
    return c.store.objects[key].key_md5


def meta(kind: Kind, mode: int = 0o644) -> dict[str, str]:
    return meta_from_attr(Attr(kind, mode, 0, 0, 0, time.time_ns()))


# ------------------------------------------------------------------ reads under every key
async def test_objects_under_every_key_of_the_ring_read(ring: RingCore,
                                                       autojump_clock: Clock) -> None:
    s = ring.store
    s.put_object("new", b"by the writer", ring.key)
    s.put_object("old", b"by the old key", ring.old)
    s.put_object("older", b"by the older key", ring.older)
    s.put_object("link", b"old", ring.old, metadata=meta(Kind.SYMLINK, 0o777))
    s.put_object("dir/", b"", ring.older, metadata=meta(Kind.DIR, 0o750),
                 content_type="application/x-directory")
    s.put_object("dir/inner", b"inner", ring.old)
    assert sorted(await ring.listdir()) == ["dir", "link", "new", "old", "older"]
    assert await ring.read_file("new") == b"by the writer"
    assert await ring.read_file("old") == b"by the old key"
    assert await ring.read_file("older") == b"by the older key"
    assert await ring.read_file("dir/inner") == b"inner"
    link = await ring.entry("link")
    assert stat.S_ISLNK(link.attr.st_mode)
    assert await ring.fs.readlink(link.ino) == "old"
    d = await ring.entry("dir")
    assert d.attr.kind is Kind.DIR and d.attr.mode == 0o750  # the marker's metadata
    assert (await ring.entry("older")).attr.size == len(b"by the older key")


async def test_a_key_outside_the_ring_is_still_eacces(ring: RingCore,
                                                      autojump_clock: Clock) -> None:
    ring.store.put_object("theirs", b"secret", SseCKey(secrets.token_bytes(32)))
    entry = await ring.entry("theirs")
    assert entry.attr.size == 6  # listed, from the listing
    assert await errno_of(ring.fs.open(entry.ino, os.O_RDONLY)) == errno.EACCES
    assert await errno_of(ring.rename("theirs", "mine")) == errno.EACCES
    assert set(ring.bucket()) == {"theirs"}


# ------------------------------------------------------------------ writes under the writer
async def test_everything_the_mount_stores_is_under_the_writing_key(
        ring: RingCore, tmp_path: Path, autojump_clock: Clock) -> None:
    s = ring.store
    s.put_object("rewritten", b"old content", ring.old)
    s.put_object("renamed", b"moved", ring.older)
    s.put_object("chmodded", b"mode", ring.old, metadata=meta(Kind.FILE))
    s.put_object("d/", b"", ring.old, metadata=meta(Kind.DIR, 0o755),
                 content_type="application/x-directory")
    s.put_object("d/f", b"in a dir", ring.older)
    s.put_object("link", b"target", ring.old, metadata=meta(Kind.SYMLINK, 0o777))
    await ring.write_file("created", b"new")
    await ring.write_file("rewritten", b"new content")
    await ring.rename("renamed", "moved")
    await ring.fs.setattr(await ring.ino("chmodded"), mode=0o600)
    await ring.fs.setattr(await ring.ino("link"), uid=7)
    await ring.rename("d", "e")
    assert ring.bucket() == {"created": b"new", "rewritten": b"new content", "moved": b"moved",
                             "chmodded": b"mode", "e/": b"", "e/f": b"in a dir",
                             "link": b"target"}
    assert {k: md5_of(ring, k) for k in ring.store.objects} == \
        {k: ring.key.md5_b64 for k in ring.store.objects}
    assert stat.S_IMODE(int(s.objects["chmodded"].metadata["mode"])) == 0o600
    assert s.objects["link"].metadata["uid"] == "7"
    # and they read back through a fresh mount of the writing key alone
    assert await ring.remount(tmp_path / "writer-only").read_file("moved") == b"moved"


@pytest.mark.parametrize("copy_501", [False, True], ids=["copy", "copy-501"])
async def test_chmod_of_an_old_key_object_changes_its_key(tmp_path: Path, copy_501: bool,
                                                          autojump_clock: Clock) -> None:
    """CopyObject onto itself, source key old, target key the writer; a server that has no
    CopyObject for SSE-C objects (RGW 16) gets the bytes streamed, never UploadPartCopy
    across keys (RGW decrypts the source with the target's key)."""
    c = make_ring_core(tmp_path, part_size=5 * MiB)
    c.store.copy_object_501 = copy_501
    body = os.urandom(12 * MiB)
    c.store.put_object("big", body, c.old, metadata=meta(Kind.FILE))
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        await c.fs.setattr(await c.ino("big"), mode=0o640)
        assert c.store.objects["big"].key_md5 == c.key.md5_b64
        assert c.store.body("big") == body
        assert c.store.requests["UploadPartCopy"] == 0
        assert c.store.requests["CopyObject"] == 1
        nursery.cancel_scope.cancel()
    c.fs.close()


async def test_a_partial_rewrite_of_an_old_key_object_streams_the_unchanged_ranges(
        tmp_path: Path, autojump_clock: Clock) -> None:
    c = make_ring_core(tmp_path, part_size=5 * MiB)
    body = bytearray(os.urandom(12 * MiB))
    c.store.put_object("big", bytes(body), c.old)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        fh = await c.fs.open(await c.ino("big"), os.O_RDWR)
        await c.fs.write(fh, 6 * MiB, b"changed")
        await c.close(fh)
        body[6 * MiB:6 * MiB + 7] = b"changed"
        assert c.store.body("big") == bytes(body)
        assert c.store.objects["big"].key_md5 == c.key.md5_b64
        assert c.store.requests["UploadPartCopy"] == 0
        nursery.cancel_scope.cancel()
    c.fs.close()


async def test_a_partial_rewrite_under_the_writer_still_copies_server_side(
        tmp_path: Path, autojump_clock: Clock) -> None:
    c = make_ring_core(tmp_path, part_size=5 * MiB)
    c.store.put_object("big", os.urandom(12 * MiB), c.key)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        fh = await c.fs.open(await c.ino("big"), os.O_RDWR)
        await c.fs.write(fh, 6 * MiB, b"changed")
        await c.close(fh)
        assert c.store.requests["UploadPartCopy"] >= 1
        nursery.cancel_scope.cancel()
    c.fs.close()


# ------------------------------------------------------------------ request counts
async def _open_read(c: Core, path: str) -> int:
    """HeadObject requests of one open + read + close of `path`."""
    heads = c.store.requests["HeadObject"]
    await c.read_file(path)
    return c.store.requests["HeadObject"] - heads


async def test_the_key_that_opened_an_object_is_remembered(tmp_path: Path,
                                                          autojump_clock: Clock) -> None:
    c = make_ring_core(tmp_path, cache_ttl=5.0)
    c.store.put_object("new", b"writer", c.key)
    c.store.put_object("old", b"old key", c.old)
    c.store.put_object("older", b"older key", c.older)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        assert await _open_read(c, "new") == 2  # lookup + open
        assert await _open_read(c, "old") == 3  # lookup tries the writer, then the old key
        assert await _open_read(c, "older") == 4  # writer, old, older; the open: 1
        # the second time, an old-key object costs what a writer-key object costs
        for path in ("new", "old", "older"):
            assert await _open_read(c, path) == 1, path  # the open's HEAD only
        await trio.sleep(6)  # attributes expired: a lookup HEAD again, still one key each
        for path in ("new", "old", "older"):
            assert await _open_read(c, path) == 2, path
        gets = c.store.requests["GetObject"]
        await c.read_file("older")
        assert c.store.requests["GetObject"] == gets + 1  # the GET too: with the right key
        nursery.cancel_scope.cancel()
    c.fs.close()


async def test_a_server_naming_the_objects_key_costs_one_refusal(
        tmp_path: Path, autojump_clock: Clock) -> None:
    c = make_ring_core(tmp_path)
    c.store.names_key_on_mismatch = True  # the refusal echoes the object's key MD5
    c.store.put_object("older", b"older key", c.older)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        heads = c.store.requests["HeadObject"]
        await c.entry("older")
        assert c.store.requests["HeadObject"] - heads == 2  # writer (refused), then older
        nursery.cancel_scope.cancel()
    c.fs.close()


async def test_each_key_is_tried_once_for_an_object_outside_the_ring(
        ring: RingCore, autojump_clock: Clock) -> None:
    ring.store.put_object("theirs", b"secret", SseCKey(secrets.token_bytes(32)))
    heads = ring.store.requests["HeadObject"]
    await ring.entry("theirs")
    assert ring.store.requests["HeadObject"] - heads == 3  # writer, old, older


async def test_an_object_another_client_rewrote_under_another_ring_key_is_found_again(
        ring: RingCore, autojump_clock: Clock) -> None:
    ring.store.put_object("f", b"one", ring.old)
    assert await ring.read_file("f") == b"one"
    ring.store.put_object("f", b"two", ring.older)  # the remembered key no longer opens it
    assert await ring.read_file("f") == b"two"
    ring.store.put_object("link", b"a", ring.old, metadata=meta(Kind.SYMLINK, 0o777))
    entry = await ring.entry("link")
    assert await ring.fs.readlink(entry.ino) == "a"
    ring.store.put_object("link", b"b", ring.older, metadata=meta(Kind.SYMLINK, 0o777))
    assert await ring.fs.readlink(entry.ino) == "b"


# ------------------------------------------------------------------ the mount-time check
async def test_the_mount_time_key_check_accepts_any_key_of_the_ring(
        ring: RingCore, autojump_clock: Clock) -> None:
    from ssecfs.mount import check_key

    for i in range(3):
        ring.store.put_object(f"o{i}", b"x", ring.old)
    await check_key(ring.store, ring.fs.keys, "", "k")  # type: ignore[arg-type]
    with pytest.raises(UserError) as exc:
        await check_key(ring.store, KeyRing(ring.key), "", "k")  # type: ignore[arg-type]
    assert exc.value.exit_code == 3
