"""rotate-key and check on the SSE-C-enforcing MemoryStore: server-side copy and streaming,
resuming, objects that change while they are rotated, dry runs, and the key statuses."""

from __future__ import annotations

import secrets

import pytest
import trio

from ssecfs.check import check_one
from ssecfs.content import Content
from ssecfs.errors import KeyMismatch
from ssecfs.keys import KeyRing, SseCKey
from ssecfs.report import Outcome, check_summary
from ssecfs.rotate import Rotator
from ssecfs.scan import for_each, list_objects
from ssecfs.shard import Shard
from ssecfs.store.base import ObjectHead
from ssecfs.store.memory import MemoryStore

MiB = 1024 * 1024
PART = 5 * MiB
HEADERS = Content(type="text/plain", cache_control="max-age=60",
                  disposition='attachment; filename="a.txt"', encoding="identity",
                  language="fr", expires="Wed, 21 Oct 2037 07:28:00 GMT")
META = {"mode": "33188", "uid": "1000", "gid": "1000", "mtime": "1700000000"}
WRITES = ("PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
          "CompleteMultipartUpload")


def key() -> SseCKey:
    return SseCKey(secrets.token_bytes(32))


@pytest.fixture
def keys() -> tuple[SseCKey, SseCKey]:
    return key(), key()


def fill(store: MemoryStore, old: SseCKey) -> dict[str, bytes]:
    bodies = {"empty": b"", "small.txt": b"hello " * 100, "dir/": b"",
              "dir/big.bin": secrets.token_bytes(12 * MiB + 123),
              "link": b"small.txt"}
    for name, body in bodies.items():
        meta = dict(META)
        if name == "link":
            meta["mode"] = "41471"  # s3fs: S_IFLNK | 0777, the body is the target
        store.put_object(name, body, old, meta, content=HEADERS)
    return bodies


async def rotate_all(store: MemoryStore, rotator: Rotator, jobs: int = 4) -> list[Outcome]:
    objects = await list_objects(store, "", Shard())
    out: list[Outcome] = []
    await for_each(objects, jobs, rotator.rotate, lambda item, o: out.append(o))
    return sorted(out, key=lambda o: o.key)


def assert_rotated(store: MemoryStore, bodies: dict[str, bytes], new: SseCKey) -> None:
    for name, body in bodies.items():
        obj = store.objects[name]
        assert obj.body == body, name
        assert obj.key_md5 == new.md5_b64, name
        assert store.objects[name].content == HEADERS, name
        expected = dict(META, mode="41471") if name == "link" else META
        assert obj.metadata == expected, name
    assert not store.uploads


async def test_rotate_by_server_side_copy(keys: tuple[SseCKey, SseCKey]) -> None:
    old, new = keys
    store = MemoryStore()
    bodies = fill(store, old)
    out = await rotate_all(store, Rotator(store, old, new, part_size=PART))
    assert {o.result for o in out} == {"rotated"}, out
    assert_rotated(store, bodies, new)
    # no byte went through the client: copies only (and the empty objects are PUT)
    assert store.requests["GetObject"] == 0 and store.requests["UploadPart"] == 0
    assert store.requests["CopyObject"] == 3


@pytest.mark.parametrize("jobs", [1, 4])
async def test_rotate_streams_when_copy_is_not_implemented(
        keys: tuple[SseCKey, SseCKey], jobs: int) -> None:
    old, new = keys
    store = MemoryStore()
    store.copy_object_501 = True  # Ceph RGW < v20
    store.if_match_bare_only = True  # Ceph RGW 16: If-Match only with the bare hex
    bodies = fill(store, old)
    rotator = Rotator(store, old, new, part_size=PART, jobs=jobs)
    out = await rotate_all(store, rotator, jobs=jobs)
    assert {o.result for o in out} == {"rotated"}, out
    assert_rotated(store, bodies, new)
    # learnt once per run (objects already in flight may each have asked once)
    assert 1 <= store.requests["CopyObject"] <= jobs
    assert not rotator.caps.copy and rotator.caps.if_match == "bare"
    assert store.requests["UploadPart"] == 3  # 12 MiB in 5 MiB parts
    assert store.requests["CompleteMultipartUpload"] == 1


async def test_rotate_without_conditional_writes_checks_with_head(
        keys: tuple[SseCKey, SseCKey]) -> None:
    old, new = keys
    store = MemoryStore()
    store.copy_object_501 = True
    store.if_match_ignored = True
    bodies = fill(store, old)
    out = await rotate_all(store, Rotator(store, old, new, part_size=PART))
    assert {o.result for o in out} == {"rotated"}
    assert_rotated(store, bodies, new)


async def test_second_run_skips_everything(keys: tuple[SseCKey, SseCKey]) -> None:
    old, new = keys
    store = MemoryStore()
    fill(store, old)
    await rotate_all(store, Rotator(store, old, new, part_size=PART))
    before = sum(store.requests[op] for op in WRITES)
    out = await rotate_all(store, Rotator(store, old, new, part_size=PART))
    assert {o.result for o in out} == {"skipped"}
    assert sum(store.requests[op] for op in WRITES) == before


async def test_half_done_run_is_resumed(keys: tuple[SseCKey, SseCKey]) -> None:
    old, new = keys
    store = MemoryStore()
    store.copy_object_501 = True
    bodies = fill(store, old)
    store.fail("UploadPart", 1)  # the big object fails: its upload is aborted
    first = await rotate_all(store, Rotator(store, old, new, part_size=PART))
    results = {o.key: o.result for o in first}
    assert results["dir/big.bin"] == "failed" and not store.uploads
    assert store.objects["dir/big.bin"].key_md5 == old.md5_b64
    second = await rotate_all(store, Rotator(store, old, new, part_size=PART))
    assert {o.key: o.result for o in second} == {
        k: "rotated" if v == "failed" else "skipped" for k, v in results.items()}
    assert_rotated(store, bodies, new)


@pytest.mark.parametrize("mode", ["copy", "stream", "no-if-match"])
async def test_object_rewritten_meanwhile_is_changed_and_keeps_the_rewrite(
        keys: tuple[SseCKey, SseCKey], mode: str) -> None:
    old, new = keys
    store = MemoryStore()
    store.copy_object_501 = mode != "copy"
    store.if_match_ignored = store.copy_if_match_ignored = mode == "no-if-match"
    fill(store, old)
    rewrite = b"written by another client meanwhile"
    final = "CopyObject" if mode == "copy" else "PutObject"

    async def other_client(head: ObjectHead, op: str) -> None:
        if head.key == "small.txt" and op == final:
            store.put_object("small.txt", rewrite, old, {"mode": "33152"})

    rotator = Rotator(store, old, new, part_size=PART, jobs=1, before_write=other_client)
    out = {o.key: o for o in await rotate_all(store, rotator, jobs=1)}
    obj = store.objects["small.txt"]
    if mode == "no-if-match":
        # the residual window (docs/keys.md): a server that ignores If-Match cannot refuse a
        # write, and a rewrite after the HEAD that precedes it is overwritten
        assert out["small.txt"].result == "rotated" and obj.key_md5 == new.md5_b64
    else:
        assert out["small.txt"].result == "changed", out["small.txt"]
        assert not out["small.txt"].done
        assert obj.body == rewrite and obj.key_md5 == old.md5_b64
        assert obj.metadata == {"mode": "33152"}
    assert {o.result for k, o in out.items() if k != "small.txt"} == {"rotated"}


@pytest.mark.parametrize("gate_op", ["UploadPart", "CompleteMultipartUpload"])
async def test_multipart_of_a_rewritten_object_is_aborted(
        keys: tuple[SseCKey, SseCKey], gate_op: str) -> None:
    old, new = keys
    store = MemoryStore()
    store.copy_object_501 = True
    fill(store, old)
    name = "dir/big.bin"
    rotator = Rotator(store, old, new, part_size=PART)
    objects = await list_objects(store, name, Shard())
    rewrite = b"new content"
    result: list[Outcome] = []

    if gate_op == "UploadPart":
        gate = store.pause("UploadPart", name)
        async with trio.open_nursery() as nursery:
            async def run() -> None:
                result.append(await rotator.rotate(objects[0]))
            nursery.start_soon(run)
            await gate.reached.wait()
            store.put_object(name, rewrite, old)
            gate.release()
    else:
        # the rewrite lands after the parts were read: only the HEAD before the completion
        # can see it; make that HEAD see it by rewriting in the HEAD's gate
        gate = store.pause("HeadObject", name)
        async with trio.open_nursery() as nursery:
            async def run2() -> None:
                result.append(await rotator.rotate(objects[0]))
            nursery.start_soon(run2)
            await gate.reached.wait()  # the probe's HEAD: let it through unchanged
            gate.release()
            while store.requests["UploadPart"] != 3:
                await trio.sleep(0)
            gate2 = store.pause("HeadObject", name)
            await gate2.reached.wait()
            store.put_object(name, rewrite, old)
            gate2.release()
    assert result[0].result == "changed", result
    assert store.body(name) == rewrite and store.objects[name].key_md5 == old.md5_b64
    assert not store.uploads and store.requests["CompleteMultipartUpload"] == 0
    assert store.requests["AbortMultipartUpload"] == 1


async def test_no_if_match_hook_before_the_head_is_still_caught(
        keys: tuple[SseCKey, SseCKey]) -> None:
    # without conditional writes, a rewrite before the last HEAD is still seen
    old, new = keys
    store = MemoryStore()
    store.copy_object_501 = True
    store.if_match_ignored = True
    store.put_object("a", b"v1", old, META, content=HEADERS)
    gate = store.pause("GetObject", "a")
    rotator = Rotator(store, old, new, part_size=PART)
    objects = await list_objects(store, "", Shard())
    result: list[Outcome] = []
    async with trio.open_nursery() as nursery:
        async def run() -> None:
            result.append(await rotator.rotate(objects[0]))
        nursery.start_soon(run)
        await gate.reached.wait()
        store.put_object("a", b"v2", old)
        gate.release()
    # the GET carried If-Match: the rewrite is seen at once
    assert result[0].result == "changed"
    assert store.body("a") == b"v2"


async def test_dry_run_writes_nothing(keys: tuple[SseCKey, SseCKey]) -> None:
    old, new = keys
    store = MemoryStore()
    fill(store, old)
    store.put_object("done", b"x", new)
    out = await rotate_all(store, Rotator(store, old, new, part_size=PART, dry_run=True))
    assert {o.key: o.result for o in out}["done"] == "skipped"
    assert {o.result for o in out if o.key != "done"} == {"would_rotate"}
    assert sum(store.requests[op] for op in WRITES) == 0
    assert store.requests["GetObject"] == 0
    assert {o.key_md5 for k, o in store.objects.items() if k != "done"} == {old.md5_b64}


async def test_unknown_key_and_unencrypted_fail_clearly(keys: tuple[SseCKey, SseCKey]) -> None:
    old, new = keys
    store = MemoryStore()
    store.put_object("other", b"x", key())
    store.put_object("plain", b"y", None)
    out = {o.key: o for o in await rotate_all(store, Rotator(store, old, new))}
    assert out["other"].result == "failed" and "unknown key" in (out["other"].error or "")
    assert out["plain"].result == "failed" and "without SSE-C" in (out["plain"].error or "")
    assert store.body("plain") == b"y" and store.objects["other"].body == b"x"


async def test_interrupted_multipart_upload_is_aborted(keys: tuple[SseCKey, SseCKey]) -> None:
    old, new = keys
    store = MemoryStore()
    store.copy_object_501 = True
    fill(store, old)
    gate = store.pause("UploadPart")
    rotator = Rotator(store, old, new, part_size=PART)
    objects = await list_objects(store, "dir/big", Shard())
    with trio.move_on_after(5) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rotator.rotate, objects[0])
            await gate.reached.wait()
            scope.cancel()
    assert not store.uploads
    assert store.requests["AbortMultipartUpload"] == 1
    assert store.objects["dir/big.bin"].key_md5 == old.md5_b64


async def test_rotator_refuses_the_same_key() -> None:
    k = key()
    with pytest.raises(ValueError):
        Rotator(MemoryStore(), k, SseCKey(k.raw))


async def test_check_statuses(keys: tuple[SseCKey, SseCKey]) -> None:
    writer, old = keys
    store = MemoryStore()
    store.put_object("w", b"1", writer)
    store.put_object("o", b"22", old)
    store.put_object("u", b"333", key())
    store.put_object("p", b"4444", None)
    store.put_object("d/", b"", writer)
    ring = KeyRing(writer, (old,))
    items = await list_objects(store, "", Shard())
    entries = sorted([await check_one(store, ring, i) for i in items], key=lambda e: e.key)
    assert [(e.key, e.status, e.key_md5) for e in entries] == [
        ("d/", "writing", writer.md5_b64), ("o", "old", old.md5_b64), ("p", "unencrypted", None),
        ("u", "unknown", None), ("w", "writing", writer.md5_b64)]
    totals = check_summary(entries)["totals"]
    assert totals == {"writing": {"objects": 2, "bytes": 1}, "old": {"objects": 1, "bytes": 2},
                      "unknown": {"objects": 1, "bytes": 3},
                      "unencrypted": {"objects": 1, "bytes": 4}}
    # the writing key first: one HEAD for an object under it
    store.requests.clear()
    await check_one(store, ring, items[-1])
    assert store.requests["HeadObject"] == 1


async def test_head_as_refuses_other_keys(keys: tuple[SseCKey, SseCKey]) -> None:
    a, b = keys
    store = MemoryStore()
    store.put_object("x", b"1", a)
    with pytest.raises(KeyMismatch):
        await store.head_as("x", b)
    assert (await store.head_as("x", a)).key_md5 == a.md5_b64
