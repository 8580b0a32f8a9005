import dataclasses
import math

import pytest

from ssecfs.config import (
    ID_MAX,
    EndpointUrlError,
    MountConfig,
    OptionError,
    apply_o_options,
    check_endpoint_shape,
    fuse_mount_options,
    parse_size,
    split_bucket,
    split_o_options,
)
from ssecfs.errors import EXIT_STORE, EXIT_USAGE


def base() -> MountConfig:
    return MountConfig(bucket="b", prefix="", mountpoint="/mnt", uid=1, gid=2)


def test_split_bucket():
    assert split_bucket("bkt") == ("bkt", "")
    assert split_bucket("bkt/a/b/") == ("bkt", "a/b/")
    assert split_bucket("s3://bkt//a") == ("bkt", "a/")
    with pytest.raises(OptionError):
        split_bucket("/x")


def test_sizes():
    assert parse_size("8M") == 8 * 1024 * 1024
    assert parse_size("1GiB") == 1024 ** 3
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError):
        parse_size("lots")


def test_split_o_options():
    assert split_o_options(["a=1,b", "c=x=y", ""]) == [("a", "1"), ("b", None), ("c", "x=y")]


def test_apply_options_types():
    cfg = apply_o_options(base(), ["uid=1000,gid=100,umask=027,cache_ttl=2.5,ro,allow_other",
                                   "part_size=16M,encrypted_only,key_file=/k"])
    assert (cfg.uid, cfg.gid, cfg.umask, cfg.cache_ttl) == (1000, 100, 0o27, 2.5)
    assert cfg.read_only and cfg.allow_other and cfg.encrypted_only
    assert cfg.part_size == 16 * 1024 * 1024 and cfg.key_file == "/k"
    assert cfg.file_mode == 0o640 and cfg.dir_mode == 0o750


def test_old_key_file_is_repeatable_and_adds_up_in_order():
    cfg = apply_o_options(base(), ["key_file=/k,old_key_file=/o1", "old_key_file=/o2,ro",
                                   "old_key_file=/o3"])
    assert cfg.key_file == "/k" and cfg.old_key_files == ("/o1", "/o2", "/o3")
    assert apply_o_options(base(), ["key_file=/k"]).old_key_files == ()
    with pytest.raises(OptionError, match="needs a value"):
        apply_o_options(base(), ["old_key_file"])


def test_mount_and_systemd_options_are_accepted():
    cfg = apply_o_options(base(), ["_netdev,nofail,noauto,defaults,rw,user,x-systemd.automount,"
                                   "x-systemd.mount-timeout=30,nosuid,nodev,comment=x"])
    assert not cfg.read_only
    assert set(cfg.fuse_options) == {"nosuid", "nodev"}
    assert {"nosuid", "nodev"} <= fuse_mount_options(cfg)


def test_unknown_option_is_named():
    with pytest.raises(OptionError, match="unknown option -o frobnicate"):
        apply_o_options(base(), ["frobnicate=1"])


def test_bad_values():
    with pytest.raises(OptionError, match="uid"):
        apply_o_options(base(), ["uid=abc"])
    with pytest.raises(OptionError, match="needs a value"):
        apply_o_options(base(), ["uid"])
    with pytest.raises(OptionError, match="5M"):
        apply_o_options(base(), ["part_size=1M"])


def test_no_key_check_flag():
    assert apply_o_options(base(), ["no_key_check"]).key_check is False


def test_fuse_options():
    opts = fuse_mount_options(apply_o_options(base(), ["ro,allow_other"]))
    assert {"ro", "allow_other", "default_permissions", "subtype=ssecfs"} <= opts
    assert "fsname=ssecfs:b" in opts


# ------------------------------------------------- values that must be refused, not crash later

# (-o option, what the one-line message must contain): each is refused at parse time with
# exit status 2, a message naming the option and saying what a good value looks like
BAD_OPTIONS = [
    ("part_size=inf", ["part_size", "whole number of bytes", "8M"]),
    ("part_size=nan", ["part_size", "8M"]),
    ("write_buffer_memory=1e400", ["write_buffer_memory", "whole number of bytes", "8M"]),
    ("read_ahead=-1", ["read_ahead", "whole number of bytes"]),
    ("read_ahead=0.5", ["read_ahead", "not a whole number of bytes"]),
    ("read_ahead=99999999999999G", ["read_ahead", "too large"]),
    ("part_size=1e7", ["part_size", "8M"]),
    ("uid=-1", ["uid", "0 to 4294967294", "id -u"]),
    ("uid=99999999999", ["uid", "0 to 4294967294"]),
    ("uid=4294967295", ["uid", "0 to 4294967294"]),
    ("gid=-1", ["gid", "0 to 4294967294", "getent group"]),
    ("gid=99999999999", ["gid", "0 to 4294967294"]),
    ("uid=1e3", ["uid", "whole number"]),
    ("cache_ttl=nan", ["cache_ttl", "finite", "such as 30"]),
    ("cache_ttl=inf", ["cache_ttl", "finite"]),
    ("cache_ttl=1e400", ["cache_ttl", "finite"]),
    ("cache_ttl=-1", ["cache_ttl", "from 0 to", "cache_ttl=30"]),
    ("cache_ttl=1e300", ["cache_ttl", "from 0 to"]),
    ("connect_timeout=-1", ["connect_timeout", "above 0", "connect_timeout=10"]),
    ("connect_timeout=0", ["connect_timeout", "above 0"]),
    ("connect_timeout=nan", ["connect_timeout", "finite"]),
    ("read_timeout=-0.5", ["read_timeout", "above 0", "read_timeout=60"]),
    ("read_timeout=1e10", ["read_timeout", "at most 86400"]),
    ("read_timeout=inf", ["read_timeout", "finite"]),
]


@pytest.mark.parametrize(("option", "needles"), BAD_OPTIONS, ids=[o for o, _ in BAD_OPTIONS])
def test_bad_option_values_are_one_line_usage_errors(option: str, needles: list[str]) -> None:
    with pytest.raises(OptionError) as info:
        apply_o_options(base(), [option])
    message = str(info.value)
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize(("option", "field", "value"), [
    ("uid=0", "uid", 0),
    ("uid=4294967294", "uid", ID_MAX),
    ("gid=4294967294", "gid", ID_MAX),
    ("cache_ttl=0", "cache_ttl", 0.0),
    ("cache_ttl=31536000", "cache_ttl", 31536000.0),
    ("connect_timeout=0.5", "connect_timeout", 0.5),
    ("read_timeout=86400", "read_timeout", 86400.0),
    ("read_ahead=0", "read_ahead", 0),
    ("read_ahead=1.5M", "read_ahead", 1536 * 1024),
    ("part_size=5GiB", "part_size", 5 * 1024 ** 3),
    ("write_buffer_memory=64MB", "write_buffer_memory", 64 * 1024 ** 2),
])
def test_boundary_values_are_accepted(option: str, field: str, value: object) -> None:
    assert getattr(apply_o_options(base(), [option]), field) == value


@pytest.mark.parametrize("text", ["inf", "nan", "1e400", "1e3", "-1", "+5", "0x10", "1 M",
                                  "0.1", "", "M"])
def test_sizes_must_be_finite_whole_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="size|whole number"):
        parse_size(text)


@pytest.mark.parametrize("changes", [
    {"cache_ttl": math.nan}, {"cache_ttl": math.inf}, {"connect_timeout": -1.0},
    {"read_timeout": math.nan}, {"uid": -1}, {"gid": 2**32}, {"key_fd": -1},
    {"key_fd": 99999999999}, {"write_buffer_memory": -1},
])
def test_config_built_directly_is_checked_too(changes: dict[str, object]) -> None:
    with pytest.raises(OptionError):
        dataclasses.replace(base(), **changes)  # type: ignore[arg-type]


# ------------------------------------------------- the endpoint URL's shape

@pytest.mark.parametrize("url", [
    "https://s3.example.com", "https://s3.example.com:9000", "https://127.0.0.1:1",
    "https://[::1]:9000", "HTTPS://S3.EXAMPLE.COM", "https://s3.example.com/ceph/",
    "https://s3.example.com.",
])
def test_endpoint_shapes_accepted(url: str) -> None:
    check_endpoint_shape(url)
    assert apply_o_options(base(), [f"endpoint_url={url}"]).endpoint_url == url


@pytest.mark.parametrize(("url", "needle"), [
    ("https://", "names no host"),
    ("https://:443", "names no host"),
    ("https://s3 .example.com", "a space"),
    ("https://s3.example.com ", "a space"),
    ("https://s3.example.com\t", "a space"),
    ("https://s3.example.com:abc", "port 'abc' is not a number"),
    ("https://s3.example.com:", "port '' is not a number"),
    ("https://s3.example.com:0", "from 1 to 65535"),
    ("https://s3.example.com:70000", "from 1 to 65535"),
    ("https://s3.example.com:+80", "is not a number"),
    ("https://s3_bucket.example.com", "not a host name"),
    ("https://-bad.example.com", "not a host name"),
    ("https://[::1", "not a URL"),
    ("https://[not-ipv6]:9000", "not a URL"),
    ("https://[fe80::zz]:9000", "not a URL"),
    ("http://s3.example.com", "use an https:// URL"),
    ("s3.example.com", "use an https:// URL"),
    ("ftp://s3.example.com", "use an https:// URL"),
])
def test_endpoint_shapes_refused_before_anything_is_sent(url: str, needle: str) -> None:
    with pytest.raises(EndpointUrlError) as info:
        check_endpoint_shape(url)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert "https://" in message  # says what an endpoint looks like
    assert info.value.exit_code == EXIT_STORE
    # the same from -o (which strips blanks around each item), and from a MountConfig
    if url == url.strip():
        with pytest.raises(EndpointUrlError):
            apply_o_options(base(), [f"endpoint_url={url}"])
    with pytest.raises(EndpointUrlError):
        dataclasses.replace(base(), endpoint_url=url)


def test_empty_endpoint_means_unset() -> None:
    assert apply_o_options(base(), ["endpoint_url="]).endpoint_url == ""
