"""glibc malloc settings of the daemon (mount.tune_malloc) and the idle trim (IdleTrim)."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from ssecfs import mount


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.trims = 0

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.trims += 1
        return 1


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch) -> FakeLibc:
    fake = FakeLibc()
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: fake)
    for env in ("GLIBC_TUNABLES", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_",
                "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(env, raising=False)
    return fake


def test_tune_malloc_sets_arenas_and_thresholds(libc: FakeLibc) -> None:
    mount.tune_malloc()
    assert dict(libc.calls) == {mount.M_ARENA_MAX: mount.MALLOC_ARENAS,
                                mount.M_MMAP_THRESHOLD: mount.MMAP_THRESHOLD,
                                mount.M_TRIM_THRESHOLD: mount.TRIM_THRESHOLD}
    # a read-ahead segment and a part are below the mmap threshold: they come from the heap
    assert mount.MMAP_THRESHOLD > 16 * 1024 * 1024


def test_tune_malloc_leaves_the_users_settings(libc: FakeLibc,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    mount.tune_malloc()
    assert mount.M_ARENA_MAX not in dict(libc.calls) and len(libc.calls) == 2
    libc.calls.clear()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1:glibc.cpu.x86_ibt=on")
    mount.tune_malloc()
    assert libc.calls == [(mount.M_MMAP_THRESHOLD, mount.MMAP_THRESHOLD)]


def test_idle_trim_gives_memory_back_at_most_once_per_interval(
        libc: FakeLibc, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(mount.time, "monotonic", lambda: now[0])
    trim: Any = mount.IdleTrim(interval=1.0)
    trim()
    trim()
    assert libc.trims == 1
    now[0] += 1.5
    trim()
    assert libc.trims == 2
