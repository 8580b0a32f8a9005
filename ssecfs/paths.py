"""Mapping between paths in the mount and object keys in the bucket.

A path is a str relative to the mount root without leading or trailing "/" ("" is the root).
With a mount prefix "p/", path "a/b" is key "p/a/b" and directory "a" is marker "p/a/".
Names come from the kernel as bytes and are decoded as UTF-8 with surrogateescape, so any
byte sequence round-trips. Keys that cannot be a path (empty components, ".", "..") are hidden.
"""

from __future__ import annotations

from collections.abc import Iterable

NAME_MAX = 255
KEY_MAX = 1024  # S3's limit on a key, in UTF-8 bytes
PATH_MAX = 4096  # the longest symlink target Linux accepts


def decode_name(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def encode_name(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def valid_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name \
        and len(encode_name(name)) <= NAME_MAX


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def key_for(prefix: str, path: str) -> str:
    """Object key of the file at `path`."""
    return prefix + path


def dir_key(prefix: str, path: str) -> str:
    """Marker key of the directory at `path` ('' for the root is the prefix itself)."""
    return prefix + path + "/" if path else prefix


def list_prefix(prefix: str, path: str) -> str:
    """The ListObjects prefix that enumerates the directory at `path`."""
    return dir_key(prefix, path)


def child_name(list_pfx: str, key: str) -> str | None:
    """Name of the direct child that `key` (or common prefix) denotes, or None to hide it.

    `key` must start with `list_pfx`. A trailing "/" (directory marker or common prefix) is
    dropped; the directory's own marker (key == list_pfx) has no child name.
    """
    rest = key[len(list_pfx) :]
    if rest.endswith("/"):
        rest = rest[:-1]
    if not rest or "/" in rest or not valid_name(rest):
        return None
    return rest


def is_within(path: str, ancestor: str) -> bool:
    """True if `path` is `ancestor` or lies below it."""
    return not ancestor or path == ancestor or path.startswith(ancestor + "/")


def rebase(path: str, old: str, new: str) -> str:
    """The path that `path` (at or below `old`) gets when `old` is renamed to `new`."""
    if path == old:
        return new
    return join(new, path[len(old) + 1 :]) if old else join(new, path)


def parents_first(keys: Iterable[str], prefix: str) -> list[list[str]]:
    """`keys` below `prefix` in waves by depth, shallowest first: every key comes in a later
    wave than the marker of any directory above it. Copied wave by wave, no key is written
    at the same time as a marker above it: SeaweedFS then sometimes loses the marker from
    its listings (measured: 1 in 300 pairs), and a later rename or rmdir leaves it behind."""
    waves: dict[int, list[str]] = {}
    for key in keys:
        rest = key[len(prefix):].rstrip("/")
        waves.setdefault(rest.count("/") if rest else -1, []).append(key)
    return [waves[depth] for depth in sorted(waves)]
