"""What each operation costs in S3 requests on the real servers (issue: "As fast as boto3 on
the same server: fewer requests per operation"), counted from the daemon's request log.

The core tests pin the same counts on the memory store (tests/core/test_durability.py); these
show that the real servers' answers (the key MD5 echoed by PutObject, listings) allow them.
"""

from __future__ import annotations

import json
import os
import subprocess
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
    out = subprocess.run(["ls", "-l", str(mnt / "many")], check=True, capture_output=True,
                         text=True).stdout.splitlines()[1:]
    assert len(out) == 150
    assert all(line.startswith("-rwxr-xr-x") for line in out)  # the s3fs mode, not a default
    used = ops(mnt.requests(mark))
    assert used["HeadObject"] <= 152  # each file once (and the directory's own lookup)
    assert used["ListObjectsV2"] <= 4


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
