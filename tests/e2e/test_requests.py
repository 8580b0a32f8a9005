"""What each operation costs in S3 requests on the real servers (issue: "As fast as boto3 on
the same server: fewer requests per operation"), counted from the daemon's request log.

The core tests pin the same counts on the memory store (tests/core/test_durability.py); these
show that the real servers' answers (the key MD5 echoed by PutObject, listings) allow them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter

from tests.mounting import SSECFS, Mount, Request


def ops(reqs: list[Request]) -> Counter[str]:
    return Counter(r.op for r in reqs)


def test_small_files_cost_one_put_each(mnt: Mount) -> None:
    (mnt / "d").mkdir()
    mark = mnt.log_mark()
    for i in range(20):
        (mnt / "d" / f"f{i}").write_bytes(b"x" * 4096)
    # the PutObject answer proves the key (its MD5 is echoed): no verifying HEAD, and the
    # directory made here is known to be empty: no lookup requests either
    assert ops(mnt.requests(mark)) == {"PutObject": 20}
    for i in range(20):
        head = mnt.head(f"d/f{i}")
        assert head["SSECustomerKeyMD5"].split(",")[0].strip()  # stored under SSE-C
        assert mnt.get(f"d/f{i}") == b"x" * 4096


def test_a_second_read_of_an_unchanged_file_is_served_from_the_page_cache(mnt: Mount) -> None:
    data = os.urandom(3 * 1024 * 1024)
    mnt.put("f.bin", data)
    assert (mnt / "f.bin").read_bytes() == data
    mark = mnt.log_mark()
    assert (mnt / "f.bin").read_bytes() == data
    # close-to-open: the open asks whether the object changed (one HEAD), nothing is read
    assert ops(mnt.requests(mark)) == {"HeadObject": 1}
    new = os.urandom(1024 * 1024)
    mnt.put("f.bin", new)  # another client replaces it
    assert (mnt / "f.bin").read_bytes() == new


def test_ls_l_heads_listed_files_concurrently_once(mnt: Mount) -> None:
    for i in range(150):
        mnt.put(f"many/e{i:03}", b"x" * i, Metadata={"mode": "33261", "uid": "0", "gid": "0",
                                                     "mtime": "1700000000"})
    mnt.restart()
    mark = mnt.log_mark()
    out = subprocess.run(["ls", "-ln", "--time-style=+%s", str(mnt / "many")], check=True,
                         capture_output=True, text=True).stdout.splitlines()[1:]
    assert len(out) == 150
    # what readdirplus handed over after its first reply is what each HEAD said: the s3fs
    # mode, owner and mtime, not defaults, and the listed size
    assert [line.split()[:7] for line in out] == [
        ["-rwxr-xr-x", "1", "0", "0", str(i), "1700000000", f"e{i:03}"] for i in range(150)]
    used = ops(mnt.requests(mark))
    assert used["HeadObject"] <= 152  # each file once (and the directory's own lookup)
    assert used["ListObjectsV2"] <= 4


def test_with_metadata_cache_ls_l_after_a_remount_asks_only_about_changed_files(
        mount_factory, tmp_path) -> None:
    cache = tmp_path / "cache"
    m = mount_factory(["metadata_cache", f"cache_dir={cache}"])
    for i in range(60):
        m.put(f"many/e{i:03}", b"x" * i, Metadata={"mode": "33261", "uid": "0", "gid": "0",
                                                   "mtime": "1700000000"})

    def ls_l() -> list[str]:
        return subprocess.run(["ls", "-l", str(m / "many")], check=True, capture_output=True,
                              text=True).stdout.splitlines()[1:]

    first = ls_l()
    m.restart()
    time.sleep(1.1)  # Last-Modified is kept to the second: the rewrite must show in it
    m.put("many/e000", b"changed", Metadata={"mode": "33188", "mtime": "1700000000"})
    mark = m.log_mark()
    second = ls_l()
    heads = [r.key for r in m.requests(mark) if r.op == "HeadObject"]
    assert len(second) == 60 and second[1:] == first[1:]
    assert second[0].startswith("-rw-r--r--") and " 7 " in second[0]
    assert "many/e000" in heads and len(heads) <= 2  # the changed file (and the directory)
    # what is on disk names no object and holds no metadata in the clear
    blob = b"".join(f.read_bytes() for f in cache.rglob("meta-*"))
    assert blob and b"many/" not in blob and b"33261" not in blob


def test_ssecfs_stats_reports_the_mounts_counters(mnt: Mount) -> None:
    (mnt / "a").write_bytes(b"hello")
    out = subprocess.run([*SSECFS, "stats", "--json", str(mnt.path)],
                         check=True, capture_output=True, text=True).stdout
    stats = json.loads(out)
    assert stats["requests"]["PutObject"] >= 1
    assert stats["bytes_up"] >= 5
    assert stats["requests_total"] == sum(stats["requests"].values())
    text = subprocess.run([*SSECFS, "stats", str(mnt.path)],
                          check=True, capture_output=True, text=True).stdout
    assert "PutObject" in text and "bytes_up" in text
    bad = subprocess.run([*SSECFS, "stats", "/"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "not an ssecfs mount" in bad.stderr


def test_a_large_write_is_uploaded_while_it_is_written(mount_factory) -> None:
    m = mount_factory(["part_size=5M"])
    data = os.urandom(23 * 1024 * 1024)
    mark = m.log_mark()
    with open(m / "big.bin", "wb") as f:
        for i in range(0, len(data), 1 << 20):
            f.write(data[i : i + (1 << 20)])
        f.flush()
        # the file is still open: its full parts go out without waiting for close()
        deadline = time.monotonic() + 20
        while len([r for r in m.requests(mark) if r.op == "UploadPart" and r.ok]) < 4:
            assert time.monotonic() < deadline, "no parts were sent before close()"
            time.sleep(0.05)
        assert not [r for r in m.requests(mark) if r.op == "CompleteMultipartUpload"]
    assert m.get("big.bin") == data
    assert m.uploads() == []
    assert (m / "big.bin").read_bytes() == data


def test_changes_while_streaming_end_with_the_files_bytes(mount_factory) -> None:
    """Rewriting a sent part, truncating below sent parts and renaming mid-write: the bucket
    holds exactly what the file holds, and no unfinished upload is left."""
    m = mount_factory(["part_size=5M"])
    data = bytearray(os.urandom(16 * 1024 * 1024))
    fd = os.open(m / "t.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        for i in range(0, len(data), 1 << 20):
            os.write(fd, data[i : i + (1 << 20)])
        os.pwrite(fd, b"patched", 1000)
        data[1000:1007] = b"patched"
        os.ftruncate(fd, 7 * 1024 * 1024)
        os.rename(m / "t.bin", m / "u.bin")
        os.pwrite(fd, b"end", 7 * 1024 * 1024)
    finally:
        os.close(fd)
    want = bytes(data[: 7 * 1024 * 1024]) + b"end"
    assert m.get("u.bin") == want
    assert "t.bin" not in m.keys()
    m.restart()
    assert (m / "u.bin").read_bytes() == want
    assert m.uploads() == []
