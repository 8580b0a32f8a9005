import random

import pytest

from ssecfs.ranges import ByteRange, Readahead, clip, covered_until, missing

K, M = 1024, 1024 * 1024


def test_clip():
    assert clip(0, 10, 5) == ByteRange(0, 5)
    assert clip(5, 10, 5) is None
    assert clip(2, 0, 5) is None


def test_http_header_is_inclusive():
    assert ByteRange(100, 200).http() == "bytes=100-199"


def test_missing_and_covered():
    have = [ByteRange(0, 10), ByteRange(20, 30)]
    assert missing(ByteRange(5, 25), have) == [ByteRange(10, 20)]
    assert missing(ByteRange(0, 10), have) == []
    assert covered_until(5, have) == 10
    assert covered_until(10, have) == 10


def test_random_small_read_fetches_little():
    ra = Readahead(initial=256 * K, maximum=16 * M, depth=4)
    ra.advise(50 * M, 4 * K)
    plan = ra.plan(ByteRange(50 * M, 50 * M + 4 * K), [], 100 * M)
    assert plan == [ByteRange(50 * M, 50 * M + 256 * K)]


def test_sequential_reads_grow_and_prefetch():
    ra = Readahead(initial=256 * K, maximum=4 * M, depth=4)
    have: list[ByteRange] = []
    pos = 0
    sizes = []
    for _ in range(40):
        ra.advise(pos, 128 * K)
        new = ra.plan(ByteRange(pos, pos + 128 * K), have, 1 << 40)
        have += new
        sizes += [len(r) for r in new]
        pos += 128 * K
    assert max(sizes) == 4 * M
    # several requests ahead of the reader
    assert covered_until(pos, have) - pos >= 4 * M


def test_seek_resets_request_size():
    ra = Readahead(initial=256 * K, maximum=4 * M)
    for i in range(10):
        ra.advise(i * 128 * K, 128 * K)
    assert ra.request_size == 4 * M
    ra.advise(500 * M, 128 * K)
    assert ra.request_size == 256 * K and not ra.sequential


@pytest.mark.parametrize("seed", range(20))
def test_plans_cover_every_read_exactly_once(seed):
    rnd = random.Random(seed)
    size = rnd.randrange(1, 50 * M)
    ra = Readahead(initial=64 * K, maximum=2 * M, depth=3)
    have: list[ByteRange] = []
    for _ in range(50):
        off = rnd.randrange(0, size)
        n = rnd.randrange(1, 300 * K)
        want = clip(off, n, size)
        assert want is not None
        ra.advise(off, len(want))
        new = ra.plan(want, have, size)
        for r in new:
            assert 0 <= r.start < r.end <= size
            assert not any(r.start < h.end and h.start < r.end for h in have)
        have += new
        assert missing(want, have) == []
