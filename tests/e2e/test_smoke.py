"""A first end-to-end check: write through boto3 with SSE-C, read through the mount."""

import os

from tests.mounting import Mount


def test_read_what_boto3_wrote(mnt: Mount) -> None:
    data = os.urandom(300_000)
    mnt.put("hello.bin", data)
    assert (mnt / "hello.bin").read_bytes() == data


def test_write_then_read_with_boto3(mnt: Mount) -> None:
    data = os.urandom(100_000)
    (mnt / "w.bin").write_bytes(data)
    assert mnt.get("w.bin") == data
