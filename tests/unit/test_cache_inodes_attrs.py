import stat

import pytest

from ssecfs.attrs import (
    Attr,
    Defaults,
    Kind,
    attr_from_meta,
    format_mtime,
    meta_from_attr,
    parse_mtime_ns,
)
from ssecfs.cache import TtlCache
from ssecfs.errors import Stale
from ssecfs.inodes import ROOT_INODE, InodeTable

D = Defaults(uid=10, gid=20, file_mode=0o644, dir_mode=0o755)


def test_ttl_cache_expires_with_injected_clock():
    now = [0.0]
    c: TtlCache[str, int] = TtlCache(5, clock=lambda: now[0])
    c.put("a", 1)
    assert c.get("a") == 1
    now[0] = 5.0
    assert c.get("a") is None


def test_ttl_cache_is_lru_bounded():
    c: TtlCache[int, int] = TtlCache(100, max_entries=2)
    c.put(1, 1)
    c.put(2, 2)
    c.get(1)
    c.put(3, 3)
    assert c.get(2) is None and c.get(1) == 1 and c.get(3) == 3


def test_pop_where():
    c: TtlCache[str, int] = TtlCache(100)
    for k in ("a", "a/b", "ab"):
        c.put(k, 1)
    c.pop_where(lambda k: k == "a" or k.startswith("a/"))
    assert len(c) == 1 and c.get("ab") == 1


def test_inode_lookup_and_forget():
    t = InodeTable()
    ino = t.lookup("a")
    assert t.lookup("a") == ino and t.path(ino) == "a"
    t.forget(ino, 1)
    assert t.path(ino) == "a"
    t.forget(ino, 1)
    with pytest.raises(Stale):
        t.path(ino)
    assert t.lookup("a") != ino  # numbers are never reused


def test_open_inode_survives_forget():
    t = InodeTable()
    ino = t.lookup("f")
    t.opened(ino)
    t.forget(ino, 1)
    assert t.path(ino) == "f"
    t.closed(ino)
    with pytest.raises(Stale):
        t.path(ino)


def test_rename_moves_descendants_and_unlinks_target():
    t = InodeTable()
    d, f, other = t.lookup("d"), t.lookup("d/f"), t.lookup("e")
    t.rename("d", "e")
    assert t.path(d) == "e" and t.path(f) == "e/f"
    with pytest.raises(Stale):
        t.path(other)
    assert t.path(ROOT_INODE) == ""


def test_unlink_detaches_path():
    t = InodeTable()
    ino = t.lookup("x")
    t.opened(ino)
    t.unlink("x")
    assert t.known("x") is None
    assert t.lookup("x") != ino


def test_attrs_from_s3fs_metadata():
    a = attr_from_meta({"mode": str(stat.S_IFREG | 0o600), "uid": "1000", "gid": "100",
                        "mtime": "1600000000"}, 5, 1, D)
    assert (a.kind, a.mode, a.uid, a.gid, a.size, a.mtime_ns) == \
        (Kind.FILE, 0o600, 1000, 100, 5, 1600000000 * 10**9)


def test_attrs_defaults_and_symlink():
    a = attr_from_meta({}, 3, 7, D)
    assert (a.mode, a.uid, a.gid, a.mtime_ns) == (0o644, 10, 20, 7)
    link = attr_from_meta({"mode": str(stat.S_IFLNK | 0o777)}, 4, 7, D)
    assert link.kind is Kind.SYMLINK and link.st_mode == stat.S_IFLNK | 0o777
    d = attr_from_meta({}, 0, 7, D, is_dir=True)
    assert d.kind is Kind.DIR and d.mode == 0o755


def test_bad_metadata_falls_back():
    a = attr_from_meta({"mode": "rwx", "uid": "", "mtime": "soon"}, 1, 9, D)
    assert (a.mode, a.uid, a.mtime_ns) == (0o644, 10, 9)


def test_mtime_round_trip():
    assert parse_mtime_ns("1700000000.5") == 1700000000_500000000
    assert format_mtime(1700000000_000000000) == "1700000000"
    assert format_mtime(1700000000_500000000) == "1700000000.500000000"  # s3fs reads 9 digits
    assert parse_mtime_ns(format_mtime(1700000000_123456789)) == 1700000000_123456789


def test_meta_round_trip():
    a = Attr(Kind.FILE, 0o640, 1, 2, 0, 1600000000 * 10**9, ctime_ns=1700000000 * 10**9,
             atime_ns=1600000001 * 10**9)
    meta = meta_from_attr(a)
    assert meta["mode"] == str(stat.S_IFREG | 0o640)
    assert attr_from_meta(meta, 0, 0, D) == a
