"""Properties of the part planner and the read planner (hypothesis): planned parts cover the
object exactly, in order, within S3's limits; planned reads cover what was asked, never
overlap what is held, and stay inside the file."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ssecfs.parts import MAX_OBJECT, MAX_PART, MAX_PARTS, MIN_PART, plan_parts
from ssecfs.ranges import ByteRange, Readahead, missing

MiB = 1024 * 1024

sizes = st.one_of(st.integers(0, 64 * MiB), st.integers(0, MAX_OBJECT))
part_sizes = st.sampled_from([5 * MiB, 8 * MiB, 16 * MiB, 100 * MiB, 1024 * MiB])


@st.composite
def clean_ranges(draw: st.DrawFn, size: int) -> list[ByteRange]:
    """Ranges of the old object still equal (sorted, disjoint, within `size`)."""
    if size == 0:
        return []
    cuts = sorted(set(draw(st.lists(st.integers(0, size), max_size=8))))
    bounds = [0, *cuts, size]
    pieces = list(zip(bounds, bounds[1:], strict=False))
    keep = draw(st.lists(st.booleans(), min_size=len(pieces), max_size=len(pieces)))
    return [ByteRange(a, b) for (a, b), kept in zip(pieces, keep, strict=True)
            if kept and b > a]


@settings(max_examples=300, deadline=None)
@given(st.data(), sizes, part_sizes)
def test_parts_cover_the_object_exactly_within_s3_limits(data: st.DataObject, size: int,
                                                         part_size: int) -> None:
    clean = data.draw(clean_ranges(size))
    plans = plan_parts(size, part_size, clean)
    assert [p.number for p in plans] == list(range(1, len(plans) + 1))
    assert len(plans) <= MAX_PARTS
    pos = 0
    for p in plans:
        assert p.rng.start == pos  # in order, no gap, no overlap
        pos = p.rng.end
        assert len(p.rng) <= MAX_PART
    assert pos == size  # the parts sum to the size
    for p in plans[:-1]:
        assert len(p.rng) >= MIN_PART  # only the last part may be small
    for p in plans:
        if p.copy:  # a copied part is copied from bytes that are unchanged
            assert not missing(p.rng, clean)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 200 * MiB), st.lists(st.tuples(st.integers(0, 200 * MiB),
                                                     st.integers(1, 4 * MiB)), max_size=30))
def test_read_plans_cover_what_is_asked_and_nothing_twice(file_size: int,
                                                          reads: list[tuple[int, int]]) -> None:
    ra = Readahead(maximum=16 * MiB, depth=4)
    have: list[ByteRange] = []
    for offset, length in reads:
        if offset >= file_size:
            continue
        want = ByteRange(offset, min(offset + length, file_size))
        ra.advise(want.start, len(want))
        planned = ra.plan(want, have, file_size)
        for r in planned:
            assert 0 <= r.start < r.end <= file_size  # inside the file, never empty
            assert not [h for h in have if h.start < r.end and r.start < h.end]  # held once
        for a, b in zip(planned, planned[1:], strict=False):
            assert a.end <= b.start or b.end <= a.start
        assert not missing(want, [*have, *planned])  # everything asked for is covered
        assert sum(len(r) for r in planned) <= len(want) + 16 * MiB * 5  # read-ahead bounded
        have.extend(planned)
