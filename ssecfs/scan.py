"""Walking a bucket for `rotate-key` and `check`: listing (current objects or every
version) filtered by shard, finding out which key opens an object, and running one task per
object with at most `jobs` at a time.

Which key opens an object (`probe`): one HEAD per candidate key, in the order given, until one
is echoed back. Servers answer a wrong key differently (AWS and SeaweedFS 403, Ceph RGW 400)
and HEAD answers have no body, so a refusal does not tell which key it wants; an object
stored without SSE-C is answered 200 without an echo by RGW and SeaweedFS (headers ignored),
400 by AWS. So after every candidate was refused, one HEAD without a key tells "stored
without SSE-C" (200) from "under a key we do not have" (400). Requests: 1 for an object
under the first candidate, i+1 under the i-th, one more for an unknown key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from .errors import KeyMismatch
from .keys import SseCKey
from .shard import Shard
from .store.base import ListedVersion, ObjectHead, ObjectStore

T = TypeVar("T")
R = TypeVar("R")


async def list_objects(store: ObjectStore, prefix: str, shard: Shard,
                       versions: bool = False) -> list[ListedVersion]:
    """Every object under `prefix` in `shard` (directory markers included), in key order; with
    `versions`, every version (delete markers left out), else the current ones."""
    out: list[ListedVersion] = []
    if versions:
        marker: tuple[str, str] | None = None
        while True:
            vpage = await store.list_versions_page(prefix, marker=marker)
            out += [v for v in vpage.versions if shard.owns(v.key)]
            if vpage.next_marker is None:
                return out
            marker = vpage.next_marker
    token: str | None = None
    while True:
        page = await store.list_page(prefix, delimiter=None, token=token)
        out += [ListedVersion(o.key, None, o.size, o.etag, True) for o in page.objects
                if shard.owns(o.key)]
        if page.next_token is None:
            return out
        token = page.next_token


@dataclass(frozen=True, slots=True)
class Probe:
    """`key`: the candidate that opens the object (None: none does); `head` is its HEAD, or
    the keyless HEAD of an object stored without SSE-C (`unencrypted`), None if unknown."""

    key: SseCKey | None
    head: ObjectHead | None
    unencrypted: bool = False


async def probe(store: ObjectStore, key: str, candidates: Sequence[SseCKey],
                version_id: str | None = None) -> Probe:
    """Which of `candidates` opens the object (see the module docstring). Errors other than
    a refused key (NotFound, AccessDenied, StoreError) are raised."""
    for sse in candidates:
        try:
            head = await store.head_as(key, sse, version_id=version_id)
        except KeyMismatch:
            continue
        if head.key_md5 is None:  # answered without an echo: stored without SSE-C
            return Probe(None, head, unencrypted=True)
        return Probe(sse, head)
    try:
        head = await store.head_as(key, None, version_id=version_id)
    except KeyMismatch:
        return Probe(None, None)
    return Probe(None, head, unencrypted=True)


async def for_each(items: Sequence[T], jobs: int, fn: Callable[[T], Awaitable[R]],
                   done: Callable[[T, R], None]) -> None:
    """Run `fn` on every item, at most `jobs` at a time, in order of the items; `done` is
    called with each result as it comes. `fn` must not raise (it reports errors in R)."""
    limiter = trio.CapacityLimiter(max(1, jobs))

    async def one(item: T, token: object) -> None:
        try:
            result = await fn(item)
        finally:
            limiter.release_on_behalf_of(token)
        done(item, result)

    async with trio.open_nursery() as nursery:
        for item in items:
            # acquire before starting: no more than `jobs` tasks exist at a time, so a
            # million objects are not a million tasks
            token = object()
            await limiter.acquire_on_behalf_of(token)
            nursery.start_soon(one, item, token)
