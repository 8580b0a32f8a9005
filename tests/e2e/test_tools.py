"""Ordinary tools writing through the mount: cp -r, rsync, tar x, git.

Each copies a local tree in and the result is compared with the source: through the mount
(names, kinds, bytes, modes, symlink targets and, where the tool preserves them, mtimes) and
through boto3 with the key (every file's object holds the same bytes).
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

from tests.mounting import Mount

MiB = 1024 * 1024
MTIME = 981173106  # 2001-02-03 04:05:06 UTC


def keeps_dir_meta(mnt: Mount) -> bool:
    """SeaweedFS 4.48 stores directory marker objects ("d/") without their x-amz-meta-*:
    directory mtimes (and modes) are right while mounted but not after a remount there
    (tests/e2e/test_namespace.py::test_directory_attributes_survive_remount)."""
    return mnt.server.kind != "seaweedfs"


def run(*cmd: str | os.PathLike[str], cwd: Path | None = None,
        env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([os.fspath(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def make_tree(root: Path, big: bool = True) -> None:
    """A small tree with what tools care about: nesting, an empty dir, odd names, modes,
    a symlink, a multipart-sized file (with part_size=5M) and fixed mtimes."""
    rng = random.Random(11)
    files = {
        "README.txt": b"hello ssecfs\n" * 20,
        "bin/data.bin": rng.randbytes(300_000),
        "bin/tool.sh": b"#!/bin/sh\necho hi\n",
        "deep/er/still/leaf.txt": b"leaf\n",
        "name with spaces & \u00fcn\u00efc\u00f8de.txt": "\u00fcnicode content\n".encode(),
        "zero.bin": b"",
    }
    if big:
        files["big.bin"] = rng.randbytes(6 * MiB + 12_345)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "empty-dir").mkdir()
    os.chmod(root / "bin" / "tool.sh", 0o755)
    os.chmod(root / "bin" / "data.bin", 0o600)
    os.symlink("README.txt", root / "link-to-readme")
    for i, (dirpath, dirnames, filenames) in enumerate(sorted(os.walk(root), reverse=True)):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (MTIME + i, MTIME + i), follow_symlinks=False)
    os.utime(root, (MTIME, MTIME))


def snapshot(root: Path, mtimes: bool, dir_meta: bool = True) -> dict[str, tuple]:
    """rel path -> (kind, mode bits, content or link target[, mtime in seconds]);
    without `dir_meta`, directories' modes and mtimes are left out."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                entry: tuple = ("link", None, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                entry = ("dir", stat.S_IMODE(st.st_mode) if dir_meta else None, None)
            else:
                entry = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
            if mtimes:
                entry += (int(st.st_mtime) if dir_meta or entry[0] != "dir" else None,)
            out[rel] = entry
    return out


def assert_same_tree(src: Path, dst: Path, mtimes: bool, dir_meta: bool = True) -> None:
    a, b = snapshot(src, mtimes, dir_meta), snapshot(dst, mtimes, dir_meta)
    assert sorted(a) == sorted(b)
    for rel in a:
        assert a[rel] == b[rel], rel


def assert_in_bucket(mnt: Mount, src: Path, prefix: str) -> None:
    """Every regular file of `src` is an object under `prefix` with the same bytes."""
    keys = set(mnt.keys(prefix))
    for dirpath, _, filenames in os.walk(src):
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            key = prefix + str(p.relative_to(src))
            assert key in keys, key
            assert mnt.get(key) == p.read_bytes(), key
    assert mnt.uploads() == []


def test_cp_r(mount_factory, tmp_path: Path) -> None:
    mnt = mount_factory(["part_size=5M"])
    src = tmp_path / "src"
    make_tree(src)
    run("cp", "-r", src, mnt / "cp")
    assert_same_tree(src, mnt / "cp", mtimes=False)
    run("cp", "-a", src, mnt / "cp-a")  # -a also sets modes, owners and times
    assert_same_tree(src, mnt / "cp-a", mtimes=True)
    mnt.restart()
    assert_same_tree(src, mnt / "cp", mtimes=False, dir_meta=keeps_dir_meta(mnt))
    assert_same_tree(src, mnt / "cp-a", mtimes=True, dir_meta=keeps_dir_meta(mnt))
    assert_in_bucket(mnt, src, "cp/")
    assert mnt.get("cp/link-to-readme") == b"README.txt"


def test_rsync_then_nothing_to_transfer(mount_factory, tmp_path: Path) -> None:
    mnt = mount_factory(["part_size=5M"])
    src = tmp_path / "src"
    make_tree(src)
    run("rsync", "-a", f"{src}/", f"{mnt / 'rs'}/")
    assert_same_tree(src, mnt / "rs", mtimes=True)
    assert_in_bucket(mnt, src, "rs/")

    mnt.restart()  # what follows is compared with what is in the bucket, not in caches
    out = run("rsync", "-a", "--checksum", "--itemize-changes", f"{src}/", f"{mnt / 'rs'}/")
    lines = out.splitlines()
    if not keeps_dir_meta(mnt):  # directory times are lost there; rsync sets them again
        lines = [line for line in lines if not line.startswith(".d..t......")]
    assert lines == [], f"rsync found differences after a remount:\n{out}"

    # a real change is seen and transferred, and only that file
    (src / "README.txt").write_bytes(b"changed\n")
    os.utime(src / "README.txt", (MTIME, MTIME))
    out = run("rsync", "-a", "--checksum", "--itemize-changes", f"{src}/", f"{mnt / 'rs'}/")
    lines = [line.split(" ", 1)[1] for line in out.splitlines()
             if keeps_dir_meta(mnt) or not line.startswith(".d..t......")]
    assert lines == ["README.txt"], out
    assert mnt.get("rs/README.txt") == b"changed\n"


def test_tar_x(mount_factory, tmp_path: Path) -> None:
    mnt = mount_factory(["part_size=5M"])
    src = tmp_path / "src"
    make_tree(src)
    archive = tmp_path / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname="tree")
    (mnt / "x").mkdir()
    run("tar", "xf", archive, "-C", mnt / "x")
    assert_same_tree(src, mnt / "x" / "tree", mtimes=True)
    mnt.restart()
    assert_same_tree(src, mnt / "x" / "tree", mtimes=True, dir_meta=keeps_dir_meta(mnt))
    assert_in_bucket(mnt, src, "x/tree/")


def test_git_init_add_commit(mnt: Mount, tmp_path: Path) -> None:
    """git's lock files, renames over existing files, mmap reads and its fallback from link()
    (EPERM: S3 has no hard links) to rename() all work. A small tree: every negative lookup
    costs a HEAD and a LIST, and git makes many."""
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "README.txt").write_bytes(b"first version\n")
    (src / "bin" / "tool.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(src / "bin" / "tool.sh", 0o755)
    (src / "data.bin").write_bytes(random.Random(3).randbytes(200_000))
    os.symlink("README.txt", src / "link-to-readme")
    repo = mnt / "repo"
    shutil.copytree(src, repo, symlinks=True)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_DATE": "2001-02-03T04:05:06Z", "GIT_COMMITTER_DATE": "2001-02-03T04:05:06Z"}
    git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid",
           "-c", "init.defaultBranch=main"]
    # no template: the sample hooks are a dozen more files that test nothing new
    run(*git, "init", "-q", "--template=", cwd=repo, env=env)
    run(*git, "add", "-A", cwd=repo, env=env)
    run(*git, "commit", "-q", "-m", "first", cwd=repo, env=env)
    (repo / "README.txt").write_bytes(b"second version\n")
    (src / "README.txt").write_bytes(b"second version\n")
    run(*git, "commit", "-q", "-am", "second", cwd=repo, env=env)

    mnt.restart()
    assert run(*git, "status", "--porcelain", cwd=repo, env=env) == ""
    log = run(*git, "log", "--format=%s", cwd=repo, env=env)
    assert log.split() == ["second", "first"]
    # a clone out of the mount (through git's pack protocol: every object is read and
    # checked) has the committed tree
    clone = tmp_path / "clone"
    run(*git, "clone", "-q", "--no-local", repo, clone, env=env)
    shutil.rmtree(clone / ".git")
    a = {k: (v[0], v[2]) for k, v in snapshot(src, mtimes=False).items()}
    b = {k: (v[0], v[2]) for k, v in snapshot(clone, mtimes=False).items()}
    assert a == b
    assert os.stat(clone / "bin" / "tool.sh").st_mode & 0o100
    # git's objects are in the bucket, encrypted
    objects = [k for k in mnt.keys("repo/.git/objects/") if not k.endswith("/")]
    assert objects
    assert mnt.get_without_key_status(objects[0]) in (400, 403)
