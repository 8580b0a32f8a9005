"""`ssecfs rotate-key` and `ssecfs check` on the real servers: Ceph RGW 16 streams every byte
through the client (CopyObject of SSE-C objects is 501 there), SeaweedFS copies server-side.

One bucket of 200 objects of mixed sizes with s3fs metadata and content headers: a dry run
writes nothing; a run is interrupted (SIGINT) and resumed; an object rewritten by another
client between the read and the write is reported as changed and keeps the rewrite; at the
end every byte and header opens with the new key only."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trio

from ssecfs.keys import SseCKey
from ssecfs.report import Outcome
from ssecfs.rotate import Rotator
from ssecfs.scan import for_each, list_objects
from ssecfs.shard import Shard
from ssecfs.store.base import ObjectHead
from ssecfs.store.s3 import S3Store, make_client
from tests.mounting import sse
from tests.servers import S3Server

MiB = 1024 * 1024
RACE = "zz/race.txt"  # last in key order: not yet rotated when the first run is interrupted


def write_key(path: Path, raw: bytes) -> str:
    path.write_bytes(raw)
    path.chmod(0o600)
    return str(path)


def objects_to_make() -> dict[str, dict[str, Any]]:
    """200 objects: empty, small, larger than the 5 MiB part size, a directory marker, an
    s3fs symlink; s3fs metadata, a content type and Cache-Control on each."""
    made: dict[str, dict[str, Any]] = {}
    for i in range(200 - 4):
        name = f"d{i % 7}/f{i:03d}.txt"
        size = 0 if i % 20 == 0 else 1 + (i * 997) % 20000
        if i in (5, 77, 150):
            size = 6 * MiB + i  # more than the part size: a multipart upload when streamed
        made[name] = {"Body": secrets.token_bytes(size), "ContentType": "text/plain",
                      "CacheControl": f"max-age={i}",
                      "Metadata": {"mode": "33188", "uid": "1000", "gid": "100",
                                   "mtime": f"17000000{i:02d}.5"}}
    made["d1/f001.txt"].update(ContentDisposition='attachment; filename="x.txt"',
                               ContentLanguage="fr", ContentEncoding="identity",
                               Expires="Wed, 21 Oct 2037 07:28:00 GMT")
    made["dir/"] = {"Body": b"", "ContentType": "application/x-directory",
                    "Metadata": {"mode": "16877", "uid": "0", "gid": "0", "mtime": "1"}}
    made["link"] = {"Body": b"d1/f001.txt", "ContentType": "application/octet-stream",
                    "Metadata": {"mode": "41471", "uid": "0", "gid": "0", "mtime": "2"}}
    made[RACE] = {"Body": b"before the race", "ContentType": "text/plain",
                  "Metadata": {"mode": "33188", "uid": "0", "gid": "0", "mtime": "3"}}
    made["zz/skip-me"] = {"Body": b"x", "ContentType": "text/plain", "Metadata": {}}
    assert len(made) == 200
    return made


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[tuple[bytes, bytes, str, str]]:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    yield old, new, write_key(tmp_path / "old.key", old), write_key(tmp_path / "new.key", new)


def cli(s3server: S3Server, *args: str) -> list[str]:
    return [sys.executable, "-m", "ssecfs.cli", *args, "--endpoint-url", s3server.endpoint,
            "--ca-bundle", s3server.ca_bundle]


def test_rotate_interrupted_resumed_with_a_race(s3server: S3Server, bucket: str,
                                                keys: tuple[bytes, bytes, str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    old, new, old_file, new_file = keys
    client = s3server.boto3_client()
    made = objects_to_make()

    def put(item: tuple[str, dict[str, Any]]) -> None:
        name, args = item
        key = new if name == "zz/skip-me" else old  # one object is already rotated
        client.put_object(Bucket=bucket, Key=name, **args, **sse(key))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, made.items()))
    env = s3server.env()
    base = cli(s3server, "rotate-key", bucket, "--from", old_file, "--to", new_file,
               "--part-size", "5M")

    # a dry run writes nothing and says what it would do
    dry = subprocess.run([*base, "--dry-run", "--json"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert dry.returncode == 1, dry.stderr
    summary = json.loads(dry.stdout)
    odd = [o for o in summary["objects"] if o["result"] != "would_rotate"]
    # SeaweedFS stores directory markers without SSE-C, whatever the request said
    bare = int(s3server.kind == "seaweedfs")
    assert (summary["would_rotate"], summary["skipped"], summary["dry_run"]) == \
        (199 - bare, 1 + bare, True), (odd, len(summary["objects"]))
    assert client.head_object(Bucket=bucket, Key="d0/f000.txt", **sse(old))

    # a run interrupted after some objects (one at a time, in key order)
    proc = subprocess.Popen([*base, "--jobs", "1"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    done = 0
    for line in proc.stderr:
        done += line.startswith("rotated ")
        if done == 30:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "interrupted" in out
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")

    # resumed in-process, with another client rewriting RACE between read and write
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rewrite = b"rewritten by another client during the rotation"

    async def other_client(head: ObjectHead, op: str) -> None:
        if head.key == RACE:
            await trio.to_thread.run_sync(lambda: client.put_object(
                Bucket=bucket, Key=RACE, Body=rewrite, ContentType="text/x-new",
                Metadata={"mode": "33152"}, **sse(old)))

    outcomes = trio.run(resume, s3server, bucket, old, new, other_client)
    results = {o.key: o.result for o in outcomes}
    assert results[RACE] == "changed", [o for o in outcomes if o.key == RACE]
    assert results["zz/skip-me"] == "skipped"
    assert list(results.values()).count("skipped") >= 31
    assert set(results.values()) == {"rotated", "skipped", "changed"}, outcomes
    head = client.head_object(Bucket=bucket, Key=RACE, **sse(old))  # the rewrite, untouched
    assert head["ContentType"] == "text/x-new"
    assert client.get_object(Bucket=bucket, Key=RACE, **sse(old))["Body"].read() == rewrite

    # a last run rotates the rewritten object and skips the rest
    final = subprocess.run([*base, "--json"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert (summary["rotated"], summary["skipped"], summary["changed"], summary["failed"]) == \
        (1, 199, 0, 0), final.stdout
    made[RACE] = {"Body": rewrite, "ContentType": "text/x-new", "Metadata": {"mode": "33152"}}

    # every byte and header with the new key; the old key opens nothing
    def verify(item: tuple[str, dict[str, Any]]) -> None:
        name, args = item
        got = client.get_object(Bucket=bucket, Key=name, **sse(new))
        if bare and name == "dir/":
            assert got["ContentLength"] == 0
            return
        assert got["Body"].read() == args["Body"], name
        assert got["Metadata"] == args["Metadata"], name
        for header in ("ContentType", "CacheControl", "ContentDisposition", "ContentLanguage",
                       "ContentEncoding"):
            if header in args:
                assert got[header] == args[header], (name, header)
        if "Expires" in args:
            assert got["ExpiresString"] == args["Expires"], name
        with pytest.raises(client.exceptions.ClientError):
            client.head_object(Bucket=bucket, Key=name, **sse(old))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(verify, made.items()))
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    check = subprocess.run(cli(s3server, "check", bucket, "--key-file", new_file,
                               "--old-key-file", old_file, "--json"),
                           env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["totals"]["writing"]["objects"] == 200 - bare


async def resume(s3server: S3Server, bucket: str, old: bytes, new: bytes,
                 hook: Any) -> list[Outcome]:
    client = make_client(endpoint_url=s3server.endpoint, region=None, profile=None,
                         ca_bundle=s3server.ca_bundle, retries=3, connect_timeout=10,
                         read_timeout=60)
    store = S3Store(client, bucket)
    rotator = Rotator(store, SseCKey(old), SseCKey(new), part_size=5 * MiB, jobs=4,
                      before_write=hook)
    outcomes: list[Outcome] = []
    items = await list_objects(store, "", Shard())
    await for_each(items, 4, rotator.rotate, lambda item, o: outcomes.append(o))
    expected_copy = s3server.kind != "rgw"
    assert rotator.caps.copy is expected_copy, rotator.caps
    return outcomes


def test_check_tells_each_key(s3server: S3Server, bucket: str, tmp_path: Path,
                              keys: tuple[bytes, bytes, str, str]) -> None:
    old, writer, old_file, writer_file = keys
    client = s3server.boto3_client()
    stored = {"w/a": (writer, b"aa"), "w/dir/": (writer, b""), "o/b": (old, b"bbb"),
              "u/c": (secrets.token_bytes(32), b"cccc"), "p/d": (None, b"ddddd")}
    for name, (key, body) in stored.items():
        client.put_object(Bucket=bucket, Key=name, Body=body, **(sse(key) if key else {}))
    env = s3server.env()
    base = cli(s3server, "check", bucket, "--key-file", writer_file, "--old-key-file",
               old_file, "--json", "--jobs", "2")
    res = subprocess.run(base, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    got = {o["key"]: (o["status"], o["key_md5"], o["size"]) for o in report["objects"]}
    # SeaweedFS stores directory markers without SSE-C, whatever the request said
    bare = s3server.kind == "seaweedfs"
    assert got == {"w/a": ("writing", SseCKey(writer).md5_b64, 2),
                   "w/dir/": ("unencrypted", None, 0) if bare else
                   ("writing", SseCKey(writer).md5_b64, 0),
                   "o/b": ("old", SseCKey(old).md5_b64, 3), "u/c": ("unknown", None, 4),
                   "p/d": ("unencrypted", None, 5)}
    assert report["totals"] == {"writing": {"objects": 2 - bare, "bytes": 2},
                                "old": {"objects": 1, "bytes": 3},
                                "unknown": {"objects": 1, "bytes": 4},
                                "unencrypted": {"objects": 1 + bare, "bytes": 5}}
    only_writer = subprocess.run(cli(s3server, "check", f"{bucket}/w", "--key-file",
                                     writer_file), env=env, capture_output=True, text=True,
                                 timeout=120)
    assert only_writer.returncode == 0, only_writer.stderr
    assert "writing" in only_writer.stdout
    # two shards cover the five objects once
    seen: list[str] = []
    for k in range(2):
        part = subprocess.run([*base, "--shard", f"{k}/2"], env=env, capture_output=True,
                              text=True, timeout=120)
        seen += [o["key"] for o in json.loads(part.stdout)["objects"]]
    assert sorted(seen) == sorted(stored)


def test_check_versions_tells_the_key_of_every_version(s3server: S3Server, bucket: str,
                                                       keys: tuple[bytes, bytes, str, str]
                                                       ) -> None:
    """With --versions, each version of an object is checked with its own key: the guide's
    "each object version can have its own encryption key"."""
    old, writer, old_file, writer_file = keys
    client = s3server.boto3_client()
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket=bucket, Key="f", Body=b"first", **sse(old))
    client.put_object(Bucket=bucket, Key="f", Body=b"second!", **sse(writer))
    env = s3server.env()
    res = subprocess.run(cli(s3server, "check", bucket, "--key-file", writer_file,
                             "--old-key-file", old_file, "--versions", "--json"),
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr  # one version is not under the writing key
    report = json.loads(res.stdout)
    got = sorted((o["key"], o["status"], o["size"]) for o in report["objects"])
    assert got == [("f", "old", 5), ("f", "writing", 7)]
    assert all(o["version_id"] for o in report["objects"])
    current = subprocess.run(cli(s3server, "check", bucket, "--key-file", writer_file,
                                 "--old-key-file", old_file, "--json"),
                             env=env, capture_output=True, text=True, timeout=120)
    assert current.returncode == 0, current.stderr  # the current version is the writer's
