"""Uploads streamed while a new file is written (ssecfs/stream.py): the parts go out during the
writes, close() sends only the tail, and every change of the file meanwhile (rewrites,
truncation, rename, unlink, chmod, failed parts) still ends with exactly the file's bytes in the
bucket and no multipart upload left behind."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from trio.testing import MockClock as Clock

from ssecfs.errors import StoreError
from tests.core.conftest import Core, make_core

MiB = 1024 * 1024


@pytest.fixture
async def core5(tmp_path: Path) -> AsyncIterator[Core]:
    c = make_core(tmp_path, part_size=5 * MiB)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        yield c
        nursery.cancel_scope.cancel()
    c.fs.close()


async def write_in_chunks(core: Core, fh: int, data: bytes, at: int = 0) -> None:
    for i in range(0, len(data), MiB):
        await core.fs.write(fh, at + i, data[i : i + MiB])


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_full_parts_are_sent_while_writing(core5: Core, autojump_clock: Clock) -> None:
    data = os.urandom(17 * MiB + 123)
    fh = await core5.create("big")
    await write_in_chunks(core5, fh, data)
    await settle()
    # three full 5 MiB parts are in the bucket's upload already, before close()
    assert core5.store.requests["UploadPart"] == 3
    assert core5.bucket() == {}
    await core5.close(fh)
    assert core5.store.requests["UploadPart"] == 4  # close() sent only the tail
    assert core5.store.requests["CreateMultipartUpload"] == 1
    assert core5.bucket() == {"big": data}
    assert core5.store.uploads == {}
    meta = core5.store.objects["big"].metadata
    assert "mtime" not in meta and meta["mode"] == str(0o100644)  # mtime: Last-Modified
    assert core5.store.objects["big"].key_md5 == core5.key.md5_b64


async def test_a_rewrite_of_a_sent_part_is_sent_again(core5: Core, autojump_clock: Clock) -> None:
    data = bytearray(os.urandom(12 * MiB))
    fh = await core5.create("f")
    await write_in_chunks(core5, fh, bytes(data))
    await settle()
    patch = os.urandom(1000)
    await core5.fs.write(fh, 3 * MiB, patch)  # inside part 1, already sent
    data[3 * MiB : 3 * MiB + 1000] = patch
    await core5.close(fh)
    assert core5.bucket() == {"f": bytes(data)}
    assert core5.store.uploads == {}


async def test_truncation_after_sending_parts(core5: Core, autojump_clock: Clock) -> None:
    data = os.urandom(16 * MiB)
    fh = await core5.create("f")
    await write_in_chunks(core5, fh, data)
    await settle()
    await core5.fs.setattr(await core5.ino("f"), size=7 * MiB, fh=fh)
    await core5.close(fh)
    assert core5.bucket() == {"f": data[: 7 * MiB]}
    fh = await core5.create("g")
    await write_in_chunks(core5, fh, data)
    await settle()
    await core5.fs.setattr(await core5.ino("g"), size=MiB, fh=fh)  # below one part
    await core5.close(fh)
    assert core5.bucket()["g"] == data[:MiB]
    await settle()
    assert core5.store.uploads == {}


async def test_a_rename_while_streaming_lands_under_the_new_name(
        core5: Core, autojump_clock: Clock) -> None:
    data = os.urandom(11 * MiB)
    fh = await core5.create("old")
    await write_in_chunks(core5, fh, data)
    await settle()
    await core5.rename("old", "new")
    await core5.fs.write(fh, len(data), b"tail")
    await core5.close(fh)
    await settle()
    assert core5.bucket() == {"new": data + b"tail"}
    assert core5.store.uploads == {}


async def test_an_unlink_while_streaming_leaves_nothing(core5: Core, autojump_clock: Clock) -> None:
    fh = await core5.create("gone")
    await write_in_chunks(core5, fh, os.urandom(11 * MiB))
    await settle()
    await core5.unlink("gone")
    await core5.close(fh)
    await settle()
    assert core5.bucket() == {}
    assert core5.store.uploads == {}


async def test_chmod_while_streaming_keeps_mode_and_mtime(core5: Core,
                                                          autojump_clock: Clock) -> None:
    data = os.urandom(11 * MiB)
    fh = await core5.create("f")
    await write_in_chunks(core5, fh, data)
    await settle()
    await core5.fs.setattr(await core5.ino("f"), mode=0o600, mtime_ns=1_700_000_000 * 10**9,
                           fh=fh)
    await core5.close(fh)
    await settle()
    obj = core5.store.objects["f"]
    assert obj.body == data
    assert obj.metadata["mode"] == str(0o100600) and obj.metadata["mtime"].startswith("17")
    assert core5.store.uploads == {}


async def test_failed_parts_and_a_failed_start_are_made_good_at_close(
        tmp_path: Path, autojump_clock: Clock) -> None:
    c = make_core(tmp_path, part_size=5 * MiB)
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        data = os.urandom(16 * MiB)
        c.store.fail("UploadPart", times=2, exc=StoreError("connection reset"))
        fh = await c.create("parts")
        await write_in_chunks(c, fh, data)
        await settle()
        await c.close(fh)
        assert c.bucket()["parts"] == data
        c.store.fail("CreateMultipartUpload", exc=StoreError("connection reset"))
        fh = await c.create("start")
        await write_in_chunks(c, fh, data)
        await settle()
        await c.close(fh)  # uploaded the ordinary way
        assert c.bucket()["start"] == data
        await settle()
        assert c.store.uploads == {}
        nursery.cancel_scope.cancel()
    c.fs.close()


async def test_unmount_waits_for_the_abort_of_a_stream_given_up(
        core5: Core, autojump_clock: Clock) -> None:
    fh = await core5.create("gone")
    await write_in_chunks(core5, fh, os.urandom(11 * MiB))  # parts in flight, unsettled
    await core5.unlink("gone")
    assert await core5.fs.flush_all() == []  # what unmount runs
    assert core5.store.uploads == {}
    await core5.fs.release(fh)


async def test_an_upload_whose_creation_answer_was_lost_is_aborted(
        core5: Core, autojump_clock: Clock) -> None:
    """A connection cut after the server made the upload: the mount never learnt its id, and
    still leaves none behind once the server answers again."""
    orphan = await core5.store.create_multipart("big", {}, "application/octet-stream",
                                                core5.key)  # what the server made
    core5.store.fail("CreateMultipartUpload", exc=StoreError("connection closed"))  # lost
    data = os.urandom(12 * MiB)
    fh = await core5.create("big")
    await write_in_chunks(core5, fh, data)
    await settle()
    await core5.close(fh)
    await settle()
    assert core5.bucket() == {"big": data}
    assert orphan not in core5.store.uploads
    assert core5.store.uploads == {}



async def write_at_once(core: Core, files: dict[str, bytes], after_write: list[int]) -> None:
    """Create and write every file concurrently, 1 MiB at a time, then close each; the pages
    the mount holds in memory are noted after each write."""
    async def write(name: str, data: bytes) -> None:
        fh = await core.create(name)
        for i in range(0, len(data), MiB):
            await core.fs.write(fh, i, data[i : i + MiB])
            after_write.append(core.fs.writer.memory.pages)
        await core.close(fh)

    async with trio.open_nursery() as nursery:
        core.fs.start(nursery)
        async with trio.open_nursery() as writers:
            for name, data in files.items():
                writers.start_soon(write, name, data)
        nursery.cancel_scope.cancel()
    core.fs.close()


async def test_files_written_at_once_share_the_mounts_part_slots(
        tmp_path: Path, autojump_clock: Clock) -> None:
    """However many files are written at once, at most `upload_concurrency` part bodies are
    in flight in the whole mount (each one is held in memory until it is answered)."""
    # pages stay in memory here: no spill thread, so the clock jumps only when all wait
    core = make_core(tmp_path, part_size=5 * MiB, upload_concurrency=2,
                     write_buffer_memory=128 * MiB)
    sent = core.store.upload_part
    in_flight, most = 0, 0

    async def slow_part(*args: object, **kw: object) -> object:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await trio.sleep(1)  # a slow server: every file's writer waits for a slot
            return await sent(*args, **kw)  # type: ignore[arg-type]
        finally:
            in_flight -= 1

    core.store.upload_part = slow_part  # type: ignore[method-assign]
    files = {f"f{i}": os.urandom(16 * MiB + i) for i in range(4)}
    await write_at_once(core, files, [])
    assert core.bucket() == files
    assert core.store.uploads == {}
    assert most == 2  # 4 files of 4 parts each: per file, it would have been 8


async def test_files_written_at_once_share_the_write_buffer_memory(
        tmp_path: Path, autojump_clock: Clock) -> None:
    """`write_buffer_memory` bounds the pages of all dirty files together: each file spills
    its own oldest pages, so the mount holds at most that plus one page per file."""
    core = make_core(tmp_path, part_size=5 * MiB, write_buffer_memory=4 * MiB)
    files = {f"f{i}": os.urandom(12 * MiB + i) for i in range(4)}
    pages: list[int] = []
    await write_at_once(core, files, pages)
    assert core.bucket() == files
    assert core.store.uploads == {}
    assert 4 <= max(pages) <= 4 + len(files)  # per file, it would have been 16
