"""`--as-of` on real servers: a versioned bucket mounted as it was at a time T, with a key ring
(the versions before T are under the old key, the later ones under the new one): files
overwritten or deleted after T show their old contents, files deleted before T or created
after it are absent, directories are as they were, every write is EROFS, reads ask for the
pinned version. A bucket without versioning is a one-line refusal with exit status 4.

Both test servers support versioning with SSE-C keys per version (see
/work/shared/reference/servers.md); LastModified has whole seconds on SeaweedFS, so the
history is made 1.1 s away from T on each side."""

from __future__ import annotations

import datetime
import errno
import math
import os
import secrets
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MountFactory
from tests.fuse_util import is_mounted, unmount
from tests.mounting import private_file, sse


def iso(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def a_second_boundary_between_two_writes() -> str:
    """T, as ISO 8601: what was written before the call is at or before T, what is written
    after it is later, also where LastModified has whole seconds."""
    time.sleep(1.1)
    when = math.floor(time.time())
    time.sleep(1.1)
    return iso(when)


def errno_of(fn: Any, *args: Any) -> int:
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno or 0
    return 0


def write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def test_as_of_shows_the_bucket_as_it_was(mount_factory: MountFactory,
                                          tmp_path: Path) -> None:
    old = secrets.token_bytes(32)
    old_file = private_file(tmp_path / "old.key", old)
    m = mount_factory(options=[f"old_key_file={old_file}"], start=False)
    c, b = m.client, m.bucket
    c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    c.put_object(Bucket=b, Key="over.txt", Body=b"old contents", **sse(old),
                 Metadata={"mode": str(stat.S_IFREG | 0o640)})
    c.put_object(Bucket=b, Key="deleted-after.txt", Body=b"was here", **sse(old))
    c.put_object(Bucket=b, Key="deleted-before.txt", Body=b"gone early", **sse(old))
    c.delete_object(Bucket=b, Key="deleted-before.txt")
    c.put_object(Bucket=b, Key="dir/a.txt", Body=b"in dir", **sse(old))
    c.put_object(Bucket=b, Key="gone-dir/x", Body=b"x", **sse(old))
    c.delete_object(Bucket=b, Key="gone-dir/x")
    as_of = a_second_boundary_between_two_writes()
    c.put_object(Bucket=b, Key="over.txt", Body=b"NEW contents under the new key", **sse(m.key))
    c.delete_object(Bucket=b, Key="deleted-after.txt")
    c.put_object(Bucket=b, Key="created-after.txt", Body=b"new", **sse(m.key))
    c.put_object(Bucket=b, Key="newdir/b.txt", Body=b"new", **sse(m.key))
    c.delete_object(Bucket=b, Key="dir/a.txt")
    m.options.append(f"as_of={as_of}")
    m.start()
    root = m.path

    assert sorted(os.listdir(root)) == ["deleted-after.txt", "dir", "over.txt"]
    assert (root / "over.txt").read_bytes() == b"old contents"  # the old version, old key
    assert stat.S_IMODE((root / "over.txt").stat().st_mode) == 0o640
    assert (root / "deleted-after.txt").read_bytes() == b"was here"
    assert os.listdir(root / "dir") == ["a.txt"]
    assert (root / "dir/a.txt").read_bytes() == b"in dir"
    with open(root / "over.txt", "rb") as f:  # a ranged read of that version
        f.seek(4)
        assert f.read(3) == b"con"
    for hidden in ("deleted-before.txt", "created-after.txt", "newdir", "gone-dir"):
        assert not (root / hidden).exists(), hidden
    gets = [r for r in m.requests() if r.op == "GetObject" and r.key == "over.txt"]
    assert gets and all(" version " in r.detail and r.ok for r in gets)

    # read-only: the kernel (mounted ro) and ssecfs refuse every change
    assert errno_of(write, root / "x.txt", b"x") == errno.EROFS
    assert errno_of(write, root / "over.txt", b"x") == errno.EROFS
    assert errno_of(os.mkdir, root / "d2") == errno.EROFS
    assert errno_of(os.unlink, root / "over.txt") == errno.EROFS
    assert errno_of(os.rename, root / "over.txt", root / "o2") == errno.EROFS
    assert errno_of(os.chmod, root / "over.txt", 0o600) == errno.EROFS
    assert errno_of(os.rmdir, root / "dir") == errno.EROFS
    # the bucket is untouched
    current = c.get_object(Bucket=b, Key="over.txt", **sse(m.key))["Body"].read()
    assert current == b"NEW contents under the new key"
    assert not [r for r in m.requests() if r.op in ("PutObject", "DeleteObject",
                                                    "CopyObject", "DeleteObjects")]


def test_as_of_refuses_a_bucket_without_versioning(mount_factory: MountFactory) -> None:
    m = mount_factory(start=False)
    m.put("a.txt", b"plain bucket")
    m.path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(m.command("--as-of", "2026-01-01T00:00:00Z"), env=m.env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)
    finally:
        if is_mounted(m.path):
            unmount(m.path)
    assert done.returncode == 4, done.stderr
    assert done.stderr == (f"ssecfs: bucket {m.bucket} has no versioning; --as-of needs a "
                           f"versioned bucket\n")
    assert not is_mounted(m.path)


@pytest.mark.parametrize("when", ["2026-01-01T00:00:00", "2999-01-01T00:00:00Z"])
def test_as_of_time_refusals(mount_factory: MountFactory, when: str) -> None:
    m = mount_factory(start=False)
    m.path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(m.command("--as-of", when), env=m.env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
