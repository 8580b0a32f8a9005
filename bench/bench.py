"""`make bench`: ssecfs against direct boto3 (and s3fs and rclone when installed) on one test
server.

    .venv/bin/python bench/bench.py [--server rgw|seaweedfs] [--size-mib 512] [--files 1000]
                                    [--entries 2000] [--no-peers]

Starts a throw-away server (tests/servers.py) under a temp dir, one bucket and one key, and in
one run measures each workload for direct boto3 (the baseline), for ssecfs and for the peers
that are installed (s3fs; rclone mount with `--vfs-cache-mode off`):

- sequential write of one file until it is complete in the bucket (ssecfs: write + close);
  boto3: the better of put_object and upload_fileobj (8 MiB parts, 10 threads)
- sequential read, cold (a fresh mount, the kernel's caches dropped); boto3: the better of
  get_object and download_fileobj
- N x 4 KiB files created and closed, in a new directory; boto3: put_object in a loop
- `ls -l` of M objects after a remount (entries/s)
- the daemon's peak RSS and its CPU seconds per GiB written and read
- S3 requests per operation (from ssecfs's --debug request log)

Everything is run in `--rounds` whole rounds (2), one client after the other in each, the
order reversed in every other round (boto3 first, then last), and each figure is the best of
its rounds, for every client alike; before each timed write the machine's dirty pages are
written out (`settle`), so that no client pays for the one before.
Each figure is printed with its ratio to the boto3 figure of its direction and, for ssecfs,
to the better peer (the higher rate, the lower memory or CPU). A benchmark prints numbers;
it asserts nothing. Run it alone on the machine: anything else on the same cores moves the
figures. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boto3.s3.transfer import TransferConfig  # noqa: E402

from tests import servers  # noqa: E402
from tests.fuse_util import is_mounted, unmount  # noqa: E402
from tests.mounting import Mount, sse  # noqa: E402

MiB = 1024 * 1024
MB = 1_000_000
CHUNK = 1 * MiB


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def settle() -> None:
    """Wait until the machine has written out what the last client stored: the server's
    writeback of 512 MiB runs for seconds after its answer, and would slow whichever client
    writes next (measured: the first writer after boto3 lost 10-25%)."""
    os.sync()


def drop_caches() -> None:
    settle()
    with suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("3")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------- workloads on a directory
def write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        for i in range(0, len(data), CHUNK):
            f.write(data[i : i + CHUNK])


def read_file(path: Path) -> int:
    n = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            n += len(chunk)
    return n


def small_files(directory: Path, count: int) -> None:
    directory.mkdir()
    body = os.urandom(4096)
    for i in range(count):
        with open(directory / f"f{i:05}", "wb") as f:
            f.write(body)


def ls_l(directory: Path) -> int:
    out = subprocess.run(["ls", "-l", str(directory)], check=True, capture_output=True).stdout
    return out.count(b"\n") - 1  # the "total" line


# ---------------------------------------------------------------- the peers
class Peer:
    """A peer's FUSE mount at `path`: its mount command forks the daemon, whose pid is
    found by a pattern of its command line (0 if none is found)."""

    def __init__(self, srv: servers.S3Server, bucket: str, path: Path) -> None:
        self.srv, self.bucket, self.path = srv, bucket, path
        self.pid = 0

    def _mount(self, cmd: list[str], env: dict[str, str], pattern: str) -> None:
        self.path.mkdir(exist_ok=True)
        subprocess.run(cmd, check=True, env=env)
        deadline = time.monotonic() + 20
        while not is_mounted(self.path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[0]} did not mount")
            time.sleep(0.05)
        out = subprocess.run(["pgrep", "-n", "-f", pattern], capture_output=True,
                             text=True).stdout.split()
        self.pid = int(out[0]) if out else 0

    def stop(self) -> None:
        if is_mounted(self.path):
            unmount(self.path)
        deadline = time.monotonic() + 30
        while self.pid and Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


class S3fs(Peer):
    """s3fs-fuse with SSE-C, as in ../shared/reference/peers.md."""

    def __init__(self, srv: servers.S3Server, bucket: str, key: bytes, tmp: Path) -> None:
        super().__init__(srv, bucket, tmp / "s3fs-mnt")
        self.passwd, self.keyfile = tmp / "passwd-s3fs", tmp / "ssec.keyfile"
        self.passwd.write_text(f"{srv.access_key}:{srv.secret_key}\n")
        self.keyfile.write_text(base64.b64encode(key).decode() + "\n")
        for f in (self.passwd, self.keyfile):
            f.chmod(0o600)

    def start(self) -> None:
        opts = (f"url={self.srv.endpoint},use_path_request_style,endpoint=us-east-1,"
                f"passwd_file={self.passwd},use_sse=custom:{self.keyfile}")
        self._mount(["s3fs", self.bucket, str(self.path), "-o", opts],
                    dict(os.environ, CURL_CA_BUNDLE=self.srv.ca_bundle),
                    f"s3fs {self.bucket} {self.path}")


class Rclone(Peer):
    """rclone mount with SSE-C, as in ../shared/reference/peers.md; `--vfs-cache-mode off`,
    so that a write is in the bucket when close() returns (with a cache, it would be timed
    into the local disk and uploaded later)."""

    def __init__(self, srv: servers.S3Server, bucket: str, key: bytes, tmp: Path) -> None:
        super().__init__(srv, bucket, tmp / "rclone-mnt")
        self.conf = tmp / "rclone.conf"
        self.conf.write_text(
            "[ssec]\ntype = s3\nprovider = Other\nenv_auth = false\n"
            f"access_key_id = {srv.access_key}\nsecret_access_key = {srv.secret_key}\n"
            f"endpoint = {srv.endpoint}\nregion = us-east-1\nforce_path_style = true\n"
            "sse_customer_algorithm = AES256\n"
            f"sse_customer_key_base64 = {base64.b64encode(key).decode()}\n")
        self.conf.chmod(0o600)

    def start(self) -> None:
        self._mount(["rclone", "--config", str(self.conf), "--ca-cert", self.srv.ca_bundle,
                     "mount", f"ssec:{self.bucket}", str(self.path), "--vfs-cache-mode", "off",
                     "--daemon"],
                    {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
                    f"rclone --config {self.conf}")


class Ssecfs:
    def __init__(self, srv: servers.S3Server, bucket: str, key: bytes, tmp: Path,
                 options: list[str]) -> None:
        key_file = tmp / "ssecfs.key"
        key_file.write_bytes(key)
        key_file.chmod(0o600)
        self.mount = Mount(server=srv, bucket=bucket, key=key, key_file=key_file,
                           path=tmp / "ssecfs-mnt", log_path=tmp / "ssecfs.log",
                           options=options, debug=False)  # timed as users run it
        self.path = self.mount.path

    @property
    def pid(self) -> int:
        assert self.mount.proc is not None
        return self.mount.proc.pid

    def start(self) -> None:
        self.mount.start()

    def stop(self) -> None:
        code = self.mount.stop()
        if code != 0:
            raise RuntimeError(f"ssecfs exited with {code}; see {self.mount.log_path}")


# ---------------------------------------------------------------- one tool, every workload
def run_tool(tool: Any, name: str, data: bytes, args: argparse.Namespace,
             populated: str, round_no: int = 0) -> dict[str, float]:
    size = len(data)
    out: dict[str, float] = {}
    tool.start()
    try:
        settle()
        cpu0 = cpu_seconds(tool.pid) if tool.pid else 0.0
        out["write"] = size / timed(lambda: write_file(tool.path / f"{name}.bin", data)) / MB
        cpu1 = cpu_seconds(tool.pid) if tool.pid else 0.0
        out["write_cpu_per_gib"] = (cpu1 - cpu0) / (size / 1024**3)
        settle()
        out["small"] = args.files / timed(lambda: small_files(
            tool.path / f"{name}-small{round_no}", args.files))  # new files each round
        out["rss_write"] = peak_rss_mib(tool.pid) if tool.pid else float("nan")
    finally:
        tool.stop()
    drop_caches()
    tool.start()
    try:
        cpu0 = cpu_seconds(tool.pid) if tool.pid else 0.0
        out["read"] = size / timed(lambda: read_file(tool.path / f"{name}.bin")) / MB
        cpu1 = cpu_seconds(tool.pid) if tool.pid else 0.0
        out["read_cpu_per_gib"] = (cpu1 - cpu0) / (size / 1024**3)
        listed = 0

        def ls() -> None:
            nonlocal listed
            listed = ls_l(tool.path / populated)

        out["ls"] = args.entries / timed(ls)
        if listed != args.entries:
            print(f"  ({name}: ls -l showed {listed} of {args.entries} entries)")
        # the peak of either daemon: the one that wrote, and the one that read and listed
        out["rss_read"] = peak_rss_mib(tool.pid) if tool.pid else float("nan")
        out["rss"] = max(out["rss_write"], out["rss_read"])
    finally:
        tool.stop()
    return out


def ls_with_metadata_cache(srv: servers.S3Server, bucket: str, key: bytes, tmp: Path,
                           args: argparse.Namespace) -> float:
    """`ls -l` entries/s after a remount with -o metadata_cache (a first mount filled it)."""
    options = [o for o in args.options.split(",") if o]
    tool = Ssecfs(srv, bucket, key, tmp,
                  [*options, "metadata_cache", f"cache_dir={tmp / 'metadata-cache'}"])
    tool.start()
    try:
        ls_l(tool.path / "listed")
    finally:
        tool.stop()
    drop_caches()
    tool.start()
    try:
        return args.entries / timed(lambda: ls_l(tool.path / "listed"))
    finally:
        tool.stop()


def boto3_baseline(s3: Any, bucket: str, key: bytes, data: bytes,
                   args: argparse.Namespace) -> dict[str, float]:
    size = len(data)
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                         max_concurrency=10)
    extra = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    settle()
    put = size / timed(lambda: s3.put_object(Bucket=bucket, Key="boto3-put", Body=data,
                                             **sse(key))) / MB
    settle()
    upl = size / timed(lambda: s3.upload_fileobj(io.BytesIO(data), bucket, "boto3-upl",
                                                 ExtraArgs=extra, Config=cfg)) / MB
    get = size / timed(lambda: s3.get_object(Bucket=bucket, Key="boto3-put", **sse(key))
                       ["Body"].read()) / MB

    def download() -> None:
        s3.download_fileobj(bucket, "boto3-upl", io.BytesIO(), ExtraArgs=extra, Config=cfg)

    dl = size / timed(download) / MB
    body = os.urandom(4096)

    def loop() -> None:
        for i in range(args.files):
            s3.put_object(Bucket=bucket, Key=f"boto3-small/f{i:05}", Body=body, **sse(key))

    settle()
    small = args.files / timed(loop)
    print(f"  boto3: put_object {put:.0f} MB/s, upload_fileobj {upl:.0f} MB/s, get_object "
          f"{get:.0f} MB/s, download_fileobj {dl:.0f} MB/s, put_object loop {small:.0f} files/s")
    return {"write": max(put, upl), "read": max(get, dl), "small": small}


def populate(s3: Any, bucket: str, key: bytes, prefix: str, count: int) -> None:
    """`count` small objects with s3fs metadata, as a mount would have written them."""
    meta = {"mode": "33188", "uid": "0", "gid": "0", "mtime": str(int(time.time()))}

    def one(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=f"{prefix}/e{i:05}", Body=b"x" * 100, Metadata=meta,
                      **sse(key))

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


def request_costs(tool: Ssecfs) -> dict[str, Counter[str]]:
    """S3 requests per operation, from the daemon's request log (a fresh mount)."""
    m = tool.mount
    costs: dict[str, Counter[str]] = {}

    def cost(label: str, fn: Callable[[], object]) -> None:
        mark = m.log_mark()
        fn()
        costs[label] = Counter(r.op for r in m.requests(mark))

    tool.mount.debug = True  # the request log
    tool.start()
    try:
        d = tool.path / "costs"
        cost("mkdir", d.mkdir)
        cost("create+write+close 4 KiB", lambda: (d / "a").write_bytes(b"x" * 4096))
        cost("create+write+close, 2nd in dir", lambda: (d / "b").write_bytes(b"x" * 4096))
        cost("open+read, first", lambda: (d / "a").read_bytes())
        cost("open+read, unchanged", lambda: (d / "a").read_bytes())
        cost("stat (cached)", lambda: (d / "a").stat())
        cost("chmod", lambda: (d / "a").chmod(0o600))
        cost("rename", lambda: (d / "a").rename(d / "c"))
        cost("unlink", lambda: (d / "c").unlink())
        cost("ls -l (all entries)", lambda: ls_l(tool.path / "listed"))
    finally:
        tool.stop()
    return costs


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the best of the runs: the highest rate, the lowest CPU cost, and the
    highest peak RSS (a peak is what a machine must provide)."""
    out: dict[str, float] = {}
    for field in runs[0]:
        values = [r[field] for r in runs if field in r]
        out[field] = min(values) if "cpu" in field else max(values)
    return out


def ratio(a: float, b: float | None) -> str:
    return f"{a / b:5.2f}x" if b else "   - "


def vs_better_peer(results: dict[str, dict[str, float]], peers: list[str], field: str) -> str:
    """ssecfs's figure as a ratio to the better peer's (the higher rate; the lower memory or
    CPU), and which peer that is. The cached ls -l is compared with the peers' only one."""
    peer_field = "ls" if field == "ls_cached" else field
    values = [(results[p][peer_field], p) for p in peers
              if not math.isnan(results[p].get(peer_field, math.nan))]
    if not values:
        return "-"
    lower_is_better = field.startswith("rss") or "cpu" in field
    value, name = min(values) if lower_is_better else max(values)
    return f"{ratio(results['ssecfs'][field], value).strip()} ({name})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="rgw", choices=servers.KINDS)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--files", type=int, default=1000, help="small files created")
    ap.add_argument("--entries", type=int, default=2000, help="objects listed by ls -l")
    ap.add_argument("--no-peers", action="store_true", help="skip s3fs and rclone")
    ap.add_argument("--rounds", type=int, default=2,
                    help="whole rounds of every client; each figure is the best of them")
    ap.add_argument("-o", dest="options", default="", help="ssecfs -o options")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ssecfs-bench-") as tmp_name:
        tmp = Path(tmp_name)
        srv = servers.start(args.server, tmp / "server")
        try:
            return run(srv, tmp, args)
        finally:
            servers.stop(srv, purge=True)


def run(srv: servers.S3Server, tmp: Path, args: argparse.Namespace) -> int:
    bucket = srv.create_bucket("bench")
    key = os.urandom(32)
    while not key[0]:  # s3fs cannot load a key whose first byte is 0 (docs/semantics.md)
        key = os.urandom(32)
    s3 = srv.boto3_client()
    data = os.urandom(args.size_mib * MiB)
    print(f"server {srv.kind} at {srv.endpoint}; {args.size_mib} MiB files, {args.files} "
          f"small files, ls -l of {args.entries} entries; {os.cpu_count()} CPUs")
    populate(s3, bucket, key, "listed", args.entries)
    tools: dict[str, Any] = {
        "ssecfs": Ssecfs(srv, bucket, key, tmp, [o for o in args.options.split(",") if o])}
    for name, peer_class in (("s3fs", S3fs), ("rclone", Rclone)):
        if not args.no_peers and shutil.which(name):
            tools[name] = peer_class(srv, bucket, key, tmp)
    # whole rounds, one after the other, each figure the best of its rounds: a shared 2-core
    # machine moves single runs by 20-40 %, and every client gets the same chances
    rounds: list[tuple[dict[str, float], dict[str, dict[str, float]]]] = []
    for r in range(args.rounds):
        # the order turns round each round: this machine has fast and slow spells of minutes
        # (one write measured 130 and 220 MB/s), and no client may keep the first turn
        order = ["boto3", *tools]
        if r % 2:
            order.reverse()
        print(f"  round {r + 1} of {args.rounds}: {', '.join(order)}", flush=True)
        base_r: dict[str, float] = {}
        results_r: dict[str, dict[str, float]] = {}
        for name in order:
            print(f"  {name} ...", flush=True)
            if name == "boto3":
                base_r = boto3_baseline(s3, bucket, key, data, args)
                continue
            results_r[name] = run_tool(tools[name], name, data, args, "listed", r)
            got = results_r[name]
            print(f"    write {got['write']:.0f} MB/s ({got['write_cpu_per_gib']:.1f} s CPU per "
                  f"GiB), read {got['read']:.0f} MB/s, {got['small']:.0f} files/s, ls -l "
                  f"{got['ls']:.0f} entries/s; peak RSS: writing {got['rss_write']:.0f} MiB, "
                  f"reading and listing {got['rss_read']:.0f} MiB", flush=True)
        results_r["ssecfs"]["ls_cached"] = ls_with_metadata_cache(srv, bucket, key, tmp, args)
        rounds.append((base_r, results_r))
    base = best([b for b, _ in rounds])
    results = {name: best([res[name] for _, res in rounds]) for name in tools}
    peers = [name for name in results if name != "ssecfs"]
    rows = [("sequential write, MB/s", "write", base["write"]),
            ("sequential read cold, MB/s", "read", base["read"]),
            (f"{args.files} x 4 KiB files, files/s", "small", base["small"]),
            (f"ls -l of {args.entries}, entries/s", "ls", None),
            ("ls -l, -o metadata_cache, entries/s", "ls_cached", None),
            ("peak RSS, MiB", "rss", None),
            ("  of the writing daemon", "rss_write", None),
            ("  of the reading and listing one", "rss_read", None),
            ("CPU s per GiB written", "write_cpu_per_gib", None),
            ("CPU s per GiB read", "read_cpu_per_gib", None)]
    print(f"\n{'workload':34} {'boto3':>8} " + " ".join(f"{n:>8} {'/boto3':>6}"
                                                       for n in results)
          + "  ssecfs/better peer")
    for label, field, baseline in rows:
        cells = " ".join(f"{r.get(field, float('nan')):8.1f} "
                         f"{ratio(r.get(field, float('nan')), baseline):>6}"
                         for r in results.values())
        print(f"{label:34} {baseline or 0:8.1f} {cells}  "
              f"{vs_better_peer(results, peers, field)}")
    print("\nS3 requests per operation through ssecfs (a fresh mount):")
    for label, counts in request_costs(tools["ssecfs"]).items():
        detail = ", ".join(f"{op} {n}" for op, n in sorted(counts.items())) or "none"
        print(f"  {label:34} {sum(counts.values()):3}  {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
