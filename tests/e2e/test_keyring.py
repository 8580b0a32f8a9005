"""A key ring on real servers: objects put by another client under old keys read through a
mount given `-o old_key_file=…`; what the mount writes, renames or chmods ends up under the
writing key (HEAD with it works, HEAD with the old key fails); a key outside the ring stays
EACCES."""

from __future__ import annotations

import base64
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.e2e.conftest import MountFactory
from tests.mounting import Mount, private_file, sse


def head_works(m: Mount, key: str, sse_key: bytes) -> bool:
    try:
        resp: Any = m.client.head_object(Bucket=m.bucket, Key=key, **sse(sse_key))
    except botocore.exceptions.ClientError:
        return False
    return bool(resp.get("SSECustomerKeyMD5"))


def only_under_the_writer(m: Mount, key: str, old: bytes) -> bool:
    return head_works(m, key, m.key) and not head_works(m, key, old)


def test_old_keys_read_and_what_the_mount_writes_is_under_the_writer(
        mount_factory: MountFactory, tmp_path: Path) -> None:
    old1, old2, old3 = (secrets.token_bytes(32) for _ in range(3))
    # one old key file in raw form, one holding two keys, one base64 key per line
    raw_file = private_file(tmp_path / "old1.key", old1)
    multi_file = private_file(tmp_path / "old23.key", b"# retired keys\n" + b"".join(
        base64.b64encode(k) + b"\n" for k in (old2, old3)))
    m = mount_factory(options=[f"old_key_file={raw_file}", f"old_key_file={multi_file}"],
                      start=False)
    body = os.urandom(300 * 1024)
    put = m.client.put_object
    put(Bucket=m.bucket, Key="a.txt", Body=b"under old1", **sse(old1))
    put(Bucket=m.bucket, Key="sub/b.bin", Body=body, **sse(old3))
    put(Bucket=m.bucket, Key="c.txt", Body=b"0123456789", **sse(old2))
    put(Bucket=m.bucket, Key="link", Body=b"a.txt", **sse(old1),
        Metadata={"mode": str(stat.S_IFLNK | 0o777)})
    put(Bucket=m.bucket, Key="dir/", Body=b"", **sse(old2),
        Metadata={"mode": str(stat.S_IFDIR | 0o750)}, ContentType="application/x-directory")
    # SeaweedFS keeps a "dir/" object as a filer directory: no SSE-C, no metadata
    markers_encrypted = head_works(m, "dir/", old2)
    m.start()  # the mount-time key check samples these objects: the ring opens them
    root = m.path
    assert (root / "a.txt").read_bytes() == b"under old1"
    assert (root / "sub/b.bin").read_bytes() == body
    assert os.readlink(root / "link") == "a.txt"
    if markers_encrypted:
        assert stat.S_IMODE((root / "dir").stat().st_mode) == 0o750
    with open(root / "sub/b.bin", "rb") as f:  # a ranged read
        f.seek(100_000)
        assert f.read(10) == body[100_000:100_010]

    (root / "new.txt").write_bytes(b"new")
    os.rename(root / "a.txt", root / "moved.txt")
    os.chmod(root / "sub/b.bin", 0o600)
    with open(root / "c.txt", "r+b") as f:  # a partial rewrite
        f.seek(3)
        f.write(b"xyz")
    os.utime(root / "dir", (1_700_000_000, 1_700_000_000))

    assert head_works(m, "new.txt", m.key) and not head_works(m, "new.txt", old1)
    assert only_under_the_writer(m, "moved.txt", old1)
    assert "a.txt" not in m.keys()
    assert only_under_the_writer(m, "sub/b.bin", old3)
    assert only_under_the_writer(m, "c.txt", old2)
    if markers_encrypted:
        assert only_under_the_writer(m, "dir/", old2)
    assert m.get("moved.txt") == b"under old1"
    assert m.get("sub/b.bin") == body
    assert m.get("c.txt") == b"012xyz6789"
    assert stat.S_IMODE(int(m.head("sub/b.bin")["Metadata"]["mode"])) == 0o600
    # the daemon names the ring by MD5 only, never a key
    log = m.log()
    assert "key ring: 4 key(s)" in log
    for key in (m.key, old1, old2, old3):
        assert base64.b64encode(key).decode() not in log and key.hex() not in log


def test_a_key_outside_the_ring_is_eacces(mount_factory: MountFactory,
                                          tmp_path: Path) -> None:
    old = secrets.token_bytes(32)
    old_file = private_file(tmp_path / "old.key", base64.b64encode(old) + b"\n")
    m = mount_factory(options=[f"old_key_file={old_file}"], start=False)
    m.client.put_object(Bucket=m.bucket, Key="mine", Body=b"readable", **sse(old))
    m.client.put_object(Bucket=m.bucket, Key="theirs", Body=b"not for us",
                        **sse(secrets.token_bytes(32)))
    m.start()
    assert sorted(os.listdir(m.path)) == ["mine", "theirs"]
    assert (m.path / "mine").read_bytes() == b"readable"
    with pytest.raises(PermissionError) as exc:
        (m.path / "theirs").read_bytes()
    assert exc.value.errno == errno.EACCES
    assert "outside this mount's key ring" in m.log()
