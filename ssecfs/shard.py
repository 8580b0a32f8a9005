"""`--shard K/N`: split the objects of a bucket between N runs by a stable hash (pure).

An object belongs to shard `first 8 bytes of sha256(key) as a big-endian integer, mod N`: the
same key always lands in the same shard, whatever the machine, the Python version or the
listing order, so N runs with K = 0 … N-1 cover every object exactly once. All versions of
one key belong to the same shard.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .errors import EXIT_USAGE, UserError


class ShardError(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def shard_of(key: str, count: int) -> int:
    """The shard (0 … count-1) the object `key` belongs to."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ShardError(f"--shard {self.index}/{self.count}: N must be 1 or more")
        if not 0 <= self.index < self.count:
            raise ShardError(f"--shard {self.index}/{self.count}: K must be 0 … N-1 "
                             f"(0 … {self.count - 1})")

    def owns(self, key: str) -> bool:
        return self.count == 1 or shard_of(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """'3/8' -> Shard(3, 8); anything else is a one-line ShardError."""
    k, slash, n = text.strip().partition("/")
    if not slash or not (k.isascii() and k.isdigit() and n.isascii() and n.isdigit()):
        raise ShardError(f"--shard {text!r}: expected K/N with whole numbers 0 <= K < N, "
                         f"e.g. --shard 0/4")
    return Shard(int(k), int(n))
