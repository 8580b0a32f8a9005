import io

import botocore.exceptions
import pytest
import urllib3.exceptions

from ssecfs.errors import SsecfsError, StoreError
from ssecfs.keys import SseCKey
from ssecfs.ranges import ByteRange
from ssecfs.store.s3 import (
    EndpointError,
    S3Store,
    check_endpoint_url,
    echoed_md5s,
    explain_startup_error,
    make_client,
)


def test_http_endpoint_is_refused():
    for url in ("http://127.0.0.1:9000", "127.0.0.1:9000", "ftp://x"):
        with pytest.raises(EndpointError, match="https"):
            check_endpoint_url(url)
    check_endpoint_url("https://s3.example")
    check_endpoint_url(None)


def test_echo_header_parsing():
    assert echoed_md5s("abc==, abc==") == {"abc=="}
    assert echoed_md5s(None) == set()
    assert echoed_md5s("a, b") == {"a", "b"}


def client_error(status, code):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "ListObjectsV2")


@pytest.mark.parametrize("exc, words", [
    (client_error(404, "NoSuchBucket"), "does not exist"),
    (client_error(403, "InvalidAccessKeyId"), "credentials were refused"),
    (client_error(403, "SignatureDoesNotMatch"), "credentials were refused"),
    (client_error(403, "AccessDenied"), "denied"),
    (botocore.exceptions.NoCredentialsError(), "no S3 credentials"),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="https://x"), "cannot reach"),
    (botocore.exceptions.SSLError(endpoint_url="https://x", error="bad"), "--ca-bundle"),
])
def test_startup_errors_are_one_helpful_line(exc, words):
    text = explain_startup_error(exc, "bkt", "https://x")
    assert words in text and "\n" not in text


# ------------------------------------------------------------------ the seam: S3Store._call
# A stand-in for the boto3 client object (not for the server): it raises what botocore and
# urllib3 raise when a connection drops, so the translation at the seam can be checked.
KEY = SseCKey(bytes(range(32)))


class CutBody(io.BytesIO):
    def read(self, *args):
        raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")


class FakeClient:
    def __init__(self, head_exc=None, cuts=0):
        self.head_exc = head_exc
        self.cuts = cuts
        self.gets = 0

    def head_object(self, **kw):
        raise self.head_exc

    def get_object(self, **kw):
        self.gets += 1
        body = CutBody() if self.gets <= self.cuts else io.BytesIO(b"0123456789")
        return {"Body": body, "SSECustomerKeyMD5": KEY.md5_b64}


@pytest.mark.parametrize("exc", [
    botocore.exceptions.EndpointConnectionError(endpoint_url="https://x"),
    botocore.exceptions.ConnectTimeoutError(endpoint_url="https://x"),
    botocore.exceptions.ReadTimeoutError(endpoint_url="https://x"),
    ValueError("a bug in a worker thread"),
    OSError(104, "Connection reset by peer"),
])
async def test_every_exception_of_a_head_leaves_the_store_as_an_ssecfs_error(exc):
    store = S3Store(FakeClient(head_exc=exc), "b", retry_time=0)
    with pytest.raises(StoreError) as info:
        await store.head("k", KEY)
    assert isinstance(info.value, SsecfsError) and "k" in str(info.value)


async def test_param_validation_errors_do_not_quote_the_key():
    exc = botocore.exceptions.ParamValidationError(report=f"bad value {KEY.raw!r}")
    store = S3Store(FakeClient(head_exc=exc), "b", retry_time=0)
    with pytest.raises(StoreError) as info:
        await store.head("k", KEY)
    assert repr(KEY.raw) not in str(info.value)


async def test_a_get_whose_body_is_cut_is_retried(autojump_clock):
    client = FakeClient(cuts=2)
    store = S3Store(client, "b")
    assert await store.get_range("k", ByteRange(0, 10), KEY) == b"0123456789"
    assert client.gets == 3 and store.stats.counts["retries"] == 2


async def test_transient_failures_are_retried_for_retry_time_then_raised(autojump_clock):
    import trio
    client = FakeClient(cuts=10**6)
    store = S3Store(client, "b", retry_time=30)
    started = trio.current_time()
    with pytest.raises(StoreError, match="cut"):
        await store.get_range("k", ByteRange(0, 10), KEY)
    waited = trio.current_time() - started
    assert 20 <= waited <= 30, waited  # bounded by time, not by a count
    assert client.gets > 5


@pytest.mark.parametrize("exc, retried", [
    (botocore.exceptions.EndpointConnectionError(endpoint_url="https://x"), True),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="https://x"), True),
    (botocore.exceptions.ConnectionClosedError(endpoint_url="https://x"), True),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (client_error(503, "SlowDown"), True),
    (client_error(500, "InternalError"), True),
    (client_error(429, "TooManyRequests"), True),
    (client_error(400, "InvalidArgument"), False),
    (client_error(403, "AccessDenied"), False),
    (client_error(404, "NoSuchKey"), False),
    (client_error(501, "NotImplemented"), False),
    (botocore.exceptions.NoCredentialsError(), False),
    (ValueError("a bug"), False),
])
async def test_only_transient_failures_are_retried(autojump_clock, exc, retried):
    calls = []

    def head_object(**kw):
        calls.append(1)
        raise exc

    client = FakeClient()
    client.head_object = head_object
    store = S3Store(client, "b", retry_time=5)
    with pytest.raises(SsecfsError):
        await store.head("k", None)
    assert (len(calls) > 1) is retried


@pytest.mark.parametrize("url", ["https://", "https://s3 .example", "http://127.0.0.1:9000",
                                 "https://[::1", "https://h:99999"])
def test_an_endpoint_from_the_environment_gets_the_same_checks(monkeypatch, url):
    """AWS_ENDPOINT_URL (or a profile) bypasses --endpoint-url's parsing: make_client checks
    what boto3 chose, with the same one-line errors."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(EndpointError, match="https"):
        make_client(endpoint_url=None, region=None, profile=None, ca_bundle=None, retries=1,
                    connect_timeout=1, read_timeout=1)


class RingServer:
    """head_object as Ceph RGW answers it: 200 with the object's key, 400 with another key
    or none; or (`echo_other`) 200 echoing the object's own key MD5 to any key."""

    def __init__(self, key: SseCKey, echo_other: bool = False):
        self.key = key
        self.echo_other = echo_other
        self.calls: list[str] = []

    def head_object(self, **kw):
        sent = kw.get("SSECustomerKey")
        self.calls.append("no key" if sent is None else SseCKey(sent).md5_b64)
        if sent == self.key.raw or (sent is not None and self.echo_other):
            return {"ContentLength": 1, "ETag": '"e"', "SSECustomerAlgorithm": "AES256",
                    "SSECustomerKeyMD5": self.key.md5_b64}
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "InvalidArgument"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
            "HeadObject")


async def test_a_ring_asks_why_a_key_was_refused_once_only():
    from ssecfs.keys import KeyRing
    from ssecfs.namespace import head_with_ring

    keys = [SseCKey(bytes([i]) * 32) for i in range(3)]
    server = RingServer(keys[2])
    info = await head_with_ring(S3Store(server, "b", retry_time=0), "k", KeyRing.of(keys))
    assert info.key_md5 == keys[2].md5_b64
    # writer refused, why (no key: 400, so under another key), old1 refused, old2 opens
    assert server.calls == [keys[0].md5_b64, "no key", keys[1].md5_b64, keys[2].md5_b64]

    server = RingServer(keys[2], echo_other=True)  # names the object's key: tried next
    info = await head_with_ring(S3Store(server, "b", retry_time=0), "k", KeyRing.of(keys))
    assert info.key_md5 == keys[2].md5_b64
    assert server.calls == [keys[0].md5_b64, keys[2].md5_b64]
