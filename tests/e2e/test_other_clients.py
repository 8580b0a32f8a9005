"""Other clients changing the bucket under a mount: a new open sees the current object, and
hostile metadata or names written by other tools do not break the directory."""

from __future__ import annotations

import os

from tests.mounting import Mount, sse


def test_a_new_open_sees_an_object_another_client_grew(mnt: Mount) -> None:
    (mnt / "f").write_bytes(b"four")
    assert (mnt / "f").stat().st_size == 4  # the kernel now caches size 4 for cache_ttl
    mnt.put("f", b"eight!!!")  # another client replaces it
    with open(mnt / "f", "rb") as f:
        assert f.read() == b"eight!!!"
    assert (mnt / "f").stat().st_size == 8


def test_hostile_metadata_lists_and_reads(mnt: Mount) -> None:
    mnt.client.put_object(Bucket=mnt.bucket, Key="d/bad", Body=b"readable",
                          Metadata={"uid": "-1", "mtime": "9e30", "mode": "4294967295"},
                          **sse(mnt.key))
    mnt.put("d/good", b"fine")
    assert sorted(os.listdir(mnt / "d")) == ["bad", "good"]
    st = (mnt / "d" / "bad").stat()
    assert st.st_uid == os.getuid() or st.st_uid >= 0
    assert (mnt / "d" / "bad").read_bytes() == b"readable"
    assert "d/bad has metadata ssecfs cannot use" in mnt.log()
