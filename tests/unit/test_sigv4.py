"""store/sigv4.py signs exactly as botocore's S3 signer does (UNSIGNED-PAYLOAD), for any key
name, query, header set, session token and time; and keeps the day's signing key."""

from __future__ import annotations

import datetime
import types
import urllib.parse

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from ssecfs.store.sigv4 import SigV4

UNSIGNED_BODY = types.SimpleNamespace(s3={"payload_signing_enabled": False})
HOST = "127.0.0.1:8443"


def botocore_headers(creds: Credentials, method: str, path: str, query: str,
                     headers: dict[str, str], when: datetime.datetime,
                     monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    url = f"https://{HOST}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    request.context["client_config"] = UNSIGNED_BODY
    S3SigV4Auth(creds.get_frozen_credentials(), "s3", "us-east-1").add_auth(request)
    return dict(request.headers.items())


header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@settings(max_examples=150, deadline=None)
@given(key=st.text(min_size=1, max_size=40),
       method=st.sampled_from(["HEAD", "PUT", "GET"]),
       meta=st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
                            header_values, max_size=4),
       part=st.one_of(st.none(), st.integers(1, 10000)),
       token=st.one_of(st.none(), st.text("abcXYZ019+/=", min_size=1, max_size=20)),
       seconds=st.integers(0, 4_000_000_000))
def test_the_same_headers_as_botocore(key: str, method: str, meta: dict[str, str],
                                      part: int | None, token: str | None, seconds: int,
                                      monkeypatch_module: pytest.MonkeyPatch) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    path = "/bucket/" + urllib.parse.quote(key, safe="/~")
    query = f"uploadId=2~abc.DEF-_x&partNumber={part}&x=2~abc.DEF-_x" if part else ""
    headers = {"Host": HOST, **{f"x-amz-meta-{k}": v for k, v in meta.items()},
               "x-amz-server-side-encryption-customer-algorithm": "AES256",
               "Content-Length": "5", "User-Agent": "left out"}
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(tzinfo=None)
    expected = botocore_headers(creds, method, path, query, headers, when, monkeypatch_module)
    assert SigV4(creds, "us-east-1").sign(method, path, query, headers, now=seconds) == expected


@pytest.fixture(scope="module")
def monkeypatch_module() -> pytest.MonkeyPatch:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_the_signing_key_is_kept_for_the_day_and_follows_the_secret() -> None:
    creds = Credentials("AK", "first")
    signer = SigV4(creds, "us-east-1")
    headers = {"Host": HOST}
    a = signer.sign("HEAD", "/b/k", "", headers, now=1_800_000_000)
    kept = signer._day_key[2]
    b = signer.sign("HEAD", "/b/k", "", headers, now=1_800_000_100)  # same day
    assert signer._day_key[2] is kept and a["Authorization"] != b["Authorization"]
    signer.sign("HEAD", "/b/k", "", headers, now=1_800_000_000 + 86_400)  # next day
    assert signer._day_key[2] != kept
    creds.secret_key = "rotated"
    c = signer.sign("HEAD", "/b/k", "", headers, now=1_800_000_000)
    assert c["Authorization"] != a["Authorization"]
    assert "first" not in repr(signer) and "rotated" not in repr(signer)
