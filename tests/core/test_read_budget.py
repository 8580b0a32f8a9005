"""Read-ahead is bounded for the whole mount (`read_ahead_memory`), not per open file."""

from __future__ import annotations

import os
from pathlib import Path

import trio
from trio.testing import MockClock as Clock

from ssecfs.ranges import ReadBudget
from tests.core.conftest import make_core

MiB = 1024 * 1024


def test_a_budget_refuses_what_would_go_over_it() -> None:
    b = ReadBudget(10)
    assert b.reserve(6) and not b.reserve(5) and b.reserve(4)
    b.release(6)
    assert b.held == 4 and b.reserve(6)


async def test_sequential_readers_share_the_mounts_read_ahead(tmp_path: Path,
                                                              autojump_clock: Clock) -> None:
    c = make_core(tmp_path, read_ahead_memory=8 * MiB, read_ahead=4 * MiB, read_concurrency=4)
    datas = {f"f{i}": os.urandom(24 * MiB) for i in range(3)}
    for name, data in datas.items():
        c.store.put_object(name, data, c.key)
    budget = c.fs._read_budget
    peak = 0
    async with trio.open_nursery() as nursery:
        c.fs.start(nursery)
        handles = {name: await c.fs.open(await c.ino(name), os.O_RDONLY) for name in datas}
        got = {name: bytearray() for name in datas}
        for offset in range(0, 24 * MiB, 128 * 1024):  # three `cat`s, interleaved
            for name, fh in handles.items():
                got[name] += await c.fs.read(fh, offset, 128 * 1024)
                peak = max(peak, budget.held)
        for fh in handles.values():
            await c.fs.release(fh)
        assert budget.held == 0  # every closed handle gave its read-ahead back
        nursery.cancel_scope.cancel()
    c.fs.close()
    assert {n: bytes(d) for n, d in got.items()} == datas
    assert 0 < peak <= 8 * MiB
