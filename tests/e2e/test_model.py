"""A concurrent random workload through the real mount, compared with a local directory.

Three processes (`tests/workload.py`) each work in their own directory of the mount and of a
local reference, in lockstep: create, write, pwrite + fsync, truncate, rename of files and
directories, unlink, mkdir, rmdir, read, stat, listdir — every answer compared. Then the
trees are compared byte for byte, and again after a remount (what the bucket holds). Once
clean, once through the fault proxy cutting every connection at a seeded random point and
answering a seeded share of requests with 503 SlowDown or 500 InternalError, which the
retries must hide. A failing seed is printed; SSECFS_MODEL_SEED=N reruns it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import MountFactory
from tests.fault_proxy import Proxy
from tests.workload import tree

WORKERS = 3
OPS = 700  # per process: 2,100 operations per run
ERRORS = 0.03  # of the requests on the flaky network, answered 503 or 500 by the proxy


@pytest.mark.parametrize("network", ["clean", "flaky"])
def test_concurrent_workload_matches_a_local_directory(
        mount_factory: MountFactory, proxy: Proxy, tmp_path: Path, network: str) -> None:
    seed = int(os.environ.get("SSECFS_MODEL_SEED", "20261202"))
    mnt = mount_factory(["part_size=5M", "write_buffer_memory=2M", "retries=8"], start=False)
    mnt.endpoint = proxy.url
    mnt.start()
    if network == "flaky":
        # every connection is cut, at a random point; some requests are answered 503/500
        proxy.flaky(seed, rate=1.0, errors=ERRORS)
    ref = tmp_path / "ref"
    procs = []
    for i in range(WORKERS):
        (mnt / f"w{i}").mkdir()
        (ref / f"w{i}").mkdir(parents=True)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.workload", "--seed", str(seed + i), "--ops", str(OPS),
             str(mnt / f"w{i}"), str(ref / f"w{i}")],
            cwd=Path(__file__).resolve().parents[2], stderr=subprocess.PIPE, text=True))
    failures = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode:
            failures.append(err.strip())
    assert not failures, f"(SSECFS_MODEL_SEED={seed})\n" + "\n".join(failures)
    if network == "flaky":
        assert proxy.cuts >= 3, "the proxy cut too few connections to prove anything"
        assert proxy.answered >= 10, "the proxy answered too few requests to prove anything"
    assert tree(mnt.path) == tree(ref)
    proxy.set_mode("pass")
    mnt.restart()
    assert tree(mnt.path) == tree(ref)
    assert mnt.uploads() == []
