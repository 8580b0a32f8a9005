"""A small TTL cache with an injected clock, and the change log that guards cache fills (pure)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

from .paths import is_within

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Maps keys to values that expire `ttl` seconds after they were put; LRU-bounded."""

    def __init__(self, ttl: float, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if self._clock() >= expires:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        self._data[key] = (self._clock() + (self.ttl if ttl is None else ttl), value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def pop_where(self, pred: Callable[[K], bool]) -> None:
        for key in [k for k in self._data if pred(k)]:
            del self._data[key]

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class ChangeLog:
    """A bounded log of namespace changes (pure).

    A cache fill that awaited a request (a HEAD, a listing) asks `unchanged_since(epoch, path)`
    before storing what it learnt: if an unlink, rename or create touched `path`, an ancestor
    or a descendant meanwhile, the answer may describe the world before that change and must
    not be cached. When the log has been trimmed past `epoch`, the answer is "changed".
    """

    def __init__(self, keep: int = 4096) -> None:
        self._epoch = 0
        self._log: deque[tuple[int, str]] = deque(maxlen=keep)

    @property
    def epoch(self) -> int:
        return self._epoch

    def changed(self, path: str) -> None:
        self._epoch += 1
        self._log.append((self._epoch, path))

    def unchanged_since(self, epoch: int, path: str) -> bool:
        if epoch == self._epoch:
            return True
        if not self._log or self._log[0][0] > epoch + 1:
            return False  # trimmed: cannot tell
        for when, changed in reversed(self._log):
            if when <= epoch:
                break
            if is_within(path, changed) or is_within(changed, path):
                return False
        return True
