"""Configurations `ssecfs mount` must refuse: each exits != 0 with ONE line on stderr that
names the problem (no traceback), and leaves nothing mounted and no process behind.

The background mode (no -f) is the default and what mount(8) and fstab use: there the reason
comes from the forked daemon through the parent, so most cases run in it; the ones a user
meets most also run in the foreground.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuse_util import is_mounted, require_fuse, unmount
from tests.mounting import SSECFS, sse
from tests.servers import S3Server

MODES = ["background", "foreground"]
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# ------------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ssecfs_pids(mountpoint: Path) -> list[int]:
    """Processes of ssecfs serving (or trying to serve) `mountpoint` (a unique tmp path)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.fsencode(mountpoint) in args and any(b"ssecfs" in a for a in args):
            pids.append(int(entry.name))
    return pids


def wait_gone(mountpoint: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while ssecfs_pids(mountpoint) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ssecfs_pids(mountpoint), f"an ssecfs process for {mountpoint} is still running"


def assert_nothing_left(mountpoint: Path) -> None:
    assert not is_mounted(mountpoint), f"{mountpoint} stayed mounted"
    wait_gone(mountpoint)


def assert_refused(proc: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    """Exit status != 0, exactly one line on stderr naming the problem, no traceback."""
    err = proc.stderr.decode(errors="replace")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode != 0, f"exit status 0; stderr: {err!r}"
    assert "Traceback" not in err + out, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    line = lines[0]
    assert line.startswith("ssecfs: "), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    assert out == "", f"stdout: {out!r}"
    return line


def write_key(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


class Runner:
    """Runs `ssecfs mount` in a subprocess and cleans up whatever it may leave behind."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.mountpoints: list[Path] = []

    def mountpoint(self, name: str = "mnt") -> Path:
        p = self.tmp / name
        p.mkdir(exist_ok=True)
        self.mountpoints.append(p)
        return p

    def run(self, source: str, mountpoint: Path, *args: str, mode: str = "background",
            env: dict[str, str] | None = None, timeout: float = 120,
            pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[bytes]:
        if mountpoint not in self.mountpoints:
            self.mountpoints.append(mountpoint)
        extra = ["-f"] if mode == "foreground" else \
            ["--log-file", str(self.tmp / f"{mountpoint.name}.log")]
        full_env = dict(os.environ)
        full_env.update({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x" * 40,
                         "AWS_EC2_METADATA_DISABLED": "true"})
        full_env.update(env or {})
        return subprocess.run([*SSECFS, "mount", source, str(mountpoint), *args, *extra],
                              env=full_env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, pass_fds=pass_fds)

    def log(self, mountpoint: Path) -> str:
        try:
            return (self.tmp / f"{mountpoint.name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cleanup(self) -> None:
        for mp in self.mountpoints:
            if is_mounted(mp):
                unmount(mp) or unmount(mp, lazy=True)
            deadline = time.monotonic() + 10
            while ssecfs_pids(mp) and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid in ssecfs_pids(mp):  # ours: started by this test for this mountpoint
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    require_fuse()
    r = Runner(tmp_path)
    try:
        yield r
    finally:
        r.cleanup()


def server_args(srv: S3Server) -> list[str]:
    return ["--endpoint-url", srv.endpoint, "--ca-bundle", srv.ca_bundle]


# ------------------------------------------------- refused before any request is made


def test_key_file_missing(runner: Runner, tmp_path: Path) -> None:
    mnt = runner.mountpoint()
    missing = tmp_path / "nope.key"
    proc = runner.run("bucket", mnt, "--key-file", str(missing),
                      "--endpoint-url", "https://127.0.0.1:1")
    line = assert_refused(proc, str(missing), "does not exist")
    assert "keygen" in line  # says how to make one
    assert_nothing_left(mnt)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_file_readable_by_others(runner: Runner, tmp_path: Path, mode: int) -> None:
    mnt = runner.mountpoint()
    key = write_key(tmp_path / "open.key", secrets.token_bytes(32), mode)
    proc = runner.run("bucket", mnt, "--key-file", str(key),
                      "--endpoint-url", "https://127.0.0.1:1")
    assert_refused(proc, str(key), "chmod 600")
    assert_nothing_left(mnt)


@pytest.mark.parametrize("content", [
    b"sesame-SECRETWORD\n",  # too short
    b"x" * 31 + b"SECRETWORD\n",  # 41 characters
    bytes(range(32)).hex().encode(),  # hex is not one of the accepted forms
    b"U0VDUkVUV09SRA==\n",  # base64, but of 10 bytes
    b"",
], ids=["short", "long", "hex", "base64-short", "empty"])
def test_key_file_bad_format(runner: Runner, tmp_path: Path, content: bytes) -> None:
    mnt = runner.mountpoint()
    key = write_key(tmp_path / "bad.key", content)
    proc = runner.run("bucket", mnt, "--key-file", str(key),
                      "--endpoint-url", "https://127.0.0.1:1")
    line = assert_refused(proc, str(key), "32 raw bytes", "base64")
    # the message lists the accepted forms and never echoes what the file holds
    assert "SECRETWORD" not in line and "U0VDUkVUV09SRA" not in line
    if len(content) > 40:
        assert content.decode().strip() not in line
    assert_nothing_left(mnt)


# Bad options and key inputs, each refused with its exit status (errors.py) and one line:
# (id, arguments, exit status, words of the line). {key} is a good key file, {fifo} a FIFO,
# {fd} a descriptor of a key file of mode 0644, {theirs} a key file of uid 65534.
BAD_COMMAND_LINES = [
    ("fifo-key-file", ["--key-file", "{fifo}"], 3, ["fifo", "not a regular file"]),
    ("part_size-inf", ["-o", "part_size=inf"], 2, ["part_size", "whole number"]),
    ("write_buffer_memory-1e400", ["-o", "write_buffer_memory=1e400"], 2,
     ["write_buffer_memory", "whole number"]),
    ("uid-negative", ["-o", "uid=-1"], 2, ["uid", "4294967294"]),
    ("uid-huge", ["-o", "uid=99999999999"], 2, ["uid", "4294967294"]),
    ("gid-negative", ["-o", "gid=-1"], 2, ["gid", "4294967294"]),
    ("gid-huge", ["-o", "gid=99999999999"], 2, ["gid", "4294967294"]),
    ("cache_ttl-nan", ["-o", "cache_ttl=nan"], 2, ["cache_ttl", "finite"]),
    ("connect_timeout-negative", ["-o", "connect_timeout=-1"], 2,
     ["connect_timeout", "above 0"]),
    ("endpoint-no-host", ["--endpoint-url", "https://"], 4, ["no host", "https://HOST"]),
    ("endpoint-space", ["--endpoint-url", "https://s3 .example.com"], 4,
     ["space", "https://HOST"]),
    ("key-fd-readable-file", ["--key-fd", "{fd}"], 3, ["--key-fd", "chmod 600"]),
    ("key-file-of-another-user", ["--key-file", "{theirs}"], 3, ["uid 65534", "chown"]),
    ("cache_dir-unwritable", ["-o", "cache_dir={blocker}/spill"], 2,
     ["cache_dir", "-o cache_dir="]),
]


@pytest.mark.parametrize(("args", "status", "needles"), [c[1:] for c in BAD_COMMAND_LINES],
                         ids=[c[0] for c in BAD_COMMAND_LINES])
def test_bad_command_lines(runner: Runner, key_file: Path, tmp_path: Path, args: list[str],
                           status: int, needles: list[str]) -> None:
    mnt = runner.mountpoint()
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo, 0o600)
    readable = write_key(tmp_path / "open.key", secrets.token_bytes(32), 0o644)
    theirs = write_key(tmp_path / "theirs.key", secrets.token_bytes(32))
    blocker = tmp_path / "a-file"  # a cache_dir below a regular file cannot be made
    blocker.write_bytes(b"")
    if "{theirs}" in args:
        if os.getuid() != 0:
            pytest.skip("needs root to give a file to another user")
        os.chown(theirs, 65534, 65534)
    fd = os.open(readable, os.O_RDONLY)  # the child gets it under the same number
    try:
        argv = [a.format(key=key_file, fifo=fifo, theirs=theirs, fd=fd, blocker=blocker)
                for a in args]
        if "--key-file" not in argv and "--key-fd" not in argv:
            argv += ["--key-file", str(key_file)]
        if "--endpoint-url" not in argv:
            argv += ["--endpoint-url", "https://127.0.0.1:1"]
        for mode in MODES:
            proc = runner.run("bucket", mnt, *argv, mode=mode, timeout=30, pass_fds=(fd,))
            line = assert_refused(proc, *needles)
            assert proc.returncode == status, (proc.returncode, line)
            assert "unexpected" not in line
    finally:
        os.close(fd)
    assert_nothing_left(mnt)


def test_plain_http_endpoint_is_refused_before_any_request(runner: Runner,
                                                           key_file: Path) -> None:
    mnt = runner.mountpoint()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        for mode in MODES:
            proc = runner.run("bucket", mnt, "--key-file", str(key_file),
                              "--endpoint-url", f"http://127.0.0.1:{port}", mode=mode)
            assert_refused(proc, f"http://127.0.0.1:{port}", "https")
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody connected: no request was made
            listener.accept()
    assert_nothing_left(mnt)


def test_mountpoint_missing(runner: Runner, key_file: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "not-there"
    proc = runner.run("bucket", mnt, "--key-file", str(key_file),
                      "--endpoint-url", "https://127.0.0.1:1")
    assert_refused(proc, str(mnt), "does not exist", "mkdir")
    assert not mnt.exists()
    wait_gone(mnt)


def test_mountpoint_not_a_directory(runner: Runner, key_file: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "a-file"
    mnt.write_bytes(b"not a directory\n")
    runner.mountpoints.append(mnt)
    proc = runner.run("bucket", mnt, "--key-file", str(key_file),
                      "--endpoint-url", "https://127.0.0.1:1")
    assert_refused(proc, str(mnt), "not a directory")
    assert mnt.read_bytes() == b"not a directory\n"
    assert_nothing_left(mnt)


def test_unreachable_endpoint(runner: Runner, key_file: Path) -> None:
    mnt = runner.mountpoint()
    endpoint = f"https://127.0.0.1:{_free_port()}"  # nothing listens there
    proc = runner.run("bucket", mnt, "--key-file", str(key_file), "--endpoint-url", endpoint)
    assert_refused(proc, endpoint, "cannot reach")
    assert_nothing_left(mnt)


# ------------------------------------------------------ refused by what the server says


@pytest.mark.parametrize("mode", MODES)
def test_bucket_does_not_exist(runner: Runner, s3server: S3Server, key_file: Path,
                               mode: str) -> None:
    mnt = runner.mountpoint()
    name = f"t-missing-{secrets.token_hex(6)}"
    proc = runner.run(name, mnt, "--key-file", str(key_file), *server_args(s3server),
                      env=s3server.env(), mode=mode)
    assert_refused(proc, f"bucket {name}", "does not exist")
    assert_nothing_left(mnt)


@pytest.mark.parametrize("mode", MODES)
def test_bad_credentials(runner: Runner, s3server: S3Server, bucket: str, key_file: Path,
                         mode: str) -> None:
    mnt = runner.mountpoint()
    wrong_secret = "WRONG" + secrets.token_hex(16)
    env = dict(s3server.env(), AWS_SECRET_ACCESS_KEY=wrong_secret)
    proc = runner.run(bucket, mnt, "--key-file", str(key_file), *server_args(s3server),
                      env=env, mode=mode)
    line = assert_refused(proc, "credentials")
    assert wrong_secret not in line
    assert wrong_secret not in runner.log(mnt)
    assert_nothing_left(mnt)


def test_untrusted_certificate(runner: Runner, s3server: S3Server, bucket: str,
                               key_file: Path) -> None:
    """Without --ca-bundle, the environment's bundle (the system's, as on this machine and
    in CI) does not hold the test CA: refused, and the message says what to pass."""
    system = SYSTEM_CA_BUNDLE if os.path.exists(SYSTEM_CA_BUNDLE) else \
        ssl.get_default_verify_paths().cafile
    assert system and os.path.exists(system)
    env = dict(s3server.env(), AWS_CA_BUNDLE=system, REQUESTS_CA_BUNDLE=system,
               SSL_CERT_FILE=system, CURL_CA_BUNDLE=system)
    mnt = runner.mountpoint()
    proc = runner.run(bucket, mnt, "--key-file", str(key_file),
                      "--endpoint-url", s3server.endpoint, env=env)
    assert_refused(proc, "certificate", "--ca-bundle")
    assert_nothing_left(mnt)


@pytest.mark.parametrize("mode", MODES)
def test_key_that_opens_no_object(runner: Runner, s3server: S3Server, bucket: str,
                                  key_file: Path, mode: str) -> None:
    """A bucket full of objects under key A, mounted with key B: refused, with a hint."""
    other = secrets.token_bytes(32)
    client = s3server.boto3_client()
    for i in range(8):
        client.put_object(Bucket=bucket, Key=f"dir/obj-{i}.bin", Body=os.urandom(100 + i),
                          **sse(other))
    mnt = runner.mountpoint()
    proc = runner.run(bucket, mnt, "--key-file", str(key_file), *server_args(s3server),
                      env=s3server.env(), mode=mode)
    assert_refused(proc, str(key_file), "no_key_check")
    assert_nothing_left(mnt)
    if mode == "foreground":
        return
    # the hint works: mounted anyway, the objects are listed and refuse to be read
    proc = runner.run(bucket, mnt, "--key-file", str(key_file), *server_args(s3server),
                      "-o", "no_key_check", env=s3server.env())
    assert proc.returncode == 0, proc.stderr
    try:
        assert sorted(os.listdir(mnt / "dir")) == [f"obj-{i}.bin" for i in range(8)]
        with pytest.raises(PermissionError) as exc:
            (mnt / "dir/obj-3.bin").read_bytes()
        assert exc.value.errno == errno.EACCES
    finally:
        assert unmount(mnt)
    assert_nothing_left(mnt)


# ------------------------------------------------------------------ the background mode


def test_background_mount_returns_once_mounted(runner: Runner, s3server: S3Server,
                                               bucket: str, sse_key: bytes,
                                               key_file: Path) -> None:
    client = s3server.boto3_client()
    body = b"ready when mount returns " + secrets.token_hex(8).encode()
    client.put_object(Bucket=bucket, Key="hello.txt", Body=body, **sse(sse_key))
    mnt = runner.mountpoint()
    proc = runner.run(bucket, mnt, "--key-file", str(key_file), *server_args(s3server),
                      env=s3server.env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"" and proc.stdout == b""
    # no waiting: the mount is there the moment the command returns
    assert os.listdir(mnt) == ["hello.txt"]
    assert (mnt / "hello.txt").read_bytes() == body
    assert is_mounted(mnt)
    pids = ssecfs_pids(mnt)
    assert len(pids) == 1, pids  # the parent is gone, the daemon serves

    # fusermount3 -u ends the daemon
    done = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert_nothing_left(mnt)
    log = runner.log(mnt)
    assert "Traceback" not in log, log
