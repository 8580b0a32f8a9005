"""Running a mount: build the pieces, check the set-up, serve, and shut down without loss.

Order (each step fails with a one-line UserError before anything is mounted):
endpoint is https -> bucket answers -> key opens the objects (sampled) -> pyfuse3.init
(mounted) -> the mounted root answers a stat(2) -> readiness (the waiting parent process of
the background mode, READY=1 to systemd) -> serve until unmount or SIGTERM/SIGINT/SIGHUP ->
upload every dirty file -> unmount. Exit status EXIT_DIRTY if anything could not be uploaded,
and the log names each such file.

Stopping on a signal: upload every dirty file while the filesystem is still mounted (open files
stay open; handlers in flight finish), then end the FUSE loop and unmount (lazily, so a file
still held open does not keep a dead mount), then upload whatever changed meanwhile. Stopping by
umount/fusermount3 -u: the kernel refuses while files are open (EBUSY), and each close()
uploaded its file, so only earlier failures are left to retry.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pyfuse3
import trio

from .config import MountConfig, fuse_mount_options
from .errors import (
    EXIT_DIRTY,
    EXIT_KEY,
    EXIT_MOUNT,
    EXIT_STORE,
    EXIT_USAGE,
    KeyMismatch,
    NotFound,
    SsecfsError,
    UserError,
)
from .filesystem import Filesystem
from .fuse_ops import Operations
from .keys import KeyRing
from .log import register_secret
from .namespace import head_with_ring
from .store.base import ObjectStore
from .store.s3 import S3Store, make_client
from .store.snapshot import SnapshotStore, as_of_text

log = logging.getLogger(__name__)

KEY_SAMPLE = 5


def _mounts_at(path: str) -> list[str]:
    """Filesystem types mounted at `path` (from /proc/self/mountinfo), bottom first."""
    types: list[str] = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                if point == path:
                    types.append(fields[sep + 1])
    except (OSError, ValueError, IndexError):
        pass
    return types


def check_mountpoint(path: str) -> None:
    """The mountpoint must be a directory that is not already an ssecfs mount."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"mountpoint {path} does not exist: create it with mkdir -p {path}",
                        EXIT_MOUNT) from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise UserError(f"{path} is a dead mount (Transport endpoint is not connected): "
                            f"run fusermount3 -u {path} (or umount -l {path}) first",
                            EXIT_MOUNT) from None
        raise UserError(f"mountpoint {path}: {exc.strerror}", EXIT_MOUNT) from None
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"mountpoint {path} is not a directory", EXIT_MOUNT)
    if "fuse.ssecfs" in _mounts_at(os.path.realpath(path)):
        raise UserError(f"{path} is already an ssecfs mount: umount {path} first", EXIT_MOUNT)


PR_SET_DUMPABLE = 4  # <linux/prctl.h>
M_ARENA_MAX = -8  # <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KERNEL_READ_AHEAD_KIB = 1024  # measured: 1 MiB READs; 4096 gave nothing more
MALLOC_ARENAS = 1  # 2 measured 1-6 MiB more at the peak, no faster
MMAP_THRESHOLD = 64 * 1024 * 1024  # blocks below it come from the heap
TRIM_THRESHOLD = 256 * 1024 * 1024  # free memory at the heap's top kept while busy


def no_core_dumps() -> list[str]:
    """Keep the keys out of core dumps: RLIMIT_CORE 0 (soft and hard: no core file, and
    systemd-coredump and apport honour it) and PR_SET_DUMPABLE 0 (the kernel writes no dump
    even to a core_pattern pipe, and other processes of the same user can no longer ptrace
    the daemon or read its memory through /proc). Before any key is read; best effort:
    returns what could not be done, for the log."""
    import ctypes
    import resource

    failed = []
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError):
        failed.append("RLIMIT_CORE")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            failed.append("PR_SET_DUMPABLE")
    except (OSError, AttributeError):
        failed.append("PR_SET_DUMPABLE")
    return failed


def tune_malloc() -> None:
    """glibc's malloc set for a daemon that allocates and frees megabytes at a time, before
    any thread starts. Not glibc, or a setting the user made (MALLOC_*_ env, GLIBC_TUNABLES):
    that one is left as it is.

    - At most MALLOC_ARENAS arenas. Each worker thread that touches a part or a read-ahead
      segment otherwise gets an arena of its own, and the megabytes freed in one stay there
      for that thread: measured on a 512 MiB write, the daemon's peak RSS fell by 20-30 MiB,
      its CPU time did not move (the GIL serialises most allocations anyway).
    - Read-ahead segments (16 MiB) and parts come from the heap, not from mmap, and freed
      memory stays in it while the mount is busy (`IdleTrim` gives it back): each block
      mmapped or trimmed is faulted in again page by page, which a VM that hands freed pages
      back to its host makes dear. Measured on cold reads of 512 MiB from SeaweedFS, four
      interleaved pairs: 367-479 against 336-400 MB/s, half the page faults (28,000 against
      60,000-77,000 per GiB), 0.3 s less CPU per GiB, 6 MiB more at the peak."""
    import ctypes

    tunables = os.environ.get("GLIBC_TUNABLES", "")
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        for env, tunable, option, value in (
                ("MALLOC_ARENA_MAX", "arena_max", M_ARENA_MAX, MALLOC_ARENAS),
                ("MALLOC_MMAP_THRESHOLD_", "mmap_threshold", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                ("MALLOC_TRIM_THRESHOLD_", "trim_threshold", M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
            if env not in os.environ and f"glibc.malloc.{tunable}=" not in tunables:
                libc.mallopt(option, value)


class IdleTrim:
    """Gives the heap's free memory back to the system (malloc_trim) when the mount falls
    idle, no file open, at most once per `interval` seconds: `tune_malloc` keeps it while
    the mount is busy. Not glibc: does nothing."""

    def __init__(self, interval: float = 1.0) -> None:
        import ctypes

        self._interval = interval
        self._last = 0.0
        self._trim: Callable[[int], int] | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._trim = ctypes.CDLL(None).malloc_trim

    def __call__(self) -> None:
        now = time.monotonic()
        if self._trim is None or now - self._last < self._interval:
            return
        self._last = now
        self._trim(0)


def check_cache_dir(path: str) -> None:
    """The spill directory must be creatable and writable now, not at the first big write."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write to cache_dir {path} ({exc.strerror}): fix its "
                        f"permissions or choose another with -o cache_dir=PATH",
                        EXIT_USAGE) from None


async def check_versioned(store: S3Store, bucket: str) -> None:
    """--as-of needs a bucket whose versioning is (or was) on: else there is no past."""
    try:
        status = await store.versioning()
    except SsecfsError as exc:
        raise UserError(f"cannot read the versioning status of bucket {bucket} ({exc}); "
                        f"--as-of needs it", EXIT_STORE) from None
    if status not in ("Enabled", "Suspended"):
        raise UserError(f"bucket {bucket} has no versioning; --as-of needs a versioned bucket",
                        EXIT_STORE)


async def check_key(store: ObjectStore, keys: KeyRing, prefix: str, key_file: str) -> None:
    """Refuse to mount when no key of the ring opens any of the first few encrypted
    objects."""
    page = await store.list_page(prefix, delimiter=None, max_keys=50)
    mismatched: list[str] = []
    for obj in page.objects[: KEY_SAMPLE * 4]:
        if len(mismatched) >= KEY_SAMPLE:
            break
        try:
            info = await head_with_ring(store, obj.key, keys)
        except KeyMismatch:
            mismatched.append(obj.key)
            continue
        except NotFound:
            continue
        if info.encrypted:
            return  # the key opens at least one object: good enough
    if mismatched:
        which = f"the key in {key_file} does" if len(keys) == 1 else \
            f"none of the {len(keys)} keys ({key_file} and the old key files) does"
        raise UserError(
            f"{which} not open {mismatched[0]} nor any other object sampled "
            f"(they are encrypted with another SSE-C key): wrong key file? "
            f"Use -o no_key_check to mount anyway", EXIT_KEY)


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) how we are: READY=1, STATUS=…, STOPPING=1 (sd_notify(3)).

    A datagram to $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace); without the
    variable this does nothing.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(message.encode())
    except OSError as exc:
        log.warning("could not notify systemd: %s", exc)


class _Run:
    """The state the signal handler shares with `serve`; one per mount."""

    def __init__(self) -> None:
        self.phase = "starting"  # -> serving -> stopping
        self.startup = trio.CancelScope()
        self.signal: int | None = None  # the signal that cut the start-up short
        self.fs: Filesystem | None = None
        self.stop_requested = False
        self.main_running = False


def _unwrap(exc: BaseException) -> BaseException:
    """The one real error inside (nested) exception groups, else the group itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if isinstance(_unwrap(inner), UserError):
                return _unwrap(inner)
    return exc


async def serve(cfg: MountConfig, keys: KeyRing, ready: Callable[[], None]) -> int:
    """Mount, serve until unmounted or signalled, upload what is dirty; the exit status.

    SIGTERM/SIGINT/SIGHUP are handled for the whole run, the final uploads included, so that a
    second signal cannot kill the process before everything is in the bucket. The caller
    (cli.py) installs no-op handlers for them so that trio's re-delivery of a signal that
    arrives after this returns changes nothing.
    """
    run = _Run()
    try:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as outer:
                outer.start_soon(_on_signals, signals, run)
                try:
                    return await _serve(cfg, keys, ready, run)
                finally:
                    outer.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _unwrap(group) from None
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the nursery may swallow)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
READY_TIMEOUT = 60.0


async def _serve(cfg: MountConfig, keys: KeyRing, ready: Callable[[], None],
                 run: _Run) -> int:
    with run.startup:
        check_cache_dir(cfg.spill_dir())  # local and quick: before any request
        client = make_client(endpoint_url=cfg.endpoint_url, region=cfg.region,
                             profile=cfg.profile, ca_bundle=cfg.ca_bundle, retries=cfg.retries,
                             connect_timeout=cfg.connect_timeout, read_timeout=cfg.read_timeout)
        _register_credentials(client)  # resolves them: boto3 holds them from now on
        dropped = drop_secret_env()
        if dropped:
            log.debug("removed %s from the daemon's environment", ", ".join(dropped))
        endpoint = str(client.meta.endpoint_url)
        store = S3Store(client, cfg.bucket, retry_time=cfg.retry_time)
        await store.check_bucket(cfg.prefix, endpoint)
        view: ObjectStore = store
        if cfg.as_of is not None:
            await check_versioned(store, cfg.bucket)
            view = SnapshotStore(store, cfg.as_of)
        if cfg.key_check:
            await check_key(view, keys, cfg.prefix, cfg.key_file or "the key file")
        check_mountpoint(cfg.mountpoint)
    if run.startup.cancelled_caught:
        signum = run.signal or signal.SIGTERM
        raise UserError(f"interrupted by {signal.Signals(signum).name} before "
                        f"{cfg.mountpoint} was mounted", 128 + signum)
    fs = Filesystem(view, cfg, keys, stats=store.stats)
    ops = Operations(fs, on_idle=IdleTrim())
    options = set(pyfuse3.default_options) | fuse_mount_options(cfg)
    try:
        pyfuse3.init(ops, cfg.mountpoint, options)
    except RuntimeError as exc:
        raise UserError(f"cannot mount on {cfg.mountpoint}: {exc}", EXIT_MOUNT) from None
    run.fs = fs
    run.phase = "serving"
    source = f"s3://{cfg.bucket}/{cfg.prefix}"
    log.info("mounted %s on %s (endpoint %s, key from %s)", source, cfg.mountpoint, endpoint,
             cfg.key_file or f"file descriptor {cfg.key_fd}")
    # the count only: the log redacts even key MD5s (log.register_key_bytes); `ssecfs key-md5
    # FILE` prints them
    log.info("key ring: %d key(s); the first one of %s writes", len(keys),
             cfg.key_file or f"file descriptor {cfg.key_fd}")
    if cfg.as_of is not None:
        log.info("showing the bucket as it was at %s (read-only)", as_of_text(cfg.as_of))
    failed: list[str] = []
    flushed = False
    try:
        async with trio.open_nursery() as nursery:
            fs.start(nursery)
            nursery.start_soon(_announce, cfg, source, ready)
            if not run.stop_requested:  # a signal came between init() and here
                run.main_running = True
                await pyfuse3.main()
                run.main_running = False
            nursery.cancel_scope.cancel()
        run.phase = "stopping"
        sd_notify("STOPPING=1")
        dirty = fs.dirty_files()
        if dirty:
            log.info("uploading %d file(s) with changes before exiting: %s", len(dirty),
                     ", ".join(dirty))
        failed = await fs.flush_all()
        flushed = True
    finally:
        run.phase = "stopping"
        pyfuse3.close(unmount=True)
        if not flushed:
            # something ended the mount early: still try to upload, and name what is lost
            with trio.CancelScope(shield=True):
                failed = await fs.flush_all()
            if failed:
                log.error("the mount of %s ended abnormally; %d file(s) could not be uploaded "
                          "and are LOST: %s", cfg.mountpoint, len(failed), ", ".join(failed))
        fs.close()
    if failed:
        log.error("unmounted %s, but %d file(s) could not be uploaded and are LOST: %s",
                  cfg.mountpoint, len(failed), ", ".join(failed))
        return EXIT_DIRTY
    log.info("unmounted %s cleanly: every change is in the bucket", cfg.mountpoint)
    return 0


SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def drop_secret_env() -> list[str]:
    """Once boto3 holds the credentials: wipe the secret variables from this process's
    environment, so that /proc/PID/environ (which shows the environment the process started
    with) no longer holds them. Their bytes are overwritten where the kernel laid them out,
    then they are removed from os.environ. Returns the names dropped."""
    import ctypes

    dropped = []
    try:
        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_char_p).in_dll(libc, "environ")
        i = 0
        while environ[i] is not None:
            entry: bytes = environ[i]
            name = entry.split(b"=", 1)[0].decode(errors="replace")
            if name in SECRET_ENV:
                address = ctypes.cast(environ, ctypes.POINTER(ctypes.c_void_p))[i]
                if address:
                    start = address + len(name) + 1
                    ctypes.memset(start, ord("x"), len(entry) - len(name) - 1)
                dropped.append(name)
            i += 1
    except (OSError, ValueError, AttributeError) as exc:  # no libc environ: still unset below
        log.debug("could not wipe the environment in place: %s", exc)
    for name in SECRET_ENV:
        if os.environ.pop(name, None) is not None and name not in dropped:
            dropped.append(name)
    return dropped


def _register_credentials(client: Any) -> None:
    """Keep the secret access key and session token out of the log, wherever boto3 found
    them (environment, ~/.aws/credentials, a profile, instance metadata)."""
    try:
        creds = client._request_signer._credentials  # botocore keeps them here
        frozen = creds.get_frozen_credentials() if creds is not None else None
    except Exception:  # a private attribute: never let its absence stop a mount
        return
    if frozen is None:
        return
    for secret in (frozen.secret_key, frozen.token):
        if secret:
            register_secret(secret)


def _check_answers(path: str) -> None:
    """Runs in a thread: the kernel asks our own main loop for the root's attributes."""
    st = os.stat(path)
    parent = os.stat(os.path.dirname(path.rstrip("/")) or "/")
    if st.st_dev == parent.st_dev:
        raise UserError(f"{path} answers but is not mounted", EXIT_MOUNT)
    set_kernel_read_ahead(st.st_dev)


def set_kernel_read_ahead(dev: int, kib: int = KERNEL_READ_AHEAD_KIB) -> bool:
    """Let the kernel read ahead `kib` KiB on this mount (its backing device's
    read_ahead_kb). Why: a sequential reader is then asked in 1 MiB READs instead of 128 KiB
    ones, 8 times fewer calls through FUSE and Python for the same bytes. Needs root (sysfs);
    otherwise the kernel's default stays, and only speed differs."""
    path = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(str(kib))
    except OSError as exc:
        log.debug("kernel read-ahead stays as it was (%s: %s)", path, exc.strerror or exc)
        return False
    return True


async def _announce(cfg: MountConfig, source: str, ready: Callable[[], None]) -> None:
    """Readiness: only once the mounted filesystem answers a stat(2) of its root."""
    with trio.move_on_after(READY_TIMEOUT) as scope:
        try:
            await trio.to_thread.run_sync(_check_answers, cfg.mountpoint,
                                          abandon_on_cancel=True)
        except OSError as exc:
            raise UserError(f"{cfg.mountpoint} was mounted but does not answer: "
                            f"{exc.strerror}", EXIT_MOUNT) from None
    if scope.cancelled_caught:
        raise UserError(f"{cfg.mountpoint} was mounted but did not answer within "
                        f"{READY_TIMEOUT:.0f}s", EXIT_MOUNT)
    log.info("ready: %s answers on %s", source, cfg.mountpoint)
    ready()
    sd_notify(f"READY=1\nSTATUS=Serving {source} on {cfg.mountpoint}")


async def _on_signals(signals: Any, run: _Run) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if run.phase == "starting":
            log.info("received %s while starting: giving up", name)
            run.signal = signum
            run.startup.cancel()
        elif run.phase == "serving" and not run.stop_requested:
            run.stop_requested = True
            assert run.fs is not None
            dirty = run.fs.dirty_files()
            log.info("received %s: uploading %d file(s) with changes%s, then unmounting", name,
                     len(dirty), f" ({', '.join(dirty)})" if dirty else "")
            sd_notify("STOPPING=1")
            failed = await run.fs.flush_all()  # the final flush tries these again
            if failed:
                log.warning("could not upload yet: %s", ", ".join(failed))
            if run.main_running:
                pyfuse3.terminate()
        else:
            log.info("received %s: already stopping; still uploading (SIGKILL would lose "
                     "what is not uploaded yet)", name)
