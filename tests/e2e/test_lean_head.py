"""The lean HeadObject path (store/lean.py) answers exactly as botocore's, on both servers:
the same ObjectInfo for an object with metadata, content headers and an awkward name, the
same errors for another key, no key, a plain object and a missing one."""

from __future__ import annotations

import os

import pytest
import trio

from ssecfs.content import Content
from ssecfs.errors import SsecfsError
from ssecfs.keys import SseCKey
from ssecfs.store.s3 import S3Store, make_client
from tests.servers import S3Server

NAMES = ["plain.txt", "dir/with space+plus%percent é.bin", "a~b/c=d&e"]


def stores(server: S3Server, bucket: str) -> tuple[S3Store, S3Store]:
    client = make_client(endpoint_url=server.endpoint, region=server.region, profile=None,
                         ca_bundle=server.ca_bundle, retries=3, connect_timeout=5,
                         read_timeout=30)
    return S3Store(client, bucket), S3Store(client, bucket, lean=False)


def outcome(run: object) -> object:
    async def go() -> object:
        try:
            info = await run  # type: ignore[misc]
        except SsecfsError as exc:
            return type(exc).__name__, exc.errno
        return (info.key, info.size, info.etag, dict(info.metadata), info.key_md5,
                info.content, info.last_modified_ns)
    return trio.run(go)


def test_lean_heads_answer_as_botocore(s3server: S3Server, bucket: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3server.secret_key)
    lean, plain = stores(s3server, bucket)
    assert lean._lean is not None and plain._lean is None
    key, other = SseCKey(os.urandom(32)), SseCKey(os.urandom(32))
    content = Content("text/plain", cache_control="max-age=5", language="pl")

    async def fill() -> None:
        for name in NAMES:
            await plain.put(name, b"body", {"mode": "33188", "owner-app": "x"}, content, key)
        await plain.put("unencrypted", b"plain", {}, Content(), None)
    trio.run(fill)
    for name in [*NAMES, "unencrypted", "missing"]:
        for sse in (key, other, None):
            got = outcome(lean.head(name, sse))
            assert got == outcome(plain.head(name, sse)), (name, sse)
    assert outcome(lean.head(NAMES[1], key))[3] == {"mode": "33188", "owner-app": "x"}
    assert lean.stats.snapshot()["requests"]["HeadObject"] >= 15
