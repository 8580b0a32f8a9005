"""This checkout's mount helpers for `mount -t ssecfs`, visible to the test session only.

mount(8) looks for `mount.ssecfs` / `mount.fuse.ssecfs` in /sbin and nowhere else. Machine-wide
links there belong to whichever checkout ran `make install-helpers` last, so a second clone on
the same machine would silently test the first clone's code (or skip). Instead, the test
session moves into a private mount namespace (as root) where /sbin is an overlay: this
checkout's helpers on top of the real directory. Everything the tests start — mount(8), the
daemons, the servers — inherits that namespace; nothing outside the session sees a change,
and when the session ends the namespace and its mounts go with it.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
import threading
from pathlib import Path

CLONE_NEWNS = 0x00020000
HELPERS = ("mount.ssecfs", "mount.fuse.ssecfs")
ACTIVE_ENV = "SSECFS_TEST_PRIVATE_HELPERS"

#: why `enter` could not provide the helpers (None: it did, or was not asked yet)
why_not: str | None = None


def enter(venv_bin: Path) -> str | None:
    """Enter the private namespace with the overlay; None on success, else why not."""
    global why_not
    why_not = _enter(venv_bin)
    return why_not


def _enter(venv_bin: Path) -> str | None:
    if os.environ.get(ACTIVE_ENV) == str(venv_bin):
        return None  # this process (or its parent) already did
    if os.geteuid() != 0:
        return "not root"
    if threading.active_count() > 1:
        return "other threads run already (unshare needs a single-threaded process)"
    if not all((venv_bin / name).exists() for name in HELPERS):
        return f"{venv_bin} lacks {', '.join(HELPERS)}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}"
    run = [["mount", "--make-rprivate", "/"]]
    layer = Path(tempfile.mkdtemp(prefix="ssecfs-helpers-"))
    for name in HELPERS:
        (layer / name).symlink_to(venv_bin / name)
    sbin = os.path.realpath("/sbin")
    run.append(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={layer}:{sbin}", sbin])
    for cmd in run:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            return f"{' '.join(cmd)}: {res.stderr.strip()}"
    os.environ[ACTIVE_ENV] = str(venv_bin)
    return None
