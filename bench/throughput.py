"""Sequential throughput through ssecfs, as a ratio to direct boto3 on the same server.

    .venv/bin/python bench/throughput.py [--server rgw|seaweedfs] [--mib 256] [--runs 2]

Starts a throw-away server (tests/servers.py) under a temp dir, creates a bucket and a key, and
per run measures: boto3 put_object and get_object of one object (the baseline), then `dd` of
the same size written into and read back from an ssecfs mount (cold: the file is written by
boto3 and read through a fresh mount). Prints MB/s and the ssecfs/boto3 ratio. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import servers  # noqa: E402
from tests.mounting import Mount, sse  # noqa: E402

MB = 1_000_000


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="rgw", choices=servers.KINDS)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("-o", dest="options", default="", help="ssecfs -o options")
    args = ap.parse_args()
    size = args.mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="ssecfs-bench-") as tmp:
        tmpd = Path(tmp)
        start = servers.start_rgw if args.server == "rgw" else servers.start_seaweedfs
        srv = start(tmpd / "server")
        try:
            bucket = srv.create_bucket("bench")
            key = os.urandom(32)
            key_file = tmpd / "key"
            key_file.write_bytes(key)
            key_file.chmod(0o600)
            data = os.urandom(size)
            s3 = srv.boto3_client()
            rows = []
            for run in range(args.runs):
                name = f"b{run}"
                put = timed(partial(s3.put_object, Bucket=bucket, Key=name, Body=data,
                                    **sse(key)))
                get = timed(partial(lambda k: s3.get_object(Bucket=bucket, Key=k, **sse(key))
                                    ["Body"].read(), name))
                m = Mount(server=srv, bucket=bucket, key=key, key_file=key_file,
                          path=tmpd / "mnt", log_path=tmpd / "mnt.log",
                          options=[o for o in args.options.split(",") if o])
                m.start()
                try:
                    src = tmpd / "src.bin"
                    src.write_bytes(data)
                    write = timed(partial(subprocess.run, [
                        "dd", f"if={src}", f"of={m.path}/w{run}", "bs=1M", "status=none"],
                        check=True))
                    src.unlink()
                    read = timed(partial(subprocess.run, [
                        "dd", f"if={m.path}/{name}", "of=/dev/null", "bs=1M", "status=none"],
                        check=True))
                finally:
                    m.stop()
                rows.append((put, get, write, read))
                print(f"run {run + 1}: boto3 put {size / put / MB:7.1f} MB/s  "
                      f"get {size / get / MB:7.1f} MB/s | ssecfs write {size / write / MB:7.1f} "
                      f"MB/s ({put / write:4.2f}x)  read {size / read / MB:7.1f} MB/s "
                      f"({get / read:4.2f}x)", flush=True)
            best = [min(col) for col in zip(*rows, strict=True)]
            print(f"best of {args.runs} on {args.server}, {args.mib} MiB: write ratio "
                  f"{best[0] / best[2]:.2f}, read ratio {best[1] / best[3]:.2f} "
                  f"(ssecfs / direct boto3; 1.00 = as fast)")
        finally:
            servers.stop(srv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
