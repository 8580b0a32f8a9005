import botocore.exceptions
import pytest

from ssecfs.store.s3 import EndpointError, check_endpoint_url, echoed_md5s, explain_startup_error


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
