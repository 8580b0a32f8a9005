"""rotate-key and check without a store: shards, the progress line, the JSON summaries and
the command line's refusals (one line, an exit code, before any request)."""

from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path

import pytest

from ssecfs import cli
from ssecfs.errors import EXIT_KEY, EXIT_STORE, EXIT_USAGE
from ssecfs.keys import load_key_ring
from ssecfs.progress import Progress, eta, format_line, human_bytes, human_duration, printable
from ssecfs.report import Checked, Outcome, check_summary, rotate_summary
from ssecfs.shard import Shard, ShardError, parse_shard, shard_of


# ------------------------------------------------------------------ shards
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_n_shards_cover_every_key_exactly_once(n: int) -> None:
    keys = [f"dir{i % 13}/file-{i}.bin" for i in range(2000)] + ["", "dir/", "ü/ñ", "a\nb"]
    owners = {k: [i for i in range(n) if Shard(i, n).owns(k)] for k in keys}
    assert all(len(v) == 1 for v in owners.values())
    if n > 1:  # and the split is not lopsided
        sizes = [sum(1 for v in owners.values() if v == [i]) for i in range(n)]
        assert min(sizes) > len(keys) / n / 2


def test_shard_is_stable() -> None:
    # first 8 bytes of sha256("photos/a.jpg"), big-endian, mod N: fixed across machines
    import hashlib
    digest = int.from_bytes(hashlib.sha256(b"photos/a.jpg").digest()[:8], "big")
    assert shard_of("photos/a.jpg", 10) == digest % 10


@pytest.mark.parametrize("text", ["3", "a/b", "1/0", "2/2", "-1/3", "1/-3", "1.0/3", "", "/3",
                                  "3/", "1/2/3", "١/٣"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ShardError) as info:
        parse_shard(text)
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in str(info.value)


def test_good_shard() -> None:
    assert parse_shard(" 2/5 ") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"


# ------------------------------------------------------------------ progress
def test_human_units() -> None:
    assert human_bytes(0) == "0 B" and human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(3 * 1024**3) == "3.0 GiB"
    assert human_duration(9) == "9s" and human_duration(65) == "1m05s"
    assert human_duration(3725) == "1h02m"


def test_rate_and_time_left() -> None:
    mib = 1024**2
    assert format_line(10, 100, 10 * mib, 100 * mib, 5.0) == \
        "10/100 objects, 10.0 MiB/100.0 MiB, 2.0 MiB/s, 45s left"
    # no bytes (empty objects): time left from the objects' rate
    assert eta(5, 20, 0, 0, 10.0) == 30.0
    assert eta(0, 20, 0, 100, 1.0) is None
    assert format_line(0, 3, 0, 0, 0.0) == "0/3 objects, 0 B/0 B, 0 B/s"
    assert "left" not in format_line(3, 3, 5, 5, 1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_terminal_progress_is_one_line_rewritten_in_place() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(out, tty=True, total_objects=3, total_bytes=300, clock=clock)
    for _ in range(3):
        clock.now += 1
        p.advance(1, 100)
    p.note("failed a: boom")
    p.finish()
    text = out.getvalue()
    assert text.count("\n") == 2  # the note, and the end of the progress line
    assert text.endswith("3/3 objects, 300 B/300 B, 100 B/s\n")
    assert "\r\x1b[K" in text and "failed a: boom\n" in text


def test_plain_progress_writes_lines() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(out, tty=False, total_objects=2, total_bytes=0, clock=clock, log_interval=30)
    p.note("rotated a")
    clock.now = 31
    p.advance()
    p.finish()
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == ["rotated a", "1/2 objects, 0 B/0 B, 0 B/s, 31s left",
                                           "1/2 objects, 0 B/0 B, 0 B/s, 31s left"]


def test_keys_are_printed_on_one_line() -> None:
    assert printable("a\nb\tc") == "a\\nb\\tc" and printable("ü") == "ü"


# ------------------------------------------------------------------ summaries
def test_rotate_summary_shape() -> None:
    outs = [Outcome("a", None, "rotated", 1), Outcome("b", "v1", "skipped"),
            Outcome("c", None, "changed", error="changed since it was read"),
            Outcome("d", None, "failed", error="unknown key")]
    summary = rotate_summary(outs)
    assert json.loads(json.dumps(summary)) == {
        "rotated": 1, "skipped": 1, "changed": 1, "failed": 1,
        "objects": [{"key": "a", "version_id": None, "result": "rotated", "error": None},
                    {"key": "b", "version_id": "v1", "result": "skipped", "error": None},
                    {"key": "c", "version_id": None, "result": "changed",
                     "error": "changed since it was read"},
                    {"key": "d", "version_id": None, "result": "failed",
                     "error": "unknown key"}]}
    dry = rotate_summary([Outcome("a", None, "would_rotate")], dry_run=True, interrupted=True)
    assert dry["would_rotate"] == 1 and dry["dry_run"] is True and dry["interrupted"] is True


def test_check_summary_shape() -> None:
    entries = [Checked("a", None, 10, "writing", "md5a"), Checked("b", None, 5, "old", "md5b"),
               Checked("c", "v", 1, "unknown"), Checked("d/", None, 0, "unencrypted")]
    summary = check_summary(entries)
    assert summary["objects"][0] == {"key": "a", "version_id": None, "size": 10,
                                     "status": "writing", "key_md5": "md5a"}
    assert summary["totals"] == {"writing": {"objects": 1, "bytes": 10},
                                 "old": {"objects": 1, "bytes": 5},
                                 "unknown": {"objects": 1, "bytes": 1},
                                 "unencrypted": {"objects": 1, "bytes": 0}}
    assert "error" in check_summary([Checked("e", None, 0, "error", error="x")])["totals"]


# ------------------------------------------------------------------ the command line
def keyfile(tmp_path: Path, name: str, raw: bytes | None = None) -> str:
    path = tmp_path / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, raw or secrets.token_bytes(32))
    os.close(fd)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("extra,message,code", [
    (["--shard", "4/4"], "--shard 4/4: K must be", EXIT_USAGE),
    (["--shard", "x"], "expected K/N", EXIT_USAGE),
    (["--jobs", "0"], "--jobs 0", EXIT_USAGE),
    (["--part-size", "1M"], "--part-size must be from 5M", EXIT_USAGE),
    (["--part-size", "lots"], "--part-size: not a size", EXIT_USAGE),
    (["--endpoint-url", "http://127.0.0.1:1"], "SSE-C keys may only be sent over TLS",
     EXIT_STORE),
])
def test_rotate_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                         message: str, code: int) -> None:
    old, new = keyfile(tmp_path, "old.key"), keyfile(tmp_path, "new.key")
    got, err = run(capsys, "rotate-key", "b", "--from", old, "--to", new, *extra)
    assert got == code and message in err and len(err.strip().splitlines()) == 1, err


def test_rotate_refuses_the_same_key_twice(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    raw = secrets.token_bytes(32)
    a = keyfile(tmp_path, "a.key", raw)
    b = keyfile(tmp_path, "b.key", __import__("base64").b64encode(raw) + b"\n")
    got, err = run(capsys, "rotate-key", "b", "--from", a, "--to", b)
    assert got == EXIT_USAGE and "hold the same key" in err
    assert len(err.strip().splitlines()) == 1


def test_rotate_needs_both_keys_and_checks_key_files(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    got, err = run(capsys, "rotate-key", "b", "--from", keyfile(tmp_path, "a.key"))
    assert got == EXIT_USAGE and "--to" in err
    loose = keyfile(tmp_path, "loose.key")
    os.chmod(loose, 0o644)
    got, err = run(capsys, "rotate-key", "b", "--from", loose, "--to", keyfile(tmp_path, "n"))
    assert got == EXIT_KEY and "chmod 600" in err


def test_check_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    k = keyfile(tmp_path, "k.key")
    got, err = run(capsys, "check", "b", "--key-file", k, "--shard", "1/1")
    assert got == EXIT_USAGE and "--shard" in err
    got, err = run(capsys, "check", "b", "--key-file", k, "--old-key-file",
                   str(tmp_path / "missing.key"))
    assert got == EXIT_KEY and "does not exist" in err
    got, err = run(capsys, "check", "b", "--key-file", k, "--endpoint-url", "http://x")
    assert got == EXIT_STORE and "https" in err


def test_keys_never_appear_in_reprs(tmp_path: Path) -> None:
    raw = secrets.token_bytes(32)
    ring = load_key_ring(keyfile(tmp_path, "w.key", raw),
                         [keyfile(tmp_path, "o.key")])
    from ssecfs.rotate import Rotator
    from ssecfs.store.memory import MemoryStore
    r = Rotator(MemoryStore(), ring.readers[0], ring.writer)
    for text in (repr(ring), repr(ring.writer), repr(r.__dict__)):
        assert raw.hex() not in text and repr(raw) not in text
