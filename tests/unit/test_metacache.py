"""MetadataCache: kept HEAD answers are used only for unchanged objects, and nothing of them
is readable on disk."""

from __future__ import annotations

import os
from pathlib import Path

from ssecfs.content import Content
from ssecfs.keys import SseCKey
from ssecfs.metacache import MetadataCache, open_metadata_cache
from ssecfs.store.base import ListedObject, ObjectInfo

KEY = SseCKey(b"m" * 32)
SCOPE = "https://127.0.0.1:1|bucket|"
T = 1_764_000_000 * 10**9


ETAG = '"d41d8cd98f00b204e9800998ecf8427e"'


def info(key: str = "docs/secret-plans.txt", etag: str = ETAG, size: int = 10,
         t: int = T) -> ObjectInfo:
    return ObjectInfo(key, size, etag, t, {"mode": "33188", "uid": "1000", "gid": "1000"},
                      KEY.md5_b64, Content(type="text/plain", cache_control="no-cache"))


def listed(i: ObjectInfo, **change: object) -> ListedObject:
    fields = {"key": i.key, "size": i.size, "etag": i.etag,
              "last_modified_ns": i.last_modified_ns + 123_000_000}  # listings give ms
    fields.update(change)
    return ListedObject(**fields)  # type: ignore[arg-type]


def test_an_unchanged_object_is_answered_from_the_cache_across_a_reopen(tmp_path: Path) -> None:
    i = info()
    c = MetadataCache(str(tmp_path), KEY, SCOPE)
    c.put(i)
    c.close()
    c = MetadataCache(str(tmp_path), KEY, SCOPE)
    assert c.get(listed(i)) == i
    c.close()


def test_a_changed_etag_size_or_time_is_asked_again(tmp_path: Path) -> None:
    i = info()
    c = MetadataCache(str(tmp_path), KEY, SCOPE)
    c.put(i)
    assert c.get(listed(i, etag='"e2"')) is None
    assert c.get(listed(i, size=11)) is None
    assert c.get(listed(i, last_modified_ns=i.last_modified_ns + 10**9)) is None
    assert c.get(listed(i)) == i
    c.close()


def test_nothing_readable_reaches_the_disk(tmp_path: Path) -> None:
    c = MetadataCache(str(tmp_path), KEY, SCOPE)
    c.put(info())
    c.close()
    files = list(tmp_path.iterdir())
    assert files and all(oct(f.stat().st_mode & 0o777) == "0o600" for f in files)
    blob = b"".join(f.read_bytes() for f in files)
    for plain in (b"secret-plans", b"docs/", b"33188", b"text/plain", b"no-cache",
                  ETAG.strip('"').encode(),
                  KEY.md5_b64.encode(), KEY.b64.encode(), KEY.raw):
        assert plain not in blob
    assert all("secret" not in f.name and "bucket" not in f.name for f in files)


def test_another_key_or_scope_neither_reads_nor_finds_it(tmp_path: Path) -> None:
    i = info()
    c = MetadataCache(str(tmp_path), KEY, SCOPE)
    c.put(i)
    c.close()
    for key, scope in ((SseCKey(os.urandom(32)), SCOPE), (KEY, SCOPE + "prefix/")):
        other = MetadataCache(str(tmp_path), key, scope)
        assert other.get(listed(i)) is None
        assert other.path != c.path
        other.close()


def test_a_damaged_record_is_dropped_not_trusted(tmp_path: Path) -> None:
    i = info()
    c = MetadataCache(str(tmp_path), KEY, SCOPE)
    c.put(i)
    c.flush()
    oid, rec = c._db.execute("SELECT id, rec FROM meta").fetchone()
    damaged = bytes(rec[:20]) + bytes([rec[20] ^ 1]) + bytes(rec[21:])
    c._db.execute("UPDATE meta SET rec = ? WHERE id = ?", (damaged, oid))
    assert c.get(listed(i)) is None
    assert c._db.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0
    c.close()


def test_the_oldest_records_go_beyond_the_limit(tmp_path: Path) -> None:
    c = MetadataCache(str(tmp_path), KEY, SCOPE, max_entries=100)
    items = [info(key=f"f{n}") for n in range(300)]
    for i in items:
        c.put(i)
    c.close()
    c = MetadataCache(str(tmp_path), KEY, SCOPE, max_entries=100)
    kept = [i for i in items if c.get(listed(i)) is not None]
    assert kept == items[-100:]
    c.close()


def test_an_unusable_directory_turns_the_cache_off(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    assert open_metadata_cache(str(blocker / "sub"), KEY, SCOPE) is None
