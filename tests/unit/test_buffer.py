import os
import random

import pytest

from ssecfs.buffer import PAGE, FileBuffer, MemoryPool
from ssecfs.ranges import ByteRange
from ssecfs.spill import SpillFile, remove_stale_spill_files


class Remote:
    def __init__(self, data: bytes):
        self.data = data
        self.fetched = 0

    async def __call__(self, rng: ByteRange) -> bytes:
        self.fetched += len(rng)
        return self.data[rng.start:rng.end]


async def test_buffer_matches_a_bytearray_model(tmp_path):
    rnd = random.Random(1)
    base = os.urandom(3 * PAGE + 123)
    remote = Remote(base)
    spill = SpillFile(str(tmp_path), PAGE)
    buf = FileBuffer(len(base), spill, memory=2 * PAGE)
    model = bytearray(base)
    most_spilled = 0
    for _ in range(200):
        op = rnd.random()
        if op < 0.6:
            off = rnd.randrange(0, len(model) + PAGE)
            data = os.urandom(rnd.randrange(1, 2 * PAGE))
            await buf.write(off, data, remote)
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off:off + len(data)] = data
        elif op < 0.8:
            n = rnd.randrange(0, len(model) + PAGE)
            await buf.truncate(n, remote)
            if n < len(model):
                del model[n:]
            else:
                model.extend(bytes(n - len(model)))
        else:
            off = rnd.randrange(0, len(model) + 10)
            n = rnd.randrange(0, 3 * PAGE)
            assert await buf.read(off, n, remote) == bytes(model[off:off + n])
        assert buf.size == len(model)
        most_spilled = max(most_spilled, buf.spilled_pages)
    assert await buf.read(0, len(model), remote) == bytes(model)
    assert most_spilled > 0
    buf.close()
    spill.close()


async def test_clean_ranges_and_no_fetch_for_full_pages(tmp_path):
    base = bytes(10 * PAGE)
    remote = Remote(base)
    buf = FileBuffer(len(base), SpillFile(str(tmp_path), PAGE), memory=64 * PAGE)
    await buf.write(2 * PAGE, b"x" * PAGE, remote)
    assert remote.fetched == 0
    assert buf.clean_ranges() == [ByteRange(0, 2 * PAGE), ByteRange(3 * PAGE, 10 * PAGE)]
    await buf.write(5 * PAGE + 1, b"y", remote)
    assert remote.fetched == PAGE  # read-modify-write of one page only


async def test_buffers_of_a_pool_share_its_limit(tmp_path):
    spill = SpillFile(str(tmp_path), PAGE)
    pool = MemoryPool(4 * PAGE)
    a, b = FileBuffer(0, spill, pool), FileBuffer(0, spill, pool)
    data_a, data_b = os.urandom(6 * PAGE), os.urandom(6 * PAGE)
    await a.write(0, data_a, Remote(b""))
    assert pool.pages == 4 and a.spilled_pages == 2
    await b.write(0, data_b, Remote(b""))
    # b spills its own pages: a keeps what it holds, b is over by one page at most
    assert a.pages_in_memory == 4 and b.pages_in_memory == 1 and pool.pages == 5
    assert await a.read(0, len(data_a), Remote(b"")) == data_a
    assert await b.read(0, len(data_b), Remote(b"")) == data_b
    a.close()
    await b.write(6 * PAGE, data_a[: 3 * PAGE], Remote(b""))
    assert pool.pages == 4  # a's share went back to the pool
    del b  # a buffer dropped without close() gives its share back too
    assert pool.pages == 0
    spill.close()


async def test_spill_file_holds_no_plaintext(tmp_path):
    spill = SpillFile(str(tmp_path), PAGE)
    buf = FileBuffer(0, spill, memory=PAGE)
    secret = b"TOP-SECRET-PLAINTEXT-" * 50000
    await buf.write(0, secret, Remote(b""))
    assert buf.spilled_pages > 0
    on_disk = open(spill.path, "rb").read()
    assert b"TOP-SECRET" not in on_disk
    assert await buf.read(0, len(secret), Remote(b"")) == secret
    assert oct(os.stat(spill.path).st_mode & 0o777) == "0o600"
    path = spill.path
    spill.close()
    assert not os.path.exists(path)


async def test_spill_detects_tampering(tmp_path):
    from ssecfs.errors import LocalDiskError
    spill = SpillFile(str(tmp_path), 100)
    a = await spill.store(b"a" * 100)
    b = await spill.store(b"b" * 100)
    rec = spill._record
    with open(spill.path, "r+b") as f:
        f.seek(a * rec)
        first = f.read(rec)
        f.seek(b * rec)
        f.write(first)  # move slot a's record into slot b
    with pytest.raises(LocalDiskError, match="authentication"):
        await spill.load(b)
    spill.close()


async def test_spill_works_where_the_filesystem_refuses_o_direct(tmp_path, monkeypatch):
    # tmpfs (before Linux 6.6) and some others answer O_DIRECT with EINVAL: the spill file
    # is then written through the page cache, and reads back the same
    import fcntl
    real_fcntl = fcntl.fcntl

    def no_direct(fd, cmd, *args):
        if cmd == fcntl.F_SETFL and args and args[0] & os.O_DIRECT:
            raise OSError(22, "Invalid argument")
        return real_fcntl(fd, cmd, *args)

    monkeypatch.setattr(fcntl, "fcntl", no_direct)
    spill = SpillFile(str(tmp_path), PAGE)
    pages = [os.urandom(PAGE), os.urandom(PAGE // 3)]
    slots = [await spill.store(p) for p in pages]
    assert not spill._direct
    assert [await spill.load(s) for s in slots] == pages
    assert b"".join(pages)[:4096] not in open(spill.path, "rb").read()
    spill.close()


async def test_spill_works_where_o_direct_writes_are_refused(tmp_path, monkeypatch):
    # a filesystem that opens with O_DIRECT but refuses its writes: buffered from then on
    spill = SpillFile(str(tmp_path), PAGE)
    first = os.urandom(PAGE)
    first_slot = await spill.store(first)
    if not spill._direct:
        pytest.skip(f"{tmp_path} has no O_DIRECT")
    real_pwrite = os.pwrite

    def refuse(fd, data, offset):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "pwrite", refuse)
    page = os.urandom(PAGE)
    slot = await spill.store(page)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert not spill._direct
    assert await spill.load(slot) == page
    assert await spill.load(first_slot) == first  # written direct, read buffered
    spill.close()


async def test_spill_records_are_aligned_for_o_direct(tmp_path):
    spill = SpillFile(str(tmp_path), PAGE)
    assert spill._record % 4096 == 0 and spill._record >= PAGE + 36
    pages = [os.urandom(n) for n in (PAGE, 1, 4096, PAGE - 5)]
    slots = [await spill.store(p) for p in pages]
    assert [await spill.load(s) for s in slots] == pages
    spill.free(slots[1])
    again = os.urandom(777)
    assert await spill.store(again) == slots[1]  # a freed slot is used again
    assert await spill.load(slots[1]) == again
    spill.close()


async def test_spill_pages_stored_and_loaded_at_once_stay_apart(tmp_path):
    # each worker thread seals into its own aligned buffer: more at once than are kept
    import trio
    spill = SpillFile(str(tmp_path), PAGE)
    pages = [os.urandom(PAGE - i) for i in range(12)]
    slots: dict[int, int] = {}
    loaded: dict[int, bytes] = {}

    async def put(i):
        slots[i] = await spill.store(pages[i])

    async def get(i):
        loaded[i] = bytes(await spill.load(slots[i]))

    async with trio.open_nursery() as n:
        for i in range(len(pages)):
            n.start_soon(put, i)
    async with trio.open_nursery() as n:
        for i in range(len(pages)):
            n.start_soon(get, i)
    assert [loaded[i] for i in range(len(pages))] == pages
    assert len(spill._buffers) <= 4
    spill.close()


def test_stale_spill_files_are_removed(tmp_path):
    (tmp_path / "spill-999999999-abcd.bin").write_bytes(b"old")
    (tmp_path / f"spill-{os.getpid()}-abcd.bin").write_bytes(b"ours")
    (tmp_path / "other").write_bytes(b"keep")
    assert remove_stale_spill_files(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", f"spill-{os.getpid()}-abcd.bin"]


async def test_spill_crypto_and_disk_io_run_in_worker_threads(tmp_path):
    # a big write must not stall every other request of the mount on AES-GCM and pwrite
    import threading
    spill = SpillFile(str(tmp_path), 100)
    seen = []
    seal, unseal = spill._seal, spill._unseal

    def spy(fn):
        def wrapped(*args):
            seen.append(threading.current_thread() is threading.main_thread())
            return fn(*args)
        return wrapped

    spill._seal, spill._unseal = spy(seal), spy(unseal)
    slot = await spill.store(b"x" * 100)
    assert await spill.load(slot) == b"x" * 100
    assert seen == [False, False]
    spill.close()


class FullDisk:
    """A page store whose disk is full: every store fails."""

    async def store(self, data):
        raise OSError(28, "No space left on device")

    async def load(self, slot):
        raise AssertionError("nothing was stored")

    def free(self, slot):
        pass


async def test_a_full_spill_disk_is_enospc_and_loses_nothing(tmp_path):
    from ssecfs.errors import LocalDiskError
    spill = SpillFile(str(tmp_path / "gone"), PAGE)
    buf = FileBuffer(0, spill, memory=PAGE)
    first = os.urandom(PAGE)
    await buf.write(0, first, Remote(b""))
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone").chmod(0o500)  # cache_dir turned read-only (root ignores modes)
    if os.access(tmp_path / "gone", os.W_OK):
        (tmp_path / "gone").chmod(0o700)
        os.rmdir(tmp_path / "gone")
        (tmp_path / "gone").write_bytes(b"")  # a file where the directory should be
    with pytest.raises(LocalDiskError) as info:
        await buf.write(PAGE, os.urandom(PAGE), Remote(b""))
    assert info.value.errno in (13, 20, 17)  # EACCES, ENOTDIR, EEXIST: never a traceback
    assert await buf.read(0, PAGE, Remote(b"")) == first


async def test_a_page_stays_in_memory_when_it_cannot_be_spilled():
    buf = FileBuffer(0, FullDisk(), memory=PAGE)
    first = os.urandom(PAGE)
    await buf.write(0, first, Remote(b""))
    with pytest.raises(OSError):
        await buf.write(PAGE, os.urandom(PAGE), Remote(b""))  # memory full, spill fails
    assert await buf.read(0, PAGE, Remote(b"")) == first  # what write() acknowledged is kept


class DiskWithRoomFor:
    """A page store with room for `n` pages."""

    def __init__(self, n):
        self.slots, self.n = {}, n

    async def store(self, data):
        if len(self.slots) >= self.n:
            raise OSError(28, "No space left on device")
        self.slots[len(self.slots)] = bytearray(data)
        return len(self.slots) - 1

    async def load(self, slot):
        return self.slots[slot]

    def free(self, slot):
        pass


async def test_a_write_that_fills_the_spill_disk_is_short_then_fails():
    buf = FileBuffer(0, DiskWithRoomFor(2), memory=PAGE)
    data = os.urandom(5 * PAGE)
    written = await buf.write(0, data, Remote(b""))
    assert written == 3 * PAGE  # one page in memory, two spilled: the rest did not fit
    assert buf.size == written
    assert await buf.read(0, written, Remote(b"")) == data[:written]
    with pytest.raises(OSError):
        await buf.write(written, data[written:], Remote(b""))
    assert buf.size == written  # a failed write changes nothing


async def test_pieces_are_views_of_full_pages_that_writes_may_go_on_changing(tmp_path):
    """A part is sent as views of the buffer's pages (no joined copy); holding them must
    not stop later writes, even ones that grow a short page."""
    spill = SpillFile(str(tmp_path), PAGE)
    buf = FileBuffer(0, spill, memory=3 * PAGE)
    data = os.urandom(3 * PAGE)
    await buf.write(0, data, Remote(b""))
    await buf.write(4 * PAGE, b"short", Remote(b""))  # page 4 is short, page 3 zeros
    assert buf.spilled_pages == 1  # page 0 went to the spill file
    pieces = await buf.pieces(0, 5 * PAGE, Remote(b""))
    want = data + bytes(PAGE) + b"short"
    assert b"".join(pieces) == want == await buf.read(0, 5 * PAGE, Remote(b""))
    assert [type(p) for p in pieces][1:3] == [memoryview, memoryview]  # pages 1, 2 in memory
    assert not isinstance(pieces[-1], memoryview)  # a short page is copied
    await buf.write(4 * PAGE + 5, b" and longer", Remote(b""))  # grows the short page
    await buf.write(PAGE, b"new", Remote(b""))  # changes a page a view shows
    assert bytes(pieces[1][:3]) == b"new"
    assert await buf.read(4 * PAGE, PAGE, Remote(b"")) == b"short and longer"
    await buf.truncate(PAGE + 10, Remote(b""))
    assert await buf.read(0, 3 * PAGE, Remote(b"")) == \
        data[:PAGE] + b"new" + data[PAGE + 3 : PAGE + 10]
    buf.close()
