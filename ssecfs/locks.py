"""PathLocks: operations that change the same paths are ordered; the rest run side by side.

A claim is a set of paths, each with everything below it. Two claims conflict when a path of
one is at, above or below a path of the other. `hold` waits until the claim conflicts with no
held claim and then takes all of its paths at once, so no task holds one path while waiting
for another and claims cannot deadlock.

Lock order in the filesystem: path claims first, then `OpenFile.lock`s (in inode order). An
upload holds only its file's lock and never waits for a claim, so a rename or unlink of a file
waits for that file's upload in flight, and an upload that starts later sees the new name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .paths import is_within


def conflict(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return any(is_within(x, y) or is_within(y, x) for x in a for y in b)


class PathLocks:
    def __init__(self) -> None:
        self._held: list[tuple[str, ...]] = []
        self._released = trio.Event()

    @asynccontextmanager
    async def hold(self, *paths: str) -> AsyncIterator[None]:
        claim = tuple(paths)
        while any(conflict(claim, other) for other in self._held):
            await self._released.wait()
        self._held.append(claim)
        try:
            yield
        finally:
            self._held.remove(claim)
            self._released.set()
            self._released = trio.Event()

    def held(self) -> list[tuple[str, ...]]:
        return list(self._held)
