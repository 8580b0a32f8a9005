"""Inode numbers for paths, with the kernel's lookup counts (pure).

Rules: an inode number is given to a path the first time the kernel sees it and is never
reused (numbers only grow, so no generation counter is needed). The kernel holds a reference
for every lookup we answer and gives them back with forget(); an inode is dropped only when
that count reaches zero and no handle is open on it. Unlinking a path detaches it from its
inode (open handles keep working); renaming moves the inode and every inode below it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Stale
from .paths import is_within, rebase

ROOT_INODE = 1


@dataclass(slots=True)
class _Node:
    path: str | None  # None once unlinked
    lookups: int = 0
    opens: int = 0


class InodeTable:
    def __init__(self) -> None:
        self._nodes: dict[int, _Node] = {ROOT_INODE: _Node("", lookups=1)}
        self._by_path: dict[str, int] = {"": ROOT_INODE}
        self._next = ROOT_INODE + 1

    def ino_for(self, path: str) -> int:
        """The inode of `path`, allocated if new. Does not count a lookup."""
        ino = self._by_path.get(path)
        if ino is None:
            ino = self._next
            self._next += 1
            self._nodes[ino] = _Node(path)
            self._by_path[path] = ino
        return ino

    def lookup(self, path: str) -> int:
        """ino_for() plus one kernel reference (a lookup, create, mkdir… answered)."""
        ino = self.ino_for(path)
        self._nodes[ino].lookups += 1
        return ino

    def path(self, ino: int) -> str:
        node = self._nodes.get(ino)
        if node is None or node.path is None:
            # the kernel still names an inode whose path is gone (unlinked or forgotten)
            raise Stale(f"inode {ino} no longer has a path")
        return node.path

    def path_or_none(self, ino: int) -> str | None:
        node = self._nodes.get(ino)
        return None if node is None else node.path

    def known(self, path: str) -> int | None:
        return self._by_path.get(path)

    def forget(self, ino: int, count: int) -> None:
        node = self._nodes.get(ino)
        if node is None or ino == ROOT_INODE:
            return
        node.lookups = max(0, node.lookups - count)
        self._maybe_drop(ino, node)

    def opened(self, ino: int) -> None:
        self._nodes[ino].opens += 1

    def closed(self, ino: int) -> None:
        node = self._nodes.get(ino)
        if node is not None:
            node.opens = max(0, node.opens - 1)
            self._maybe_drop(ino, node)

    def unlink(self, path: str) -> None:
        ino = self._by_path.pop(path, None)
        if ino is not None:
            node = self._nodes[ino]
            node.path = None
            self._maybe_drop(ino, node)

    def rename(self, old: str, new: str) -> None:
        """Move `old` and everything below it to `new` (a target at `new` is unlinked first)."""
        for path in [p for p in self._by_path if is_within(p, new) and not is_within(p, old)]:
            self.unlink(path)
        moved = [(p, ino) for p, ino in self._by_path.items() if is_within(p, old)]
        for p, _ in moved:
            del self._by_path[p]
        for p, ino in moved:
            np = rebase(p, old, new)
            self._nodes[ino].path = np
            self._by_path[np] = ino

    def _maybe_drop(self, ino: int, node: _Node) -> None:
        if node.lookups == 0 and node.opens == 0 and ino != ROOT_INODE:
            del self._nodes[ino]
            if node.path is not None and self._by_path.get(node.path) == ino:
                del self._by_path[node.path]

    def __len__(self) -> int:
        return len(self._nodes)
