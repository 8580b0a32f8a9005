"""`--as-of`: the pure parts. Which version of a key is current at T (delete markers,
later versions, ties within one second), the time's parsing, and the option's parsing on the
command line and in fstab (it implies read-only)."""

from __future__ import annotations

import pytest

from ssecfs import cli
from ssecfs.config import MountConfig, OptionError, fuse_mount_options, parse_as_of
from ssecfs.errors import EXIT_USAGE, UserError
from ssecfs.store.base import ListedVersion
from ssecfs.store.snapshot import as_of_text
from ssecfs.versions import current_at, visible_at

S = 1_000_000_000
T = 1_796_000_000 * S  # some time in 2026


def v(key: str, vid: str, at: int, *, marker: bool = False,
      latest: bool = False) -> ListedVersion:
    return ListedVersion(key, vid, 0 if marker else 10, "" if marker else f'"{vid}"', latest,
                         at, marker)


def test_newest_version_at_or_before_t_wins() -> None:
    entries = [v("k", "v3", T + S, latest=True), v("k", "v2", T), v("k", "v1", T - 9 * S)]
    assert current_at(entries, T) == entries[1]  # exactly at T counts
    assert current_at(entries, T - S) == entries[2]
    assert current_at(entries, T + 2 * S) == entries[0]


def test_no_version_before_t_is_no_file() -> None:
    assert current_at([v("k", "v1", T + 1, latest=True)], T) is None
    assert current_at([], T) is None


def test_delete_markers() -> None:
    # put, delete, put again: hidden between the delete and the second put
    versions = [v("k", "v2", T + 10 * S, latest=True), v("k", "v1", T - 10 * S)]
    markers = [v("k", "m1", T - S, marker=True)]
    assert current_at([*versions, *markers], T) is None
    assert current_at([*versions, *markers], T - 5 * S) == versions[1]
    assert current_at([*versions, *markers], T + 10 * S) == versions[0]
    # deleted after T: still shown
    assert current_at([v("k", "v1", T - S), v("k", "m", T + S, marker=True, latest=True)],
                      T) is not None


def test_ties_within_one_second() -> None:
    # SeaweedFS: whole seconds; within one list the server's order (newest first) decides
    assert current_at([v("k", "new", T, latest=True), v("k", "old", T)], T).version_id == "new"
    assert current_at([v("k", "b", T), v("k", "a", T)], T).version_id == "b"
    # a version and a delete marker in one second: IsLatest decides, else the marker
    assert current_at([v("k", "p", T, latest=True), v("k", "m", T, marker=True)], T) \
        is not None
    assert current_at([v("k", "p", T), v("k", "m", T, marker=True)], T) is None


def test_visible_at_groups_keys_in_any_order() -> None:
    entries = [v("a", "a1", T - S), v("b", "b1", T + S, latest=True), v("c", "c1", T - S),
               v("a", "a2", T + S, latest=True), v("c", "cm", T - 1, marker=True, latest=True)]
    assert {k: x.version_id for k, x in visible_at(entries, T).items()} == {"a": "a1"}


def test_request_id_of_the_null_version() -> None:
    assert ListedVersion("k", None, 1, "", True).request_id == "null"
    assert ListedVersion("k", "abc", 1, "", True).request_id == "abc"


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-02T06:36:00Z", "2026-12-02T06:36:00Z"),
    ("2026-12-02T07:36:00+01:00", "2026-12-02T06:36:00Z"),
    ("2026-12-01T22:36:00-08:00", "2026-12-02T06:36:00Z"),
    ("2026-12-02 06:36:00+00:00", "2026-12-02T06:36:00Z"),
    ("2026-12-02T06:36:00.250Z", "2026-12-02T06:36:00Z"),
])
def test_parse_as_of(text: str, expected: str) -> None:
    assert as_of_text(parse_as_of(text)) == expected


def test_parse_as_of_is_exact_to_the_microsecond() -> None:
    assert parse_as_of("1970-01-01T00:00:01.000001Z") == S + 1000
    assert parse_as_of("2026-12-02T06:36:00Z") % S == 0


@pytest.mark.parametrize(("text", "words"), [
    ("2026-12-02T06:36:00", "no time zone"),
    ("2026-12-02", "no time zone"),
    ("yesterday", "not a time"),
    ("2026-13-02T06:36:00Z", "not a time"),
])
def test_parse_as_of_refusals(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_as_of(text)


def test_as_of_implies_read_only() -> None:
    cfg = MountConfig(bucket="b", prefix="", mountpoint="/m", as_of=T)
    assert cfg.read_only and "ro" in fuse_mount_options(cfg)
    assert MountConfig(bucket="b", prefix="", mountpoint="/m", read_only=False,
                       as_of=T).read_only


def test_fstab_as_of_option() -> None:
    cfg, _ = cli.helper_config(["bkt", "/mnt", "-o",
                                "rw,key_file=/k,as_of=2026-12-02T06:36:00Z,_netdev"])
    assert cfg.as_of == parse_as_of("2026-12-02T06:36:00Z")
    assert cfg.read_only  # mount(8)'s "rw" does not undo it
    with pytest.raises(OptionError, match="-o as_of.*no time zone"):
        cli.helper_config(["bkt", "/mnt", "-o", "key_file=/k,as_of=2026-12-02T06:36:00"])


def test_command_line_as_of() -> None:
    args = cli.build_parser().parse_args(
        ["mount", "b", "/mnt", "--key-file", "/k", "--as-of", "2026-12-02T07:36:00+01:00"])
    cfg = cli.config_from_args(args)
    assert cfg.read_only and as_of_text(cfg.as_of or 0) == "2026-12-02T06:36:00Z"
    assert MountConfig(bucket="b", prefix="", mountpoint="/m").as_of is None


@pytest.mark.parametrize(("when", "words"), [
    ("2026-12-02T06:36:00", "--as-of: '2026-12-02T06:36:00' has no time zone"),
    ("2999-01-01T00:00:00Z", "as_of is in the future"),
])
def test_command_line_as_of_refusals(when: str, words: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["mount", "b", "/mnt", "--key-file", "/k", "--as-of", when])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and words in err and err.count("\n") == 1, err
    with pytest.raises(UserError):
        cli.config_from_args(cli.build_parser().parse_args(
            ["mount", "b", "/mnt", "--key-file", "/k", "--as-of", when]))
