"""parse_list_page reads a ListObjectsV2 answer as botocore does: URL-decoded keys only when
the answer says it encoded them, the continuation token of a truncated page, the same
LastModified nanoseconds; anything it does not know is None (the store asks botocore)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from botocore.utils import parse_timestamp

from ssecfs.store.base import ListedObject
from ssecfs.store.lean import _timestamp_ns, parse_list_page

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def answer(body: str, *, encoded: bool = True, truncated: str = "false",
           xmlns: str = f' xmlns="{NS}"') -> bytes:
    enc = "<EncodingType>url</EncodingType>" if encoded else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult{xmlns}>'
            f"<Name>b</Name><Prefix></Prefix>{enc}<KeyCount>2</KeyCount>"
            f"<IsTruncated>{truncated}</IsTruncated>{body}</ListBucketResult>").encode()


CONTENTS = ("<Contents><Key>dir/a%20b+c%01</Key><LastModified>2026-12-06T21:23:03.944Z"
            "</LastModified><ETag>&quot;9dd4e461&quot;</ETag><Size>12</Size></Contents>"
            "<CommonPrefixes><Prefix>sub%2Bdir/</Prefix></CommonPrefixes>")


def test_an_encoded_page_is_decoded() -> None:
    page = parse_list_page(answer(CONTENTS))
    assert page is not None
    assert page.objects == (ListedObject(
        "dir/a b c\x01", 12, '"9dd4e461"',
        int(parse_timestamp("2026-12-06T21:23:03.944Z").timestamp() * 1_000_000_000)),)
    assert page.prefixes == ("sub+dir/",) and page.next_token is None


def test_a_page_not_encoded_keeps_its_keys_and_needs_no_namespace() -> None:
    page = parse_list_page(answer(CONTENTS, encoded=False, xmlns=""))
    assert page is not None
    assert page.objects[0].key == "dir/a%20b+c%01" and page.prefixes == ("sub%2Bdir/",)


def test_a_truncated_page_gives_its_token_and_without_one_is_not_trusted() -> None:
    token = "<NextContinuationToken>1/abc==</NextContinuationToken>"
    page = parse_list_page(answer(CONTENTS + token, truncated="true"))
    assert page is not None and page.next_token == "1/abc=="
    assert parse_list_page(answer(CONTENTS, truncated="true")) is None


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><Error><Code>NoSuchBucket</Code></Error>',
    answer("<Contents><Size>1</Size></Contents>"),
    answer("<CommonPrefixes></CommonPrefixes>")])
def test_what_is_not_a_page_is_none(body: bytes) -> None:
    assert parse_list_page(body) is None


def test_no_xml_raises_parse_error() -> None:
    with pytest.raises(ET.ParseError):
        parse_list_page(b"<ListBucketResult")


@pytest.mark.parametrize("value", [
    "2026-12-06T21:23:03.944Z", "2026-12-06T21:23:03Z", "2026-12-06T21:23:03.1234567Z",
    "1970-01-01T00:00:00.000Z", "2026-12-06T21:23:03.944+01:00", "Sun, 06 Dec 2026 21:23:03 GMT"])
def test_last_modified_is_botocores_number(value: str) -> None:
    assert _timestamp_ns(value) == int(parse_timestamp(value).timestamp() * 1_000_000_000)


def test_no_last_modified_is_zero() -> None:
    assert _timestamp_ns(None) == 0 and _timestamp_ns("") == 0
