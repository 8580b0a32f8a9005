"""The local test servers behave as shared/reference/servers.md says.

ssecfs relies on these behaviours (and works around the differences). If a server upgrade
changes one of them, a test here fails and tells which assumption moved.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.servers import S3Server

SIZE = 1_000_003  # not a multiple of the 4 KiB crypto block (rgw) nor of 16

# Where the servers differ from each other (and from AWS). AWS's answer in comments.
EXPECTED: dict[str, dict[str, Any]] = {
    "rgw": {
        "get_wrong_key": (400, "InvalidArgument"),  # AWS: 403 AccessDenied
        "head_wrong_key": 400,  # AWS: 403
        "copy_object_ssec_source": 501,  # NotImplemented (AWS: 200)
        "upload_part_copy_same_key": 200,  # AWS: 200
        "upload_part_no_key": 400,  # AWS: 400
        "get_md5_echo_count": 1,
    },
    "seaweedfs": {
        "get_wrong_key": (403, "AccessDenied"),
        "head_wrong_key": 403,
        "copy_object_ssec_source": 200,
        "upload_part_copy_same_key": 501,  # NotImplemented
        "upload_part_no_key": 200,  # not enforced (AWS: 400)
        # GET/HEAD send the x-amz-server-side-encryption-customer-key-MD5 header twice;
        # botocore joins them: "MD5, MD5". (PUT sends it once.)
        "get_md5_echo_count": 2,
    },
}


def ssec(key: bytes) -> dict[str, Any]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def copy_ssec(key: bytes) -> dict[str, Any]:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def key_md5(key: bytes) -> str:
    return base64.b64encode(hashlib.md5(key).digest()).decode()


def error_of(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def s3(s3server: S3Server) -> Any:
    return s3server.boto3_client()


@pytest.fixture
def obj(s3: Any, bucket: str, data: bytes, sse_key: bytes) -> str:
    """An SSE-C object 'obj' of SIZE bytes in bucket, encrypted with sse_key."""
    resp = s3.put_object(Bucket=bucket, Key="obj", Body=data, **ssec(sse_key))
    assert resp["SSECustomerAlgorithm"] == "AES256"
    assert resp["SSECustomerKeyMD5"] == key_md5(sse_key)
    return "obj"


def test_server_info(s3server: S3Server) -> None:
    assert s3server.endpoint.startswith("https://127.0.0.1:")
    assert os.path.isfile(s3server.ca_bundle)
    assert s3server.region == "us-east-1"
    env = s3server.env()
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    assert not {"AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"} & env.keys()


def test_get_with_key_roundtrips_and_echoes(s3server: S3Server, s3: Any, bucket: str, obj: str,
                                            data: bytes, sse_key: bytes) -> None:
    echo = ", ".join([key_md5(sse_key)] * EXPECTED[s3server.kind]["get_md5_echo_count"])
    got = s3.get_object(Bucket=bucket, Key=obj, **ssec(sse_key))
    assert got["Body"].read() == data
    assert got["ContentLength"] == SIZE
    assert got["SSECustomerAlgorithm"] == "AES256"
    assert got["SSECustomerKeyMD5"] == echo
    head = s3.head_object(Bucket=bucket, Key=obj, **ssec(sse_key))
    assert head["ContentLength"] == SIZE
    assert head["SSECustomerKeyMD5"] == echo


def test_get_without_key_is_400(s3: Any, bucket: str, obj: str) -> None:
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key=obj)
    assert error_of(ei.value) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key=obj)
    assert error_of(ei.value)[0] == 400


def test_get_with_wrong_key(s3server: S3Server, s3: Any, bucket: str, obj: str) -> None:
    exp = EXPECTED[s3server.kind]
    wrong = secrets.token_bytes(32)
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key=obj, **ssec(wrong))
    assert error_of(ei.value) == exp["get_wrong_key"]
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key=obj, **ssec(wrong))
    assert error_of(ei.value)[0] == exp["head_wrong_key"]


@pytest.mark.parametrize("rng", ["100-199", "4090-4200", "0-0", f"{SIZE - 13}-", "-7"])
def test_ranged_get(s3: Any, bucket: str, obj: str, data: bytes, sse_key: bytes,
                    rng: str) -> None:
    start, _, end = rng.partition("-")
    if start == "":
        want = data[-int(end):]
        first = SIZE - int(end)
    else:
        first = int(start)
        want = data[first:int(end) + 1] if end else data[first:]
    got = s3.get_object(Bucket=bucket, Key=obj, Range=f"bytes={rng}", **ssec(sse_key))
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == want
    assert got["ContentRange"] == f"bytes {first}-{first + len(want) - 1}/{SIZE}"


def test_list_sizes_are_plaintext(s3: Any, bucket: str, obj: str, sse_key: bytes) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"", **ssec(sse_key))
    s3.put_object(Bucket=bucket, Key="small", Body=b"x" * 17, **ssec(sse_key))
    listed = s3.list_objects_v2(Bucket=bucket)
    sizes = {o["Key"]: o["Size"] for o in listed["Contents"]}
    assert sizes == {"obj": SIZE, "empty": 0, "small": 17}
    got = s3.get_object(Bucket=bucket, Key="empty", **ssec(sse_key))
    assert got["Body"].read() == b""


def test_plain_object_ignores_sse_headers(s3: Any, bucket: str, sse_key: bytes) -> None:
    """GET of an unencrypted object with SSE-C headers works: it can't tell what's encrypted."""
    s3.put_object(Bucket=bucket, Key="plain", Body=b"hello")
    got = s3.get_object(Bucket=bucket, Key="plain", **ssec(sse_key))
    assert got["Body"].read() == b"hello"
    # and HEAD without a key is what tells them apart
    assert s3.head_object(Bucket=bucket, Key="plain")["ContentLength"] == 5


def test_copy_object_of_ssec_source(s3server: S3Server, s3: Any, bucket: str, obj: str,
                                    data: bytes, sse_key: bytes) -> None:
    """rgw 16 cannot CopyObject an SSE-C source (501); SeaweedFS can."""
    want = EXPECTED[s3server.kind]["copy_object_ssec_source"]
    try:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": obj},
                       **ssec(sse_key), **copy_ssec(sse_key))
        status = 200
    except ClientError as e:
        status = error_of(e)[0]
    assert status == want
    if status == 200:
        got = s3.get_object(Bucket=bucket, Key="copy", **ssec(sse_key))
        assert got["Body"].read() == data


def test_upload_part_copy_same_key(s3server: S3Server, s3: Any, bucket: str, obj: str,
                                   data: bytes, sse_key: bytes) -> None:
    """rgw copies SSE-C data server-side via UploadPartCopy (same key); SeaweedFS: 501."""
    want = EXPECTED[s3server.kind]["upload_part_copy_same_key"]
    up = s3.create_multipart_upload(Bucket=bucket, Key="pcopy", **ssec(sse_key))["UploadId"]
    try:
        try:
            part = s3.upload_part_copy(Bucket=bucket, Key="pcopy", UploadId=up, PartNumber=1,
                                       CopySource={"Bucket": bucket, "Key": obj},
                                       **ssec(sse_key), **copy_ssec(sse_key))
            status = 200
        except ClientError as e:
            status = error_of(e)[0]
        assert status == want
        if status == 200:
            etag = part["CopyPartResult"]["ETag"]
            s3.complete_multipart_upload(
                Bucket=bucket, Key="pcopy", UploadId=up, **ssec(sse_key),
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
            up = ""
            got = s3.get_object(Bucket=bucket, Key="pcopy", **ssec(sse_key))
            assert got["Body"].read() == data
    finally:
        if up:
            s3.abort_multipart_upload(Bucket=bucket, Key="pcopy", UploadId=up)


def test_upload_part_without_key(s3server: S3Server, s3: Any, bucket: str,
                                 sse_key: bytes) -> None:
    """rgw refuses a key-less part of an SSE-C upload; SeaweedFS does not check."""
    want = EXPECTED[s3server.kind]["upload_part_no_key"]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mpu", **ssec(sse_key))["UploadId"]
    try:
        try:
            s3.upload_part(Bucket=bucket, Key="mpu", UploadId=up, PartNumber=1, Body=b"abc")
            status = 200
        except ClientError as e:
            status = error_of(e)[0]
        assert status == want
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="mpu", UploadId=up)


# --------------------------------------------------------------------------- rgw only


@pytest.fixture
def rgw_bucket(rgw: S3Server) -> Any:
    name = "t-http-" + secrets.token_hex(6)
    rgw.create_bucket(name)
    try:
        yield name
    finally:
        rgw.purge_bucket(name)


def test_rgw_refuses_ssec_over_plain_http(rgw: S3Server, rgw_bucket: str, sse_key: bytes) -> None:
    assert rgw.http_endpoint and rgw.http_endpoint.startswith("http://127.0.0.1:")
    http = rgw.boto3_client(endpoint_url=rgw.http_endpoint)
    with pytest.raises(ClientError) as ei:
        http.put_object(Bucket=rgw_bucket, Key="k", Body=b"secret", **ssec(sse_key))
    assert error_of(ei.value) == (400, "InvalidRequest")
    # plain objects are fine over HTTP: the refusal is about SSE-C (rgw_crypt_require_ssl)
    http.put_object(Bucket=rgw_bucket, Key="plain", Body=b"hello")
    assert http.get_object(Bucket=rgw_bucket, Key="plain")["Body"].read() == b"hello"


def test_rgw_cli_info_roundtrip(rgw: S3Server) -> None:
    """The state dir describes the running server (what `python -m tests.servers` prints)."""
    from tests import servers

    assert servers.load(rgw.state_dir) == rgw
