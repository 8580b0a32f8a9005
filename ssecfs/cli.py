"""Command line: `ssecfs mount|keygen|key-md5` and the mount(8) helper `mount.ssecfs`.

User errors print one line, "ssecfs: <what is wrong and what to do>", and exit with the codes
in `errors.py`; no traceback reaches the terminal. In the background mode the process forks:
the parent waits on a pipe until the child is serving (then checks that the mountpoint
answers) or has failed, and exits 0 or with the child's reason and code.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

from .config import MountConfig, OptionError, apply_o_options, split_bucket
from .errors import EXIT_MOUNT, EXIT_USAGE, UserError
from .keys import SseCKey, generate_key_file, load_key_fd, load_key_file

log = logging.getLogger(__name__)
PROG = "ssecfs"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UserError(message, EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Mount an S3 bucket whose objects are encrypted with "
                "SSE-C (customer-provided keys).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    m = sub.add_parser("mount", help="mount a bucket", description="Mount BUCKET[/PREFIX] on "
                       "MOUNTPOINT. Returns once the filesystem is serving unless -f is given.")
    m.add_argument("source", metavar="BUCKET[/PREFIX]")
    m.add_argument("mountpoint", metavar="MOUNTPOINT")
    add_mount_options(m)
    k = sub.add_parser("keygen", help="write a new random 32-byte key file (mode 0600)")
    k.add_argument("path")
    h = sub.add_parser("key-md5", help="print base64(MD5(key)), the value S3 echoes")
    h.add_argument("path")
    return p


def add_mount_options(m: argparse.ArgumentParser) -> None:
    m.add_argument("--key-file", metavar="PATH",
                   help="file holding the SSE-C key (32 raw bytes, 32 characters or base64)")
    m.add_argument("--key-fd", metavar="N", type=int,
                   help="read the key from inherited file descriptor N instead")
    m.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint, https:// only")
    m.add_argument("--region", metavar="R")
    m.add_argument("--profile", metavar="P", help="AWS profile for the credentials")
    m.add_argument("--ca-bundle", metavar="PATH",
                   help="CA certificates to verify the endpoint with (overrides AWS_CA_BUNDLE)")
    m.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    m.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                   help="mount options, see docs/usage.md")
    m.add_argument("--debug", action="store_true",
                   help="log every S3 request (never keys or credentials)")


def config_from_args(args: argparse.Namespace) -> MountConfig:
    bucket, prefix = split_bucket(args.source)
    cfg = MountConfig(bucket=bucket, prefix=prefix,
                      mountpoint=os.path.abspath(args.mountpoint))
    cfg = apply_o_options(cfg, args.options)
    explicit = {name: getattr(args, name) for name in
                ("key_file", "key_fd", "endpoint_url", "region", "profile", "ca_bundle")
                if getattr(args, name) is not None}
    if args.foreground:
        explicit["foreground"] = True
    if args.debug:
        explicit["debug"] = True
    cfg = dataclasses.replace(cfg, **explicit)
    if cfg.key_file is None and cfg.key_fd is None:
        raise OptionError("no key given: pass --key-file PATH (or -o key_file=PATH)")
    if cfg.key_file is not None and cfg.key_fd is not None:
        raise OptionError("give the key once: --key-file or --key-fd, not both")
    if cfg.key_file is not None:
        cfg = dataclasses.replace(cfg, key_file=os.path.abspath(cfg.key_file))
    if cfg.ca_bundle is not None:
        cfg = dataclasses.replace(cfg, ca_bundle=os.path.abspath(cfg.ca_bundle))
        if not os.path.isfile(cfg.ca_bundle):
            raise OptionError(f"CA bundle {cfg.ca_bundle} does not exist")
    return cfg


def load_key(cfg: MountConfig) -> SseCKey:
    if cfg.key_fd is not None:
        return load_key_fd(cfg.key_fd)
    assert cfg.key_file is not None
    return load_key_file(cfg.key_file)


def run_mount(cfg: MountConfig) -> int:
    # imported here so that keygen and --help work without FUSE libraries
    from .log import register_secret, setup_logging
    from .mount import check_mountpoint
    from .store.s3 import check_endpoint_url

    check_endpoint_url(cfg.endpoint_url)
    key = load_key(cfg)
    for form in (key.b64, key.raw.hex()):
        register_secret(form)
    try:
        register_secret(key.raw.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if secret:
        register_secret(secret)
    check_mountpoint(cfg.mountpoint)
    if cfg.foreground:
        setup_logging(cfg.debug, foreground=True)
        return _serve(cfg, key, lambda: None)
    return _daemonize(cfg, key)


def _serve(cfg: MountConfig, key: SseCKey, ready: object) -> int:
    import trio

    from .mount import serve
    return trio.run(serve, cfg, key, ready)


def _daemonize(cfg: MountConfig, key: SseCKey) -> int:
    """Fork; the parent returns once the child serves (0) or reports why it could not."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read()
        if message.startswith(b"READY"):
            try:
                os.stat(cfg.mountpoint)
            except OSError as exc:
                raise UserError(f"the filesystem at {cfg.mountpoint} does not answer: "
                                f"{exc.strerror}", EXIT_MOUNT) from None
            return 0
        _, _, rest = message.partition(b" ")
        code, _, text = rest.partition(b" ")
        if not text:
            os.waitpid(pid, 0)
            raise UserError("the mount process died before it was ready; run with -f --debug "
                            "to see why", EXIT_MOUNT)
        raise UserError(text.decode(errors="replace"), int(code or EXIT_MOUNT))
    # child
    os.close(read_fd)
    os.setsid()
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    from .log import setup_logging
    setup_logging(cfg.debug, foreground=False)
    os.dup2(devnull, 2)  # from here on, only the log handler speaks
    os.close(devnull)

    def ready() -> None:
        nonlocal write_fd
        if write_fd >= 0:
            os.write(write_fd, b"READY")
            os.close(write_fd)
            write_fd = -1

    code = 1
    try:
        code = _serve(cfg, key, ready)
    except UserError as exc:
        log.error("%s", exc)
        if write_fd >= 0:
            os.write(write_fd, f"ERROR {exc.exit_code} {exc}".encode())
        code = exc.exit_code
    except BaseException:
        log.exception("the mount process failed")
        if write_fd >= 0:
            os.write(write_fd, f"ERROR {EXIT_MOUNT} unexpected failure; see the system log".encode())
        code = EXIT_MOUNT
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "keygen":
            generate_key_file(args.path)
            print(f"wrote a new 32-byte key to {args.path} (mode 0600); keep a copy somewhere "
                  f"safe: without it the data is lost")
            return 0
        if args.command == "key-md5":
            print(load_key_file(args.path).md5_b64)
            return 0
        return run_mount(config_from_args(args))
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def fstab_main(argv: Sequence[str] | None = None) -> int:
    """mount(8) helper: `mount.ssecfs BUCKET[/PREFIX] MOUNTPOINT [-sfnv] [-o OPTS]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _Parser(prog="mount.ssecfs")
    p.add_argument("source")
    p.add_argument("mountpoint")
    p.add_argument("-o", dest="options", action="append", default=[])
    for flag in ("-s", "-n", "-v"):  # sloppy, no-mtab, verbose: passed by mount(8)
        p.add_argument(flag, action="store_true")
    p.add_argument("-f", "--foreground", action="store_true")
    try:
        ns = p.parse_args(argv)
        args = argparse.Namespace(source=ns.source, mountpoint=ns.mountpoint,
                                  options=ns.options, key_file=None, key_fd=None,
                                  endpoint_url=None, region=None, profile=None, ca_bundle=None,
                                  foreground=ns.foreground, debug=False)
        return run_mount(config_from_args(args))
    except UserError as exc:
        print(f"mount.ssecfs: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
