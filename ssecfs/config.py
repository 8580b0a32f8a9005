"""Mount configuration: one frozen value built at the command-line boundary.

Defaults live here and only here. `-o` options (command line, mount(8) and /etc/fstab) are
parsed by `apply_o_options`, which knows every option's type; an unknown option is an error
that names it. Options that belong to mount(8) or systemd are accepted and dropped or mapped:

- dropped: `_netdev`, `nofail`, `noauto`, `auto`, `user`, `users`, `defaults`, `x-*` … (they
  steer mount(8) and systemd's fstab generator, which have acted on them before ssecfs runs);
- honoured: `ro`/`rw`, and `dev`/`nodev`, `suid`/`nosuid`, `exec`/`noexec`, which go to the
  kernel (the last of a pair wins; libfuse's default is nosuid,nodev).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import EXIT_USAGE, UserError

MiB = 1024 * 1024


class OptionError(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


@dataclass(frozen=True, slots=True)
class MountConfig:
    bucket: str
    prefix: str  # "" or "some/prefix/" (always ends with "/")
    mountpoint: str
    key_file: str | None = None
    key_fd: int | None = None
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    ca_bundle: str | None = None
    foreground: bool = False
    debug: bool = False
    log_file: str | None = None  # None: stderr in the foreground, syslog (or a file) else
    # attributes of objects that carry no s3fs metadata
    uid: int = dataclasses.field(default_factory=os.getuid)
    gid: int = dataclasses.field(default_factory=os.getgid)
    umask: int = 0o022
    # how long attributes and listings are trusted, in seconds (also the kernel's timeouts)
    cache_ttl: float = 30.0
    allow_other: bool = False
    read_only: bool = False
    encrypted_only: bool = False  # refuse objects stored without SSE-C
    key_check: bool = True  # at mount, check that the key opens at least one object
    # reads
    read_ahead: int = 16 * MiB  # largest sequential ranged GET
    read_concurrency: int = 4  # ranged GETs in flight per sequentially read file
    # writes
    part_size: int = 8 * MiB
    upload_concurrency: int = 4
    write_buffer_memory: int = 64 * MiB  # per file; beyond it, encrypted spill to cache_dir
    cache_dir: str = ""  # "" = default_cache_dir()
    # requests
    retries: int = 6
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    fuse_options: tuple[str, ...] = ()  # extra options passed to the kernel (nosuid, nodev…)

    def __post_init__(self) -> None:
        if self.part_size < 5 * MiB:
            raise OptionError("part_size must be at least 5M (an S3 limit)")
        if self.part_size > 5 * 1024 * MiB:
            raise OptionError("part_size must be at most 5G (an S3 limit)")
        if self.upload_concurrency < 1 or self.read_concurrency < 1:
            raise OptionError("concurrency options must be at least 1")
        if self.cache_ttl < 0:
            raise OptionError("cache_ttl must not be negative")
        if not 0 <= self.umask <= 0o777:
            raise OptionError("umask must be an octal number between 000 and 777")

    @property
    def file_mode(self) -> int:
        return 0o666 & ~self.umask

    @property
    def dir_mode(self) -> int:
        return 0o777 & ~self.umask

    def spill_dir(self) -> str:
        return self.cache_dir or default_cache_dir()


def default_cache_dir() -> str:
    if os.getuid() == 0:
        return "/var/cache/ssecfs"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ssecfs")


def split_bucket(spec: str) -> tuple[str, str]:
    """'bucket/some/prefix' -> ('bucket', 'some/prefix/'); 's3://' is tolerated."""
    if spec.startswith("s3://"):
        spec = spec[len("s3://") :]
    bucket, _, prefix = spec.partition("/")
    if not bucket:
        raise OptionError(f"no bucket name in {spec!r}; expected BUCKET or BUCKET/PREFIX")
    prefix = "/".join(p for p in prefix.split("/") if p)
    return bucket, (prefix + "/" if prefix else "")


def parse_size(text: str) -> int:
    """'8M' -> 8388608. Suffixes K, M, G (powers of 1024), optional 'iB'/'B'."""
    units = {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r}") from None
    if value < 0:
        raise ValueError(f"not a size: {text!r}")
    return int(value * units[unit])


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on", ""):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _parse_octal(text: str) -> int:
    return int(text, 8)


@dataclass(frozen=True, slots=True)
class _Option:
    field: str
    parse: Callable[[str], object]
    flag: bool = False  # may appear without "=value"
    flag_value: object = True


# The -o options ssecfs itself understands: name -> (MountConfig field, parser).
OPTIONS: dict[str, _Option] = {
    "key_file": _Option("key_file", str),
    "endpoint_url": _Option("endpoint_url", str),
    "endpoint": _Option("endpoint_url", str),  # aws-cli's short spelling
    "region": _Option("region", str),
    "profile": _Option("profile", str),
    "ca_bundle": _Option("ca_bundle", str),
    "uid": _Option("uid", int),
    "gid": _Option("gid", int),
    "umask": _Option("umask", _parse_octal),
    "cache_ttl": _Option("cache_ttl", float),
    "allow_other": _Option("allow_other", _parse_bool, flag=True),
    "ro": _Option("read_only", _parse_bool, flag=True),
    "rw": _Option("read_only", _parse_bool, flag=True, flag_value=False),
    "encrypted_only": _Option("encrypted_only", _parse_bool, flag=True),
    "key_check": _Option("key_check", _parse_bool, flag=True),
    "no_key_check": _Option("key_check", _parse_bool, flag=True, flag_value=False),
    "read_ahead": _Option("read_ahead", parse_size),
    "read_concurrency": _Option("read_concurrency", int),
    "part_size": _Option("part_size", parse_size),
    "upload_concurrency": _Option("upload_concurrency", int),
    "write_buffer_memory": _Option("write_buffer_memory", parse_size),
    "cache_dir": _Option("cache_dir", str),
    "retries": _Option("retries", int),
    "connect_timeout": _Option("connect_timeout", float),
    "read_timeout": _Option("read_timeout", float),
    "debug": _Option("debug", _parse_bool, flag=True),
    "log_file": _Option("log_file", str),
    "foreground": _Option("foreground", _parse_bool, flag=True),
}

# Options of mount(8), fstab and systemd that mean nothing to ssecfs: accepted and dropped.
# mount(8) strips some of them before it runs the helper, mount.fuse3 others; a line of
# /etc/fstab may also reach ssecfs through `ssecfs mount -o`, so all are accepted everywhere.
IGNORED_OPTIONS = frozenset(
    {"_netdev", "nofail", "noauto", "auto", "user", "users", "nouser", "defaults", "owner",
     "noowner", "group", "nogroup", "sync", "async", "dirsync", "atime", "noatime",
     "relatime", "norelatime", "strictatime", "nostrictatime", "nodiratime", "diratime",
     "lazytime", "nolazytime", "silent", "loud", "nosymfollow", "symfollow"}
)
# Passed on to the kernel; of each pair the last one given wins.
KERNEL_OPTION_PAIRS = {"dev": "nodev", "suid": "nosuid", "exec": "noexec"}
KERNEL_OPTIONS = frozenset(KERNEL_OPTION_PAIRS) | frozenset(KERNEL_OPTION_PAIRS.values())
IGNORED_PREFIXES = ("x-",)  # x-systemd.*, x-gvfs-*…: userspace options, comments
IGNORED_WITH_VALUE = frozenset({"comment", "context", "fscontext", "defcontext",
                                "rootcontext"})


def split_o_options(values: Iterable[str]) -> list[tuple[str, str | None]]:
    """['a=1,b', 'c'] -> [('a', '1'), ('b', None), ('c', None)]; empty items are skipped."""
    out: list[tuple[str, str | None]] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            name, eq, arg = item.partition("=")
            out.append((name.strip(), arg if eq else None))
    return out


def _kernel_pair(name: str) -> frozenset[str]:
    for on, off in KERNEL_OPTION_PAIRS.items():
        if name in (on, off):
            return frozenset((on, off))
    return frozenset((name,))


def apply_o_options(cfg: MountConfig, values: Iterable[str],
                    on_unknown: Callable[[str], None] | None = None) -> MountConfig:
    """Return `cfg` with the -o options applied; raise OptionError naming a bad one.

    `on_unknown` (mount -s, "sloppy"): called with the name of each unknown option, which is
    then skipped instead of being an error.
    """
    changes: dict[str, object] = {}
    kernel: list[str] = list(cfg.fuse_options)
    for name, arg in split_o_options(values):
        if name in IGNORED_OPTIONS or name in IGNORED_WITH_VALUE \
                or name.startswith(IGNORED_PREFIXES):
            continue
        if name in KERNEL_OPTIONS:
            if arg is not None:
                raise OptionError(f"option -o {name} takes no value")
            pair = _kernel_pair(name)
            kernel = [k for k in kernel if k not in pair] + [name]
            continue
        opt = OPTIONS.get(name)
        if opt is None:
            if on_unknown is not None:
                on_unknown(name)
                continue
            raise OptionError(f"unknown option -o {name} "
                              f"(see 'ssecfs mount --help' or docs/usage.md)")
        if arg is None:
            if not opt.flag:
                raise OptionError(f"option -o {name} needs a value: -o {name}=VALUE")
            value = opt.flag_value
        else:
            try:
                value = opt.parse(arg)
            except ValueError as exc:
                raise OptionError(f"bad value for -o {name}: {exc}") from None
            if opt.flag and opt.flag_value is False:
                value = not value
        changes[opt.field] = value
    if kernel != list(cfg.fuse_options):
        changes["fuse_options"] = tuple(dict.fromkeys(kernel))
    return dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]


def fuse_mount_options(cfg: MountConfig) -> set[str]:
    """The options handed to pyfuse3.init (besides pyfuse3.default_options)."""
    opts = {f"fsname=ssecfs:{cfg.bucket}" + (f"/{cfg.prefix.rstrip('/')}" if cfg.prefix else ""),
            "subtype=ssecfs",
            # the kernel checks access against the mode bits we report; ssecfs does not
            "default_permissions"}
    if cfg.allow_other:
        opts.add("allow_other")
    if cfg.read_only:
        opts.add("ro")
    opts.update(cfg.fuse_options)
    return opts
