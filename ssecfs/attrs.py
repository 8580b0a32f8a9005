"""File attributes and their s3fs-compatible encoding in object metadata (pure).

s3fs's convention, kept so that a bucket can be shared with s3fs users:
`x-amz-meta-mode` is the st_mode including the file-type bits (decimal as s3fs writes it;
"0750"-style octal and "0x" hex are read too, as s3fs's strtol(…, 0) reads them), `-uid`/`-gid`
decimal ids, `-mtime`, `-ctime` and `-atime` decimal seconds since the epoch, with
".NNNNNNNNN" nanoseconds when non-zero (as s3fs and rclone write them), `-xattr` the extended
attributes (`xattrs`). boto3 strips the `x-amz-meta-` part, so the dict keys here are bare.
A symlink is an object whose mode says S_IFLNK and whose body is the target; a FIFO, socket
or device node an empty object whose mode says so (s3fs's mknod), with `-rdev` for devices.

Every other `x-amz-meta-*` entry belongs to some other tool: it is kept in `Attr.kept` and
written back unchanged whenever the mount stores the object again.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, replace
from enum import Enum

from . import xattrs as xattr_codec
from .content import DIRECTORY_TYPE, Content, for_new_file
from .xattrs import Xattrs


class Kind(Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    FIFO = "fifo"
    SOCKET = "socket"
    CHAR_DEVICE = "chardev"
    BLOCK_DEVICE = "blockdev"


FORMAT = {Kind.FILE: stat.S_IFREG, Kind.DIR: stat.S_IFDIR, Kind.SYMLINK: stat.S_IFLNK,
          Kind.FIFO: stat.S_IFIFO, Kind.SOCKET: stat.S_IFSOCK, Kind.CHAR_DEVICE: stat.S_IFCHR,
          Kind.BLOCK_DEVICE: stat.S_IFBLK}
KIND_OF_FORMAT = {fmt: kind for kind, fmt in FORMAT.items()}
SPECIAL = frozenset({Kind.FIFO, Kind.SOCKET, Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE})
# the metadata entries this module reads and writes; every other one is another tool's
OWNED = frozenset({"mode", "uid", "gid", "mtime", "ctime", "atime", "rdev", xattr_codec.META_NAME})


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
    ctime_ns: int | None = None  # None: not recorded, the mtime stands in
    atime_ns: int | None = None
    xattrs: Xattrs = ()
    kept: tuple[tuple[str, str], ...] = ()  # other tools' x-amz-meta-* entries, as they were
    content: Content | None = None  # None: never stored; the name decides at the upload
    rdev: int = 0

    @property
    def st_mode(self) -> int:
        return FORMAT[self.kind] | self.mode

    @property
    def ctime(self) -> int:
        return self.mtime_ns if self.ctime_ns is None else self.ctime_ns

    @property
    def atime(self) -> int:
        return self.mtime_ns if self.atime_ns is None else self.atime_ns

    def with_(self, **changes: object) -> Attr:
        return replace(self, **changes)  # type: ignore[arg-type]

    def content_changed(self, now_ns: int) -> Attr:
        """A write or truncate: mtime and ctime move."""
        return replace(self, mtime_ns=now_ns, ctime_ns=now_ns)

    def status_changed(self, now_ns: int) -> Attr:
        """chmod, chown, an xattr change, a rename: ctime moves, mtime stays."""
        return replace(self, ctime_ns=now_ns)


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


def parse_mode(text: str) -> int | None:
    """s3fs reads the mode with strtol(…, 0): "16877" decimal, "0750" octal, "0x1ed" hex."""
    t = text.strip()
    try:
        if t[:2].lower() == "0x":
            return int(t[2:], 16)
        if len(t) > 1 and t.startswith("0"):
            return int(t[1:], 8)
        return int(t, 10)
    except ValueError:
        return None


def _time(meta: dict[str, str], name: str, problems: list[str] | None) -> int | None:
    if name not in meta:
        return None
    value = parse_mtime_ns(meta[name])
    if value is None or not -MTIME_NS_MAX <= value <= MTIME_NS_MAX:
        if problems is not None:
            problems.append(f"x-amz-meta-{name}={meta[name][:40]!r}")
        return None
    return value


def attr_from_meta(meta: dict[str, str], size: int, last_modified_ns: int, defaults: Defaults,
                   is_dir: bool = False, key_state: KeyState = KeyState.OK,
                   problems: list[str] | None = None,
                   content: Content | None = None) -> Attr:
    """Attributes of an object from its metadata, falling back to the mount's defaults.

    `is_dir`: the object is a "dir/" marker. An object without the slash is a directory too
    when its mode says S_IFDIR or its Content-Type is application/x-directory (directories
    made by old s3fs versions and other tools: s3fs's compat_dir).
    Metadata written by other tools may be anything: a field that is not a number in range
    (a uid of -1, an mtime of 9e30, a mode with an unknown file type) takes the default, and
    is named in `problems` so that the caller can log it."""
    meta = {k.lower(): v for k, v in meta.items()}
    raw_mode = parse_mode(meta["mode"]) if "mode" in meta else None
    if raw_mode is not None and not 0 <= raw_mode <= 0o177777:
        raw_mode = None
    if raw_mode is None and "mode" in meta and problems is not None:
        problems.append(f"x-amz-meta-mode={meta['mode'][:40]!r}")
    fmt = stat.S_IFMT(raw_mode) if raw_mode is not None else 0
    if fmt and fmt not in KIND_OF_FORMAT:
        if problems is not None:
            problems.append(f"x-amz-meta-mode={meta['mode'][:40]!r} (an unknown file type)")
        raw_mode, fmt = None, 0
    if is_dir or fmt == stat.S_IFDIR or (content is not None and content.type == DIRECTORY_TYPE
                                         and size == 0 and not fmt):
        kind = Kind.DIR
    elif fmt and KIND_OF_FORMAT[fmt] is not Kind.DIR:
        kind = KIND_OF_FORMAT[fmt]
        if kind in SPECIAL and size:
            if problems is not None:
                problems.append(f"x-amz-meta-mode={meta['mode'][:40]!r} (a special file "
                                f"holding {size} bytes)")
            kind = Kind.FILE
    else:
        kind = Kind.FILE
    if raw_mode is not None:
        perm = stat.S_IMODE(raw_mode)
    else:
        perm = defaults.dir_mode if kind is Kind.DIR else defaults.file_mode
    if kind is Kind.SYMLINK:
        perm = 0o777
    mtime = _time(meta, "mtime", problems)
    uid = _int(meta, "uid", 0, ID_MAX, problems)
    gid = _int(meta, "gid", 0, ID_MAX, problems)
    rdev = _int(meta, "rdev", 0, 2**64 - 1, problems) if kind in SPECIAL else None
    return Attr(kind=kind, mode=perm, uid=defaults.uid if uid is None else uid,
                gid=defaults.gid if gid is None else gid, size=0 if kind is Kind.DIR else size,
                mtime_ns=last_modified_ns if mtime is None else mtime, key_state=key_state,
                ctime_ns=_time(meta, "ctime", problems), atime_ns=_time(meta, "atime", problems),
                xattrs=xattr_codec.decode(meta.get(xattr_codec.META_NAME, "")),
                kept=tuple(sorted((k, v) for k, v in meta.items() if k not in OWNED)),
                content=content, rdev=rdev or 0)


def meta_from_attr(attr: Attr) -> dict[str, str]:
    """The x-amz-meta-* values (without the prefix) that record `attr` s3fs-style, with the
    entries of other tools it carries."""
    meta = dict(attr.kept)
    meta.update({"mode": str(attr.st_mode), "uid": str(attr.uid), "gid": str(attr.gid),
                 "mtime": format_mtime(attr.mtime_ns), "ctime": format_mtime(attr.ctime),
                 "atime": format_mtime(attr.atime)})
    if attr.kind in (Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE):
        meta["rdev"] = str(attr.rdev)
    if attr.xattrs:
        meta[xattr_codec.META_NAME] = xattr_codec.encode(attr.xattrs)
    return meta


METADATA_MAX = 2048  # S3's limit on the x-amz-meta-* names and values of one object


def metadata_size(meta: dict[str, str]) -> int:
    """What S3 counts against METADATA_MAX: each x-amz-meta- name and its value, in bytes."""
    return sum(len(f"x-amz-meta-{k}".encode()) + len(v.encode()) for k, v in meta.items())


def content_for(attr: Attr, name: str) -> Content:
    """The content headers `attr`'s object is stored with: the ones it has, else the type
    its name gives (a directory is application/x-directory, as s3fs marks them)."""
    if attr.content is not None:
        return attr.content
    if attr.kind is Kind.DIR:
        return Content(DIRECTORY_TYPE)
    if attr.kind is not Kind.FILE:
        return Content()
    return for_new_file(name)
