"""Counters of what a mount did since it started (pure): requests by kind, bytes up and down,
retries, errors and cache hits. `ssecfs stats MOUNTPOINT` reads them as JSON through the
`user.ssecfs.stats` extended attribute of the mount's root (`getfattr -n user.ssecfs.stats`)."""

from __future__ import annotations

import time
from collections import Counter

XATTR = "user.ssecfs.stats"


class Stats:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests: Counter[str] = Counter()  # S3 operation name -> requests sent
        self.counts: Counter[str] = Counter()  # bytes_up, bytes_down, retries, errors, ...

    def request(self, op: str) -> None:
        self.requests[op] += 1

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def snapshot(self) -> dict[str, object]:
        return {"seconds": round(time.time() - self.started, 1),
                "requests": dict(sorted(self.requests.items())),
                "requests_total": sum(self.requests.values()),
                **dict(sorted(self.counts.items()))}
