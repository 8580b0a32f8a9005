"""Namespace operations through the mount: mv, ln -s, chmod/chown/touch, mkdir/rmdir, unlink.

What each operation leaves in the bucket is checked through boto3 (keys, bytes, and the
s3fs-style x-amz-meta-mode/uid/gid/mtime metadata), and attributes are checked again after
an unmount and a fresh mount, so that no cache in the daemon or the kernel hides a change that
never reached the bucket. Renames are server-side copies: CopyObject on SeaweedFS, a multipart
UploadPartCopy on Ceph RGW 16 (which answers CopyObject of SSE-C objects with 501).
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.mounting import Mount

MiB = 1024 * 1024
MTIME = 981173106  # 2001-02-03 04:05:06 UTC
TOUCH_D = "2001-02-03 04:05:06 UTC"
# measured on SeaweedFS 4.48: PutObject of "d/" keeps no x-amz-meta-* (a HEAD returns an empty
# Metadata), so a directory's mode, owner and mtime cannot outlive the mount there
SEAWEEDFS_DIR_META = ("SeaweedFS 4.48 stores directory marker objects (\"d/\") without their "
                      "x-amz-meta-* metadata: directory mode/uid/gid/mtime cannot persist")


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True)


def meta(mnt: Mount, key: str) -> dict[str, str]:
    return {k.lower(): v for k, v in mnt.head(key)["Metadata"].items()}


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as exc:
        fn(*args)
    return exc.value.errno


# --------------------------------------------------------------------------- rename


def test_mv_file(mount_factory) -> None:
    mnt = mount_factory(["part_size=5M"])
    small = os.urandom(70_000)
    big = os.urandom(12 * MiB + 5)  # a multipart object: copied in parts, or by CopyObject
    (mnt / "a.bin").write_bytes(small)
    (mnt / "big.bin").write_bytes(big)
    os.chmod(mnt / "big.bin", 0o604)
    os.mkdir(mnt / "sub")

    run("mv", str(mnt / "a.bin"), str(mnt / "b.bin"))
    run("mv", str(mnt / "b.bin"), str(mnt / "sub" / "c.bin"))
    run("mv", str(mnt / "big.bin"), str(mnt / "sub" / "big-moved.bin"))
    assert sorted(mnt.keys()) == ["sub/", "sub/big-moved.bin", "sub/c.bin"]
    assert mnt.get("sub/c.bin") == small
    assert mnt.get("sub/big-moved.bin") == big
    assert int(meta(mnt, "sub/big-moved.bin")["mode"]) == stat.S_IFREG | 0o604
    assert sorted(os.listdir(mnt.path)) == ["sub"]
    assert (mnt / "sub" / "c.bin").read_bytes() == small

    # rename over an existing file replaces it
    (mnt / "d.bin").write_bytes(b"replacement")
    os.rename(mnt / "d.bin", mnt / "sub" / "c.bin")
    assert mnt.get("sub/c.bin") == b"replacement"
    assert "d.bin" not in mnt.keys()
    assert mnt.uploads() == []

    mnt.restart()
    assert sorted(os.listdir(mnt / "sub")) == ["big-moved.bin", "c.bin"]
    assert (mnt / "sub" / "big-moved.bin").read_bytes() == big
    assert stat.S_IMODE(os.stat(mnt / "sub" / "big-moved.bin").st_mode) == 0o604


def test_mv_directory_of_50_files(mnt: Mount) -> None:
    # most files are put with boto3 before the mount lists anything (writing 50 files through
    # the mount is covered elsewhere and costs seconds); a few are written through the mount
    contents: dict[str, bytes] = {}
    for i in range(50):
        rel = f"f{i:02d}.txt" if i % 10 else f"nested/f{i:02d}.txt"
        contents[rel] = os.urandom(100 + 37 * i)
    mnt.put("dir/", b"", ContentType="application/x-directory")
    mnt.put("dir/nested/", b"", ContentType="application/x-directory")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda r: mnt.put(f"dir/{r}", contents[r]),
                      [r for r in contents if r not in ("f01.txt", "f02.txt")]))
    src = mnt / "dir"
    for rel in ("f01.txt", "f02.txt"):
        (src / rel).write_bytes(contents[rel])
    os.chmod(src / "f01.txt", 0o600)
    assert len(os.listdir(src)) == 46

    run("mv", str(src), str(mnt / "moved"))

    keys = mnt.keys()
    assert [k for k in keys if k.startswith("dir/")] == [], "keys left under the old prefix"
    assert sorted(k for k in keys if not k.endswith("/")) == sorted(f"moved/{r}" for r in contents)
    for rel, data in contents.items():
        assert mnt.get(f"moved/{rel}") == data, rel
    assert int(meta(mnt, "moved/f01.txt")["mode"]) == stat.S_IFREG | 0o600
    assert not (mnt / "dir").exists()

    mnt.restart()
    assert not (mnt / "dir").exists()
    assert sorted(os.listdir(mnt.path)) == ["moved"]
    assert len(os.listdir(mnt / "moved")) == 46  # 45 files + "nested"
    nested = [f"f{i:02d}.txt" for i in range(0, 50, 10)]
    assert sorted(os.listdir(mnt / "moved" / "nested")) == nested
    for rel, data in contents.items():
        assert (mnt / "moved" / rel).read_bytes() == data, rel
    assert stat.S_IMODE(os.stat(mnt / "moved" / "f01.txt").st_mode) == 0o600


def test_rename_directory_rules(mnt: Mount) -> None:
    for d in ("a", "b", "full"):
        (mnt / d).mkdir()
    (mnt / "a" / "x").write_bytes(b"x")
    (mnt / "full" / "y").write_bytes(b"y")
    assert errno_of(os.rename, mnt / "a", mnt / "full") == errno.ENOTEMPTY
    assert errno_of(os.rename, mnt / "a", mnt / "a" / "inside") == errno.EINVAL
    assert errno_of(os.rename, mnt / "a" / "x", mnt / "b") == errno.EISDIR
    os.rename(mnt / "a", mnt / "b")  # onto an empty directory: replaces it
    assert sorted(os.listdir(mnt.path)) == ["b", "full"]
    assert sorted(mnt.keys()) == ["b/", "b/x", "full/", "full/y"]


# --------------------------------------------------------------------------- links


def test_symlinks_and_no_hard_links(mnt: Mount) -> None:
    (mnt / "target.txt").write_bytes(b"pointed at")
    (mnt / "sub").mkdir()
    run("ln", "-s", "target.txt", str(mnt / "rel"))
    run("ln", "-s", "../target.txt", str(mnt / "sub" / "up"))
    run("ln", "-s", "/nonexistent/dangling", str(mnt / "dangling"))

    def check() -> None:
        assert os.readlink(mnt / "rel") == "target.txt"
        assert os.readlink(mnt / "sub" / "up") == "../target.txt"
        assert os.readlink(mnt / "dangling") == "/nonexistent/dangling"
        assert stat.S_ISLNK(os.lstat(mnt / "rel").st_mode)
        assert (mnt / "rel").read_bytes() == b"pointed at"
        assert (mnt / "sub" / "up").read_bytes() == b"pointed at"
        assert not (mnt / "dangling").exists()

    check()
    # s3fs's convention: the body is the target, the mode says S_IFLNK
    assert mnt.get("rel") == b"target.txt"
    assert stat.S_ISLNK(int(meta(mnt, "rel")["mode"]))
    assert mnt.get("sub/up") == b"../target.txt"

    # S3 has no hard links
    proc = subprocess.run(["ln", str(mnt / "target.txt"), str(mnt / "hard")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert errno_of(os.link, mnt / "target.txt", mnt / "hard") == errno.EPERM

    mnt.restart()
    check()
    os.unlink(mnt / "rel")
    assert "rel" not in mnt.keys()
    assert (mnt / "target.txt").read_bytes() == b"pointed at"


# --------------------------------------------------------------------------- attributes


def test_chmod_chown_touch_survive_remount(mount_factory) -> None:
    mnt = mount_factory(["part_size=5M"])
    data = os.urandom(300_000)
    big = os.urandom(6 * MiB)  # an attribute change on a multipart-sized object
    (mnt / "f.bin").write_bytes(data)
    (mnt / "big.bin").write_bytes(big)

    for name in ("f.bin", "big.bin"):
        p = str(mnt / name)
        run("chmod", "640", p)
        run("chown", "1234:2345", p)
        run("touch", "-d", TOUCH_D, p)

    def check_stat() -> None:
        for name in ("f.bin", "big.bin"):
            st = os.stat(mnt / name)
            assert st.st_mode == stat.S_IFREG | 0o640, name
            assert (st.st_uid, st.st_gid) == (1234, 2345), name
            assert st.st_mtime_ns == MTIME * 1_000_000_000, name

    check_stat()
    for key in ("f.bin", "big.bin"):
        m = meta(mnt, key)
        assert int(m["mode"]) == stat.S_IFREG | 0o640, key
        assert (m["uid"], m["gid"]) == ("1234", "2345"), key
        assert float(m["mtime"]) == MTIME, key
    assert mnt.get("f.bin") == data
    assert mnt.get("big.bin") == big
    assert mnt.uploads() == []

    mnt.restart()
    check_stat()
    assert (mnt / "f.bin").read_bytes() == data
    # a sub-second mtime survives too (written as "SECONDS.NANOS")
    os.utime(mnt / "f.bin", ns=(0, MTIME * 1_000_000_000 + 250_000_000))
    mnt.restart()
    assert os.stat(mnt / "f.bin").st_mtime_ns == MTIME * 1_000_000_000 + 250_000_000
    assert (mnt / "big.bin").read_bytes() == big


def test_directory_attributes_survive_remount(mnt: Mount) -> None:
    (mnt / "d").mkdir()
    (mnt / "d" / "inside").write_bytes(b"x")
    run("chmod", "750", str(mnt / "d"))
    run("chown", "1234:2345", str(mnt / "d"))
    run("touch", "-d", TOUCH_D, str(mnt / "d"))

    def check_stat() -> None:
        st = os.stat(mnt / "d")
        assert st.st_mode == stat.S_IFDIR | 0o750
        assert (st.st_uid, st.st_gid) == (1234, 2345)
        assert st.st_mtime_ns == MTIME * 1_000_000_000

    check_stat()  # within the mount, on every server
    if mnt.server.kind == "seaweedfs":
        pytest.skip(SEAWEEDFS_DIR_META)
    m = meta(mnt, "d/")
    assert int(m["mode"]) == stat.S_IFDIR | 0o750
    assert (m["uid"], m["gid"]) == ("1234", "2345")
    assert float(m["mtime"]) == MTIME
    mnt.restart()
    check_stat()


def test_chmod_of_open_file_with_pending_writes(mnt: Mount) -> None:
    with open(mnt / "open.bin", "wb") as f:
        f.write(b"first")
        f.flush()
        os.fchmod(f.fileno(), 0o600)
        f.write(b" second")
    assert mnt.get("open.bin") == b"first second"
    assert int(meta(mnt, "open.bin")["mode"]) == stat.S_IFREG | 0o600
    mnt.restart()
    assert stat.S_IMODE(os.stat(mnt / "open.bin").st_mode) == 0o600


# --------------------------------------------------------------------------- mkdir, rmdir, unlink


def test_mkdir_rmdir_unlink(mnt: Mount) -> None:
    # a directory that exists only because of keys below it (no marker object); put before
    # the mount lists anything, as a listing is trusted for cache_ttl
    mnt.put("implied/x", b"x")

    os.mkdir(mnt / "d", 0o700)
    assert "d/" in mnt.keys()
    assert stat.S_IMODE(os.stat(mnt / "d").st_mode) == 0o700
    if mnt.server.kind != "seaweedfs":  # see SEAWEEDFS_DIR_META
        assert int(meta(mnt, "d/")["mode"]) == stat.S_IFDIR | 0o700
    assert errno_of(os.mkdir, mnt / "d") == errno.EEXIST
    os.rmdir(mnt / "d")
    assert mnt.keys() == ["implied/x"]
    assert not (mnt / "d").exists()

    os.makedirs(mnt / "e" / "f")
    (mnt / "e" / "file").write_bytes(b"content")
    assert errno_of(os.rmdir, mnt / "e") == errno.ENOTEMPTY
    assert errno_of(os.rmdir, mnt / "e" / "file") == errno.ENOTDIR
    assert errno_of(os.unlink, mnt / "e" / "f") in (errno.EISDIR, errno.EPERM)
    assert errno_of(os.unlink, mnt / "e" / "missing") == errno.ENOENT
    assert errno_of(os.rmdir, mnt / "missing") == errno.ENOENT
    os.unlink(mnt / "e" / "file")
    assert "e/file" not in mnt.keys()
    assert errno_of(os.rmdir, mnt / "e") == errno.ENOTEMPTY  # "f" is still there
    os.rmdir(mnt / "e" / "f")
    os.rmdir(mnt / "e")
    assert mnt.keys() == ["implied/x"]
    assert os.listdir(mnt.path) == ["implied"]

    assert errno_of(os.rmdir, mnt / "implied") == errno.ENOTEMPTY
    os.unlink(mnt / "implied" / "x")
    assert os.listdir(mnt / "implied") == []  # POSIX: emptying a directory keeps it
    os.rmdir(mnt / "implied")
    assert mnt.keys() == []
    assert os.listdir(mnt.path) == []

    mnt.restart()
    assert os.listdir(mnt.path) == []


def test_an_unlinked_open_file_works_until_its_last_close(mnt: Mount) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    (mnt / "tmpfile").write_bytes(data)
    mnt.restart()  # the content is in the bucket only, not in the daemon
    fd = os.open(mnt / "tmpfile", os.O_RDWR)
    try:
        os.unlink(mnt / "tmpfile")
        assert not (mnt / "tmpfile").exists()
        assert os.fstat(fd).st_size == len(data)
        assert os.pread(fd, len(data) + 1, 0) == data
        os.pwrite(fd, b"scratch", 0)
        assert os.pread(fd, 7, 0) == b"scratch"
    finally:
        os.close(fd)
    assert mnt.keys() == [] and os.listdir(mnt.path) == []
