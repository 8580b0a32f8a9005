"""Running a mount: build the pieces, check the set-up, serve, and shut down without loss.

Order (each step fails with a one-line UserError before anything is mounted):
endpoint is https -> bucket answers -> key opens the objects (sampled) -> pyfuse3.init
(mounted) -> readiness (parent process / systemd) -> serve until unmount or SIGTERM/SIGINT ->
upload every dirty file -> unmount. Exit status EXIT_DIRTY if anything could not be uploaded.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable

import pyfuse3
import trio

from .attrs import KeyState
from .config import MountConfig, fuse_mount_options
from .errors import EXIT_DIRTY, EXIT_KEY, EXIT_MOUNT, KeyMismatch, NotFound, UserError
from .filesystem import Filesystem
from .fuse_ops import Operations
from .keys import SseCKey
from .store.s3 import S3Store, make_client

log = logging.getLogger(__name__)

KEY_SAMPLE = 5


def check_mountpoint(path: str) -> None:
    if not os.path.exists(path):
        raise UserError(f"mountpoint {path} does not exist: create it with mkdir -p {path}",
                        EXIT_MOUNT)
    if not os.path.isdir(path):
        raise UserError(f"mountpoint {path} is not a directory", EXIT_MOUNT)
    if os.path.ismount(path):
        try:
            os.stat(path)
        except OSError:
            raise UserError(f"{path} is a dead mount (Transport endpoint is not connected): "
                            f"run fusermount3 -u {path} first", EXIT_MOUNT) from None


async def check_key(store: S3Store, prefix: str, key_file: str) -> None:
    """Refuse to mount when the key opens none of the first few encrypted objects."""
    page = await store.list_page(prefix, delimiter=None, max_keys=50)
    mismatched: list[str] = []
    for obj in page.objects[: KEY_SAMPLE * 4]:
        if len(mismatched) >= KEY_SAMPLE:
            break
        try:
            info = await store.head(obj.key)
        except KeyMismatch:
            mismatched.append(obj.key)
            continue
        except NotFound:
            continue
        if info.encrypted:
            return  # the key opens at least one object: good enough
    if mismatched:
        raise UserError(
            f"the key in {key_file} does not open {mismatched[0]} nor any other object sampled "
            f"(they are encrypted with another SSE-C key): wrong key file? "
            f"Use -o no_key_check to mount anyway", EXIT_KEY)


def sd_notify(message: str) -> None:
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


async def serve(cfg: MountConfig, key: SseCKey, ready: Callable[[], None]) -> int:
    client = make_client(endpoint_url=cfg.endpoint_url, region=cfg.region, profile=cfg.profile,
                         ca_bundle=cfg.ca_bundle, retries=cfg.retries,
                         connect_timeout=cfg.connect_timeout, read_timeout=cfg.read_timeout)
    endpoint = str(client.meta.endpoint_url)
    store = S3Store(client, cfg.bucket, key)
    await store.check_bucket(cfg.prefix, endpoint)
    if cfg.key_check:
        await check_key(store, cfg.prefix, cfg.key_file or "the key file")
    check_mountpoint(cfg.mountpoint)
    fs = Filesystem(store, cfg)
    ops = Operations(fs)
    options = set(pyfuse3.default_options) | fuse_mount_options(cfg)
    try:
        pyfuse3.init(ops, cfg.mountpoint, options)
    except RuntimeError as exc:
        raise UserError(f"cannot mount on {cfg.mountpoint}: {exc}", EXIT_MOUNT) from None
    log.info("mounted s3://%s/%s on %s (key MD5 %s)", cfg.bucket, cfg.prefix, cfg.mountpoint,
             key.md5_b64)
    failed: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            fs.start(nursery)
            nursery.start_soon(_on_signals, fs)
            nursery.start_soon(_announce, ready)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()
        failed = await fs.flush_all()
    finally:
        sd_notify("STOPPING=1")
        pyfuse3.close(unmount=True)
        fs.close()
    if failed:
        log.error("unmounted, but %d file(s) could not be uploaded: %s", len(failed),
                  ", ".join(failed))
        return EXIT_DIRTY
    log.info("unmounted %s cleanly", cfg.mountpoint)
    return 0


async def _announce(ready: Callable[[], None]) -> None:
    await trio.sleep(0)
    ready()
    sd_notify("READY=1")


async def _on_signals(fs: Filesystem) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("received %s: uploading dirty files, then unmounting",
                     signal.Signals(signum).name)
            sd_notify("STOPPING=1")
            failed = await fs.flush_all()
            if failed:
                log.error("could not upload: %s", ", ".join(failed))
            pyfuse3.terminate()
            return
