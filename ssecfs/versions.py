"""Which version of each key a bucket showed at a time T (`--as-of`). Pure.

Rules (S3's own): a key's entries are its versions and delete markers, newest first. The one
that was current at T is the newest with LastModified <= T. If it is a delete marker, or the
key has no entry at or before T, the key did not exist at T. Versions newer than T are
ignored.

Ordering: boto3 parses ListObjectVersions into two lists, versions and delete markers, so
their interleaving is lost; each list is newest first per key. They are merged by
LastModified. On a server whose LastModified has whole seconds (SeaweedFS), a version and a
delete marker of one key in the same second cannot be ordered by time: the one flagged
IsLatest wins, else the delete marker (it is usually the later: a put, then its delete).
"""

from __future__ import annotations

from collections.abc import Iterable

from .store.base import ListedVersion


def _newest_first(entries: list[tuple[int, ListedVersion]]) -> list[ListedVersion]:
    # (position in its own list, entry): by time, then IsLatest, then delete markers, then
    # the server's own order within one list
    ordered = sorted(entries, key=lambda e: (-e[1].last_modified_ns, not e[1].is_latest,
                                             not e[1].delete_marker, e[0]))
    return [v for _, v in ordered]


def current_at(entries: Iterable[ListedVersion], as_of_ns: int) -> ListedVersion | None:
    """The version of one key that was current at `as_of_ns` (ns since the epoch, UTC):
    None if the key did not exist then (no entry at or before it, or a delete marker)."""
    listed = list(enumerate(entries))
    for entry in _newest_first(listed):
        if entry.last_modified_ns <= as_of_ns:
            return None if entry.delete_marker else entry
    return None


def visible_at(entries: Iterable[ListedVersion], as_of_ns: int) -> dict[str, ListedVersion]:
    """key -> the version current at `as_of_ns`, for every key of `entries` (versions and
    delete markers of any number of keys, in any order) that existed then."""
    by_key: dict[str, list[ListedVersion]] = {}
    for entry in entries:
        by_key.setdefault(entry.key, []).append(entry)
    out: dict[str, ListedVersion] = {}
    for key, listed in by_key.items():
        chosen = current_at(listed, as_of_ns)
        if chosen is not None:
            out[key] = chosen
    return out
