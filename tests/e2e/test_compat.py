"""What s3fs stores, ssecfs keeps and shows (end to end, both servers): extended attributes,
ctime and atime, other tools' metadata and content headers, content types, directories made
by other tools, open unlinked files, mknod, the mount root, inode numbers.

SeaweedFS keeps no x-amz-meta-* on "dir/" objects (see test_s3fs_interop): a directory's
stored mode and xattrs are only checked on Ceph RGW.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.mounting import Mount

FOREIGN = {
    "Metadata": {"owner-app": "photos", "sha256": "abc123"},
    "ContentType": "image/x-custom",
    "CacheControl": "max-age=3600",
    "ContentDisposition": 'attachment; filename="p.bin"',
    "ContentEncoding": "identity",
    "ContentLanguage": "pl",
    "Expires": "Wed, 21 Oct 2037 07:28:00 GMT",
}


def content_headers(head: dict) -> dict:
    h = head["ResponseMetadata"]["HTTPHeaders"]
    return {k: h.get(k) for k in ("content-type", "cache-control", "content-disposition",
                                  "content-encoding", "content-language", "expires")}


def assert_foreign_kept(mnt: Mount, key: str, what: str) -> None:
    head = mnt.head(key)
    assert head["Metadata"]["owner-app"] == "photos", what
    assert head["Metadata"]["sha256"] == "abc123", what
    got = content_headers(head)
    assert got["content-type"] == "image/x-custom", what
    assert got["cache-control"] == "max-age=3600", what
    assert got["content-disposition"] == 'attachment; filename="p.bin"', what
    assert got["content-encoding"] == "identity", what
    assert got["content-language"] == "pl", what
    assert got["expires"] == "Wed, 21 Oct 2037 07:28:00 GMT", what


# ---------------------------------------------------------------- extended attributes
def test_xattrs_are_stored_as_s3fs_stores_them(mount_factory) -> None:
    mnt: Mount = mount_factory()
    f = mnt / "f.txt"
    f.write_bytes(b"data")
    os.setxattr(f, "user.comment", b"hello world")
    os.setxattr(f, "user.bin", b"\x00\x01\xff")
    assert os.getxattr(f, "user.comment") == b"hello world"
    assert sorted(os.listxattr(f)) == ["user.bin", "user.comment"]
    os.removexattr(f, "user.bin")
    assert os.listxattr(f) == ["user.comment"]
    with pytest.raises(OSError) as e:
        os.getxattr(f, "user.bin")
    assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.removexattr(f, "user.nothing")
    assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.setxattr(f, "security.selinux", b"x")
    assert e.value.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)
    for name in ("security.selinux", "system.posix_acl_access"):  # ls -l asks once, not per file
        with pytest.raises(OSError) as e:
            os.getxattr(f, name, follow_symlinks=False)
        assert e.value.errno in (errno.ENOTSUP, errno.EOPNOTSUPP), name
    # S3 keeps 2 KiB of user metadata: a clear error, not a failed upload later
    with pytest.raises(OSError) as e:
        os.setxattr(f, "user.big", b"x" * 3000)
    assert e.value.errno in (errno.ENOSPC, errno.E2BIG)
    assert "over S3's limit" in mnt.log()
    # the header is s3fs's: {"name":"base64"} URL-encoded
    assert mnt.head("f.txt")["Metadata"]["xattr"] == \
        "%7B%22user.comment%22%3A%22aGVsbG8gd29ybGQ%3D%22%7D"
    assert mnt.get("f.txt") == b"data"
    # on a directory and on an open file with unsaved changes too
    os.mkdir(mnt / "d")
    os.setxattr(mnt / "d", "user.d", b"dir")
    with open(mnt / "open.bin", "wb") as fh:
        fh.write(b"pending")
        os.setxattr(mnt / "open.bin", "user.o", b"1")
        assert os.getxattr(mnt / "open.bin", "user.o") == b"1"
    mnt.restart()
    assert os.getxattr(mnt / "f.txt", "user.comment") == b"hello world"
    assert os.getxattr(mnt / "open.bin", "user.o") == b"1"
    assert (mnt / "open.bin").read_bytes() == b"pending"
    if mnt.server.kind == "rgw":
        assert os.getxattr(mnt / "d", "user.d") == b"dir"
    # a rename keeps them
    os.rename(mnt / "f.txt", mnt / "g.txt")
    assert os.getxattr(mnt / "g.txt", "user.comment") == b"hello world"


# ---------------------------------------------------------------- ctime and atime
def test_ctime_moves_on_attribute_changes_and_mtime_on_writes(mount_factory) -> None:
    mnt: Mount = mount_factory()
    f = mnt / "f"
    f.write_bytes(b"1")
    os.utime(f, ns=(1_000_000_000 * 1_500_000_000, 1_000_000_000 * 1_600_000_000))
    st = os.stat(f)
    assert st.st_mtime == 1_600_000_000 and st.st_atime == 1_500_000_000
    assert st.st_ctime > 1_700_000_000  # utimensat moves the ctime, as on Linux
    time.sleep(1.1)
    os.chmod(f, 0o600)
    st2 = os.stat(f)
    assert st2.st_mtime == 1_600_000_000  # chmod keeps the mtime
    assert st2.st_ctime_ns > st.st_ctime_ns
    time.sleep(1.1)
    with open(f, "ab") as fh:
        fh.write(b"2")
    st3 = os.stat(f)
    assert st3.st_mtime > 1_700_000_000 and st3.st_ctime_ns > st2.st_ctime_ns
    meta = mnt.head("f")["Metadata"]
    assert {"ctime", "atime", "mtime"} <= set(meta)
    # cp -p and mv keep the mtime
    os.utime(f, (1_500_000_000, 1_600_000_000))
    subprocess.run(["cp", "-p", str(f), str(mnt / "copy")], check=True)
    assert os.stat(mnt / "copy").st_mtime == 1_600_000_000
    os.rename(mnt / "copy", mnt / "moved")
    assert os.stat(mnt / "moved").st_mtime == 1_600_000_000
    before = os.stat(f).st_ctime_ns
    mnt.restart()
    assert os.stat(f).st_ctime_ns == before  # stored in x-amz-meta-ctime
    assert os.stat(mnt / "moved").st_mtime == 1_600_000_000


def test_a_directory_mtime_moves_when_an_entry_comes_or_goes(mount_factory) -> None:
    mnt: Mount = mount_factory()
    d = mnt / "d"
    os.mkdir(d)
    os.utime(d, (1_500_000_000, 1_500_000_000))
    assert os.stat(d).st_mtime == 1_500_000_000
    (d / "new").write_bytes(b"x")
    st = os.stat(d)
    assert st.st_mtime > 1_700_000_000 and st.st_ctime >= st.st_mtime
    os.utime(d, (1_500_000_000, 1_500_000_000))
    os.unlink(d / "new")
    assert os.stat(d).st_mtime > 1_700_000_000
    root_before = os.stat(mnt.path).st_mtime_ns
    time.sleep(0.01)
    (mnt / "at-root").write_bytes(b"")
    assert os.stat(mnt.path).st_mtime_ns > root_before


# ---------------------------------------------------------------- other tools' metadata
def test_other_tools_metadata_and_content_headers_are_kept(mount_factory) -> None:
    mnt: Mount = mount_factory()
    mnt.put("p.bin", b"picture", **FOREIGN)
    f = mnt / "p.bin"
    os.chmod(f, 0o600)
    assert_foreign_kept(mnt, "p.bin", "chmod")
    os.chown(f, 1234, 5678)
    assert_foreign_kept(mnt, "p.bin", "chown")
    os.utime(f, (1_600_000_000, 1_600_000_000))
    assert_foreign_kept(mnt, "p.bin", "touch")
    with open(f, "ab") as fh:
        fh.write(b" more")
    assert_foreign_kept(mnt, "p.bin", "append")
    assert mnt.get("p.bin") == b"picture more"
    os.setxattr(f, "user.k", b"v")
    assert_foreign_kept(mnt, "p.bin", "setxattr")
    os.rename(f, mnt / "q.bin")
    assert_foreign_kept(mnt, "q.bin", "rename")
    meta = mnt.head("q.bin")["Metadata"]
    assert meta["mode"] == str(stat.S_IFREG | 0o600) and meta["uid"] == "1234"
    # a directory's marker keeps them too (RGW: SeaweedFS keeps none on markers)
    if mnt.server.kind == "rgw":
        mnt.put("dir/", b"", Metadata={"owner-app": "photos"},
                ContentType="application/x-directory")
        os.chmod(mnt / "dir", 0o700)
        assert mnt.head("dir/")["Metadata"]["owner-app"] == "photos"


def test_content_types_come_from_names_and_rewrites_keep_them(mount_factory) -> None:
    mnt: Mount = mount_factory()
    (mnt / "notes.txt").write_bytes(b"hi\n")
    (mnt / "page.html").write_bytes(b"<p>")
    (mnt / "blob").write_bytes(b"\x00")
    os.mknod(mnt / "made.json")
    assert mnt.head("notes.txt")["ContentType"] == "text/plain"
    assert mnt.head("page.html")["ContentType"] == "text/html"
    assert mnt.head("blob")["ContentType"] == "application/octet-stream"
    assert mnt.head("made.json")["ContentType"] == "application/json"
    mnt.put("custom.txt", b"one", ContentType="text/x-mine")
    (mnt / "custom.txt").write_bytes(b"two")
    assert mnt.head("custom.txt")["ContentType"] == "text/x-mine"
    # a type the old name gave follows the new one (as s3fs does); a chosen one stays
    (mnt / "draft.tmp").write_bytes(b"x")
    os.rename(mnt / "draft.tmp", mnt / "final.txt")
    assert mnt.head("final.txt")["ContentType"] == "text/plain"
    os.rename(mnt / "custom.txt", mnt / "custom.md")
    assert mnt.head("custom.md")["ContentType"] == "text/x-mine"


# ---------------------------------------------------------------- directories of other tools
def test_directories_made_by_other_tools(mount_factory) -> None:
    mnt: Mount = mount_factory(start=False)
    mnt.client.put_object(Bucket=mnt.bucket, Key="cli/", Body=b"",
                          Metadata={"mode": "0750"})  # aws s3api put-object, no SSE-C
    mnt.put("cli/inside", b"1")
    mnt.put("old", b"", ContentType="application/x-directory")
    mnt.put("old/child", b"2")
    mnt.put("fold_$folder$", b"")
    mnt.put("fold/kid", b"3")
    mnt.put("empty_$folder$", b"")
    mnt.start()
    names = sorted(os.listdir(mnt.path))
    assert names == ["cli", "empty", "fold", "old"], names
    for d in ("cli", "old", "fold", "empty"):
        assert stat.S_ISDIR(os.stat(mnt / d).st_mode), d
    if mnt.server.kind == "rgw":
        assert stat.S_IMODE(os.stat(mnt / "cli").st_mode) == 0o750
    assert (mnt / "old" / "child").read_bytes() == b"2"
    assert (mnt / "fold" / "kid").read_bytes() == b"3"
    assert os.listdir(mnt / "empty") == []
    # they can be changed and removed like any directory
    os.chmod(mnt / "old", 0o700)
    assert stat.S_IMODE(os.stat(mnt / "old").st_mode) == 0o700
    os.rmdir(mnt / "empty")
    assert "empty" not in os.listdir(mnt.path)
    assert "empty_$folder$" not in mnt.keys()
    mnt.restart()
    assert stat.S_ISDIR(os.stat(mnt / "old").st_mode)
    assert sorted(os.listdir(mnt.path)) == ["cli", "fold", "old"]


# ---------------------------------------------------------------- open, unlinked files
def test_an_unlinked_open_file_works_until_its_last_close(mount_factory) -> None:
    mnt: Mount = mount_factory()
    (mnt / "gone").write_bytes(b"before ")
    fd = os.open(mnt / "gone", os.O_RDWR)
    try:
        os.unlink(mnt / "gone")
        assert not (mnt / "gone").exists()
        assert "gone" not in mnt.keys()
        assert os.fstat(fd).st_size == 7
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, b"after")
        assert os.fstat(fd).st_size == 12
        assert os.pread(fd, 100, 0) == b"before after"
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    finally:
        os.close(fd)
    time.sleep(0.2)
    assert "gone" not in mnt.keys()
    assert not (mnt / "gone").exists()


# ---------------------------------------------------------------- mknod
def test_mknod_makes_files_and_fifos(mount_factory) -> None:
    mnt: Mount = mount_factory()
    os.mknod(mnt / "plain", 0o640 | stat.S_IFREG)
    assert mnt.get("plain") == b""
    assert stat.S_IMODE(os.stat(mnt / "plain").st_mode) == 0o640 & ~current_umask()
    os.mkfifo(mnt / "pipe", 0o600)
    assert stat.S_ISFIFO(os.stat(mnt / "pipe").st_mode)
    assert stat.S_IFMT(int(mnt.head("pipe")["Metadata"]["mode"])) == stat.S_IFIFO
    mnt.restart()
    assert stat.S_ISFIFO(os.stat(mnt / "pipe").st_mode)
    os.rename(mnt / "pipe", mnt / "pipe2")
    assert stat.S_ISFIFO(os.stat(mnt / "pipe2").st_mode)
    os.unlink(mnt / "pipe2")
    assert sorted(mnt.keys()) == ["plain"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- the mount root
def test_the_mount_root_takes_touch_chmod_chown(mount_factory, tmp_path: Path) -> None:
    mnt: Mount = mount_factory()
    os.utime(mnt.path, (1_600_000_000, 1_600_000_000))
    assert os.stat(mnt.path).st_mtime == 1_600_000_000
    os.chmod(mnt.path, 0o750)
    assert stat.S_IMODE(os.stat(mnt.path).st_mode) == 0o750
    os.chown(mnt.path, os.getuid(), os.getgid())
    assert mnt.keys() == []  # nothing stored under an empty key
    # rsync -a src/ mnt/ sets the root's times and mode; tar with a ./ entry too
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_bytes(b"a")
    os.chmod(src, 0o755)
    done = subprocess.run(["rsync", "-a", f"{src}/", f"{mnt.path}/"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert (mnt / "sub" / "a.txt").read_bytes() == b"a"
    archive = tmp_path / "t.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname=".")
    done = subprocess.run(["tar", "-xf", str(archive), "-C", str(mnt.path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- inode numbers
def test_inode_numbers_survive_renames(mount_factory) -> None:
    mnt: Mount = mount_factory()
    (mnt / "a").write_bytes(b"a")
    os.mkdir(mnt / "d")
    (mnt / "d" / "inner").write_bytes(b"i")
    ino_file, ino_dir = os.stat(mnt / "a").st_ino, os.stat(mnt / "d").st_ino
    ino_inner = os.stat(mnt / "d" / "inner").st_ino
    os.rename(mnt / "a", mnt / "b")
    os.rename(mnt / "d", mnt / "e")
    assert os.stat(mnt / "b").st_ino == ino_file
    assert os.stat(mnt / "e").st_ino == ino_dir
    assert os.stat(mnt / "e" / "inner").st_ino == ino_inner
