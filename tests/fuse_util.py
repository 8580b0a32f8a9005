"""FUSE availability for the tests.

Mark tests that mount with ``@requires_fuse`` (or call ``require_fuse()`` inside a fixture).
When /dev/fuse or fusermount3 is missing they are skipped with the reason, except under CI
(env CI=true), where a missing FUSE is a test failure: CI must really run the mount tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

__all__ = [
    "fuse_missing_reason",
    "in_ci",
    "is_mounted",
    "require_fuse",
    "requires_fuse",
    "unmount",
]

#: marker; the hook in tests/conftest.py turns it into a skip (or, under CI, a failure)
requires_fuse = pytest.mark.requires_fuse


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def fuse_missing_reason() -> str | None:
    """Why FUSE mounts cannot work here, or None if they can (as far as cheaply checkable)."""
    if not os.path.exists("/dev/fuse"):
        return ("FUSE unavailable: /dev/fuse does not exist (load the fuse module / run with "
                "--device /dev/fuse)")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "FUSE unavailable: /dev/fuse is not readable and writable by this user"
    if not shutil.which("fusermount3"):
        return "FUSE unavailable: fusermount3 not found (apt-get install fuse3, or make deps)"
    return None


def require_fuse() -> None:
    """Skip the current test (fail it under CI) if FUSE is unavailable."""
    reason = fuse_missing_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{reason} -- CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def is_mounted(path: str | os.PathLike[str]) -> bool:
    """True if path is a mount point (per /proc/self/mountinfo)."""
    target = os.path.realpath(os.fspath(path))
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                if mp == target:
                    return True
    except OSError:
        pass
    return False


def unmount(path: str | os.PathLike[str], lazy: bool = False) -> bool:
    """fusermount3 -u [-z] path; True if it is no longer mounted afterwards."""
    args = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [os.fspath(path)]
    subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False, timeout=30)
    return not is_mounted(path)
