"""Crash safety: SIGKILL of the daemon in the middle of a write.

Every file closed before the kill is intact in the bucket, the file being written keeps its
previous content (nothing half-written is ever stored; its streamed parts are an unfinished
upload, which `ssecfs cleanup` aborts), no plaintext is left on local disk
(the spill file is sealed under a key that died with the process), and the next mount starts
clean and removes the dead spill file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from tests.e2e.conftest import MountFactory
from tests.fuse_util import unmount
from tests.mounting import SSECFS

MiB = 1024 * 1024
MARKER = b"SSECFS-CRASH-PLAINTEXT-"


def test_sigkill_mid_write_loses_only_what_was_not_closed(mount_factory: MountFactory,
                                                          tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    options = ["write_buffer_memory=1M", f"cache_dir={cache}", "part_size=5M"]
    mnt = mount_factory(options)
    closed = {"a": os.urandom(100), "b": os.urandom(6 * MiB + 1), "d/c": b""}
    (mnt / "d").mkdir()
    for name, data in closed.items():
        (mnt / name).write_bytes(data)
    (mnt / "being").write_bytes(b"previous content")

    fd = os.open(mnt / "being", os.O_WRONLY | os.O_TRUNC)
    payload = (MARKER * (8 * MiB // len(MARKER) + 1))[: 8 * MiB]
    os.write(fd, payload)  # acknowledged by write(), not by close(): most of it spilled
    assert any(p.is_file() and p.stat().st_size for p in cache.rglob("*")), "nothing spilled"
    assert mnt.proc is not None
    mnt.proc.send_signal(signal.SIGKILL)
    mnt.proc.wait(30)
    mnt.expect_exit = None  # killed: no exit status to check
    with contextlib.suppress(OSError):  # the dead mount answers ENOTCONN
        os.close(fd)
    unmount(mnt.path, lazy=True)

    for name, data in closed.items():
        assert mnt.get(name) == data, name
    assert mnt.get("being") == b"previous content"
    # the file being written had begun streaming its parts: its unfinished upload is all
    # the crash left in the bucket (it completes nothing), and `ssecfs cleanup` removes it
    assert {k for k, _ in mnt.uploads()} <= {"being"}
    res = subprocess.run([*SSECFS, "cleanup", "--endpoint-url", mnt.server.endpoint,
                          "--ca-bundle", mnt.server.ca_bundle, "--older-than", "0", mnt.bucket],
                         env=mnt.server.env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert mnt.uploads() == []
    for p in cache.rglob("*"):
        if p.is_file():
            blob = p.read_bytes()
            assert MARKER not in blob and payload[:4096] not in blob, f"plaintext in {p}"

    again = mount_factory(options, name="again")
    assert (again / "being").read_bytes() == b"previous content"
    assert (again / "b").read_bytes() == closed["b"]
    assert [p for p in cache.rglob("*") if p.is_file()] == [], "the dead spill file stayed"
