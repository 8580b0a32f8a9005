"""Real kernel mounts of ssecfs for the end-to-end tests.

`Mount` runs `ssecfs mount -f --debug` in a subprocess against a test server, waits until the
kernel shows the mount, and tears it down (fusermount3 -u, then wait for the pid; lazy unmount
and kill if it hangs). The daemon's log is kept in a file for assertions and for failures.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuse_util import is_mounted, unmount
from tests.servers import S3Server

SSECFS = [sys.executable, "-m", "ssecfs.cli"]


def sse(key: bytes) -> dict[str, Any]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def private_file(path: Path, content: bytes) -> Path:
    """`content` in a new file only its owner may read (a key file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    return path


@dataclass(frozen=True)
class Request:
    """One S3 request from the daemon's --debug log (store/s3.py logs one line per request):
    "UploadPart big.bin part 2 (5242880 bytes) -> ok in 0.1s" is
    Request("UploadPart", "big.bin", " part 2 (5242880 bytes)", "ok")."""

    op: str
    key: str
    detail: str
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def body_bytes(self) -> int:
        """The byte count in the detail ("(N bytes)"), 0 if there is none."""
        m = re.search(r"\((\d+) bytes\)", self.detail)
        return int(m.group(1)) if m else 0

    @property
    def source_range(self) -> tuple[int, int] | None:
        """[start, end) of an UploadPartCopy / ranged GetObject ("[a-b)"), else None."""
        m = re.search(r"\[(\d+)-(\d+)\)", self.detail)
        return (int(m.group(1)), int(m.group(2))) if m else None


_REQUEST_LINE = re.compile(r"ssecfs\.store\.s3: (\w+) (\S+)(.*) -> (.+?) in [0-9.]+s$", re.M)


def requests_in(log_text: str) -> list[Request]:
    """The S3 requests logged in `log_text` (a slice of Mount.log()), in order."""
    return [Request(*m.groups()) for m in _REQUEST_LINE.finditer(log_text)]


@dataclass
class Mount:
    server: S3Server
    bucket: str
    key: bytes
    key_file: Path
    path: Path
    log_path: Path
    options: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    endpoint: str | None = None  # mount through this URL instead of server.endpoint (a proxy)
    debug: bool = True  # --debug: the request log that requests() reads (off for benchmarks)
    # what the e2e teardown expects of the daemon: its exit status when the test left it
    # running (None: not checked), and a log without tracebacks
    expect_exit: int | None = 0
    expect_clean_log: bool = True

    # ---------------------------------------------------------------- S3 side helpers
    @property
    def client(self) -> Any:
        c = getattr(self, "_client", None)
        if c is None:
            c = self._client = self.server.boto3_client()
        return c

    def put(self, key: str, body: bytes, **kw: Any) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **sse(self.key), **kw)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key, **sse(self.key))["Body"].read()

    def head(self, key: str) -> dict[str, Any]:
        return self.client.head_object(Bucket=self.bucket, Key=key, **sse(self.key))

    def get_without_key_status(self, key: str) -> int:
        """HTTP status of a GET of `key` without the SSE-C key (200 would be a leak)."""
        import botocore.exceptions

        try:
            self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError as exc:
            return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        return 200

    def uploads(self) -> list[tuple[str, str]]:
        """(key, upload id) of the unfinished multipart uploads in the bucket."""
        resp = self.client.list_multipart_uploads(Bucket=self.bucket)
        return [(u["Key"], u["UploadId"]) for u in resp.get("Uploads", [])]

    def log_mark(self) -> int:
        """Current length of the log: pass it to requests() to see only what came after."""
        return len(self.log())

    def requests(self, since: int = 0) -> list[Request]:
        """S3 requests the daemon logged (after log position `since`)."""
        return requests_in(self.log()[since:])

    def keys(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    # ---------------------------------------------------------------- mount life cycle
    def command(self, *extra: str) -> list[str]:
        return [*SSECFS, "mount", self.bucket, str(self.path), "--key-file", str(self.key_file),
                "--endpoint-url", self.endpoint or self.server.endpoint,
                "--ca-bundle", self.server.ca_bundle,
                *extra]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.server.env())
        return env

    def start(self, timeout: float = 30) -> Mount:
        self.path.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        opts = ["-o", ",".join(self.options)] if self.options else []
        flags = ["-f", "--debug"] if self.debug else ["-f"]
        self.proc = subprocess.Popen(self.command(*flags, *opts), env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not is_mounted(self.path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"ssecfs exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ssecfs did not mount in {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 60) -> int | None:
        """Unmount and wait for the daemon; returns its exit status."""
        if self.proc is None:
            return None
        if is_mounted(self.path):
            unmount(self.path)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            unmount(self.path, lazy=True)
            self.proc.kill()
            self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM the daemon (as systemd stops it) and wait; returns its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def restart(self) -> Mount:
        """Unmount and mount again: nothing cached in the daemon or the kernel survives."""
        code = self.stop()
        assert code == 0, f"ssecfs exited with {code}:\n{self.log()}"
        return self.start()

    def teardown_problems(self) -> list[str]:
        """Stop the daemon; what was wrong with how it ended (for the e2e teardown)."""
        code = self.stop()
        problems = []
        if code is not None and self.expect_exit is not None and code != self.expect_exit:
            problems.append(f"ssecfs exited with {code}, expected {self.expect_exit}")
        text = self.log()
        if self.expect_clean_log:
            for bad in ("Traceback", "unexpected error", "failed unexpectedly"):
                if bad in text:
                    problems.append(f"the daemon log holds {bad!r}")
        return problems

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __truediv__(self, name: str) -> Path:
        return self.path / name
