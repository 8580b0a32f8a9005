"""Reading an SSE-C bucket through a real mount with ordinary tools (issue: "Mount an SSE-C
bucket and read it with ordinary tools").

Each bucket is populated through boto3 with SSE-C, the way `aws s3 cp --sse-c` would, and
every check compares bytes with the source. To keep the suite fast, the populated buckets of
this module are made and mounted once per server (module-scoped fixtures) and only read by
the tests; the tests that need their own bucket use `mount_factory`.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import os
import random
import re
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MountFactory
from tests.mounting import Mount, private_file, requests_in, sse
from tests.servers import S3Server

MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 allows (all parts but the last)

# ------------------------------------------------------------------------------- helpers


def run(cmd: list[str], cwd: Path | None = None, check: bool = True,
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, timeout=120)
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(cmd)} exited with {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace')}")
    return proc


def tree_of(root: Path) -> dict[str, bytes | None]:
    """Every path below root (relative, "/"-separated): file -> its bytes, directory -> None."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel + "/"
        for d in dirnames:
            out[prefix + d] = None
        for f in filenames:
            out[prefix + f] = Path(dirpath, f).read_bytes()
    return out


def assert_same_tree(got: dict[str, bytes | None], want: dict[str, bytes | None]) -> None:
    assert sorted(got) == sorted(want)
    for path, data in want.items():
        if data is None:
            assert got[path] is None, f"{path} should be a directory"
        else:
            assert got[path] is not None, f"{path} should be a file"
            assert len(got[path]) == len(data), f"{path}: size differs"  # type: ignore[arg-type]
            assert got[path] == data, f"{path}: content differs"


def put_multipart(client: Any, bucket: str, key: str, sse_key: bytes, parts: list[bytes],
                  metadata: dict[str, str] | None = None) -> None:
    """A multipart upload with the SSE-C triple on create, every part and complete (as the
    AWS CLI does with --sse-c)."""
    up = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata or {},
                                         **sse(sse_key))
    done = []
    for number, body in enumerate(parts, 1):
        resp = client.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                  PartNumber=number, Body=body, **sse(sse_key))
        done.append({"PartNumber": number, "ETag": resp["ETag"]})
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": done}, **sse(sse_key))


def warnings_naming(log: str, key: str) -> list[str]:
    """Log lines at WARNING level or above that name `key`."""
    return [line for line in log.splitlines()
            if key in line and re.search(r" (WARNING|ERROR|CRITICAL) ", line)]


def get_requests(log: str, key: str) -> list[tuple[int, int] | None]:
    """The successful GetObjects of `key` in a --debug log: [start, end) or None (whole)."""
    return [r.source_range for r in requests_in(log)
            if r.op == "GetObject" and r.key == key and r.ok]


def assert_alive(m: Mount) -> None:
    assert m.proc is not None and m.proc.poll() is None, f"ssecfs died:\n{m.log()[-5000:]}"


@dataclass
class Populated:
    """A bucket populated through boto3 and mounted once for a whole module."""

    server: S3Server
    bucket: str
    key: bytes
    key_file: Path
    base: Path
    mount: Mount
    objects: dict[str, bytes] = field(default_factory=dict)
    src: Path | None = None  # the same tree on the local disk
    put_window: tuple[float, float] = (0.0, 0.0)  # when the objects were uploaded
    extra: list[Mount] = field(default_factory=list)

    def another_mount(self, name: str, options: list[str]) -> Mount:
        m = Mount(server=self.server, bucket=self.bucket, key=self.key, key_file=self.key_file,
                  path=self.base / name, log_path=self.base / f"{name}.log", options=options)
        self.extra.append(m)
        return m.start()


def _populated(server: S3Server, base: Path, what: str) -> tuple[str, bytes, Path]:
    bucket = server.create_bucket(f"t-{what}-{secrets.token_hex(6)}")
    key = secrets.token_bytes(32)
    return bucket, key, private_file(base / "sse-c.key", key)


def _finish(p: Populated) -> None:
    codes = {m.path.name: m.stop() for m in [p.mount, *p.extra]}
    p.server.purge_bucket(p.bucket)
    bad = {name: code for name, code in codes.items() if code not in (0, None)}
    assert not bad, f"ssecfs exited with {bad}:\n{p.mount.log()[-5000:]}"


# ------------------------------------------------------------------------------- the tree

MULTIPART_KEY = "multipart/big.bin"
MULTIPART_PARTS = (PART, PART, 777_777)

# x-amz-meta-* as s3fs writes them (boto3 adds the "x-amz-meta-" part)
META_FULL = {"mode": str(0o100640), "uid": "1234", "gid": "5678", "mtime": "1600000000"}
META_MODE_ONLY = {"mode": str(0o100600)}
META_EXEC = {"mode": str(0o100755), "mtime": "1234567890"}
META_DIR = {"mode": str(0o40750), "uid": "2001", "gid": "2002", "mtime": "1500000000"}


def marker_metadata(tree: Populated) -> dict[str, str]:
    """What the server kept of the "d/" marker's metadata. SeaweedFS (4.48) stores "x/" keys
    as directories and drops their user metadata; RGW, like AWS, keeps it."""
    meta: dict[str, str] = tree.mount.head("d/")["Metadata"]
    if tree.server.kind == "rgw":
        assert meta == META_DIR
    return meta


def _tree_objects(rng: random.Random) -> dict[str, bytes]:
    def text(name: str, lines: int) -> bytes:
        return "".join(f"{name} line {i} {rng.random()}\n" for i in range(lines)).encode()

    return {
        "top.txt": text("top.txt", 3),
        "empty.txt": b"",
        "sp ace & ünï.txt": text("sp ace & ünï.txt", 5),
        "a/one.bin": rng.randbytes(1000),
        "a/b/two.bin": rng.randbytes(70_000),
        "a/b/c/deep.txt": text("a/b/c/deep.txt", 200),  # a, a/b, a/b/c: implied by prefixes
        "d/inside.txt": text("d/inside.txt", 2),  # d/ is a marker object with metadata
        "d/sub/x.bin": rng.randbytes(300_001),
        "meta/full.bin": rng.randbytes(5000),
        "meta/mode-only.txt": text("meta/mode-only.txt", 1),
        "meta/exec.sh": b"#!/bin/sh\necho " + rng.randbytes(8).hex().encode() + b"\n",
        "meta/plain.bin": rng.randbytes(123),
        MULTIPART_KEY: rng.randbytes(sum(MULTIPART_PARTS)),
    }


@pytest.fixture(scope="module")
def tree(s3server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    """A bucket with small files, nested and implied directories, an empty file, an empty
    directory, a directory marker with s3fs metadata, files with and without s3fs metadata
    and a 3-part multipart object; `src` is the same tree on the local disk."""
    base = tmp_path_factory.mktemp(f"tree-{s3server.kind}")
    bucket, key, key_file = _populated(s3server, base, "read-tree")
    rng = random.Random(f"ssecfs tree {s3server.kind}")
    objects = _tree_objects(rng)
    metadata = {"meta/full.bin": META_FULL, "meta/mode-only.txt": META_MODE_ONLY,
                "meta/exec.sh": META_EXEC}
    client = s3server.boto3_client()
    t0 = time.time()
    try:
        for name, body in objects.items():
            if name == MULTIPART_KEY:
                offsets = [0]
                for size in MULTIPART_PARTS:
                    offsets.append(offsets[-1] + size)
                put_multipart(client, bucket, name, key,
                              [body[a:b] for a, b in zip(offsets, offsets[1:], strict=False)])
            else:
                client.put_object(Bucket=bucket, Key=name, Body=body,
                                  Metadata=metadata.get(name, {}), **sse(key))
        # s3fs-style directory marker, encrypted like every s3fs object
        client.put_object(Bucket=bucket, Key="d/", Body=b"", Metadata=META_DIR,
                          ContentType="application/x-directory", **sse(key))
        # an empty "folder" as the S3 consoles make it: a plain marker without SSE-C
        client.put_object(Bucket=bucket, Key="emptydir/", Body=b"")
        t1 = time.time()

        src = base / "src"
        for name, body in objects.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(body)
        (src / "emptydir").mkdir()

        m = Mount(server=s3server, bucket=bucket, key=key, key_file=key_file,
                  path=base / "mnt", log_path=base / "mnt.log")
        p = Populated(s3server, bucket, key, key_file, base, m, objects, src, (t0, t1))
        m.start()
    except BaseException:
        s3server.purge_bucket(bucket)
        raise
    try:
        yield p
    finally:
        _finish(p)


def _src(tree: Populated) -> Path:
    assert tree.src is not None
    return tree.src


def test_multipart_object_is_really_multipart(tree: Populated) -> None:
    """The fixture's big object went up in 3 parts (the ETag of a multipart upload ends
    in -N on both servers), so the boundary tests below test what they claim to."""
    etag = tree.mount.head(MULTIPART_KEY)["ETag"].strip('"')
    assert etag.endswith(f"-{len(MULTIPART_PARTS)}"), etag


def test_ls_l_shows_names_sizes_and_kinds(tree: Populated) -> None:
    def listing(path: Path) -> dict[str, tuple[str, int, int, int]]:
        out = run(["ls", "-ln", "--time-style=+%s", "--quoting-style=literal", str(path)])
        assert out.stderr == b""
        rows: dict[str, tuple[str, int, int, int]] = {}
        for line in out.stdout.decode().splitlines()[1:]:  # "total N" first
            perms, _links, uid, gid, size, _mtime, name = line.split(maxsplit=6)
            rows[name] = (perms, int(uid), int(gid), int(size))
        return rows

    src = _src(tree)
    for rel in ("", "a", "a/b", "d", "meta", "multipart", "emptydir"):
        want = {e.name: e for e in os.scandir(src / rel)}
        got = listing(tree.mount.path / rel)
        assert sorted(got) == sorted(want), rel
        for name, e in want.items():
            perms = got[name][0]
            if e.is_dir():
                assert perms.startswith("d"), (rel, name, perms)
            else:
                assert perms.startswith("-"), (rel, name, perms)
                assert got[name][3] == e.stat().st_size, (rel, name)
    meta = listing(tree.mount.path / "meta")
    assert meta["full.bin"][:3] == ("-rw-r-----", 1234, 5678)
    assert meta["exec.sh"][0] == "-rwxr-xr-x"
    if marker_metadata(tree):
        assert listing(tree.mount.path)["d"][:3] == ("drwxr-x---", 2001, 2002)
    assert_alive(tree.mount)


def test_cat(tree: Populated) -> None:
    mnt = tree.mount.path
    assert run(["cat", str(mnt / "top.txt")]).stdout == tree.objects["top.txt"]
    names = ["a/one.bin", "empty.txt", MULTIPART_KEY, "sp ace & ünï.txt", "a/b/c/deep.txt"]
    out = run(["cat", *[str(mnt / n) for n in names]]).stdout
    assert out == b"".join(tree.objects[n] for n in names)


def test_cp_r_copies_an_identical_tree(tree: Populated, tmp_path: Path) -> None:
    dst = tmp_path / "copy"
    run(["cp", "-r", str(tree.mount.path), str(dst)])
    assert_same_tree(tree_of(dst), tree_of(_src(tree)))
    # and GNU diff agrees, reading through the mount once more
    run(["diff", "-r", str(_src(tree)), str(tree.mount.path)])


def test_find_lists_exactly_the_expected_paths(tree: Populated) -> None:
    want = tree_of(_src(tree))

    def find(*args: str) -> list[str]:
        out = run(["find", ".", *args, "-print0"], cwd=tree.mount.path)
        assert out.stderr == b""
        return sorted(p.removeprefix("./") for p in out.stdout.decode().split("\0") if p)

    assert find() == sorted(["."] + list(want))
    assert find("-type", "f") == sorted(p for p, d in want.items() if d is not None)
    assert find("-mindepth", "1", "-type", "d") == sorted(p for p, d in want.items() if d is None)
    assert find("-empty") == ["empty.txt", "emptydir"]


def test_md5sum_equals_the_local_md5(tree: Populated) -> None:
    files = sorted(tree.objects)
    out = run(["md5sum", "--", *files], cwd=tree.mount.path).stdout.decode()
    got = {}
    for line in out.splitlines():
        digest, name = line.split("  ", 1)
        got[name] = digest
    assert got == {n: hashlib.md5(tree.objects[n]).hexdigest() for n in files}


def test_tar_of_the_tree_extracts_to_identical_content(tree: Populated, tmp_path: Path) -> None:
    archive = tmp_path / "tree.tar"
    out = run(["tar", "-C", str(tree.mount.path), "-cf", str(archive), "."])
    # GNU tar warns "file changed as we read it" when size or mtime move between its stats
    assert out.stderr == b""
    dst = tmp_path / "extracted"
    dst.mkdir()
    run(["tar", "-C", str(dst), "-xf", str(archive)])
    assert_same_tree(tree_of(dst), tree_of(_src(tree)))
    # tar recorded the attributes the mount showed (root extracts modes and owners as stored)
    st = os.stat(dst / "meta/full.bin")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == \
        (0o640, 1234, 5678, 1600000000)


def test_random_reads_match_the_source(tree: Populated) -> None:
    """Python open/seek/read at seeded random offsets and sizes, in several handles (each open
    starts with an empty page cache: the mount opens files without keep_cache)."""
    rng = random.Random(4242)
    sizes = [1, 2, 100, 4095, 4096, 4097, 65_536, 131_073, MiB + 3, 3 * MiB]
    names = [MULTIPART_KEY, "d/sub/x.bin", "a/b/two.bin", "a/b/c/deep.txt", "top.txt"]
    reads = 0
    for round_ in range(30):
        name = names[round_ % len(names)]
        data = tree.objects[name]
        with open(tree.mount.path / name, "rb") as f:
            for _ in range(12):
                offset = rng.randrange(0, len(data) + 50)
                size = rng.choice(sizes)
                f.seek(offset)
                got = f.read(size)
                assert got == data[offset:offset + size], (name, offset, size)
                assert f.tell() == min(offset + size, max(len(data), offset))
                reads += 1
    assert reads == 360
    assert_alive(tree.mount)


def test_reads_across_multipart_boundaries(tree: Populated) -> None:
    data = tree.objects[MULTIPART_KEY]
    path = tree.mount.path / MULTIPART_KEY
    assert os.stat(path).st_size == len(data)
    cases = []
    for boundary in (PART, 2 * PART):
        for before, after in ((1, 1), (1, 0), (0, 1), (4096, 4096), (100_000, 300_001),
                              (PART - 1, 1)):
            cases.append((boundary - before, before + after))
    cases.append((PART - 10, PART + 20))  # spans both boundaries
    cases.append((0, len(data)))
    for offset, size in cases:
        with open(path, "rb") as f:  # a fresh handle: nothing cached from the previous case
            f.seek(offset)
            assert f.read(size) == data[offset:offset + size], (offset, size)
    # os.pread in one handle, backwards over the boundaries
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in (2 * PART + 5, 2 * PART - 7, PART + 3, PART - 9, 0):
            assert os.pread(fd, 20, offset) == data[offset:offset + 20], offset
    finally:
        os.close(fd)


def test_attributes_from_s3fs_metadata(tree: Populated) -> None:
    mnt = tree.mount.path
    st = os.stat(mnt / "meta/full.bin")
    assert st.st_mode == 0o100640
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_mtime == 1600000000
    assert st.st_size == len(tree.objects["meta/full.bin"])

    st = os.stat(mnt / "meta/exec.sh")
    assert st.st_mode == 0o100755
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())  # not in the metadata
    assert st.st_mtime == 1234567890
    assert os.access(mnt / "meta/exec.sh", os.X_OK)
    assert run(["sh", str(mnt / "meta/exec.sh")]).stdout == \
        tree.objects["meta/exec.sh"].split(b"echo ")[1]

    st = os.stat(mnt / "meta/mode-only.txt")
    assert st.st_mode == 0o100600
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())

    st = os.stat(mnt / "d")  # the "d/" marker object's metadata
    if marker_metadata(tree):
        assert st.st_mode == 0o40750
        assert (st.st_uid, st.st_gid) == (2001, 2002)
        assert st.st_mtime == 1500000000
    else:  # the server dropped it: a directory like any other
        assert st.st_mode == 0o40755
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())

    # no metadata: the defaults (uid/gid of the mounting user, umask 022) and the
    # object's Last-Modified as mtime
    t0, t1 = tree.put_window
    for name in ("meta/plain.bin", "top.txt", "a/b/c/deep.txt", MULTIPART_KEY):
        st = os.stat(mnt / name)
        assert st.st_mode == 0o100644, name
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), name
        assert t0 - 5 <= st.st_mtime <= t1 + 5, name
        assert st.st_size == len(tree.objects[name]), name
    for name in ("", "a", "a/b", "d/sub", "emptydir"):
        st = os.stat(mnt / name)
        assert st.st_mode == 0o40755, name
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), name


def test_uid_gid_umask_options_change_the_defaults(tree: Populated) -> None:
    m = tree.another_mount("mnt-opts", ["uid=1000,gid=1001,umask=027"])
    try:
        mnt = m.path
        for name in ("meta/plain.bin", "top.txt", MULTIPART_KEY, "empty.txt"):
            st = os.stat(mnt / name)
            assert st.st_mode == 0o100640, name
            assert (st.st_uid, st.st_gid) == (1000, 1001), name
        for name in ("", "a", "a/b/c", "emptydir", "d/sub"):
            st = os.stat(mnt / name)
            assert st.st_mode == 0o40750, name
            assert (st.st_uid, st.st_gid) == (1000, 1001), name
        # what the metadata says wins over the options; what it leaves out does not
        st = os.stat(mnt / "meta/full.bin")
        assert (st.st_mode, st.st_uid, st.st_gid) == (0o100640, 1234, 5678)
        st = os.stat(mnt / "meta/mode-only.txt")
        assert (st.st_mode, st.st_uid, st.st_gid) == (0o100600, 1000, 1001)
        st = os.stat(mnt / "d")
        if marker_metadata(tree):
            assert (st.st_mode, st.st_uid, st.st_gid) == (0o40750, 2001, 2002)
        else:
            assert (st.st_mode, st.st_uid, st.st_gid) == (0o40750, 1000, 1001)
        # the options change attributes only, never content
        assert (mnt / MULTIPART_KEY).read_bytes() == tree.objects[MULTIPART_KEY]
    finally:
        assert m.stop() == 0, m.log()[-5000:]


# ------------------------------------------------------------------ mixed keys, big object

DOCS = {
    "docs/good-1.txt": b"the first good file\n",
    "docs/good-2.txt": b"the second good file, a little longer\n",
    "docs/sub/good-3.txt": b"a good file in a subdirectory\n",
}
OTHER_KEY_OBJ = "docs/other-key.bin"
PLAIN_OBJ = "docs/unencrypted.txt"
HUGE = "huge.bin"
HUGE_SIZE = 40 * MiB


@pytest.fixture(scope="module")
def mixed(s3server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    """Good objects next to one under another key, one without SSE-C and a 40 MiB object."""
    base = tmp_path_factory.mktemp(f"mixed-{s3server.kind}")
    bucket, key, key_file = _populated(s3server, base, "read-mixed")
    rng = random.Random(f"ssecfs mixed {s3server.kind}")
    client = s3server.boto3_client()
    objects = dict(DOCS)
    objects[OTHER_KEY_OBJ] = rng.randbytes(12_345)
    objects[PLAIN_OBJ] = b"stored without SSE-C " + rng.randbytes(8).hex().encode() + b"\n"
    objects[HUGE] = rng.randbytes(HUGE_SIZE)
    try:
        for name, body in objects.items():
            if name == OTHER_KEY_OBJ:
                client.put_object(Bucket=bucket, Key=name, Body=body,
                                  **sse(secrets.token_bytes(32)))
            elif name == PLAIN_OBJ:
                client.put_object(Bucket=bucket, Key=name, Body=body)
            else:
                client.put_object(Bucket=bucket, Key=name, Body=body, **sse(key))
        m = Mount(server=s3server, bucket=bucket, key=key, key_file=key_file,
                  path=base / "mnt", log_path=base / "mnt.log")
        p = Populated(s3server, bucket, key, key_file, base, m, objects)
        m.start()
    except BaseException:
        s3server.purge_bucket(bucket)
        raise
    try:
        yield p
    finally:
        _finish(p)


def test_wrong_key_object_is_listed_but_unreadable(mixed: Populated, tmp_path: Path) -> None:
    mnt = mixed.mount.path
    wrong = mnt / OTHER_KEY_OBJ
    # listed, with the size from the listing (no key needed for that)
    out = run(["ls", "-ln", str(mnt / "docs")]).stdout.decode()
    assert "other-key.bin" in out
    assert os.stat(wrong).st_size == len(mixed.objects[OTHER_KEY_OBJ])
    assert "other-key.bin" in os.listdir(mnt / "docs")

    for _ in range(3):
        with pytest.raises(PermissionError) as exc:
            wrong.read_bytes()
        assert exc.value.errno == errno.EACCES
    cat = run(["cat", str(wrong)], check=False)
    assert cat.returncode != 0 and b"Permission denied" in cat.stderr
    assert cat.stdout == b""

    # the rest of the mount keeps working, even a copy of the directory that holds it
    for name, body in DOCS.items():
        assert (mnt / name).read_bytes() == body
    dst = tmp_path / "docs"
    cp = run(["cp", "-r", str(mnt / "docs"), str(dst)], check=False)
    assert cp.returncode != 0 and b"other-key.bin" in cp.stderr
    for name, body in DOCS.items():
        assert (dst / name.removeprefix("docs/")).read_bytes() == body
    assert_alive(mixed.mount)

    # ... and the daemon says so once, naming the object
    lines = warnings_naming(mixed.mount.log(), OTHER_KEY_OBJ)
    assert len(lines) == 1, lines
    assert "outside this mount's key ring" in lines[0]


def test_unencrypted_object_is_readable_and_logged(mixed: Populated) -> None:
    path = mixed.mount.path / PLAIN_OBJ
    assert path.read_bytes() == mixed.objects[PLAIN_OBJ]
    assert run(["cat", str(path)]).stdout == mixed.objects[PLAIN_OBJ]
    lines = warnings_naming(mixed.mount.log(), PLAIN_OBJ)
    assert len(lines) == 1, lines
    assert "without SSE-C" in lines[0]


def test_encrypted_only_refuses_unencrypted_objects(mixed: Populated) -> None:
    m = mixed.another_mount("mnt-encrypted-only", ["encrypted_only"])
    try:
        path = m.path / PLAIN_OBJ
        assert "unencrypted.txt" in os.listdir(m.path / "docs")
        with pytest.raises(PermissionError) as exc:
            path.read_bytes()
        assert exc.value.errno == errno.EACCES
        assert run(["cat", str(path)], check=False).returncode != 0
        for name, body in DOCS.items():
            assert (m.path / name).read_bytes() == body
        assert_alive(m)
        lines = warnings_naming(m.log(), PLAIN_OBJ)
        assert len(lines) == 1 and "encrypted_only" in lines[0], lines
    finally:
        assert m.stop() == 0, m.log()[-5000:]


def test_small_read_of_a_big_object_fetches_little(mixed: Populated) -> None:
    data = mixed.objects[HUGE]
    path = mixed.mount.path / HUGE
    assert os.stat(path).st_size == HUGE_SIZE

    def fetched_since(mark: int) -> list[tuple[int, int]]:
        requests = get_requests(mixed.mount.log()[mark:], HUGE)
        assert requests, "no GetObject of huge.bin in the debug log"
        assert None not in requests, "the whole object was fetched"
        return requests  # type: ignore[return-value]

    # read(2) of 4 KiB at 20 MiB
    mark = len(mixed.mount.log())
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 20 * MiB) == data[20 * MiB:20 * MiB + 4096]
    finally:
        os.close(fd)
    requests = fetched_since(mark)
    total = sum(end - start for start, end in requests)
    assert total <= 512 * 1024, f"fetched {total} bytes for a 4 KiB read: {requests}"
    assert all(start <= 20 * MiB < end for start, end in requests), requests

    # Python's buffered f.read(4096): the buffer is st_blksize, so the kernel sees a 1 MiB
    # read(2), split into eight 128 KiB READs in a row; that is still a small read
    mark = len(mixed.mount.log())
    with open(path, "rb") as f:
        f.seek(4 * MiB)
        assert f.read(4096) == data[4 * MiB:4 * MiB + 4096]
    requests = fetched_since(mark)
    total = sum(end - start for start, end in requests)
    assert total <= 6 * MiB, f"fetched {total} bytes for a 4 KiB Python read: {requests}"
    assert_alive(mixed.mount)


# ------------------------------------------------------------------ a big directory

MANY = 1_500


def test_directory_with_many_entries_is_listed_completely(mount_factory: MountFactory) -> None:
    """More entries than one ListObjectsV2 page (1,000) in one directory."""
    m = mount_factory(start=False)
    client = m.server.boto3_client(config=m.server.client_config(max_pool_connections=24))
    names = [f"entry-{i:05d}.txt" for i in range(MANY)]

    def put(name: str) -> None:
        client.put_object(Bucket=m.bucket, Key=f"many/{name}", Body=f"{name}\n".encode(),
                          **sse(m.key))

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, names))
    m.put("many-sibling.txt", b"next to the directory\n")
    try:
        m.start()
        assert sorted(os.listdir(m.path / "many")) == names
        out = run(["ls", "-1", str(m.path / "many")]).stdout.decode().splitlines()
        assert out == names
        found = run(["find", "many", "-type", "f"], cwd=m.path).stdout.decode().split()
        assert len(found) == MANY
        assert sorted(os.listdir(m.path)) == ["many", "many-sibling.txt"]
        # entries from the second page can be looked up and read
        for name in (names[0], names[999], names[1000], names[-1]):
            assert (m.path / "many" / name).read_bytes() == f"{name}\n".encode()
        assert_alive(m)
    finally:
        # DeleteObjects in batches: much faster than the bucket fixture's clean-up
        for i in range(0, MANY, 1000):
            client.delete_objects(Bucket=m.bucket, Delete={"Quiet": True, "Objects": [
                {"Key": f"many/{n}"} for n in names[i:i + 1000]]})


@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel's read-ahead is set through sysfs")
def test_the_kernel_reads_ahead_in_megabytes_on_the_mount(mnt: Mount) -> None:
    """read_ahead_kb 1024: a sequential reader's READs come in 1 MiB, not 128 KiB."""
    dev = os.stat(mnt.path).st_dev
    ra = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    assert ra.read_text().strip() == "1024"
    data = os.urandom(5 * 1024 * 1024 + 17)
    mnt.put("seq.bin", data)
    assert (mnt / "seq.bin").read_bytes() == data
