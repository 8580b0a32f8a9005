"""ssecfs run like a system filesystem: mount(8) and /etc/fstab, readiness, systemd's notify
protocol and unit files, clean shutdown on signals and umount, and no key in logs or /proc.

The `mount -t ssecfs` tests need /sbin/mount.ssecfs and /sbin/mount.fuse.ssecfs pointing at
this checkout's .venv. As root, the test session provides them itself in a private mount
namespace (tests/private_helpers.py), whatever machine-wide links say; otherwise they come
from `make install-helpers`. Without them these tests skip, and fail under CI=true. Every
background daemon logs to a file in the test's directory (-o log_file=), which the tests read.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import private_helpers
from tests.e2e.conftest import MountFactory
from tests.fuse_util import in_ci, is_mounted, require_fuse
from tests.mounting import sse
from tests.servers import S3Server

MiB = 1024 * 1024
VENV_BIN = Path(sys.executable).parent  # .venv/bin (not resolved: the venv's own scripts)
REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
EXIT_USAGE, EXIT_KEY, EXIT_STORE, EXIT_MOUNT, EXIT_DIRTY = 2, 3, 4, 5, 6


# --------------------------------------------------------------------------- helpers


def _skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} -- CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def require_helpers() -> None:
    """/sbin/mount.ssecfs and /sbin/mount.fuse.ssecfs must be this checkout's scripts."""
    require_fuse()
    if shutil.which("mount") is None:
        _skip_or_fail("mount(8) not installed")
    for name in ("mount.ssecfs", "mount.fuse.ssecfs"):
        link, want = Path("/sbin") / name, VENV_BIN / name
        if not link.exists() or link.resolve() != want.resolve():
            _skip_or_fail(f"{link} is not {want} (no private helpers: "
                          f"{private_helpers.why_not}); run the tests as root, or "
                          f"`make install-helpers`")


def key_forms(key: bytes) -> dict[str, bytes]:
    """The SSE-C key as it could leak: raw, base64 (also urlsafe), hex (both cases)."""
    return {"raw": key, "base64": base64.b64encode(key),
            "base64url": base64.urlsafe_b64encode(key), "hex": key.hex().encode(),
            "HEX": key.hex().upper().encode()}


def key_header_values(key: bytes) -> dict[str, bytes]:
    """Also the value of the key-MD5 header (no SSE-C header's value is ever logged)."""
    return {**key_forms(key), "md5": base64.b64encode(hashlib.md5(key).digest())}


def assert_no_secret(text: bytes, key: bytes, server: S3Server) -> None:
    for name, form in key_header_values(key).items():
        assert form not in text, f"the log holds the key ({name})"
    assert server.secret_key.encode() not in text, "the log holds the secret access key"


def daemon_pids(mountpoint: Path) -> list[int]:
    """Live ssecfs processes whose command line names `mountpoint`."""
    want = os.path.realpath(mountpoint).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(a.rstrip(b"/") == want for a in argv) \
                and any(b"ssecfs" in a for a in argv):
            pids.append(int(entry))
    return pids


def wait_gone(mountpoint: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while daemon_pids(mountpoint):
        assert time.monotonic() < deadline, f"the ssecfs daemon for {mountpoint} did not exit"
        time.sleep(0.05)


def assert_one_line(text: str, *words: str) -> None:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert "Traceback" not in text


class System:
    """Background mounts made through mount(8) or `ssecfs mount` for one test; cleans up."""

    def __init__(self, server: S3Server, bucket: str, key: bytes, key_file: Path,
                 tmp: Path) -> None:
        self.server, self.bucket, self.key, self.key_file, self.tmp = (
            server, bucket, key, key_file, tmp)
        self.log_file = tmp / "daemon.log"
        self.mountpoints: list[Path] = []
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.server.boto3_client()
        return self._client

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.server.env(), **extra}

    def mountpoint(self, name: str = "mnt") -> Path:
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        self.mountpoints.append(path)
        return path

    def options(self, *extra: str, key_file: Path | None = None) -> str:
        return ",".join([f"key_file={key_file or self.key_file}",
                         f"endpoint_url={self.server.endpoint}",
                         f"ca_bundle={self.server.ca_bundle}", f"log_file={self.log_file}",
                         *extra])

    def run(self, *argv: str | Path, env: dict[str, str] | None = None,
            timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in argv], env=env or self.env(), text=True,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def put(self, key: str, body: bytes, sse_key: bytes | None = None) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                               **sse(sse_key or self.key))

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key,
                                            **sse(self.key))["Body"].read())

    def cleanup(self) -> None:
        for mp in self.mountpoints:
            if is_mounted(mp):
                subprocess.run(["umount", "-l", str(mp)], capture_output=True, check=False)
            for pid in daemon_pids(mp):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                wait_gone(mp, timeout=15)
            except AssertionError:
                for pid in daemon_pids(mp):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def system(s3server: S3Server, bucket: str, sse_key: bytes, key_file: Path,
           tmp_path: Path) -> Iterator[System]:
    require_fuse()
    s = System(s3server, bucket, sse_key, key_file, tmp_path)
    try:
        yield s
    finally:
        s.cleanup()


# --------------------------------------------------------------------------- mount(8)


def test_mount_t_ssecfs_then_umount(system: System) -> None:
    require_helpers()
    # an object without s3fs metadata: its owner and mode come from uid=, gid=, umask=
    system.put("plain.txt", b"written by boto3\n")
    mp = system.mountpoint()
    opts = system.options("allow_other", "uid=1234", "gid=2345", "umask=027", "_netdev",
                          "nofail")
    res = system.run("mount", "-t", "ssecfs", system.bucket, mp, "-o", opts)
    assert res.returncode == 0, res.stderr + system.log()
    assert res.stderr == ""
    # readiness: mount(8) returned, so the filesystem answers now, with no polling
    assert is_mounted(mp)
    assert sorted(os.listdir(mp)) == ["plain.txt"]
    st = (mp / "plain.txt").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 2345, 0o640)
    assert (mp / "plain.txt").read_bytes() == b"written by boto3\n"
    (mp / "new.txt").write_bytes(b"through mount(8)\n")
    assert system.get("new.txt") == b"through mount(8)\n"
    findmnt = system.run("findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", mp)
    assert findmnt.stdout.split()[:2] == ["fuse.ssecfs", f"ssecfs:{system.bucket}"]
    assert "allow_other" in findmnt.stdout and "nosuid" in findmnt.stdout
    [pid] = daemon_pids(mp)

    # a busy mount refuses a plain umount, as any filesystem does
    with open(mp / "held.txt", "wb") as held:
        held.write(b"held open\n")
        res = system.run("umount", mp)
        assert res.returncode != 0 and "busy" in res.stderr
        assert is_mounted(mp)
    res = system.run("umount", mp)
    assert res.returncode == 0, res.stderr
    wait_gone(mp)
    assert not is_mounted(mp)
    assert system.get("held.txt") == b"held open\n"
    log = system.log()
    assert f"ssecfs[{pid}]" in log
    assert f"unmounted {mp} cleanly" in log


def test_mount_t_fuse_ssecfs_read_only_then_fusermount3(system: System) -> None:
    require_helpers()
    system.put("a.txt", b"a")
    mp = system.mountpoint()
    res = system.run("mount", "-t", "fuse.ssecfs", system.bucket, mp, "-o",
                     system.options("ro"))
    assert res.returncode == 0, res.stderr + system.log()
    assert (mp / "a.txt").read_bytes() == b"a"
    with pytest.raises(OSError) as info:
        (mp / "b.txt").write_bytes(b"b")
    assert info.value.errno == 30  # EROFS
    res = system.run("fusermount3", "-u", mp)
    assert res.returncode == 0, res.stderr
    wait_gone(mp)
    assert f"unmounted {mp} cleanly" in system.log()


def test_fstab_lines_with_profile_credentials(system: System, tmp_path: Path) -> None:
    """Two /etc/fstab-style lines (fuse.ssecfs and ssecfs, a prefix, mount(8)/systemd options),
    mounted with `mount --fstab FILE MOUNTPOINT`; S3 credentials from a named profile."""
    require_helpers()
    system.put("top.txt", b"top")
    system.put("sub/inner.txt", b"inner")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(f"[ssecfstest]\naws_access_key_id = {system.server.access_key}\n"
                           f"aws_secret_access_key = {system.server.secret_key}\n")
    credentials.chmod(0o600)
    env = {k: v for k, v in system.env().items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(credentials),
               AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"))
    mp1, mp2 = system.mountpoint("m1"), system.mountpoint("m2")
    common = ("profile=ssecfstest,region=us-east-1,_netdev,nofail,noauto,x-systemd.automount,"
              "x-systemd.mount-timeout=30,x-systemd.requires=network-online.target,nosuid,nodev")
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"{system.bucket} {mp1} fuse.ssecfs {system.options()},{common} 0 0\n"
        f"{system.bucket}/sub {mp2} ssecfs {system.options('ro')},{common} 0 0\n")
    for mp in (mp1, mp2):
        res = system.run("mount", "--fstab", fstab, mp, env=env)
        assert res.returncode == 0, res.stderr + system.log()
    assert sorted(os.listdir(mp1)) == ["sub", "top.txt"]
    assert os.listdir(mp2) == ["inner.txt"]
    assert (mp2 / "inner.txt").read_bytes() == b"inner"
    (mp1 / "via-fstab.txt").write_bytes(b"fstab")
    assert system.get("via-fstab.txt") == b"fstab"
    for mp in (mp1, mp2):
        out = system.run("findmnt", "-n", "-o", "OPTIONS", mp).stdout
        assert "nosuid" in out and "nodev" in out
        assert system.run("umount", mp).returncode == 0
        wait_gone(mp)
    assert system.log().count("cleanly") == 2


def test_mount_fuse3_fallback_runs_ssecfs(system: System) -> None:
    """Without /sbin/mount.fuse.ssecfs, `mount -t fuse.ssecfs` runs /sbin/mount.fuse3, which
    runs `/bin/sh -c 'ssecfs SOURCE MOUNTPOINT -o OPTIONS,dev,suid'` with ssecfs from $PATH."""
    mount_fuse3 = "/sbin/mount.fuse3"
    if not os.access(mount_fuse3, os.X_OK):
        _skip_or_fail(f"{mount_fuse3} missing (apt-get install fuse3)")
    system.put("a.txt", b"a")
    mp = system.mountpoint()
    env = system.env(PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    res = system.run(mount_fuse3, system.bucket, mp, "-t", "fuse.ssecfs", "-o",
                     "rw," + system.options("_netdev", "nofail"), env=env)
    assert res.returncode == 0, res.stderr + system.log()
    assert (mp / "a.txt").read_bytes() == b"a"
    assert system.run("umount", mp).returncode == 0
    wait_gone(mp)
    assert f"unmounted {mp} cleanly" in system.log()


# --------------------------------------------------------------------------- readiness


def test_mount_fake_checks_and_mounts_nothing(system: System) -> None:
    require_helpers()
    mp = system.mountpoint()
    res = system.run("mount", "-f", "-t", "ssecfs", system.bucket, mp, "-o", system.options())
    assert res.returncode == 0, res.stderr
    assert not is_mounted(mp) and not daemon_pids(mp)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("case", ["wrong key", "no such bucket", "untrusted TLS",
                                  "refused credentials", "unreachable endpoint"])
def test_mount_fails_with_the_reason_and_mounts_nothing(system: System, case: str,
                                                       tmp_path: Path) -> None:
    require_helpers()
    system.put("secret.bin", b"only for the right key")
    mp = system.mountpoint()
    # retries=1: the reason is the same on the first attempt, and the test stays fast
    bucket, env, opts = system.bucket, system.env(), system.options("retries=1")
    if case == "wrong key":
        other = tmp_path / "other.key"
        other.write_bytes(os.urandom(32))
        other.chmod(0o600)
        opts, code, words = system.options(key_file=other), EXIT_KEY, ["does not open"]
    elif case == "no such bucket":
        bucket, code, words = "no-such-bucket-here", EXIT_STORE, ["does not exist"]
    elif case == "untrusted TLS":
        opts = opts.replace(f"ca_bundle={system.server.ca_bundle},", "")
        code, words = EXIT_STORE, ["not trusted", "ca_bundle"]
    elif case == "refused credentials":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-" + "x" * 25
        code, words = EXIT_STORE, ["refused"]
    else:
        opts = opts.replace(system.server.endpoint, f"https://127.0.0.1:{_free_port()}")
        opts += ",connect_timeout=2"
        code, words = EXIT_STORE, ["cannot reach"]
    started = time.monotonic()
    res = system.run("mount", "-t", "ssecfs", bucket, mp, "-o", opts, env=env)
    assert res.returncode == code, res.stderr
    assert_one_line(res.stderr, "mount.ssecfs: ", *words)
    assert not is_mounted(mp) and not daemon_pids(mp)
    assert time.monotonic() - started < 30


def test_config_errors_exit_nonzero_with_one_line(tmp_path: Path) -> None:
    """Errors found before any request; no server needed."""
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    key = tmp_path / "k"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    ok = f"key_file={key},endpoint_url=https://127.0.0.1:9,log_file={tmp_path / 'log'}"
    ssecfs = str(VENV_BIN / "ssecfs")
    helper = str(VENV_BIN / "mount.ssecfs")
    cases = [
        ([helper, "b", mp, "-o", ok + ",frobnicate"], EXIT_USAGE, ["frobnicate"]),
        ([helper, "b", mp, "-o", ok.replace(str(key), str(tmp_path / "nokey"))], EXIT_KEY,
         ["does not exist", "keygen"]),
        ([helper, "b", tmp_path / "nodir", "-o", ok], EXIT_MOUNT, ["does not exist"]),
        ([helper, "b", mp, "-o", ok.replace("https", "http")], EXIT_STORE, ["https://"]),
        ([ssecfs, "mount", "b", mp, "-o", ok.replace("https", "http")], EXIT_STORE, ["TLS"]),
    ]
    key.chmod(0o600)
    for argv, code, words in cases:
        res = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=60)
        assert res.returncode == code, (argv, res.stderr)
        assert_one_line(res.stderr, *words)
    key.chmod(0o644)
    res = subprocess.run([helper, "b", str(mp), "-o", ok], capture_output=True, text=True)
    assert res.returncode == EXIT_KEY and "chmod 600" in res.stderr
    assert not is_mounted(mp)


# --------------------------------------------------------------------------- systemd


def _exec_start(unit_text: str) -> list[str]:
    line = re.search(r"^ExecStart=(.*)$", unit_text, re.M)
    assert line is not None
    return line.group(1).split()


def test_ready_notification_then_sigint(s3server: S3Server, bucket: str, key_file: Path,
                                        tmp_path: Path) -> None:
    """ssecfs@.service's own ExecStart line, with systemd's substitutions done by hand, sends
    READY=1 to $NOTIFY_SOCKET only once the filesystem answers, STOPPING=1 on a signal."""
    require_fuse()
    unit = (SYSTEMD_DIR / "ssecfs@.service").read_text()
    assert re.search(r"^Type=notify$", unit, re.M)
    credentials = tmp_path / "credentials"  # what LoadCredential=key:… makes
    credentials.mkdir(mode=0o700)
    shutil.copy(key_file, credentials / "key")
    (credentials / "key").chmod(0o400)
    mp = tmp_path / "mnt"
    mp.mkdir()
    values = {"%d": str(credentials), "${BUCKET}": bucket, "${MOUNTPOINT}": str(mp),
              "${OPTIONS}": f"endpoint_url={s3server.endpoint},ca_bundle={s3server.ca_bundle}",
              "/usr/local/bin/ssecfs": str(VENV_BIN / "ssecfs")}
    argv = []
    for word in _exec_start(unit):
        for name, value in values.items():
            word = word.replace(name, value)
        argv.append(word)
    assert "--foreground" in argv and f"--key-file={credentials}/key" in argv

    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(60)
        log_path = tmp_path / "service.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, env={**os.environ, **s3server.env(),
                                               "NOTIFY_SOCKET": str(notify_path)},
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            message = notify.recv(4096).decode()
            assert "READY=1" in message.splitlines(), message
            assert f"STATUS=Serving s3://{bucket}/ on {mp}" in message
            # READY=1 came after the filesystem answered: it is there, now
            assert is_mounted(mp) and os.listdir(mp) == []
            _proc_has_no_key(proc.pid, key_file.read_bytes())
            (mp / "f.txt").write_bytes(b"service")
            proc.send_signal(signal.SIGINT)
            assert "STOPPING=1" in notify.recv(4096).decode().splitlines()
            assert proc.wait(60) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if is_mounted(mp):
                subprocess.run(["fusermount3", "-u", "-z", str(mp)], check=False)
    assert not is_mounted(mp)
    text = log_path.read_text()
    assert "received SIGINT" in text and "cleanly" in text
    assert_no_secret(log_path.read_bytes(), key_file.read_bytes(), s3server)
    assert "could not notify" not in text


def test_unit_files_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the units with no warning at all.

    verify checks that ExecStart='s binary exists: the copy under test names this checkout's
    ssecfs instead of /usr/local/bin/ssecfs (the path make install-helpers links)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        _skip_or_fail("systemd-analyze is not installed (make deps installs systemd)")
        return
    for unit in ("ssecfs@.service", "mnt-ssecfs.mount", "mnt-ssecfs.automount"):
        text = (SYSTEMD_DIR / unit).read_text()
        if unit.endswith(".service"):
            assert _exec_start(text)[0] == "/usr/local/bin/ssecfs"
            text = text.replace("/usr/local/bin/ssecfs", str(VENV_BIN / "ssecfs"))
        (tmp_path / unit).write_text(text)
    units = [tmp_path / "ssecfs@demo.service", tmp_path / "mnt-ssecfs.mount",
             tmp_path / "mnt-ssecfs.automount"]
    res = subprocess.run([analyze, "verify", "--man=no", "--generators=no",
                          *map(str, units)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr
    # and it does catch mistakes: a mount unit whose name does not match Where=
    (tmp_path / "mnt-other.mount").write_text((tmp_path / "mnt-ssecfs.mount").read_text())
    bad = subprocess.run([analyze, "verify", "--man=no", "--generators=no",
                          str(tmp_path / "mnt-other.mount")], capture_output=True, text=True)
    assert bad.returncode != 0


def test_service_takes_the_key_only_as_a_credential() -> None:
    unit = (SYSTEMD_DIR / "ssecfs@.service").read_text()
    settings = [line for line in unit.splitlines() if line and not line.startswith("#")]
    assert "LoadCredential=key:/etc/ssecfs/%i.key" in settings
    assert "EnvironmentFile=/etc/ssecfs/%i.conf" in settings
    assert not [s for s in settings if s.startswith(("Environment=", "SetCredential="))]
    assert "--key-file=%d/key" in _exec_start(unit)
    # sandboxing that makes a private mount namespace would hide the mount from everyone
    for setting in ("ProtectSystem=", "PrivateTmp=", "ProtectHome=", "PrivateMounts="):
        assert not [s for s in settings if s.startswith(setting)]


# --------------------------------------------------------------------------- shutdown


def test_sigterm_uploads_open_dirty_files_and_in_flight_ones(mount_factory: MountFactory
                                                              ) -> None:
    """SIGTERM with files open and dirty, and a close() whose upload is in flight: every byte
    reaches the bucket and the exit status is 0, even when a second SIGTERM follows."""
    m = mount_factory(options=["part_size=5M"])
    small = open(m / "open-small.txt", "wb")  # noqa: SIM115 (held open across the signal)
    small.write(b"small and dirty\n")
    small.flush()
    big_data = os.urandom(11 * MiB)
    big = open(m / "open-big.bin", "wb")  # noqa: SIM115
    big.write(big_data)
    big.flush()
    flying_data = os.urandom(12 * MiB)
    # an existing file rewritten in place: not streamed while written (streaming only starts
    # for a file whose content is all local), so its whole upload is close()'s
    (m / "in-flight.bin").write_bytes(b"x")
    flying = open(m / "in-flight.bin", "r+b")  # noqa: SIM115
    flying.write(flying_data)
    flying.flush()  # every write(2) answered: what is left is close()'s upload
    closed: list[BaseException | None] = []

    def close_flying() -> None:
        try:
            flying.close()
            closed.append(None)
        except BaseException as exc:  # reported below
            closed.append(exc)

    mark = m.log_mark()
    closer = threading.Thread(target=close_flying)
    closer.start()
    deadline = time.monotonic() + 30
    while not [r for r in m.requests(mark)
               if r.op == "CreateMultipartUpload" and r.key == "in-flight.bin"]:
        assert time.monotonic() < deadline, m.log()
        time.sleep(0.005)
    assert m.proc is not None
    m.proc.send_signal(signal.SIGTERM)
    while "received SIGTERM" not in m.log():
        assert time.monotonic() < deadline, m.log()
        time.sleep(0.005)
    m.proc.send_signal(signal.SIGTERM)  # impatience (systemd, a script) must not lose data
    closer.join(60)
    assert closed == [None], closed  # the in-flight close() finished, and succeeded
    code = m.proc.wait(60)
    log = m.log()
    assert code == 0, log
    for f in (small, big):
        with contextlib.suppress(OSError):  # the mount is gone; the bytes were uploaded before
            f.close()
    m.proc = None
    assert m.get("open-small.txt") == b"small and dirty\n"
    assert m.get("open-big.bin") == big_data
    assert m.get("in-flight.bin") == flying_data
    assert re.search(r"received SIGTERM: uploading \d file\(s\) with changes \(.*open-big.bin",
                     log), log
    assert "received SIGTERM: already stopping" in log
    assert_no_secret(log.encode(), m.key, m.server)
    assert not is_mounted(m.path)


def test_what_cannot_be_uploaded_is_named_and_the_exit_status_says_so(
        mount_factory: MountFactory, s3server: S3Server, bucket: str) -> None:
    m = mount_factory()
    doomed = open(m / "doomed.txt", "wb")  # noqa: SIM115
    doomed.write(b"this cannot be uploaded: the bucket is gone\n")
    doomed.flush()
    client = s3server.boto3_client()
    for key in m.keys(prefix=""):
        client.delete_object(Bucket=bucket, Key=key)
    client.delete_bucket(Bucket=bucket)
    code = m.terminate()
    with contextlib.suppress(OSError):
        doomed.close()
    log = m.log()
    assert code == EXIT_DIRTY, log
    assert re.search(r"ERROR .*could not be uploaded.*doomed\.txt", log), log
    assert not is_mounted(m.path)


# --------------------------------------------------------------------------- key material


def _proc_has_no_key(pid: int, key: bytes) -> None:
    for part in ("cmdline", "environ"):
        data = Path(f"/proc/{pid}/{part}").read_bytes()
        for name, form in key_forms(key).items():
            assert form not in data, f"/proc/{pid}/{part} holds the key ({name})"


def test_no_key_material_in_logs_or_proc(system: System, tmp_path: Path) -> None:
    """A whole workload at debug level in the background daemon: write, read, rename, chmod,
    multipart, an object with another key. Neither the log, nor mount's output, nor the
    daemon's /proc/PID/cmdline and environ hold the key (raw, base64, hex) or the secret
    access key."""
    mp = system.mountpoint()
    res = system.run(VENV_BIN / "ssecfs", "mount", system.bucket, mp, "--debug", "-o",
                     system.options("part_size=5M"))
    assert res.returncode == 0, res.stderr + system.log()
    outputs = [res.stdout, res.stderr]
    [pid] = daemon_pids(mp)
    _proc_has_no_key(pid, system.key)
    # the daemon got the secret access key in its environment, and dropped it once boto3
    # held it: /proc/PID/environ no longer shows it
    assert system.server.secret_key.encode() not in Path(f"/proc/{pid}/environ").read_bytes()

    (mp / "small.txt").write_bytes(b"hello\n")
    assert (mp / "small.txt").read_bytes() == b"hello\n"
    os.rename(mp / "small.txt", mp / "renamed.txt")
    os.chmod(mp / "renamed.txt", 0o600)
    (mp / "dir").mkdir()
    big = os.urandom(11 * MiB)
    (mp / "dir" / "big.bin").write_bytes(big)
    with open(mp / "dir" / "big.bin", "rb") as f:
        f.seek(6 * MiB)
        assert f.read(4096) == big[6 * MiB: 6 * MiB + 4096]
    from_boto3 = os.urandom(3 * MiB)
    system.put("from-boto3.bin", from_boto3)
    assert (mp / "from-boto3.bin").read_bytes() == from_boto3
    system.put("other-key.bin", b"not for us", sse_key=os.urandom(32))
    with pytest.raises(PermissionError):
        (mp / "other-key.bin").read_bytes()
    os.unlink(mp / "renamed.txt")
    assert system.get("dir/big.bin") == big
    _proc_has_no_key(pid, system.key)

    res = system.run("umount", mp)
    assert res.returncode == 0, res.stderr
    wait_gone(mp)
    log = system.log_file.read_bytes()
    # the log is the real thing: every kind of request, with objects, ranges, status, time
    for op in ("PutObject", "GetObject", "HeadObject", "CreateMultipartUpload", "UploadPart",
               "CompleteMultipartUpload", "CopyObject", "DeleteObject", "ListObjectsV2"):
        assert re.search(rb"DEBUG ssecfs\.store\.s3: " + op.encode() + rb" \S+.* -> \S+.* in "
                         rb"[0-9.]+s", log), op
    assert re.search(rb"GetObject from-boto3.bin \[\d+-\d+\) -> ok in", log)
    assert b"other-key.bin" in log
    assert_no_secret(log + "".join(outputs).encode(), system.key, system.server)
    assert b"cleanly" in log
