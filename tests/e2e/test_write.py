"""Writing through the mount: small files, multipart files, appends, overwrites, truncation.

Every step is checked byte for byte through boto3 with the key (and through the mount), and a
GET without the key must be refused: what ssecfs stores is really SSE-C encrypted. For large
files the daemon's --debug log shows which S3 requests were made: multipart uploads for files
over part_size, and UploadPartCopy for unchanged ranges of 5 MiB or more where the server
supports it (Ceph RGW); SeaweedFS answers UploadPartCopy with 501 and ssecfs uploads instead.
"""

from __future__ import annotations

import os
import random
import stat
import subprocess
import time

from tests.mounting import Mount, Request
from tests.servers import S3Server

MiB = 1024 * 1024
PART = 5 * MiB


def randbytes(n: int, seed: int) -> bytearray:
    return bytearray(random.Random(seed).randbytes(n))


def check_object(mnt: Mount, key: str, expected: bytes | bytearray) -> None:
    """The object holds exactly `expected` (boto3 with the key and the mount agree), and
    the server refuses to hand it out without the key."""
    got = mnt.get(key)
    assert len(got) == len(expected), \
        f"{key}: {len(got)} bytes in the bucket, expected {len(expected)}"
    assert got == bytes(expected), f"{key}: bucket content differs from what was written"
    assert (mnt / key).read_bytes() == bytes(expected), f"{key}: mount shows other bytes"
    status = mnt.get_without_key_status(key)
    assert status in (400, 403), f"GET {key} without the SSE-C key answered {status}"


def ok_requests(reqs: list[Request], op: str, key: str) -> list[Request]:
    return [r for r in reqs if r.op == op and r.key == key and r.ok]


def uploaded_bytes(reqs: list[Request], key: str) -> int:
    return sum(r.body_bytes for r in ok_requests(reqs, "UploadPart", key))


def copied_ranges(reqs: list[Request], key: str) -> list[tuple[int, int]]:
    return sorted(r.source_range for r in ok_requests(reqs, "UploadPartCopy", key)
                  if r.source_range is not None)


def assert_no_uploads_left(mnt: Mount) -> None:
    assert mnt.uploads() == [], "multipart uploads were left behind in the bucket"


# --------------------------------------------------------------------------- small files


def test_small_file_write_append_overwrite_truncate(mnt: Mount) -> None:
    path = mnt / "small.bin"
    model = randbytes(150_000, 1)
    path.write_bytes(model)
    check_object(mnt, "small.bin", model)
    meta = mnt.head("small.bin")["Metadata"]
    assert int(meta["mode"]) == stat.S_IFREG | (os.stat(path).st_mode & 0o7777)
    assert abs(float(meta["mtime"]) - time.time()) < 120

    # append with O_APPEND, twice through one handle (the second lands after the first)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"first append\n")
        os.lseek(fd, 0, os.SEEK_SET)  # O_APPEND ignores the position
        os.write(fd, b"second append\n")
    finally:
        os.close(fd)
    model += b"first append\nsecond append\n"
    check_object(mnt, "small.bin", model)

    # overwrite in the middle, across a 4 KiB boundary
    with open(path, "r+b") as f:
        f.seek(70_000)
        f.write(b"X" * 5000)
    model[70_000:75_000] = b"X" * 5000
    check_object(mnt, "small.bin", model)

    # truncate down (path), then up (a hole of zeros)
    os.truncate(path, 100_000)
    del model[100_000:]
    check_object(mnt, "small.bin", model)
    os.truncate(path, 300_000)
    model += bytes(200_000)
    check_object(mnt, "small.bin", model)

    # ftruncate and a write past the end through one open handle
    with open(path, "r+b") as f:
        f.truncate(50_000)
        f.seek(60_000)
        f.write(b"after a hole")
    del model[50_000:]
    model += bytes(10_000) + b"after a hole"
    check_object(mnt, "small.bin", model)

    # O_TRUNC rewrite with other content, and an empty file
    path.write_bytes(b"short now")
    check_object(mnt, "small.bin", b"short now")
    (mnt / "empty").touch()
    assert mnt.get("empty") == b""
    assert mnt.head("empty")["SSECustomerAlgorithm"] == "AES256"


def test_many_small_writes_and_read_back_before_close(mnt: Mount) -> None:
    """Unaligned writes in a row; reads of the same handle see them before any upload."""
    model = bytearray()
    rng = random.Random(7)
    with open(mnt / "pieces.bin", "w+b", buffering=0) as f:
        for _i in range(300):
            piece = rng.randbytes(rng.randint(1, 9000))
            f.write(piece)
            model += piece
        f.seek(12_345)
        assert f.read(1000) == bytes(model[12_345:13_345])
    check_object(mnt, "pieces.bin", model)


# --------------------------------------------------------------------------- large files


def test_large_file_multipart_and_partial_updates(mount_factory, s3server: S3Server) -> None:
    mnt = mount_factory(["part_size=5M"])
    key = "big.bin"
    path = mnt / key
    size = 20 * MiB
    model = randbytes(size, 2)

    mark = mnt.log_mark()
    path.write_bytes(model)
    reqs = mnt.requests(mark)
    assert ok_requests(reqs, "CreateMultipartUpload", key), "no multipart upload for 20 MiB"
    assert ok_requests(reqs, "CompleteMultipartUpload", key)
    assert not ok_requests(reqs, "PutObject", key)
    parts = ok_requests(reqs, "UploadPart", key)
    assert len(parts) == 4 and all(p.body_bytes == PART for p in parts), parts
    check_object(mnt, key, model)
    assert mnt.head(key)["ContentLength"] == size
    assert_no_uploads_left(mnt)

    def update(change, expect_uploaded_at_most: int, expect_copied: list[tuple[int, int]]):
        mark = mnt.log_mark()
        change()
        reqs = mnt.requests(mark)
        check_object(mnt, key, model)
        assert ok_requests(reqs, "CompleteMultipartUpload", key)
        uploaded, copied = uploaded_bytes(reqs, key), copied_ranges(reqs, key)
        if s3server.kind == "rgw":
            # RGW copies parts of SSE-C objects with the same key: unchanged ranges of
            # 5 MiB or more stay on the server
            assert copied == expect_copied, reqs
            assert uploaded <= expect_uploaded_at_most, reqs
            assert uploaded + sum(e - s for s, e in copied) == len(model)
        else:
            # SeaweedFS refuses UploadPartCopy (501): everything is uploaded
            assert not copied, reqs
            assert uploaded == len(model), reqs
            refused = [r for r in reqs if r.op == "UploadPartCopy"]
            assert all(r.status.startswith("501") for r in refused), refused

    # 100 bytes changed in the middle: [0, 10M) and [15M, 20M) are copied, one 5 MiB part
    # (the changed MiB grown to S3's minimum part size) is uploaded
    def overwrite() -> None:
        with open(path, "r+b") as f:
            f.seek(10 * MiB + 1000)
            f.write(b"Y" * 100)
    model[10 * MiB + 1000 : 10 * MiB + 1100] = b"Y" * 100
    update(overwrite, PART, [(0, 10 * MiB), (15 * MiB, 20 * MiB)])

    # O_APPEND of 1 MiB + 10 bytes: the old 20 MiB are copied in one part
    tail = randbytes(MiB + 10, 3)
    def append() -> None:
        with open(path, "ab") as f:
            f.write(tail)
    model += tail
    update(append, MiB + 10, [(0, 20 * MiB)])

    # truncate down to an unaligned size: nothing to upload at all
    cut = 12 * MiB + 123
    del model[cut:]
    update(lambda: os.truncate(path, cut), 0, [(0, cut)])

    # truncate up: the old bytes are copied, the zeros uploaded
    model += bytes(17 * MiB - cut)
    update(lambda: os.truncate(path, 17 * MiB), 17 * MiB - cut, [(0, cut)])

    assert_no_uploads_left(mnt)
    # a fresh mount reads the same bytes
    mnt.restart()
    assert path.read_bytes() == bytes(model)


def test_large_file_overwrite_at_both_ends(mount_factory, s3server: S3Server) -> None:
    """Changes in the first and last MiB of an 18 MiB object: only the middle is copied."""
    mnt = mount_factory(["part_size=5M"])
    key = "ends.bin"
    model = randbytes(18 * MiB, 4)
    (mnt / key).write_bytes(model)
    mark = mnt.log_mark()
    with open(mnt / key, "r+b") as f:
        f.write(b"head")
        f.seek(-4, os.SEEK_END)
        f.write(b"tail")
    model[:4] = b"head"
    model[-4:] = b"tail"
    reqs = mnt.requests(mark)
    check_object(mnt, key, model)
    copied = copied_ranges(reqs, key)
    if s3server.kind == "rgw":
        # [0, 1M) grows to a 5 MiB part; [5M, 17M) is copied; the last MiB is uploaded
        assert copied == [(5 * MiB, 17 * MiB)], reqs
        assert uploaded_bytes(reqs, key) == 6 * MiB
    else:
        assert not copied and uploaded_bytes(reqs, key) == 18 * MiB
    assert_no_uploads_left(mnt)


def test_rewrite_with_o_trunc_and_dd(mount_factory, tmp_path) -> None:
    """A large file rewritten from scratch (O_TRUNC) and written by dd in odd block sizes."""
    mnt = mount_factory(["part_size=5M"])
    src = tmp_path / "src.bin"
    model = randbytes(13 * MiB + 777, 5)
    src.write_bytes(model)
    (mnt / "dd.bin").write_bytes(b"old content that must go away")
    mark = mnt.log_mark()
    subprocess.run(["dd", f"if={src}", f"of={mnt / 'dd.bin'}", "bs=777k", "status=none"],
                   check=True)
    reqs = mnt.requests(mark)
    assert ok_requests(reqs, "CreateMultipartUpload", "dd.bin")
    assert not copied_ranges(reqs, "dd.bin")  # O_TRUNC: nothing of the old object is kept
    check_object(mnt, "dd.bin", model)
    assert_no_uploads_left(mnt)
