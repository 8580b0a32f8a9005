"""Mount configuration: one frozen value built at the command-line boundary.

Defaults live here and only here. `-o` options (command line, mount(8) and /etc/fstab) are
parsed by `apply_o_options`, which knows every option's type; an unknown option is an error
that names it. Of an option given twice the last one wins, except for the repeatable ones
(`old_key_file`), whose values add up in the order given. Options that belong to mount(8) or
systemd are accepted and dropped or mapped:

- dropped: `_netdev`, `nofail`, `noauto`, `auto`, `user`, `users`, `defaults`, `x-*` … (they
  steer mount(8) and systemd's fstab generator, which have acted on them before ssecfs runs);
- honoured: `ro`/`rw`, and `dev`/`nodev`, `suid`/`nosuid`, `exec`/`noexec`, which go to the
  kernel (the last of a pair wins; libfuse's default is nosuid,nodev).

Every value is checked here, before anything is opened or sent, so that a bad one is one line
and exit status 2 (an endpoint URL of the wrong shape: 4), never a traceback at mount time or
an EIO later: sizes are whole numbers of bytes, numbers are finite and in range (see
`MountConfig.__post_init__`), and the endpoint is `https://HOST[:PORT]` (`check_endpoint_shape`).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from .errors import EXIT_STORE, EXIT_USAGE, UserError

MiB = 1024 * 1024
ID_MAX = 2**32 - 2  # (uid_t)-1 means "no change" to chown(2): never an owner
SIZE_MAX = 2**63 - 1  # the largest off_t
CACHE_TTL_MAX = 365 * 24 * 3600.0  # a year
TIMEOUT_MAX = 24 * 3600.0  # a day; far larger ones overflow the socket layer
FD_MAX = 2**31 - 1  # a C int


class OptionError(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class EndpointUrlError(UserError):
    """An endpoint URL that is not `https://HOST[:PORT]`: an endpoint problem (exit 4), like
    an http:// one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_STORE)


@dataclass(frozen=True, slots=True)
class MountConfig:
    bucket: str
    prefix: str  # "" or "some/prefix/" (always ends with "/")
    mountpoint: str
    key_file: str | None = None  # its first key writes; more lines: read-only keys
    key_fd: int | None = None
    old_key_files: tuple[str, ...] = ()  # read-only keys (-o old_key_file=…, repeatable)
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
    # read-ahead held for the whole mount, all files: 64M keeps one reader at 4 GETs of 16M
    read_ahead_memory: int = 64 * MiB
    # writes
    part_size: int = 8 * MiB
    # measured with parts sent from the buffer: 6 wrote at 1.01x of boto3 on RGW, the daemon at
    # 128 MiB; 8 at 0.98-1.11x but 144-153 MiB (each part in flight is held until answered)
    upload_concurrency: int = 6
    write_buffer_memory: int = 32 * MiB  # all dirty files; beyond it, encrypted spill
    cache_dir: str = ""  # "" = default_cache_dir()
    metadata_cache: bool = False  # HEAD answers kept in cache_dir across mounts (encrypted)
    # requests
    retries: int = 6
    retry_time: float = 60.0  # seconds a request is repeated after transient failures
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    fuse_options: tuple[str, ...] = ()  # extra options passed to the kernel (nosuid, nodev…)
    # show a versioned bucket as it was at this time (ns since the epoch, UTC); implies
    # read_only (see store/snapshot.py)
    as_of: int | None = None

    def __post_init__(self) -> None:
        if self.as_of is not None and not self.read_only:
            # a view of the past is read-only whatever else was said (mount(8) passes "rw"
            # by default, so that is not an error)
            object.__setattr__(self, "read_only", True)
        for name, hint in (("uid", "id -u USER"), ("gid", "getent group GROUP")):
            value = getattr(self, name)
            if not 0 <= value <= ID_MAX:
                raise OptionError(f"{name} must be a number from 0 to {ID_MAX} (got {value}); "
                                  f"{hint} prints the one you want")
        if not (math.isfinite(self.cache_ttl) and 0 <= self.cache_ttl <= CACHE_TTL_MAX):
            raise OptionError(f"cache_ttl must be a number of seconds from 0 to "
                              f"{CACHE_TTL_MAX:.0f} (got {self.cache_ttl}), e.g. cache_ttl=30")
        if not (math.isfinite(self.retry_time) and 0 <= self.retry_time <= TIMEOUT_MAX):
            raise OptionError(f"retry_time must be a number of seconds from 0 to "
                              f"{TIMEOUT_MAX:.0f} (got {self.retry_time}), e.g. retry_time=60")
        for name, example in (("connect_timeout", 10), ("read_timeout", 60)):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value <= TIMEOUT_MAX):
                raise OptionError(f"{name} must be a number of seconds above 0 and at most "
                                  f"{TIMEOUT_MAX:.0f} (got {value}), e.g. {name}={example}")
        for name in ("read_ahead", "read_ahead_memory", "write_buffer_memory"):
            value = getattr(self, name)
            if not 0 <= value <= SIZE_MAX:
                raise OptionError(f"{name} must be a size from 0 to {SIZE_MAX} bytes "
                                  f"(got {value}), e.g. {name}=16M")
        if self.key_fd is not None and not 0 <= self.key_fd <= FD_MAX:
            raise OptionError(f"--key-fd must be an open file descriptor number, 0 to {FD_MAX} "
                              f"(got {self.key_fd})")
        if self.endpoint_url:  # "" is "not given" (config_from_args drops it)
            check_endpoint_shape(self.endpoint_url)
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


_SIZE_UNITS = {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}
# digits, an optional fraction, an optional unit and 'iB'/'B': no sign, exponent, inf or nan
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)(?:I?B)?")


def parse_size(text: str) -> int:
    """'8M' -> 8388608. Suffixes K, M, G (powers of 1024), optional 'iB'/'B'; '1.5M' is fine
    as long as it comes to a whole number of bytes."""
    hint = "give a whole number of bytes, optionally with K, M or G (e.g. 8M)"
    match = _SIZE_RE.fullmatch(text.strip().upper())
    if match is None:
        raise ValueError(f"not a size: {text!r}; {hint}")
    value = Decimal(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes; {hint}")
    if value > SIZE_MAX:
        raise ValueError(f"{text!r} is too large; {hint}")
    return int(value)


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}; give digits, e.g. 4") from None


def _parse_float(text: str) -> float:
    """A finite decimal number: 'nan', 'inf' and '1e400' (which is inf) are refused."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}; give one such as 30 or 2.5") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}; give one such as 30 or 2.5")
    return value


def check_endpoint_shape(url: str) -> None:
    """Refuse an endpoint that is not `https://HOST[:PORT][/PATH]` before anything is sent.

    HOST is a DNS name or an IP address (IPv6 in brackets), as botocore requires; nothing may
    be whitespace or a control character. `store.s3.check_endpoint_url` checks the scheme again
    for the endpoint boto3 finally uses (it may come from the environment or a profile).
    """
    expected = "expected https://HOST[:PORT], e.g. https://s3.example.com:9000"
    if any(c.isspace() or not c.isprintable() for c in url):
        raise EndpointUrlError(f"endpoint URL {url!r} contains a space or a control "
                               f"character; {expected}")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise EndpointUrlError(f"endpoint URL {url!r} is not a URL; {expected}") from None
    if parts.scheme.lower() != "https":
        raise EndpointUrlError(
            f"refusing endpoint {url}: SSE-C keys may only be sent over TLS; use an https:// URL"
        )
    host = parts.hostname
    if not host:
        raise EndpointUrlError(f"endpoint URL {url!r} names no host; {expected}")
    hostport = parts.netloc.rpartition("@")[2]
    if not _valid_host(host, bracketed=hostport.startswith("[")):
        raise EndpointUrlError(f"endpoint URL {url!r}: {host!r} is not a host name or an IP "
                               f"address; {expected}")
    _, colon, port = hostport.rpartition("]")[2].rpartition(":")
    if colon and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise EndpointUrlError(f"endpoint URL {url!r}: port {port!r} is not a number from 1 "
                               f"to 65535; {expected}")


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _valid_host(host: str, bracketed: bool) -> bool:
    if bracketed:
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            return False
        return True
    name = host.removesuffix(".")
    return len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def parse_as_of(text: str) -> int:
    """An ISO 8601 time with a zone ('2026-12-02T06:36:00Z', '…T07:36:00+01:00', fractions
    of a second allowed) -> ns since the epoch. A time without a zone is refused: whether it
    meant UTC or local time, a guess would show the wrong hour of the past."""
    hint = "give an ISO 8601 time with Z (UTC) or an offset, e.g. 2026-12-02T06:36:00Z"
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a time: {text!r}; {hint}") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{text!r} has no time zone; add Z for UTC or an offset such as "
                         f"+01:00 (e.g. 2026-12-02T06:36:00Z)")
    return (when - _EPOCH) // datetime.timedelta(microseconds=1) * 1000


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
    repeated: bool = False  # may appear several times: the field is a tuple of the values


# The -o options ssecfs itself understands: name -> (MountConfig field, parser).
OPTIONS: dict[str, _Option] = {
    "key_file": _Option("key_file", str),
    "old_key_file": _Option("old_key_files", str, repeated=True),
    "endpoint_url": _Option("endpoint_url", str),
    "endpoint": _Option("endpoint_url", str),  # aws-cli's short spelling
    "region": _Option("region", str),
    "profile": _Option("profile", str),
    "ca_bundle": _Option("ca_bundle", str),
    "uid": _Option("uid", _parse_int),
    "gid": _Option("gid", _parse_int),
    "umask": _Option("umask", _parse_octal),
    "cache_ttl": _Option("cache_ttl", _parse_float),
    "allow_other": _Option("allow_other", _parse_bool, flag=True),
    "ro": _Option("read_only", _parse_bool, flag=True),
    "rw": _Option("read_only", _parse_bool, flag=True, flag_value=False),
    "encrypted_only": _Option("encrypted_only", _parse_bool, flag=True),
    "key_check": _Option("key_check", _parse_bool, flag=True),
    "metadata_cache": _Option("metadata_cache", _parse_bool, flag=True),
    "no_metadata_cache": _Option("metadata_cache", _parse_bool, flag=True, flag_value=False),
    "no_key_check": _Option("key_check", _parse_bool, flag=True, flag_value=False),
    "read_ahead": _Option("read_ahead", parse_size),
    "read_concurrency": _Option("read_concurrency", _parse_int),
    "part_size": _Option("part_size", parse_size),
    "upload_concurrency": _Option("upload_concurrency", _parse_int),
    "write_buffer_memory": _Option("write_buffer_memory", parse_size),
    "read_ahead_memory": _Option("read_ahead_memory", parse_size),
    "cache_dir": _Option("cache_dir", str),
    "retries": _Option("retries", _parse_int),
    "retry_time": _Option("retry_time", _parse_float),
    "connect_timeout": _Option("connect_timeout", _parse_float),
    "read_timeout": _Option("read_timeout", _parse_float),
    "debug": _Option("debug", _parse_bool, flag=True),
    "log_file": _Option("log_file", str),
    "foreground": _Option("foreground", _parse_bool, flag=True),
    "as_of": _Option("as_of", parse_as_of),
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
            except (ValueError, ArithmeticError) as exc:
                raise OptionError(f"bad value for -o {name}: {exc}") from None
            if opt.flag and opt.flag_value is False:
                value = not value
        if opt.repeated:
            before = changes.get(opt.field, getattr(cfg, opt.field))
            value = (*before, value)  # type: ignore[misc]
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
