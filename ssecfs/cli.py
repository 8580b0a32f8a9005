"""Command line: `ssecfs mount|keygen|key-md5` and the mount(8) helper `mount.ssecfs`.

User errors print one line, "ssecfs: <what is wrong and what to do>", and exit with the codes
in `errors.py`; no traceback reaches the terminal.

Background mode (the default, and always for mount(8)): the process forks. The parent waits on
a pipe until the child's filesystem answers a stat(2) of the mounted root, then exits 0; or
until the child reports why it could not mount (one line and an exit code, which the parent
prints and exits with), or dies. So `mount` never returns with a half-mounted directory.

How mount(8) reaches ssecfs (util-linux 2.38, Debian 12; libmount searches /sbin, /sbin/fs.d
and /sbin/fs for helpers):
- `mount -t ssecfs SRC DIR -o OPTS` runs `/sbin/mount.ssecfs SRC DIR [-sfnv] -o OPTS`;
- `mount -t fuse.ssecfs …` runs `/sbin/mount.fuse.ssecfs SRC DIR … -o OPTS`; without that
  helper libmount falls back to `/sbin/mount.fuse` (mount.fuse3), which runs
  `/bin/sh -c 'ssecfs SRC DIR -o OPTS,dev,suid'` with `ssecfs` from $PATH: `main` accepts that
  form too. mount(8) has already dropped `defaults`, `noauto` and `x-*`; `-f` is mount's
  "fake" (check everything, mount nothing), `-s` "sloppy" (unknown options are warnings).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from .config import MountConfig, OptionError, apply_o_options, parse_as_of, split_bucket
from .errors import EXIT_MOUNT, EXIT_STORE, EXIT_USAGE, SsecfsError, UserError
from .keys import (
    KeyRing,
    generate_key_file,
    load_key_file,
    load_key_ring,
    load_keys_file,
)
from .shard import Shard
from .stats import XATTR as STATS_XATTR

log = logging.getLogger(__name__)
PROG = "ssecfs"
COMMANDS = ("mount", "keygen", "key-md5", "cleanup", "stats", "rotate-key", "check")
FS_TYPES = ("ssecfs", "fuse.ssecfs")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # one line, like every other refusal: no usage block before it
        raise UserError(f"{message} (see `{self.prog} --help`)", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Mount an S3 bucket whose objects are encrypted with "
                "SSE-C (customer-provided keys).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    m = sub.add_parser("mount", help="mount a bucket", description="Mount BUCKET[/PREFIX] on "
                       "MOUNTPOINT. Returns once the filesystem answers, unless -f is given.")
    m.add_argument("source", metavar="BUCKET[/PREFIX]")
    m.add_argument("mountpoint", metavar="MOUNTPOINT")
    add_mount_options(m)
    k = sub.add_parser("keygen", help="write a new random 32-byte key file (mode 0600)",
                       description="Write 32 random bytes to PATH, created with mode 0600. "
                       "An existing file is never overwritten.")
    k.add_argument("path")
    h = sub.add_parser("key-md5", help="print base64(MD5(key)), the value S3 echoes",
                       description="Print base64(MD5(key)): the SSECustomerKeyMD5 that S3 "
                       "echoes and that `openssl dgst -md5 -binary KEY | base64` computes "
                       "for a raw key file. One line per key, in the file's order (the first "
                       "one writes); with several files, each line ends with the file's name.")
    h.add_argument("path", nargs="+")
    c = sub.add_parser("cleanup", help="abort unfinished multipart uploads",
                       description="Abort the multipart uploads under BUCKET[/PREFIX] that a "
                       "crash or an outage left unfinished (they hold storage). Needs no key.")
    c.add_argument("source", metavar="BUCKET[/PREFIX]")
    c.add_argument("--older-than", metavar="SECONDS", type=float, default=3600.0,
                   help="only uploads started this long ago (default 3600: a running "
                        "mount's uploads are left alone)")
    c.add_argument("--dry-run", action="store_true", help="list them, abort nothing")
    for flag, meta in (("--endpoint-url", "URL"), ("--region", "R"), ("--profile", "P"),
                       ("--ca-bundle", "PATH")):
        c.add_argument(flag, metavar=meta)
    st = sub.add_parser("stats", help="what a running mount did since it started",
                        description="Print a mount's counters: S3 requests by kind, bytes up "
                        "and down, retries, errors, cache hits (read from the mount root's "
                        f"{STATS_XATTR} attribute).")
    st.add_argument("mountpoint", metavar="MOUNTPOINT")
    st.add_argument("--json", action="store_true", help="print them as one JSON object")
    add_key_commands(sub)
    return p


def stats_main(args: argparse.Namespace) -> int:
    try:
        raw = os.getxattr(args.mountpoint, STATS_XATTR)
    except OSError as exc:
        raise UserError(f"{args.mountpoint} is not an ssecfs mount that answers "
                        f"({os.strerror(exc.errno or 0)})", EXIT_USAGE) from None
    stats = json.loads(raw)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    requests = stats.pop("requests", {})
    print(f"{'requests_total':28} {stats.pop('requests_total', 0)}")
    for op, n in requests.items():
        print(f"  {op:26} {n}")
    for name, value in stats.items():
        print(f"{name:28} {value}")
    return 0


def cleanup_main(args: argparse.Namespace) -> int:
    import trio

    from .cleanup import abort_stale_uploads

    bucket, prefix = split_bucket(args.source)
    if not args.older_than >= 0:
        raise OptionError("--older-than must be a number of seconds, 0 or more")
    store, endpoint = _open_store(args, bucket, read_timeout=60, retry_time=10)

    async def run() -> int:
        await store.check_bucket(prefix, endpoint)
        return await abort_stale_uploads(store, prefix, args.older_than, args.dry_run, print)

    try:
        count = trio.run(run)
    except SsecfsError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"cleanup of s3://{bucket}/{prefix} failed: {exc}", EXIT_STORE) \
            from None
    print(f"{count} unfinished upload(s) {'found' if args.dry_run else 'aborted'} under "
          f"s3://{bucket}/{prefix}")
    return 0


# ---------------------------------------------------------------- rotate-key and check
def add_store_options(p: argparse.ArgumentParser) -> None:
    """The S3 connection options the mount takes, for commands that are not mounts."""
    p.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint, https:// only")
    p.add_argument("--region", metavar="R")
    p.add_argument("--profile", metavar="P", help="AWS profile for the credentials")
    p.add_argument("--ca-bundle", metavar="PATH",
                   help="CA certificates to verify the endpoint with (overrides AWS_CA_BUNDLE)")


def add_key_commands(sub: Any) -> None:
    r = sub.add_parser(
        "rotate-key", help="re-encrypt the objects from an old SSE-C key to a new one",
        description="Re-encrypt every object of BUCKET[/PREFIX] (current versions) from the "
        "--from key to the --to key, in place: server-side where the server allows it, else "
        "streamed through this machine (memory only). Objects already under the new key are "
        "skipped, so an interrupted run is resumed by running it again. An object that "
        "changes meanwhile is left as it is (\"changed\"). Nothing is ever deleted. Exit "
        "status 0 only if every object is under the new key at the end.")
    r.add_argument("source", metavar="BUCKET[/PREFIX]")
    r.add_argument("--from", dest="from_key", metavar="OLD.key", required=True,
                   help="key file of the key the objects are under now")
    r.add_argument("--to", dest="to_key", metavar="NEW.key", required=True,
                   help="key file of the key to re-encrypt them with")
    r.add_argument("--dry-run", action="store_true",
                   help="say what would be done, write nothing")
    r.add_argument("--part-size", metavar="SIZE", default="8M",
                   help="part size of streamed multipart uploads (default 8M, at least 5M); "
                        "objects larger than this are streamed in parts")
    add_batch_options(r)
    c = sub.add_parser(
        "check", help="which key opens each object",
        description="For every object of BUCKET[/PREFIX] (every version with --versions), "
        "tell which key opens it: the writing key (--key-file), an old key (--old-key-file), "
        "none of them (unknown), or none is needed (unencrypted). One HEAD per key tried; no "
        "data is read. Exit status 0 only if the writing key opens every object.")
    c.add_argument("source", metavar="BUCKET[/PREFIX]")
    c.add_argument("--key-file", metavar="PATH", required=True,
                   help="the writing key (what a mount of this bucket writes with)")
    c.add_argument("--old-key-file", metavar="PATH", action="append", default=[],
                   help="an old key that may still open some objects (repeatable)")
    c.add_argument("--versions", action="store_true",
                   help="every version of every object (ListObjectVersions), not only the "
                        "current ones")
    add_batch_options(c)


def add_batch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", metavar="N", type=int, default=8,
                   help="objects in flight at once (default 8)")
    p.add_argument("--shard", metavar="K/N",
                   help="only the objects of shard K of N (0 <= K < N), by a stable hash of "
                        "the object key: N runs with K=0..N-1 cover every object once")
    p.add_argument("--json", action="store_true",
                   help="print a machine-readable summary on stdout")
    add_store_options(p)


def _batch_args(args: argparse.Namespace) -> tuple[str, str, Shard]:
    from .shard import parse_shard
    from .store.s3 import check_endpoint_url

    bucket, prefix = split_bucket(args.source)
    if args.jobs < 1:
        raise OptionError(f"--jobs {args.jobs}: give 1 or more")
    shard = parse_shard(args.shard) if args.shard is not None else Shard()
    check_endpoint_url(args.endpoint_url)
    if args.ca_bundle is not None and not os.path.isfile(args.ca_bundle):
        raise OptionError(f"CA bundle {args.ca_bundle} does not exist")
    return bucket, prefix, shard


def _open_store(args: argparse.Namespace, bucket: str, read_timeout: float = 120,
                retry_time: float = 30) -> tuple[Any, str]:
    """The store of a command that is not a mount (its --endpoint-url, --region, --profile,
    --ca-bundle), and the endpoint boto3 chose."""
    from .store.s3 import S3Store, make_client

    client = make_client(endpoint_url=args.endpoint_url, region=args.region,
                         profile=args.profile, ca_bundle=args.ca_bundle, retries=3,
                         connect_timeout=10, read_timeout=read_timeout)
    return S3Store(client, bucket, retry_time=retry_time), str(client.meta.endpoint_url)


def _run_batch(items: Sequence[Any], jobs: int, fn: Any, done: Any) -> Any:
    """(async) for_each over the items until done, or until SIGINT/SIGTERM: then the tasks
    are cancelled (multipart uploads in flight are aborted) and the signal is returned."""
    import trio

    from .scan import for_each

    async def run() -> int | None:
        got: int | None = None
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                async def watch() -> None:
                    nonlocal got
                    async for signum in signals:
                        got = signum
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(watch)
                await for_each(items, jobs, fn, done)
                nursery.cancel_scope.cancel()
        return got

    return run()


def _batch_exit(exc: SsecfsError, what: str) -> UserError:
    if isinstance(exc, UserError):
        return exc
    return UserError(f"{what} failed: {exc}", EXIT_STORE)


def rotate_main(args: argparse.Namespace) -> int:
    import trio

    from .config import parse_size
    from .parts import MAX_PART, MIN_PART
    from .progress import Progress, printable
    from .report import Outcome, rotate_summary
    from .rotate import Rotator
    from .scan import list_objects

    bucket, prefix, shard = _batch_args(args)
    try:
        part_size = parse_size(args.part_size)
    except ValueError as exc:
        raise OptionError(f"--part-size: {exc}") from None
    if not MIN_PART <= part_size <= MAX_PART:
        raise OptionError("--part-size must be from 5M to 5G (S3's limits)")
    old = load_key_file(args.from_key)
    new = load_key_file(args.to_key)
    if old == new:
        raise OptionError(f"--from {args.from_key} and --to {args.to_key} hold the same key: "
                          f"give the new key with --to (ssecfs keygen NEW.key makes one)")
    store, endpoint = _open_store(args, bucket)
    where = f"s3://{bucket}/{prefix}"
    outcomes: list[Outcome] = []

    async def run() -> tuple[Rotator, int | None]:
        await store.check_bucket(prefix, endpoint)
        objects = await list_objects(store, prefix, shard)
        rotator = Rotator(store, old, new, part_size=part_size, jobs=args.jobs,
                          dry_run=args.dry_run)
        tty = sys.stderr.isatty()
        progress = Progress(sys.stderr, tty=tty, total_objects=len(objects),
                            total_bytes=sum(o.size for o in objects))

        def done(item: Any, outcome: Outcome) -> None:
            outcomes.append(outcome)
            progress.advance(1, outcome.size)
            if not tty or outcome.result in ("changed", "failed", "would_rotate"):
                why = f": {outcome.error}" if outcome.error else ""
                progress.note(f"{outcome.result.replace('_', ' ')} {printable(item.key)}{why}")

        got = await _run_batch(objects, args.jobs, rotator.rotate, done)
        progress.finish()
        return rotator, got

    try:
        rotator, got = trio.run(run)
    except SsecfsError as exc:
        raise _batch_exit(exc, f"rotate-key of {where}") from None
    summary = rotate_summary(outcomes, dry_run=args.dry_run, interrupted=got is not None)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        counts = ", ".join(f"{summary[r]} {r.replace('_', ' ')}" for r in
                           ("rotated", "skipped", "changed", "failed", "would_rotate")
                           if r in summary)
        state = " (interrupted: run it again to go on)" if got is not None else ""
        method = "" if args.dry_run else f"; {rotator.caps.method}"
        print(f"{where}: {counts} of {len(outcomes)} objects{method}{state}")
    if got is not None:
        return 128 + int(got)
    return 0 if all(o.done for o in outcomes) else 1


def check_main(args: argparse.Namespace) -> int:
    import trio

    from .check import check_one
    from .progress import Progress, human_bytes, printable
    from .report import CHECK_STATUSES, Checked, check_summary
    from .scan import list_objects

    bucket, prefix, shard = _batch_args(args)
    ring = load_key_ring(args.key_file, args.old_key_file)
    names: dict[str, str] = {}  # key MD5 -> the file it came from, for the report
    for path in (args.key_file, *args.old_key_file):
        for key in load_keys_file(path):
            names.setdefault(key.md5_b64, path)
    store, endpoint = _open_store(args, bucket)
    where = f"s3://{bucket}/{prefix}"
    entries: list[Checked] = []

    async def run() -> int | None:
        await store.check_bucket(prefix, endpoint)
        objects = await list_objects(store, prefix, shard, versions=args.versions)
        tty = sys.stderr.isatty()
        progress = Progress(sys.stderr, tty=tty, total_objects=len(objects),
                            total_bytes=sum(o.size for o in objects))

        async def one(item: Any) -> Checked:
            return await check_one(store, ring, item)

        def done(item: Any, entry: Checked) -> None:
            entries.append(entry)
            progress.advance(1, entry.size)
            if not tty:
                progress.note(f"{entry.status} {printable(item.key)}")

        got: int | None = await _run_batch(objects, args.jobs, one, done)
        progress.finish()
        return got

    try:
        got = trio.run(run)
    except SsecfsError as exc:
        raise _batch_exit(exc, f"check of {where}") from None
    entries.sort(key=lambda e: (e.key, e.version_id or ""))
    summary = check_summary(entries)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for e in entries:
            if e.status == "writing":
                continue
            version = f" (version {e.version_id})" if e.version_id else ""
            detail = f": {names.get(e.key_md5 or '', '')}" if e.status == "old" else \
                f": {e.error}" if e.error else ""
            print(f"{e.status:12} {printable(e.key)}{version}{detail}")
        for status in (*CHECK_STATUSES, "error"):
            total = summary["totals"].get(status)
            if total is not None:
                print(f"{status:12} {total['objects']:8} objects {human_bytes(total['bytes']):>12}")
    if got is not None:
        return 128 + int(got)
    if any(e.status == "error" for e in entries):
        return EXIT_STORE
    return 0 if all(e.fine for e in entries) else 1


def add_mount_options(m: argparse.ArgumentParser) -> None:
    m.add_argument("--key-file", metavar="PATH",
                   help="file holding the SSE-C key (32 raw bytes, 32 characters or base64; "
                        "or one base64 key per line: the first writes, the others only read)")
    m.add_argument("--key-fd", metavar="N", type=int,
                   help="read the key(s) from inherited file descriptor N instead")
    m.add_argument("--old-key-file", metavar="PATH", action="append", dest="old_key_files",
                   default=[], help="a file of read-only keys: objects under them read "
                   "normally, what the mount writes is under the --key-file key (repeatable)")
    m.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint, https:// only")
    m.add_argument("--region", metavar="R")
    m.add_argument("--profile", metavar="P", help="AWS profile for the credentials")
    m.add_argument("--ca-bundle", metavar="PATH",
                   help="CA certificates to verify the endpoint with (overrides AWS_CA_BUNDLE)")
    m.add_argument("--log-file", metavar="PATH",
                   help="log to PATH (default: stderr with -f, else syslog, else "
                        "/var/log/ssecfs.log)")
    m.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground (systemd Type=notify services)")
    m.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                   help="mount options, as in /etc/fstab; see docs/usage.md")
    m.add_argument("--debug", action="store_true",
                   help="log every S3 request (never keys or credentials)")
    m.add_argument("--as-of", metavar="TIME",
                   help="show a versioned bucket as it was at TIME (ISO 8601 with Z or an "
                        "offset, e.g. 2026-12-02T06:36:00Z), read-only")


_PATH_OPTIONS = ("key_file", "ca_bundle", "log_file")
_TEXT_OPTIONS = ("endpoint_url", "region", "profile") + _PATH_OPTIONS


def config_from_args(args: argparse.Namespace, sloppy: bool = False) -> MountConfig:
    bucket, prefix = split_bucket(args.source)
    cfg = MountConfig(bucket=bucket, prefix=prefix,
                      mountpoint=os.path.abspath(args.mountpoint))

    def unknown(name: str) -> None:
        print(f"{PROG}: ignoring unknown option -o {name} (sloppy mount)", file=sys.stderr)

    cfg = apply_o_options(cfg, args.options, on_unknown=unknown if sloppy else None)
    explicit: dict[str, Any] = {
        name: getattr(args, name) for name in (*_TEXT_OPTIONS, "key_fd")
        if getattr(args, name, None) is not None}
    if getattr(args, "foreground", False):
        explicit["foreground"] = True
    if getattr(args, "debug", False):
        explicit["debug"] = True
    if getattr(args, "as_of", None) is not None:
        try:
            explicit["as_of"] = parse_as_of(args.as_of)
        except ValueError as exc:
            raise OptionError(f"--as-of: {exc}") from None
    old_key_files = getattr(args, "old_key_files", None)
    if old_key_files:  # added to those of -o old_key_file=
        explicit["old_key_files"] = (*cfg.old_key_files, *old_key_files)
    cfg = dataclasses.replace(cfg, **explicit)
    # "-o endpoint_url=" (an empty value from an unset variable in a unit) means "not given"
    unset: dict[str, Any] = {name: None for name in _TEXT_OPTIONS if getattr(cfg, name) == ""}
    cfg = dataclasses.replace(cfg, **unset)
    if cfg.key_file is None and cfg.key_fd is None:
        raise OptionError("no key given: pass --key-file PATH (or -o key_file=PATH)")
    if cfg.key_file is not None and cfg.key_fd is not None:
        raise OptionError("give the key once: --key-file or --key-fd, not both")
    # the daemon changes to / : make every path absolute now
    absolute: dict[str, Any] = {name: os.path.abspath(getattr(cfg, name))
                                for name in _PATH_OPTIONS if getattr(cfg, name) is not None}
    if any(not p for p in cfg.old_key_files):
        raise OptionError("an empty old_key_file: give the path of a file of read-only keys")
    absolute["old_key_files"] = tuple(os.path.abspath(p) for p in cfg.old_key_files)
    cfg = dataclasses.replace(cfg, **absolute)
    if cfg.ca_bundle is not None and not os.path.isfile(cfg.ca_bundle):
        raise OptionError(f"CA bundle {cfg.ca_bundle} does not exist")
    if cfg.as_of is not None and cfg.as_of > time.time_ns():
        # what the view shows is remembered for good: only the past stays put
        raise OptionError("as_of is in the future: give a past time (to see the bucket as "
                          "it is now, mount without as_of; -o ro makes it read-only)")
    return cfg


def load_ring(cfg: MountConfig) -> KeyRing:
    return load_key_ring(cfg.key_file, cfg.old_key_files, cfg.key_fd)


def prepare_mount(cfg: MountConfig) -> tuple[KeyRing, logging.Handler]:
    """Every check that needs no network: endpoint scheme, keys, mountpoint, log target."""
    # imported here so that keygen and --help work without FUSE libraries
    from .log import choose_target, open_handler, register_key_bytes, register_secret
    from .mount import SECRET_ENV, check_mountpoint, no_core_dumps, tune_malloc
    from .store.s3 import check_endpoint_url

    check_endpoint_url(cfg.endpoint_url)
    tune_malloc()  # before any thread
    undone = no_core_dumps()  # before the keys are in memory
    keys = load_ring(cfg)
    for key in keys.keys:
        register_key_bytes(key.raw)
    for name in SECRET_ENV:
        secret = os.environ.get(name)
        if secret:
            register_secret(secret)
    check_mountpoint(cfg.mountpoint)
    handler = open_handler(choose_target(cfg.foreground, cfg.log_file))
    if undone:
        log.warning("could not disable core dumps (%s): a core dump of this process would "
                    "hold the keys", ", ".join(undone))
    return keys, handler


def run_mount(cfg: MountConfig, verbose: bool = False) -> int:
    from .log import install_handler

    keys, handler = prepare_mount(cfg)
    if cfg.foreground:
        install_handler(handler, cfg.debug)
        return _serve(cfg, keys, lambda: None)
    pid = _daemonize(cfg, keys, handler)
    if verbose:
        print(f"{PROG}: s3://{cfg.bucket}/{cfg.prefix} mounted on {cfg.mountpoint} "
              f"(pid {pid})", file=sys.stderr)
    return 0


def _ignore_late_signal(signum: int, frame: Any) -> None:
    # Only reached for a stop signal that trio re-delivers after serve() has finished: the
    # mount is already down and its exit status decided.
    log.debug("ignoring %s: already stopped", signal.Signals(signum).name)


def _serve(cfg: MountConfig, keys: KeyRing, ready: Any) -> int:
    import trio

    from .mount import STOP_SIGNALS, serve
    for signum in STOP_SIGNALS:
        signal.signal(signum, _ignore_late_signal)
    try:
        return trio.run(serve, cfg, keys, ready)
    except UserError:
        raise
    except Exception:
        log.exception("the mount failed unexpectedly")
        raise UserError("unexpected failure; the log has the details (run with -f --debug "
                        "to see it on the terminal)", EXIT_MOUNT) from None


def _daemonize(cfg: MountConfig, keys: KeyRing, handler: logging.Handler) -> int:
    """Fork; return the daemon's pid once it serves, or raise its reason as a UserError."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            try:
                message = pipe.read()
            except KeyboardInterrupt:
                # Ctrl-C while waiting: the daemon (in its own session) must not go on to
                # mount behind the user's back; SIGTERM makes it give up or unmount
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
                raise UserError(f"interrupted: {cfg.mountpoint} was not mounted", 130) \
                    from None
        if message.startswith(b"READY"):
            return pid
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if message.startswith(b"ERROR "):
            _, code_text, text = message.decode(errors="replace").split(" ", 2)
            raise UserError(text, int(code_text))
        raise UserError(f"the mount process died before {cfg.mountpoint} was ready "
                        f"(exit status {code}); run with -f --debug to see why", EXIT_MOUNT)
    # the daemon: detach from the terminal and from the caller's session and directory
    try:
        os.close(read_fd)
        os.setsid()
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        from .log import install_handler
        install_handler(handler, cfg.debug)  # from here on, only the log speaks
    except BaseException:
        os._exit(EXIT_MOUNT)

    def ready() -> None:
        nonlocal write_fd
        if write_fd >= 0:
            os.write(write_fd, b"READY")
            os.close(write_fd)
            write_fd = -1

    def report(code: int, text: str) -> None:
        if write_fd >= 0:
            os.write(write_fd, f"ERROR {code} {text}".encode())

    code = EXIT_MOUNT
    try:
        code = _serve(cfg, keys, ready)
    except UserError as exc:
        log.error("%s", exc)
        report(exc.exit_code, str(exc))
        code = exc.exit_code
    except BaseException:
        log.exception("the mount process failed")
        report(EXIT_MOUNT, "unexpected failure; see the log")
    logging.shutdown()
    os._exit(code)


def key_md5(paths: Sequence[str]) -> int:
    """One line per key of each file, in order; with several files, "MD5  PATH" lines."""
    for path in paths:
        keys = load_keys_file(path)
        for key in keys:
            print(key.md5_b64 if len(paths) == 1 else f"{key.md5_b64}  {path}")
        with open(path, "rb") as f:
            if len(keys) > 1:
                print(f"{PROG}: note: {path} holds {len(keys)} keys (the first one writes); "
                      f"these are the MD5s of each key's 32 bytes, which S3 echoes",
                      file=sys.stderr)
            elif f.read() != keys[0].raw:
                print(f"{PROG}: note: {path} holds the key as text or base64; this is the MD5 "
                      f"of the 32 key bytes, which S3 echoes (openssl over the file itself "
                      f"differs)", file=sys.stderr)
    return 0


def print_error(prog: str, exc: UserError) -> None:
    """One line on stderr, whatever the message holds (a path may contain a newline)."""
    text = str(exc).replace("\r", "\\r").replace("\n", "\\n")
    print(f"{prog}: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] not in COMMANDS and not argv[0].startswith("-") \
            and not argv[1].startswith("-"):
        # `ssecfs SOURCE MOUNTPOINT -o OPTIONS`: what mount.fuse3 runs for
        # `mount -t fuse.ssecfs` when /sbin/mount.fuse.ssecfs is not installed
        return fstab_main(argv, prog=PROG)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "keygen":
            generate_key_file(args.path)
            print(f"wrote a new 32-byte key to {args.path} (mode 0600); keep a copy somewhere "
                  f"safe: without it the data is lost")
            return 0
        if args.command == "key-md5":
            return key_md5(args.path)
        if args.command == "cleanup":
            return cleanup_main(args)
        if args.command == "stats":
            return stats_main(args)
        if args.command == "rotate-key":
            return rotate_main(args)
        if args.command == "check":
            return check_main(args)
        return run_mount(config_from_args(args))
    except UserError as exc:
        print_error(PROG, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def build_helper_parser(prog: str) -> argparse.ArgumentParser:
    """mount(8)'s helper interface: `SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTS] [-t TYPE]`."""
    p = _Parser(prog=prog, description="mount(8) helper for ssecfs: "
                "mount -t ssecfs BUCKET[/PREFIX] MOUNTPOINT -o key_file=PATH[,OPTIONS]")
    p.add_argument("source", metavar="BUCKET[/PREFIX]")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPTS",
                   help="comma-separated options, as in /etc/fstab; see docs/usage.md")
    p.add_argument("-s", dest="sloppy", action="store_true", help="ignore unknown options")
    p.add_argument("-f", dest="fake", action="store_true",
                   help="fake: check everything, mount nothing (mount(8)'s -f)")
    p.add_argument("-n", dest="no_mtab", action="store_true", help="accepted, no effect")
    p.add_argument("-v", dest="verbose", action="store_true", help="say what was mounted")
    p.add_argument("-t", dest="type", metavar="TYPE", help="ssecfs or fuse.ssecfs")
    p.add_argument("-N", dest="namespace", metavar="NS", help="refused: not supported")
    return p


def helper_config(argv: Sequence[str], prog: str = "mount.ssecfs") \
        -> tuple[MountConfig, argparse.Namespace]:
    """Parse a mount(8) helper command line into the mount's config (no I/O)."""
    ns = build_helper_parser(prog).parse_args(list(argv))
    if ns.type is not None and ns.type not in FS_TYPES:
        raise UserError(f"filesystem type {ns.type!r} is not ssecfs", EXIT_USAGE)
    if ns.namespace is not None:
        raise UserError("mount -N (another mount namespace) is not supported", EXIT_USAGE)
    args = argparse.Namespace(source=ns.source, mountpoint=ns.mountpoint, options=ns.options)
    return config_from_args(args, sloppy=ns.sloppy), ns


def fstab_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """mount(8) helper (`mount.ssecfs`, `mount.fuse.ssecfs`); always the background mode
    unless `-o foreground` is given."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0] or "mount.ssecfs")
    try:
        cfg, ns = helper_config(argv, prog)
        if ns.fake:
            prepare_mount(cfg)
            return 0
        return run_mount(cfg, verbose=ns.verbose)
    except UserError as exc:
        print_error(prog, exc)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
