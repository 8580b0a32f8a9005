"""s3fs-compatible metadata: extended attributes, ctime/atime, other tools' entries, content
types, directories of older kinds and special files (pure; no server)."""

from __future__ import annotations

import stat

import pytest

from ssecfs import xattrs
from ssecfs.attrs import (
    METADATA_MAX,
    Attr,
    Defaults,
    Kind,
    attr_from_meta,
    content_for,
    meta_from_attr,
    metadata_size,
    parse_mode,
)
from ssecfs.content import DIRECTORY_TYPE, Content, expires_time, type_for_name
from ssecfs.errors import InvalidName, NotSupported

D = Defaults(uid=1000, gid=1000, file_mode=0o644, dir_mode=0o755)

# Header values written by s3fs 1.90 (Debian's package, mounted with -o use_xattr over SSE-C on
# SeaweedFS; os.setxattr on the s3fs mount, then x-amz-meta-xattr read back with boto3), and
# what was set. s3fs 1.90 stores no header at all for an attribute with an empty value.
S3FS_VECTORS = [
    ("%7B%22user.a%22%3A%22MQ%3D%3D%22%7D", {"user.a": b"1"}),
    ("%7B%22user.comment%22%3A%22aGVsbG8gd29ybGQ%3D%22%2C%22user.x%22%3A%22eQ%3D%3D%22%7D",
     {"user.comment": b"hello world", "user.x": b"y"}),
    ("%7B%22user.bin%22%3A%22AAH/%22%7D", {"user.bin": b"\x00\x01\xff"}),
    ("%7B%22user.plus%22%3A%22%2B/%2B/%22%7D", {"user.plus": bytes([0xfb, 0xff, 0xbf])}),
    ("%7B%22user.k%3Av%22%3A%22Y29sb24%3D%22%7D", {"user.k:v": b"colon"}),
]


@pytest.mark.parametrize(("header", "attrs"), S3FS_VECTORS)
def test_xattrs_read_and_written_as_s3fs_does(header: str, attrs: dict[str, bytes]) -> None:
    assert dict(xattrs.decode(header)) == attrs
    assert xattrs.encode(tuple(sorted(attrs.items()))) == header


def test_xattr_encoding_sorts_names_and_keeps_empty_values() -> None:
    header = xattrs.encode((("user.z", b"z"), ("user.a", b""), ("user.m", b"m")))
    assert header.startswith("%7B%22user.a%22%3A%22%22%2C%22user.m%22")
    assert dict(xattrs.decode(header)) == {"user.a": b"", "user.m": b"m", "user.z": b"z"}


def test_xattr_decoding_skips_what_it_cannot_read() -> None:
    assert xattrs.decode("") == ()
    assert xattrs.decode("not json") == ()
    assert xattrs.decode("%7B%7D") == ()  # s3fs writes "{}" once the last one is removed
    # s3fs's own reading of a header that is not strict JSON: pairs split on "," and ":"
    assert dict(xattrs.decode('{"user.a":"MQ==","broken"}')) == {"user.a": b"1"}


def test_xattr_names_s3fs_could_not_read_back_are_refused() -> None:
    xattrs.check_name("user.ok")
    xattrs.check_name("trusted.ok")
    for bad in ('user.a"b', "user.a,b", "user."):
        with pytest.raises(InvalidName):
            xattrs.check_name(bad)
    for other in ("security.selinux", "system.posix_acl_access", "foo"):
        with pytest.raises(NotSupported):
            xattrs.check_name(other)


def test_times_and_xattrs_round_trip_with_other_tools_entries() -> None:
    meta = {"mode": str(stat.S_IFREG | 0o600), "uid": "5", "gid": "6",
            "mtime": "1700000000", "ctime": "1700000100.250000000", "atime": "1690000000",
            "xattr": xattrs.encode((("user.k", b"v"),)), "Owner-App": "photos", "sha256": "ab"}
    attr = attr_from_meta(meta, 3, 0, D)
    assert (attr.mtime_ns, attr.ctime, attr.atime) == (
        1700000000 * 10**9, 1700000100_250000000, 1690000000 * 10**9)
    assert attr.xattrs == (("user.k", b"v"),)
    assert dict(attr.kept) == {"owner-app": "photos", "sha256": "ab"}
    out = meta_from_attr(attr.with_(mode=0o644).status_changed(1800000000 * 10**9))
    assert out["owner-app"] == "photos" and out["sha256"] == "ab"
    assert out["mtime"] == "1700000000" and out["ctime"] == "1800000000"
    assert out["xattr"] == meta["xattr"]


def test_missing_ctime_and_atime_fall_back_to_mtime() -> None:
    attr = attr_from_meta({"mtime": "1700000000"}, 0, 0, D)
    assert attr.ctime == attr.atime == attr.mtime_ns
    written = attr.content_changed(1800000000 * 10**9)
    assert written.mtime_ns == written.ctime == 1800000000 * 10**9


@pytest.mark.parametrize(("text", "mode"), [
    ("16877", 0o40755), ("0750", 0o750), ("0x1ed", 0o755), ("33188", 0o100644), ("x", None)])
def test_mode_is_read_as_strtol_base_0(text: str, mode: int | None) -> None:
    assert parse_mode(text) == mode


def test_directories_of_other_tools() -> None:
    # a "dir/" marker put by aws-cli with an octal mode
    assert attr_from_meta({"mode": "0750"}, 0, 0, D, is_dir=True).mode == 0o750
    # old-style directory objects without the slash
    by_type = attr_from_meta({}, 0, 0, D, content=Content(DIRECTORY_TYPE))
    assert by_type.kind is Kind.DIR and by_type.mode == D.dir_mode
    by_mode = attr_from_meta({"mode": str(stat.S_IFDIR | 0o700)}, 0, 0, D)
    assert by_mode.kind is Kind.DIR and by_mode.mode == 0o700
    # a file that some tool typed application/x-directory but that holds bytes stays a file
    assert attr_from_meta({}, 10, 0, D, content=Content(DIRECTORY_TYPE)).kind is Kind.FILE


def test_special_files_as_s3fs_stores_them() -> None:
    fifo = attr_from_meta({"mode": str(stat.S_IFIFO | 0o644)}, 0, 0, D)
    assert fifo.kind is Kind.FIFO and stat.S_ISFIFO(fifo.st_mode)
    dev = attr_from_meta({"mode": str(stat.S_IFCHR | 0o600), "rdev": "259"}, 0, 0, D)
    assert dev.kind is Kind.CHAR_DEVICE and dev.rdev == 259
    assert meta_from_attr(dev)["rdev"] == "259"
    problems: list[str] = []
    # a "FIFO" holding bytes is a file whose bytes can be read
    assert attr_from_meta({"mode": str(stat.S_IFIFO | 0o644)}, 5, 0, D,
                          problems=problems).kind is Kind.FILE
    assert problems


def test_metadata_size_counts_names_and_values() -> None:
    assert metadata_size({"a": "bc"}) == len("x-amz-meta-a") + 2
    big = Attr(Kind.FILE, 0o644, 0, 0, 0, 0, xattrs=(("user.big", b"x" * 1600),))
    assert metadata_size(meta_from_attr(big)) > METADATA_MAX


def test_content_types_from_names() -> None:
    assert type_for_name("notes.txt") == "text/plain"
    assert type_for_name("page.html") == "text/html"
    assert type_for_name("photo.JPG") == "image/jpeg"
    assert type_for_name("data") == "application/octet-stream"
    assert type_for_name("x.unknownext") == "application/octet-stream"
    new = Attr(Kind.FILE, 0o644, 0, 0, 0, 0)
    assert content_for(new, "a.json").type == "application/json"
    kept = new.with_(content=Content("text/x-custom", cache_control="max-age=60"))
    assert content_for(kept, "a.json") == kept.content  # a rewrite keeps what it had
    assert content_for(new.with_(kind=Kind.DIR), "d").type == DIRECTORY_TYPE


def test_content_headers_from_a_response() -> None:
    c = Content.from_headers({"Content-Type": "text/plain", "Cache-Control": "no-cache",
                              "Content-Disposition": 'attachment; filename="a.txt"',
                              "Content-Encoding": "gzip", "Content-Language": "pl",
                              "Expires": "Wed, 21 Oct 2026 07:28:00 GMT", "ETag": '"x"'})
    assert c.http_headers() == {"content-type": "text/plain", "cache-control": "no-cache",
                                "content-disposition": 'attachment; filename="a.txt"',
                                "content-encoding": "gzip", "content-language": "pl",
                                "expires": "Wed, 21 Oct 2026 07:28:00 GMT"}
    # an Expires that is no HTTP date is not sent
    assert "expires" not in Content(expires="soon").http_headers()
    assert Content.from_headers({}).type == "application/octet-stream"
    assert Content.from_headers({"expires": "never"}).expires == ""  # unusable: left out
    assert expires_time("Wed, 21 Oct 2026 07:28:00 GMT") is not None
