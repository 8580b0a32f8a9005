"""Failures: an upload that fails must fail close() and lose nothing; spills hold no plaintext.

The mount talks to the test server through a small proxy in this process
(tests/fault_proxy.py), which ends TLS with the server's own certificate (it is for
127.0.0.1, the proxy's address too) and opens its own TLS connection to the server. The proxy
can refuse every connection (the server is "down"), accept them and never answer (a hung
gateway), drop a connection once it has carried more than a few hundred KiB from the client
(large bodies fail, small requests such as AbortMultipartUpload still pass), or drop it once
as much came back from the server (a GET's body is cut after its headers arrived, which
botocore does not retry). And it can answer requests itself, as a throttling or failing
server does: 503 SlowDown or 500 InternalError, to the next few requests (a budget) or to
every request whose line matches a pattern, on kept-alive connections too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
import time
from pathlib import Path

import pytest

from tests.fault_proxy import Proxy
from tests.mounting import Mount

MiB = 1024 * 1024


@pytest.fixture
def proxied(proxy: Proxy, mount_factory) -> Mount:
    """A mount through `proxy`, with 2 attempts per request so failures come quickly."""
    m = mount_factory(["retries=2", "retry_time=2", "part_size=5M", "connect_timeout=5",
                       "read_timeout=20"],
                      start=False)
    m.endpoint = proxy.url
    return m.start()


def forget_inodes() -> None:
    """Make the kernel drop unused dentries and inodes (FUSE FORGETs them). Root only;
    a no-op elsewhere."""
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("2")


def fsync_path(path: Path, flags: int) -> None:
    """fsync(2) through a new handle: a retry of the data the daemon kept."""
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def close_fails(f) -> OSError:
    with pytest.raises(OSError) as exc:
        f.close()
    return exc.value


def test_failed_upload_fails_close_and_is_retried(proxied: Mount, proxy: Proxy) -> None:
    mnt = proxied
    small = os.urandom(200_000)
    big = os.urandom(12 * MiB + 1)
    later = os.urandom(50_000)

    # the server is unreachable when the files are closed
    fs = open(mnt / "small.bin", "wb")
    fs.write(small)
    fb = open(mnt / "big.bin", "wb")
    fb.write(big)
    fl = open(mnt / "later.bin", "wb")
    fl.write(later)
    proxy.set_mode("refuse")
    started = time.monotonic()
    for f in (fs, fb, fl):
        exc = close_fails(f)
        assert exc.errno == errno.EIO, exc
    assert time.monotonic() - started < 60
    assert "upload of small.bin failed" in mnt.log()

    # nothing reached the bucket, and the mount still shows what was written, even after
    # the kernel forgot the closed files' inodes (as under memory pressure)
    proxy.set_mode("pass")
    forget_inodes()
    assert mnt.keys() == []
    assert (mnt / "small.bin").stat().st_size == len(small)
    assert (mnt / "big.bin").read_bytes() == big

    # a later fsync through a new handle uploads the kept data
    fsync_path(mnt / "small.bin", os.O_RDWR)
    assert mnt.get("small.bin") == small
    with open(mnt / "big.bin", "r+b") as f:  # so does the close of a new writable handle
        f.seek(0, os.SEEK_END)
        f.write(b"!")
    assert mnt.get("big.bin") == big + b"!"
    assert mnt.uploads() == []
    assert "later.bin" not in mnt.keys()

    # and unmounting uploads the rest (exit status 0: nothing was lost)
    assert mnt.stop() == 0, mnt.log()
    assert mnt.get("later.bin") == later
    assert mnt.get_without_key_status("later.bin") in (400, 403)
    assert mnt.uploads() == []


def test_dropped_connections_are_retried_transparently(proxy: Proxy, mount_factory) -> None:
    """A few connections cut mid-request (as a flaky network or a restarting gateway does):
    the requests are retried with backoff and close() succeeds with every byte stored."""
    m = mount_factory(["part_size=5M"], start=False)
    m.endpoint = proxy.url
    m.start()
    small, big = os.urandom(300 * 1024), os.urandom(12 * MiB)
    proxy.set_mode("small", budget=3)
    with open(m / "small.bin", "wb") as f:
        f.write(small)
    with open(m / "big.bin", "wb") as f:
        f.write(big)
    assert proxy.broken >= 3, "the proxy cut no connection: the test proved nothing"
    assert m.get("small.bin") == small
    assert m.get("big.bin") == big
    assert (m / "big.bin").read_bytes() == big
    assert m.uploads() == []


def test_a_read_whose_body_is_cut_is_retried(proxy: Proxy, mount_factory) -> None:
    """Connections cut while the server sends a GET's body (after the headers): the read is
    retried as a new ranged GET and returns every byte, not EIO."""
    m = mount_factory(["part_size=5M"], start=False)
    m.endpoint = proxy.url
    m.start()
    data = os.urandom(6 * MiB)
    (m / "r.bin").write_bytes(data)
    m.restart()  # nothing cached: the read below goes to the server
    mark = m.log_mark()
    proxy.set_mode("cut_down", budget=3)
    assert (m / "r.bin").read_bytes() == data
    assert proxy.broken >= 1, "the proxy cut no connection: the test proved nothing"
    assert "was cut" in m.log()[mark:], "no GetObject was cut and retried"


def test_an_outage_shorter_than_retry_time_is_invisible(proxy: Proxy, mount_factory) -> None:
    """The endpoint is down for 5 s (a gateway restart) while a file is closed and another
    read: both wait and succeed, instead of EIO after botocore's few quick attempts."""
    m = mount_factory(["part_size=5M", "retry_time=30"], start=False)
    m.endpoint = proxy.url
    m.start()
    (m / "old.bin").write_bytes(b"x" * 100_000)
    m.restart()  # old.bin is read from the server below
    data = os.urandom(7 * MiB)
    f = open(m / "new.bin", "wb")
    f.write(data)
    proxy.set_mode("refuse")
    results: list[object] = []

    def close_and_read() -> None:
        try:
            f.close()
            results.append((m / "old.bin").read_bytes())
        except OSError as exc:
            results.append(exc)

    worker = threading.Thread(target=close_and_read)
    started = time.monotonic()
    worker.start()
    time.sleep(5)
    assert results == [], "close() returned while the endpoint was down"
    proxy.set_mode("pass")
    worker.join(60)
    assert results == [b"x" * 100_000], results
    assert time.monotonic() - started < 30
    assert m.get("new.bin") == data
    assert "trying again" in m.log()


def test_a_stalled_endpoint_times_out_and_is_retried(proxy: Proxy, mount_factory) -> None:
    """Connections that are accepted and then never answered (a hung gateway): the timeout
    ends each, the request is repeated on a new connection, the read returns every byte."""
    m = mount_factory(["connect_timeout=1", "read_timeout=2", "retries=2"], start=False)
    m.endpoint = proxy.url
    m.start()
    data = os.urandom(300_000)
    (m / "s.bin").write_bytes(data)
    m.restart()
    proxy.set_mode("stall", budget=3)
    started = time.monotonic()
    assert (m / "s.bin").read_bytes() == data
    assert proxy.broken == 3, "not every stalled connection was used"
    assert time.monotonic() - started < 30


def throttled(mnt: Mount, since: int, status: str, op: str | None = None) -> list[str]:
    """The mount's requests since log position `since` that the proxy answered `status`."""
    return [f"{r.op} {r.key}" for r in mnt.requests(since)
            if r.status.startswith(status) and (op is None or r.op == op)]


def test_slow_down_answers_are_retried_on_write_and_read(proxy: Proxy, mount_factory) -> None:
    """The server throttles (503 SlowDown) the next few requests, whatever they are: the
    mount waits and asks again, the file's close() and a later read succeed, and the bucket
    holds every byte. retries=1: botocore asks twice, so four 503s in a row reach ssecfs."""
    m = mount_factory(["retries=1", "part_size=5M"], start=False)
    m.endpoint = proxy.url
    m.start()
    data = os.urandom(300_000)
    mark = m.log_mark()
    proxy.set_mode("error", budget=4)
    (m / "w.bin").write_bytes(data)
    assert proxy.answered == 4, "the proxy answered fewer requests than asked"
    assert throttled(m, mark, "503"), "no 503 reached the mount: botocore hid them all"
    assert "EIO" not in m.log()[mark:]
    assert m.get("w.bin") == data
    m.restart()  # nothing cached: the read below goes to the server
    mark = m.log_mark()
    proxy.set_mode("error", budget=4)
    assert (m / "w.bin").read_bytes() == data
    assert proxy.answered == 8
    assert all(a.startswith("503 ") for a in proxy.answers), proxy.answers
    assert throttled(m, mark, "503"), "no 503 reached the mount: botocore hid them all"
    assert "EIO" not in m.log()[mark:]
    assert "trying again" in m.log()[mark:]


def test_a_slow_server_is_waited_for(proxy: Proxy, mount_factory) -> None:
    """Every answer arrives late (40 ms per 64 KiB chunk): slow, never an error."""
    m = mount_factory(["part_size=5M", "read_timeout=5"], start=False)
    m.endpoint = proxy.url
    m.start()
    data = os.urandom(2 * MiB)
    proxy.delay = 0.04
    started = time.monotonic()
    (m / "slow.bin").write_bytes(data)
    m.restart()
    assert (m / "slow.bin").read_bytes() == data
    assert time.monotonic() - started > 0.3  # the delay was there
    assert "EIO" not in m.log()


@pytest.mark.parametrize("status", [408, 429, 502, 504])
def test_other_transient_answers_are_retried(proxy: Proxy, mount_factory, status: int) -> None:
    """Request timeouts, rate limits and gateway errors in front of the server: asked again."""
    m = mount_factory(["retries=1", "part_size=5M"], start=False)
    m.endpoint = proxy.url
    m.start()
    data = os.urandom(100_000)
    mark = m.log_mark()
    proxy.set_mode("error", budget=4, status=status)
    (m / "w.bin").write_bytes(data)
    assert proxy.answered == 4
    assert throttled(m, mark, str(status)), f"no {status} reached the mount"
    assert "EIO" not in m.log()[mark:]
    assert m.get("w.bin") == data


def test_slow_down_longer_than_retry_time_fails_close_and_is_retried(
        proxied: Mount, proxy: Proxy) -> None:
    """Uploads are throttled for longer than retry_time (2 s here): the mount asks again
    until retry_time is over, then close() fails with EIO; the data stays in the daemon and
    is stored by a later fsync once the server takes uploads again."""
    mnt = proxied
    data = os.urandom(200_000)
    f = open(mnt / "t.bin", "wb")
    f.write(data)
    mark = mnt.log_mark()
    proxy.set_mode("error", match=r"^PUT ")
    started = time.monotonic()
    exc = close_fails(f)
    assert exc.errno == errno.EIO, exc
    assert time.monotonic() - started < 30
    # each of the mount's tries is botocore's 3 attempts (retries=2): the mount tried again
    assert len(throttled(mnt, mark, "503", "PutObject")) >= 2, mnt.log()[mark:]
    assert re.search(r"PutObject t\.bin.*503 SlowDown; trying again", mnt.log()[mark:])
    assert "upload of t.bin failed" in mnt.log()[mark:]

    proxy.set_mode("pass")
    answered = proxy.answered
    assert mnt.keys() == []
    assert (mnt / "t.bin").read_bytes() == data  # kept in the daemon
    fsync_path(mnt / "t.bin", os.O_RDONLY)
    assert mnt.get("t.bin") == data
    assert proxy.answered == answered


def test_internal_errors_on_a_read_are_retried(proxy: Proxy, mount_factory) -> None:
    """The server answers 500 InternalError to a file's first four GETs (botocore asks
    twice, then the mount asks again): the read returns every byte, and no FUSE read got
    EIO (the kernel repeats a failed readahead once, which would hide one)."""
    m = mount_factory(["retries=1", "part_size=5M"], start=False)
    m.endpoint = proxy.url
    m.start()
    data = os.urandom(6 * MiB)
    (m / "r.bin").write_bytes(data)
    m.restart()
    mark = m.log_mark()
    proxy.set_mode("error", status=500, budget=4, match=r"^GET /[^?]*/r\.bin($|\?)")
    assert (m / "r.bin").read_bytes() == data
    assert [a.split()[:2] for a in proxy.answers] == [["500", "GET"]] * 4, proxy.answers
    assert "EIO" not in m.log()[mark:]
    assert throttled(m, mark, "500 InternalError", "GetObject"), m.log()[mark:]


def test_multipart_upload_fails_midway_and_is_aborted(proxied: Mount, proxy: Proxy) -> None:
    """Parts fail (connections carrying big bodies are reset) while small requests pass:
    the multipart upload is aborted, close() fails, and a retry later stores everything."""
    mnt = proxied
    data = os.urandom(16 * MiB)
    old = os.urandom(1000)
    (mnt / "m.bin").write_bytes(old)
    f = open(mnt / "m.bin", "wb")
    f.write(data)
    proxy.set_mode("small")
    exc = close_fails(f)
    assert exc.errno == errno.EIO, exc
    proxy.set_mode("pass")
    reqs = mnt.requests()
    assert any(r.op == "CreateMultipartUpload" and r.ok for r in reqs)
    assert any(r.op == "UploadPart" and not r.ok for r in reqs)
    assert any(r.op == "AbortMultipartUpload" and r.ok for r in reqs)
    assert mnt.uploads() == [], "the failed multipart upload was not aborted"
    assert mnt.get("m.bin") == old  # the object is untouched until an upload completes

    fd = os.open(mnt / "m.bin", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert mnt.get("m.bin") == data
    assert mnt.uploads() == []


def test_unmount_while_server_down_reports_loss(proxied: Mount, proxy: Proxy) -> None:
    """Unmounting with data that cannot be uploaded: the daemon says so (exit status 6)."""
    mnt = proxied
    f = open(mnt / "lost.bin", "wb")
    f.write(b"cannot be stored")
    proxy.set_mode("refuse")
    close_fails(f)
    code = mnt.stop()
    assert code == 6, mnt.log()
    assert "lost.bin" in mnt.log().split("could not be uploaded", 1)[-1]


def test_spill_file_holds_no_plaintext(mount_factory, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    mnt = mount_factory(["write_buffer_memory=1M", f"cache_dir={cache}"])
    marker = b"SSECFS-PLAINTEXT-MARKER-0123456789-"
    data = (marker * (8 * MiB // len(marker) + 1))[: 8 * MiB]
    with open(mnt / "spilled.bin", "wb") as f:
        f.write(data)
        f.flush()
        # the file is still open: its pages are in the daemon, most of them spilled
        spills = [p for p in cache.rglob("*") if p.is_file()]
        assert spills, f"no spill file in {cache}"
        assert sum(p.stat().st_size for p in spills) >= 6 * MiB
        for p in spills:
            assert stat_mode(p) == 0o600, p
            blob = p.read_bytes()
            assert marker[:16] not in blob, f"plaintext in {p}"
            assert data[:4096] not in blob
    assert mnt.get("spilled.bin") == data
    mnt.stop()
    assert [p for p in cache.rglob("*") if p.is_file()] == [], "spill file left behind"


def stat_mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def test_a_full_spill_disk_fails_write_not_data(mount_factory, tmp_path: Path) -> None:
    """cache_dir on an 8 MiB tmpfs, 100 MiB written: write() reports ENOSPC once the spill
    is full, every byte it acknowledged is stored at close(), and the mount's other files
    (one open across it all) are not harmed; unmount exits 0."""
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(small)],
                   check=True)
    try:
        m = mount_factory(["write_buffer_memory=1M", f"cache_dir={small}", "part_size=5M"])
        healthy = open(m / "healthy.bin", "wb")
        healthy.write(b"h" * 10_000)
        fd = os.open(m / "big.bin", os.O_WRONLY | os.O_CREAT)
        acked = bytearray()
        chunk = os.urandom(1024 * 1024)
        error = None
        try:
            while len(acked) < 100 * MiB:
                n = os.write(fd, chunk)
                acked += chunk[:n]
        except OSError as exc:
            error = exc
        assert error is not None and error.errno == errno.ENOSPC, error
        assert 4 * MiB < len(acked) < 100 * MiB
        assert "cannot write the spill file" in m.log()
        os.close(fd)  # everything acknowledged fits: it is stored
        assert m.get("big.bin") == bytes(acked)
        healthy.write(b"H")
        healthy.close()
        assert m.get("healthy.bin") == b"h" * 10_000 + b"H"
        pending = open(m / "pending.bin", "wb")  # open and dirty at SIGTERM ...
        pending.write(b"pending")
        pending.flush()
        code = m.terminate()
        with contextlib.suppress(OSError):
            pending.close()
        assert code == 0, m.log()[-3000:]
        assert m.get("pending.bin") == b"pending"  # ... is uploaded before the daemon exits
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
