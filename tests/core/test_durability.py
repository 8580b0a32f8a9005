"""What `close()`, `fsync()` and unmount promise: data is in the bucket, or the caller hears
an error and the data is kept. Also the copy fallbacks and the cost of each operation."""

from __future__ import annotations

import errno
import os
from collections import Counter
from pathlib import Path

import trio
import trio.testing

from ssecfs.errors import SsecfsError, StoreError
from ssecfs.filesystem import FIRST_REPLY, HEADS_PER_REPLY, Entry
from tests.core.conftest import Core, make_core
from tests.core.test_operations import errno_of

Clock = trio.abc.Clock
MiB = 1024 * 1024


async def test_a_failed_close_keeps_the_data_for_a_retry(core: Core, tmp_path: Path,
                                                         autojump_clock: Clock) -> None:
    fh = await core.create("f")
    await core.fs.write(fh, 0, b"precious")
    core.store.fail("PutObject")
    assert await errno_of(core.fs.flush(fh)) == errno.EIO
    await core.fs.release(fh)
    ino = await core.ino("f")
    core.fs.forget(ino, 1000)  # the kernel lets go of the inode: the data must not go with it
    assert core.bucket() == {}
    assert core.fs.dirty_files() == ["f"]
    assert await core.read_file("f") == b"precious"  # this mount still shows it
    fh = await core.fs.open(await core.ino("f"), os.O_RDONLY)
    await core.fs.fsync(fh)  # the retry
    await core.fs.release(fh)
    assert core.bucket() == {"f": b"precious"}
    assert core.fs.dirty_files() == []
    other = core.remount(tmp_path / "other")
    assert await other.read_file("f") == b"precious"


async def test_unmount_goes_on_after_one_file_fails(core: Core, autojump_clock: Clock) -> None:
    for name in ("a", "b", "c"):
        fh = await core.create(name)
        await core.fs.write(fh, 0, name.encode() * 3)
    # a's PutObject raises something that is not an ssecfs error, and b's fails: c is
    # still uploaded, a and b are named, nothing is dropped
    core.store.fail("PutObject", exc=ValueError("not an ssecfs error"))
    core.store.fail("PutObject", times=1)
    calls = Counter(core.store.requests)
    failed = await core.fs.flush_all()
    assert sorted(failed) == ["a", "b"]
    assert sorted(core.fs.dirty_files()) == ["a", "b"]
    assert core.bucket()["c"] == b"ccc"
    assert core.store.requests["PutObject"] - calls["PutObject"] == 3
    assert await core.fs.flush_all() == []  # the next try saves them
    assert core.bucket() == {"a": b"aaa", "b": b"bbb", "c": b"ccc"}


async def test_unmount_under_random_faults_names_exactly_what_is_missing(
        tmp_path: Path, autojump_clock: Clock) -> None:
    from ssecfs.store.memory import FaultSchedule
    c = make_core(tmp_path)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        want = {f"f{i}": os.urandom(100 + i) for i in range(30)}
        for name, data in want.items():
            fh = await c.create(name)
            await c.fs.write(fh, 0, data)
        c.store.faults = FaultSchedule(seed=7, rate=0.3)
        failed = await c.fs.flush_all()
        assert c.store.faults.injected > 0 and failed
        c.store.faults = None
        for name, data in want.items():
            if name in failed:
                assert name in c.fs.dirty_files()
            else:
                assert c.bucket()[name] == data, name
        assert await c.fs.flush_all() == []
        assert c.bucket() == want
        nursery.cancel_scope.cancel()
    c.fs.close()


async def test_concurrent_reads_of_a_failed_segment_each_get_its_error(
        core: Core, autojump_clock: Clock) -> None:
    await core.write_file("f", b"x" * 1000)
    fh = await core.fs.open(await core.ino("f"), os.O_RDONLY)
    core.store.put_object("f", b"y" * 1000, core.key)  # replaced by another client
    got: list[int] = []

    async def read(offset: int) -> None:
        got.append(await errno_of(core.fs.read(fh, offset, 100)))

    async with trio.open_nursery() as n:
        n.start_soon(read, 0)
        n.start_soon(read, 50)
    assert got == [errno.ESTALE, errno.ESTALE]
    await core.fs.release(fh)


async def test_chmod_of_a_closed_file_uses_the_copy_fallbacks(core: Core, tmp_path: Path,
                                                              autojump_clock: Clock) -> None:
    for name in ("a", "b", "c"):
        await core.write_file(name, name.encode() * 1000)
    core.store.copy_object_501 = True  # as Ceph RGW 16 answers for SSE-C objects
    before = Counter(core.store.requests)
    await core.fs.setattr(await core.ino("a"), mode=0o600)
    await core.fs.setattr(await core.ino("b"), mode=0o640)
    used = Counter(core.store.requests)
    used.subtract(before)
    assert used["CopyObject"] == 1  # refused once, remembered for the mount
    assert used["UploadPartCopy"] == 2
    core.store.part_copy_501 = True  # as SeaweedFS answers
    await core.fs.setattr(await core.ino("c"), mode=0o604)
    other = core.remount(tmp_path / "other")
    assert [(await other.entry(n)).attr.mode for n in "abc"] == [0o600, 0o640, 0o604]
    assert core.bucket() == {n: n.encode() * 1000 for n in "abc"}
    assert all(o.key_md5 == core.key.md5_b64 for o in core.store.objects.values())


async def test_a_rename_copies_under_the_writing_key(core: Core, autojump_clock: Clock) -> None:
    await core.write_file("a", b"data")
    await core.rename("a", "b")
    assert core.store.objects["b"].key_md5 == core.key.md5_b64


async def test_a_failed_multipart_upload_is_aborted_and_kept(tmp_path: Path,
                                                            autojump_clock: Clock) -> None:
    c = make_core(tmp_path, part_size=5 * MiB)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        data = os.urandom(12 * MiB)
        fh = await c.create("big")
        await c.fs.write(fh, 0, data)
        await trio.testing.wait_all_tasks_blocked()  # the parts streamed while writing are in
        c.store.fail("UploadPart", exc=StoreError("connection reset"))  # the last one fails
        assert await errno_of(c.fs.flush(fh)) == errno.EIO
        assert c.store.uploads == {}  # aborted, none left behind
        await c.fs.flush(fh)
        await c.fs.release(fh)
        assert c.bucket() == {"big": data}
        nursery.cancel_scope.cancel()
    c.fs.close()


# ------------------------------------------------------------------ what each operation costs
async def _cost(core: Core, op: object) -> dict[str, int]:
    before = Counter(core.store.requests)
    await op  # type: ignore[misc]
    used = Counter(core.store.requests)
    used.subtract(before)
    return {k: v for k, v in sorted(used.items()) if v}


async def _ls_l(core: Core, path: str) -> None:
    """As `ls -l` through the kernel: each readdirplus reply, then a lookup of each entry of
    it whose attributes came with a zero timeout."""
    parent = await core.ino(path)
    fh = await core.fs.opendir(parent)
    async for page in core.readdir_pages(fh):
        for name, entry in page:
            if entry.timeout == 0:
                await core.fs.lookup(parent, name)
    core.fs.releasedir(fh)


async def test_requests_per_operation(core: Core, tmp_path: Path,
                                      autojump_clock: Clock) -> None:
    """A change here is a change in what users pay per operation: make it on purpose."""
    got = {
        "mkdir d": await _cost(core, core.mkdir("d")),
        "write d/f (create, write, close)": await _cost(core, core.write_file("d/f", b"1")),
        "write d/f2 (same directory)": await _cost(core, core.write_file("d/f2", b"1")),
        "stat d/f (cached)": await _cost(core, core.entry("d/f")),
        "stat d/missing (listing known)": await _cost(core, errno_of(core.entry("d/nope"))),
        "read d/f": await _cost(core, core.read_file("d/f")),
        "listdir d": await _cost(core, core.listdir("d")),
        "overwrite d/f": await _cost(core, core.write_file("d/f", b"22")),
        "chmod d/f": await _cost(core, core.fs.setattr(await core.ino("d/f"), mode=0o600)),
        "rename d/f d/g": await _cost(core, core.rename("d/f", "d/g")),
        "unlink d/g": await _cost(core, core.unlink("d/g")),
        "unlink d/f2": await _cost(core, core.unlink("d/f2")),
        "rmdir d": await _cost(core, core.fs.rmdir(1, "d")),
    }
    assert got == {
        "mkdir d": {"HeadObject": 1, "ListObjectsV2": 1, "PutObject": 1},
        # the PutObject answer echoes the key's MD5: no verifying HEAD; d's listing is known
        "write d/f (create, write, close)": {"PutObject": 1},
        "write d/f2 (same directory)": {"PutObject": 1},
        "stat d/f (cached)": {},
        "stat d/missing (listing known)": {},
        "read d/f": {"GetObject": 1, "HeadObject": 1},  # close-to-open: one HEAD per open
        "listdir d": {},
        "overwrite d/f": {"HeadObject": 1, "PutObject": 1},
        "chmod d/f": {"CopyObject": 1, "HeadObject": 1},
        "rename d/f d/g": {"CopyObject": 1, "DeleteObject": 1, "HeadObject": 1},
        "unlink d/g": {"DeleteObject": 1},
        "unlink d/f2": {"DeleteObject": 1},  # d has a marker: no listing to keep it
        "rmdir d": {"DeleteObject": 1, "ListObjectsV2": 1},
    }


async def test_requests_after_a_remount(core: Core, tmp_path: Path,
                                        autojump_clock: Clock) -> None:
    for i in range(100):
        core.store.put_object(f"d/f{i:03}", b"x", core.key, {"mode": "33188"})
    other = core.remount(tmp_path / "other")
    got = {
        "stat d": await _cost(other, other.entry("d")),
        "create d/new": await _cost(other, other.write_file("d/new", b"1")),
        "create d/new2": await _cost(other, other.write_file("d/new2", b"1")),
        "ls -l d (102 files)": await _cost(other, _ls_l(other, "d")),
    }
    assert got == {
        # not a file: d's listing (one page) answers, and is kept for the next lookups
        "stat d": {"HeadObject": 1, "ListObjectsV2": 2},
        "create d/new": {"HeadObject": 1, "ListObjectsV2": 1, "PutObject": 1},
        # d's listing (fetched for a lookup) says d/new2 is no directory; the HEAD is there
        # so that an object another client has just put is seen at once
        "create d/new2": {"HeadObject": 1, "PutObject": 1},
        # every listed file HEADed once, in batches, concurrently; the rest from the cache
        "ls -l d (102 files)": {"HeadObject": 100},
    }


async def test_ls_l_looks_up_only_the_first_reply_the_rest_comes_with_attributes(
        core: Core, tmp_path: Path, autojump_clock: Clock) -> None:
    for i in range(1200):
        core.store.put_object(f"d/f{i:04}", b"x" * (i % 7), core.key,
                              {"mode": "33261", "uid": "7", "mtime": "1700000000"})
    other = core.remount(tmp_path / "other")
    parent = await other.ino("d")
    fh = await other.fs.opendir(parent)
    before = Counter(other.store.requests)
    pages, looked_up = [], []
    async for page in other.readdir_pages(fh):
        pages.append(page)
        looked_up.append(await _look_up(other, parent, page))
    other.fs.releasedir(fh)
    used = Counter(other.store.requests)
    used.subtract(before)
    # the first reply is short and looked up (its first lookup HEADs a batch); every later
    # reply was HEADed before it went out, each file once
    assert [len(p) for p in pages] == [FIRST_REPLY] + [HEADS_PER_REPLY] * 2 + [
        1200 - FIRST_REPLY - 2 * HEADS_PER_REPLY]
    assert looked_up == [FIRST_REPLY, 0, 0, 0]
    assert {k: v for k, v in used.items() if v} == {"HeadObject": 1200}
    later = [entry for page in pages[1:] for _, entry in page]
    assert all(e.timeout == other.fs.cfg.cache_ttl for e in later)
    assert {(e.attr.mode, e.attr.uid, e.attr.mtime_ns) for e in later} == {
        (0o755, 7, 1700000000 * 10**9)}
    assert [e.attr.size for e in later[:7]] == [(FIRST_REPLY + i) % 7 for i in range(7)]


async def test_a_listing_nobody_stats_costs_no_head(core: Core, tmp_path: Path,
                                                    autojump_clock: Clock) -> None:
    for i in range(300):
        core.store.put_object(f"d/f{i:03}", b"x", core.key, {"mode": "33261"})
    other = core.remount(tmp_path / "other")
    await other.entry("d")
    assert await _cost(other, other.listdir("d")) == {"ListObjectsV2": 1}  # ls, os.listdir


async def _look_up(core: Core, parent: int, page: list[tuple[str, Entry]]) -> int:
    """Look up the entries of a readdir reply that came with a zero timeout, as the kernel
    does for a caller that stats them; how many."""
    names = [name for name, entry in page if entry.timeout == 0]
    for name in names:
        await core.fs.lookup(parent, name)
    return len(names)


async def test_with_the_metadata_cache_ls_l_after_a_remount_asks_only_about_changes(
        core: Core, tmp_path: Path, autojump_clock: Clock) -> None:
    for i in range(100):
        core.store.put_object(f"d/f{i:03}", b"x", core.key, {"mode": "33261", "uid": "7"})
    first = core.remount(tmp_path / "m", metadata_cache=True)
    # one HEAD is the lookup of d itself (is it a file?), then one per listed file
    assert (await _cost(first, _ls_l(first, "d"))).get("HeadObject") == 101
    first.fs.close()
    # another client rewrites one file; the others are as the cache kept them
    core.store.put_object("d/f000", b"changed", core.key, {"mode": "33188"})
    second = core.remount(tmp_path / "m", metadata_cache=True)  # same cache_dir
    assert (await _cost(second, _ls_l(second, "d"))).get("HeadObject") == 2  # d, d/f000
    assert (await second.entry("d/f001")).attr.mode == 0o755
    assert (await second.entry("d/f001")).attr.uid == 7
    assert (await second.entry("d/f000")).attr.mode == 0o644
    assert (await second.entry("d/f000")).attr.size == 7
    second.fs.close()
    # without the option nothing is kept, and nothing used
    third = core.remount(tmp_path / "m")
    assert (await _cost(third, _ls_l(third, "d"))).get("HeadObject") == 101


async def test_a_server_that_echoes_no_key_md5_costs_a_head_per_upload(
        core: Core, autojump_clock: Clock) -> None:
    core.store.no_write_echo = True
    assert await _cost(core, core.write_file("f", b"1")) == {
        "HeadObject": 2, "ListObjectsV2": 1, "PutObject": 1}
    assert core.store.objects["f"].key_md5 == core.key.md5_b64


async def test_errors_leaving_the_memory_store_are_ssecfs_errors(core: Core,
                                                                 autojump_clock: Clock) -> None:
    from ssecfs.keys import SseCKey
    core.store.put_object("k", b"v", core.key)
    for call in (core.store.head("k", None), core.store.head("k", SseCKey(bytes(32))),
                 core.store.get_range("k", None, None), core.store.head("missing", core.key)):
        try:
            await call
        except SsecfsError:
            continue
        raise AssertionError("no error")


async def test_an_abort_that_failed_in_an_outage_is_done_later(tmp_path: Path,
                                                              autojump_clock: Clock) -> None:
    c = make_core(tmp_path, part_size=5 * MiB)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        fh = await c.create("big")
        await c.fs.write(fh, 0, os.urandom(11 * MiB))
        await trio.testing.wait_all_tasks_blocked()
        c.store.fail("UploadPart", exc=StoreError("connection refused"))
        c.store.fail("AbortMultipartUpload", exc=StoreError("connection refused"))
        assert await errno_of(c.fs.flush(fh)) == errno.EIO
        assert len(c.store.uploads) == 1  # the abort failed too: the upload is left
        await c.fs.flush(fh)  # the server is back: the retry stores the file ...
        assert c.store.uploads == {}  # ... and aborts what the outage left
        await c.fs.release(fh)
        nursery.cancel_scope.cancel()
    c.fs.close()


async def test_cleanup_aborts_only_stale_uploads(core: Core, autojump_clock: Clock) -> None:
    from ssecfs.cleanup import abort_stale_uploads
    old = await core.store.create_multipart("crashed", {}, "x", core.key)
    await core.store.create_multipart("running", {}, "x", core.key)
    core.store.uploads[old].initiated_ns -= 7200 * 10**9  # started two hours ago
    said: list[str] = []
    assert await abort_stale_uploads(core.store, "", 3600, True, said.append) == 1
    assert len(core.store.uploads) == 2 and "would abort crashed" in said[0]
    assert await abort_stale_uploads(core.store, "", 3600, False, said.append) == 1
    assert [u.key for u in core.store.uploads.values()] == ["running"]
