import pytest

from ssecfs.config import (
    MountConfig,
    OptionError,
    apply_o_options,
    fuse_mount_options,
    parse_size,
    split_bucket,
    split_o_options,
)


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
