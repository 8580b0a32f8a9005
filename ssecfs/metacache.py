"""MetadataCache: what HEAD told about objects, kept across mounts, encrypted (opt-in).

Why: `ls -l` needs each file's s3fs metadata (mode, uid, gid, mtime), which only a HeadObject
gives: one request per entry, so a listing after a remount runs at the server's HEAD rate
(about 1,000 a second for RGW on two cores), whatever the client does. With
`-o metadata_cache`, the answers of earlier HEADs are kept in `cache_dir`, and a listed object
whose ETag, size and Last-Modified (to the second) are those of the kept answer is not asked
again: any PutObject or CopyObject of it, by this mount or another client, changes its
Last-Modified, so a changed object is always asked about again. The listing itself is never
cached: it is fetched as without this option (within `cache_ttl`).

Nothing readable reaches the disk: records are sealed with AES-256-GCM under a key derived
(HKDF-SHA256) from the mount's writing SSE-C key and the mount's scope (endpoint, bucket,
prefix); object names are stored only as an HMAC of the name under another derived key, and
the file's name is an HMAC too. Without the SSE-C key the file is noise, and a mount with
another key, bucket or prefix neither reads nor finds it. A record that does not decrypt or
does not name the object asked for is dropped. The file is an SQLite database (mode 0600):
a crash at worst loses the records not yet written.

Rule: runs on the trio thread (each lookup is one indexed SELECT and one AES-GCM open, tens
of microseconds); writes are batched and committed at most every FLUSH_EVERY records and at
close.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import sqlite3
from dataclasses import asdict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .content import Content
from .keys import SseCKey
from .store.base import ListedObject, ObjectInfo

log = logging.getLogger(__name__)

NONCE = 12
FLUSH_EVERY = 256
MAX_ENTRIES = 200_000  # records kept; the oldest go first
NS = 1_000_000_000
VERSION = b"ssecfs metadata cache v1"


def derive_keys(key: SseCKey, scope: str) -> tuple[bytes, bytes]:
    """(name key, sealing key) for `scope`, from the SSE-C key."""
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
               info=VERSION + b"\0" + scope.encode()).derive(key.raw)
    return okm[:32], okm[32:]


def unchanged(listed: ListedObject, info: ObjectInfo) -> bool:
    """Whether the listing shows the object `info` describes: same ETag, size and
    Last-Modified (a HEAD gives it to the second, a listing to the millisecond)."""
    return (listed.etag == info.etag and listed.size == info.size
            and listed.last_modified_ns // NS == info.last_modified_ns // NS)


def _record(info: ObjectInfo) -> bytes:
    return json.dumps({"k": info.key, "s": info.size, "e": info.etag,
                       "t": info.last_modified_ns, "m": dict(info.metadata),
                       "h": info.key_md5, "c": asdict(info.content)},
                      separators=(",", ":")).encode()


def _info(raw: bytes) -> ObjectInfo:
    d = json.loads(raw)
    return ObjectInfo(str(d["k"]), int(d["s"]), str(d["e"]), int(d["t"]),
                      {str(k): str(v) for k, v in d["m"].items()},
                      None if d["h"] is None else str(d["h"]), Content(**d["c"]))


class MetadataCache:
    def __init__(self, directory: str, key: SseCKey, scope: str,
                 max_entries: int = MAX_ENTRIES) -> None:
        self._name_key, seal_key = derive_keys(key, scope)
        self._aead = AESGCM(seal_key)
        self._max_entries = max_entries
        self._pending: dict[bytes, bytes] = {}
        os.makedirs(directory, mode=0o700, exist_ok=True)
        file_id = hmac.new(self._name_key, b"file", hashlib.sha256).hexdigest()[:24]
        self.path = os.path.join(directory, f"meta-{file_id}.db")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # 0600 before SQLite opens it, also if it was there
        finally:
            os.close(fd)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: a lost tail costs HEADs
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (id BLOB PRIMARY KEY, rec BLOB)")

    def __repr__(self) -> str:
        return f"<MetadataCache {self.path}>"

    def _id(self, key: str) -> bytes:
        return hmac.new(self._name_key, key.encode(), hashlib.sha256).digest()[:16]

    def get(self, listed: ListedObject) -> ObjectInfo | None:
        """The kept HEAD answer for `listed`, if the listing shows it unchanged."""
        oid = self._id(listed.key)
        sealed = self._pending.get(oid)
        if sealed is None:
            try:
                row = self._db.execute("SELECT rec FROM meta WHERE id = ?", (oid,)).fetchone()
            except sqlite3.Error:
                return None
            if row is None or not isinstance(row[0], bytes):
                return None
            sealed = row[0]
        try:
            info = _info(self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], oid))
        except (InvalidTag, ValueError, KeyError, TypeError):
            self.forget(listed.key)  # not ours, or damaged: asked again
            return None
        if info.key != listed.key or not unchanged(listed, info):
            return None
        return info

    def put(self, info: ObjectInfo) -> None:
        """Keep what a HEAD of `info.key` answered."""
        oid = self._id(info.key)
        nonce = os.urandom(NONCE)
        self._pending[oid] = nonce + self._aead.encrypt(nonce, _record(info), oid)
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def forget(self, key: str) -> None:
        oid = self._id(key)
        self._pending.pop(oid, None)
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("DELETE FROM meta WHERE id = ?", (oid,))

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = list(self._pending.items()), {}
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO meta (id, rec) VALUES (?, ?)",
                                     rows)
                self._db.execute("DELETE FROM meta WHERE rowid <= (SELECT MAX(rowid) FROM "
                                 "meta) - ?", (self._max_entries,))
        except sqlite3.Error as exc:  # a cache: the mount goes on without these records
            log.warning("could not write the metadata cache %s: %s", self.path, exc)

    def close(self) -> None:
        self.flush()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


def open_metadata_cache(directory: str, key: SseCKey, scope: str) -> MetadataCache | None:
    """The cache, or None (logged) when it cannot be opened: the mount runs without it."""
    try:
        return MetadataCache(directory, key, scope)
    except (OSError, sqlite3.Error) as exc:
        log.warning("metadata cache in %s is off: %s", directory, exc)
        return None
