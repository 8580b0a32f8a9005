import random

import pytest

from ssecfs.parts import MAX_PARTS, MIN_PART, MiB, part_size_for, plan_parts
from ssecfs.ranges import ByteRange as B


def check(plans, size):
    pos = 0
    for i, p in enumerate(plans):
        assert p.number == i + 1
        assert p.rng.start == pos
        if i < len(plans) - 1:
            assert len(p.rng) >= MIN_PART
        pos = p.rng.end
    assert pos == size
    assert len(plans) <= MAX_PARTS


def test_plain_upload():
    plans = plan_parts(20 * MiB, 8 * MiB)
    assert [len(p.rng) for p in plans] == [8 * MiB, 8 * MiB, 4 * MiB]
    assert not any(p.copy for p in plans)


def test_unchanged_object_is_copied():
    plans = plan_parts(100 * MiB, 8 * MiB, [B(0, 100 * MiB)])
    assert all(p.copy for p in plans)
    check(plans, 100 * MiB)


def test_small_change_in_the_middle_borrows_from_clean_neighbour():
    plans = plan_parts(100 * MiB, 8 * MiB, [B(0, 50 * MiB), B(51 * MiB, 100 * MiB)])
    check(plans, 100 * MiB)
    uploaded = sum(len(p.rng) for p in plans if not p.copy)
    assert uploaded == MIN_PART  # only the changed MiB and what it needs to reach 5 MiB


def test_append_copies_the_old_part():
    plans = plan_parts(30 * MiB, 8 * MiB, [B(0, 28 * MiB)])
    check(plans, 30 * MiB)
    assert plans[0].copy and plans[0].rng == B(0, 28 * MiB)


def test_part_size_grows_for_huge_objects():
    size = 200 * 1024 * MiB * 1024 // 1024  # 200 GiB
    assert part_size_for(size, 8 * MiB) * MAX_PARTS >= size
    check(plan_parts(size, 8 * MiB), size)


def test_empty_object_has_one_part():
    assert [len(p.rng) for p in plan_parts(0, 8 * MiB)] == [0]


@pytest.mark.parametrize("seed", range(50))
def test_random_plans_are_valid(seed):
    rnd = random.Random(seed)
    size = rnd.randrange(1, 300 * MiB)
    clean = []
    pos = 0
    while pos < size:
        n = rnd.randrange(1, 40 * MiB)
        if rnd.random() < 0.6:
            clean.append(B(pos, min(size, pos + n)))
        pos += n + rnd.randrange(0, 3 * MiB)
    plans = plan_parts(size, rnd.choice([5, 8, 16]) * MiB, clean)
    check(plans, size)
    for p in plans:
        if p.copy:
            assert any(c.start <= p.rng.start and p.rng.end <= c.end for c in clean)
