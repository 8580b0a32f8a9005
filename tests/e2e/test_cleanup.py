"""`ssecfs cleanup`: the unfinished multipart uploads a crash leaves are aborted."""

from __future__ import annotations

import subprocess
import sys

from tests.mounting import sse
from tests.servers import S3Server


def test_cleanup_aborts_unfinished_uploads(s3server: S3Server, bucket: str,
                                           sse_key: bytes) -> None:
    client = s3server.boto3_client()
    for key in ("pfx/crashed.bin", "other/kept.bin"):
        client.create_multipart_upload(Bucket=bucket, Key=key, **sse(sse_key))
    base = [sys.executable, "-m", "ssecfs.cli", "cleanup", "--endpoint-url",
            s3server.endpoint, "--ca-bundle", s3server.ca_bundle, "--older-than", "0"]
    env = s3server.env()
    dry = subprocess.run([*base, "--dry-run", f"{bucket}/pfx/"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "would abort pfx/crashed.bin" in dry.stdout
    res = subprocess.run([*base, f"{bucket}/pfx/"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "1 unfinished upload(s) aborted" in res.stdout
    left = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == ["other/kept.bin"]
    missing = subprocess.run([*base, "no-such-bucket-here"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 4 and len(missing.stderr.strip().splitlines()) == 1
