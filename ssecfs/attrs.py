"""File attributes and their s3fs-compatible encoding in object metadata (pure).

s3fs's convention, kept so that a bucket can be shared with s3fs users:
`x-amz-meta-mode` is the decimal st_mode including the file-type bits, `-uid`/`-gid` decimal
ids, `-mtime` decimal seconds since the epoch, with ".NNNNNNNNN" nanoseconds when non-zero (as s3fs
and rclone write it). boto3 strips the `x-amz-meta-` part, so the dict keys here are bare.
A symlink is an object whose mode says S_IFLNK and whose body is the target.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, replace
from enum import Enum


class Kind(Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


class KeyState(Enum):
    OK = "ok"  # encrypted with the mount's key
    PLAIN = "plain"  # stored without SSE-C
    MISMATCH = "mismatch"  # encrypted with another key: listed, not readable
    UNKNOWN = "unknown"  # not asked yet (attributes came from a listing)


@dataclass(frozen=True, slots=True)
class Attr:
    kind: Kind
    mode: int  # permission bits only (07777)
    uid: int
    gid: int
    size: int
    mtime_ns: int
    key_state: KeyState = KeyState.OK

    @property
    def st_mode(self) -> int:
        fmt = {Kind.FILE: stat.S_IFREG, Kind.DIR: stat.S_IFDIR, Kind.SYMLINK: stat.S_IFLNK}
        return fmt[self.kind] | self.mode

    def with_(self, **changes: object) -> Attr:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Defaults:
    uid: int
    gid: int
    file_mode: int
    dir_mode: int


ID_MAX = 2**32 - 2  # (uid_t)-1 means "no change" to chown(2): never an owner
MTIME_NS_MAX = 2**63 - 1  # what the kernel's timespec (and pyfuse3) can carry


def _int(meta: dict[str, str], name: str, low: int, high: int,
         problems: list[str] | None) -> int | None:
    """meta[name] as an int in [low, high]; None (and a note in `problems`) if it is not."""
    if name not in meta:
        return None
    try:
        value = int(meta[name].strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        if problems is not None:
            problems.append(f"x-amz-meta-{name}={meta[name][:40]!r}")
        return None
    return value


def parse_mtime_ns(text: str) -> int | None:
    """'1700000000' or '1700000000.5' -> nanoseconds; None if unparsable."""
    sec, _, frac = text.strip().partition(".")
    if not sec.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        return None
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] if frac else 0)


def format_mtime(mtime_ns: int) -> str:
    # always nine digits after the point: s3fs reads the fraction as a count of nanoseconds
    sec, ns = divmod(mtime_ns, 1_000_000_000)
    return f"{sec}.{ns:09d}" if ns else str(sec)


def attr_from_meta(meta: dict[str, str], size: int, last_modified_ns: int, defaults: Defaults,
                   is_dir: bool = False, key_state: KeyState = KeyState.OK,
                   problems: list[str] | None = None) -> Attr:
    """Attributes of an object from its metadata, falling back to the mount's defaults.

    Metadata written by other tools may be anything: a field that is not a number in range
    (a uid of -1, an mtime of 9e30, a mode with an unknown file type) takes the default, and
    is named in `problems` so that the caller can log it."""
    meta = {k.lower(): v for k, v in meta.items()}
    raw_mode = _int(meta, "mode", 0, 0o177777, problems)
    if raw_mode is not None and stat.S_IFMT(raw_mode) not in (0, stat.S_IFREG, stat.S_IFDIR,
                                                             stat.S_IFLNK):
        if problems is not None:
            problems.append(f"x-amz-meta-mode={meta['mode'][:40]!r} (not a file, directory "
                            "or symlink)")
        raw_mode = None
    kind = Kind.DIR if is_dir else Kind.FILE
    if raw_mode is not None and not is_dir and stat.S_ISLNK(raw_mode):
        kind = Kind.SYMLINK
    if raw_mode is not None:
        perm = stat.S_IMODE(raw_mode)
    else:
        perm = defaults.dir_mode if is_dir else defaults.file_mode
    if kind is Kind.SYMLINK:
        perm = 0o777
    mtime = parse_mtime_ns(meta["mtime"]) if "mtime" in meta else None
    if mtime is not None and not -MTIME_NS_MAX <= mtime <= MTIME_NS_MAX:
        mtime = None
    if mtime is None and "mtime" in meta and problems is not None:
        problems.append(f"x-amz-meta-mtime={meta['mtime'][:40]!r}")
    uid = _int(meta, "uid", 0, ID_MAX, problems)
    gid = _int(meta, "gid", 0, ID_MAX, problems)
    return Attr(kind=kind, mode=perm, uid=defaults.uid if uid is None else uid,
                gid=defaults.gid if gid is None else gid, size=size,
                mtime_ns=last_modified_ns if mtime is None else mtime, key_state=key_state)


def meta_from_attr(attr: Attr) -> dict[str, str]:
    """The x-amz-meta-* values (without the prefix) that record `attr` s3fs-style."""
    return {"mode": str(attr.st_mode), "uid": str(attr.uid), "gid": str(attr.gid),
            "mtime": format_mtime(attr.mtime_ns)}


def content_type_for(kind: Kind) -> str:
    # s3fs marks directory objects this way; other tools only look at the trailing "/"
    return "application/x-directory" if kind is Kind.DIR else "application/octet-stream"
