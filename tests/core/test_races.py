"""The four races of the core issue: an upload, a rename and an unlink of one file are
ordered, and an upload lands under the name the file has when it completes."""

from __future__ import annotations

import trio

from tests.core.conftest import Core

MiB = 1024 * 1024


async def _closing(core: Core, fh: int, done: list[str]) -> None:
    await core.close(fh)
    done.append("closed")


async def test_rename_onto_a_file_whose_close_is_uploading(core: Core,
        autojump_clock: trio.abc.Clock) -> None:
    await core.write_file("a", b"A" * 100)
    await core.write_file("b", b"old b")
    fh = await core.fs.open(await core.ino("b"), 1)
    await core.fs.write(fh, 0, b"new b, being uploaded")
    gate = core.store.pause("PutObject", "b")
    done: list[str] = []
    async with trio.open_nursery() as n:
        n.start_soon(_closing, core, fh, done)
        await gate.reached.wait()  # b's upload is in flight
        n.start_soon(core.rename, "a", "b")
        await trio.sleep(1)
        gate.release()
    assert done == ["closed"]
    # mv a b ran after b's upload: b holds a's content, and a is gone
    assert core.bucket() == {"b": b"A" * 100}
    assert await core.read_file("b") == b"A" * 100


async def test_rename_of_a_new_file_whose_close_is_uploading(core: Core,
        autojump_clock: trio.abc.Clock) -> None:
    fh = await core.create("src")
    await core.fs.write(fh, 0, b"fresh")
    gate = core.store.pause("PutObject", "src")
    async with trio.open_nursery() as n:
        n.start_soon(core.close, fh)
        await gate.reached.wait()
        n.start_soon(core.rename, "src", "dst")
        await trio.sleep(1)
        gate.release()
    assert core.bucket() == {"dst": b"fresh"}
    assert await core.read_file("dst") == b"fresh"
    assert await core.listdir() == ["dst"]


async def test_unlink_while_close_uploads(core: Core,
        autojump_clock: trio.abc.Clock) -> None:
    fh = await core.create("f")
    await core.fs.write(fh, 0, b"doomed")
    gate = core.store.pause("PutObject", "f")
    async with trio.open_nursery() as n:
        n.start_soon(core.close, fh)
        await gate.reached.wait()
        n.start_soon(core.unlink, "f")
        await trio.sleep(1)
        gate.release()
    assert core.bucket() == {}
    assert await core.listdir() == []


async def test_directory_rename_while_a_file_in_it_is_written_and_closed(core: Core,
        autojump_clock: trio.abc.Clock) -> None:
    await core.mkdir("d")
    await core.write_file("d/file", b"old content")
    fh = await core.fs.open(await core.ino("d/file"), 1)
    copy_gate = core.store.pause("CopyObject", "e/file")
    async with trio.open_nursery() as n:
        n.start_soon(core.rename, "d", "e")
        await copy_gate.reached.wait()  # the directory copy is in flight

        async def write_and_close() -> None:
            await core.fs.write(fh, 0, b"new content")  # waits for the rename
            await core.close(fh)
            done.append("closed")

        done: list[str] = []
        n.start_soon(write_and_close)
        await trio.sleep(1)
        assert done == []
        copy_gate.release()
    assert core.bucket()["e/file"] == b"new content"
    assert "d/file" not in core.bucket() and "d/" not in core.bucket()
    assert await core.read_file("e/file") == b"new content"


async def test_directory_rename_waits_for_an_upload_in_flight(core: Core,
        autojump_clock: trio.abc.Clock) -> None:
    await core.mkdir("d")
    fh = await core.create("d/x")
    await core.fs.write(fh, 0, b"x" * 10)
    fh2 = await core.fs.open(await core.ino("d/x"), 1)
    gate = core.store.pause("PutObject", "d/x")
    async with trio.open_nursery() as n:
        n.start_soon(core.close, fh)
        await gate.reached.wait()
        n.start_soon(core.rename, "d", "e")
        await trio.sleep(1)
        gate.release()
    await core.fs.write(fh2, 0, b"y" * 10)
    await core.close(fh2)
    assert core.bucket() == {"e/": b"", "e/x": b"y" * 10}


async def test_renames_of_unrelated_paths_do_not_wait_for_an_upload(core: Core,
        autojump_clock: trio.abc.Clock) -> None:
    fh = await core.create("slow")
    await core.fs.write(fh, 0, b"s")
    await core.write_file("other", b"o")
    gate = core.store.pause("PutObject", "slow")
    async with trio.open_nursery() as n:
        n.start_soon(core.close, fh)
        await gate.reached.wait()
        with trio.fail_after(5):
            await core.rename("other", "moved")
            await core.write_file("third", b"3")
            await core.mkdir("dir")
        gate.release()
    assert set(core.bucket()) == {"slow", "moved", "third", "dir/"}


async def test_directory_rename_writes_no_key_beside_a_marker_above_it(core: Core,
        autojump_clock: trio.abc.Clock) -> None:
    # SeaweedFS loses a marker from its listings when a key below it is written at the same
    # time (then a later rename or rmdir leaves it behind): a rename copies parents first
    await core.mkdir("d")
    await core.mkdir("d/sub")
    await core.mkdir("d/sub/deeper")
    await core.write_file("d/sub/file", b"x" * 10)
    await core.write_file("d/top", b"y" * 10)
    gate = core.store.pause("PutObject", "e/sub/")
    async with trio.open_nursery() as n:
        n.start_soon(core.rename, "d", "e")
        await gate.reached.wait()
        await trio.sleep(1)
        # the marker's wave is in flight: nothing below it has been written yet
        assert not [k for k in core.bucket() if k.startswith("e/sub/")]
        gate.release()
    assert sorted(k for k in core.bucket() if k.startswith("e")) == \
        ["e/", "e/sub/", "e/sub/deeper/", "e/sub/file", "e/top"]
    assert not [k for k in core.bucket() if k.startswith("d")]
