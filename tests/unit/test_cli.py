"""The command line without mounting: mount(8)/fstab option parsing, keygen, key-md5, and the
log set-up that keeps every secret out of the log."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ssecfs import cli
from ssecfs import log as ssecfs_log
from ssecfs.config import MountConfig, apply_o_options, fuse_mount_options
from ssecfs.errors import EXIT_KEY, EXIT_STORE, EXIT_USAGE, UserError

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("not really a CA\n")
    return path


def helper(*argv: str) -> MountConfig:
    cfg, _ = cli.helper_config(list(argv))
    return cfg


# ------------------------------------------------------------------ mount.ssecfs / fstab options


def test_fstab_line_with_every_documented_option(ca: Path) -> None:
    # what mount(8) passes for: mybkt/photos /mnt/x ssecfs key_file=…,…,ro,_netdev,nofail 0 0
    cfg = helper("mybkt/photos", "/mnt/x", "-o",
                 f"rw,key_file=/etc/ssecfs/x.key,endpoint_url=https://s3.example.com:8443,"
                 f"ca_bundle={ca},profile=backup,region=eu-west-3,allow_other,uid=1000,"
                 f"gid=100,umask=027,ro,_netdev,nofail")
    assert (cfg.bucket, cfg.prefix, cfg.mountpoint) == ("mybkt", "photos/", "/mnt/x")
    assert cfg.key_file == "/etc/ssecfs/x.key"
    assert cfg.endpoint_url == "https://s3.example.com:8443"
    assert cfg.ca_bundle == str(ca)
    assert (cfg.profile, cfg.region) == ("backup", "eu-west-3")
    assert cfg.allow_other and cfg.read_only  # "ro" after mount's leading "rw" wins
    assert (cfg.uid, cfg.gid, cfg.umask) == (1000, 100, 0o027)
    assert (cfg.file_mode, cfg.dir_mode) == (0o640, 0o750)
    assert not cfg.foreground  # the helper always daemonizes unless -o foreground


def test_old_key_files_from_fstab_and_the_command_line(tmp_path: Path) -> None:
    # fstab: key_file=K,old_key_file=O1,old_key_file=O2 (mount(8) passes them as given)
    cfg = helper("b", "/mnt", "-o", "key_file=/k,old_key_file=/o1,old_key_file=o2")
    assert cfg.old_key_files == ("/o1", os.path.abspath("o2"))  # absolute: the daemon is in /
    args = cli.build_parser().parse_args([
        "mount", "b", "/mnt", "--key-file", "k", "--old-key-file", "/o3",
        "--old-key-file", "/o4", "-o", "old_key_file=/o1"])
    cfg = cli.config_from_args(args)
    assert cfg.key_file == os.path.abspath("k")
    assert cfg.old_key_files == ("/o1", "/o3", "/o4")  # -o's first, then the command line's
    with pytest.raises(UserError, match="empty old_key_file"):
        helper("b", "/mnt", "-o", "key_file=/k,old_key_file=")


def test_a_mount_loads_every_key_file_with_its_checks(tmp_path: Path) -> None:
    keys = [os.urandom(32) for _ in range(3)]
    main, old = tmp_path / "main.key", tmp_path / "old.key"
    main.write_bytes(base64.b64encode(keys[0]) + b"\n" + base64.b64encode(keys[1]) + b"\n")
    old.write_bytes(keys[2])
    main.chmod(0o600)
    old.chmod(0o644)
    args = cli.build_parser().parse_args(["mount", "b", "/mnt", "--key-file", str(main),
                                          "--old-key-file", str(old)])
    with pytest.raises(UserError, match="chmod 600") as exc:
        cli.load_ring(cli.config_from_args(args))
    assert exc.value.exit_code == EXIT_KEY
    old.chmod(0o600)
    ring = cli.load_ring(cli.config_from_args(args))
    assert [k.raw for k in ring.keys] == keys


@pytest.mark.parametrize("opts", [
    "_netdev", "nofail", "noauto", "auto", "user", "users", "nouser", "defaults", "rw",
    "x-systemd.automount", "x-systemd.requires=network-online.target",
    "x-systemd.mount-timeout=30s", "x-systemd.idle-timeout=10min", "x-gvfs-show",
    "comment=systemd.automount", "noatime", "relatime", "sync", "async",
])
def test_mount_and_systemd_options_are_accepted_and_dropped(opts: str) -> None:
    cfg = helper("b", "/mnt", "-o", f"key_file=/k,{opts}")
    assert cfg.fuse_options == ()
    assert not cfg.read_only


@pytest.mark.parametrize(("opts", "kernel"), [
    ("nosuid,nodev,noexec", {"nosuid", "nodev", "noexec"}),
    ("dev,suid,exec", {"dev", "suid", "exec"}),
    # mount(8) expands "user" to nosuid,noexec,nodev; a later "dev" or "exec" wins
    ("nosuid,noexec,nodev,user,dev", {"nosuid", "noexec", "dev"}),
    ("suid,nosuid,suid", {"suid"}),
])
def test_dev_suid_exec_reach_the_kernel_last_one_wins(opts: str, kernel: set[str]) -> None:
    cfg = helper("b", "/mnt", "-o", f"key_file=/k,{opts}")
    assert set(cfg.fuse_options) == kernel
    assert kernel <= fuse_mount_options(cfg)


def test_options_in_several_o_arguments_and_flags_mount_passes(ca: Path) -> None:
    cfg, ns = cli.helper_config(["b", "/mnt", "-s", "-n", "-v", "-o", "key_file=/k",
                                 "-o", "allow_other", "-t", "fuse.ssecfs"])
    assert cfg.allow_other and ns.sloppy and ns.no_mtab and ns.verbose and not ns.fake
    _, ns = cli.helper_config(["b", "/mnt", "-f", "-o", "key_file=/k"])
    assert ns.fake  # mount -f: "fake", never "foreground"


def test_unknown_option_is_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.fstab_main(["b", "/mnt", "-o", "rw,key_file=/k,allow_other,frobnicate=3"],
                          prog="mount.ssecfs")
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.count("\n") == 1 and err.startswith("mount.ssecfs: ")
    assert "frobnicate" in err


def test_sloppy_mount_warns_and_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = cli.helper_config(["b", "/mnt", "-s", "-o", "key_file=/k,frobnicate,ro"])
    assert cfg.read_only
    assert "ignoring unknown option -o frobnicate" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["b", "/mnt", "-o", "allow_other"], "no key given"),
    (["b", "/mnt", "-o", "key_file=/k,uid=alice"], "bad value for -o uid"),
    (["b", "/mnt", "-o", "key_file=/k,nosuid=1"], "takes no value"),
    (["b", "/mnt", "-o", "key_file=/k,ca_bundle=/does/not/exist"], "does not exist"),
    (["b", "/mnt", "-t", "ext4", "-o", "key_file=/k"], "not ssecfs"),
    (["b", "/mnt", "-N", "/proc/1/ns/mnt", "-o", "key_file=/k"], "namespace"),
    (["/mnt"], "required"),
])
def test_bad_helper_command_lines(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        cli.helper_config(argv)
    assert info.value.exit_code == EXIT_USAGE


def test_relative_paths_become_absolute_and_empty_values_mean_unset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: Path) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = helper("b", "mnt", "-o", "key_file=k.key,ca_bundle=ca.pem,log_file=l.log,"
                                   "endpoint_url=,region=,profile=")
    assert cfg.mountpoint == str(tmp_path / "mnt")
    assert cfg.key_file == str(tmp_path / "k.key")
    assert cfg.ca_bundle == str(ca)
    assert cfg.log_file == str(tmp_path / "l.log")
    assert (cfg.endpoint_url, cfg.region, cfg.profile) == (None, None, None)


def test_ssecfs_accepts_what_mount_fuse3_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # without /sbin/mount.fuse.ssecfs, mount.fuse3 runs `ssecfs SRC DIR -o OPTS,dev,suid`
    code = cli.main(["bkt", "/mnt", "-o", "rw,key_file=/k,dev,suid,bogus"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "bogus" in err and err.startswith("ssecfs: ")
    # ...while a plain typo is still reported as one
    assert cli.main(["mout"]) == EXIT_USAGE


def test_mount_subcommand_takes_o_options_too(ca: Path) -> None:
    args = cli.build_parser().parse_args(
        ["mount", "b/p", "/mnt", "--key-file", "/k", "-o", f"ca_bundle={ca},ro", "--debug"])
    cfg = cli.config_from_args(args)
    assert cfg.read_only and cfg.debug and cfg.key_file == "/k" and cfg.prefix == "p/"


def test_unit_files_options_parse() -> None:
    """The Options= of the .mount unit and OPTIONS= of example.conf are all ssecfs accepts."""
    mount_unit = (SYSTEMD_DIR / "mnt-ssecfs.mount").read_text()
    options = re.search(r"^Options=(.*)$", mount_unit, re.M)
    assert options is not None
    base = MountConfig(bucket="b", prefix="", mountpoint="/mnt")
    cfg = apply_o_options(base, [options.group(1)])
    assert cfg.key_file and cfg.endpoint_url and set(cfg.fuse_options) == {"nosuid", "nodev"}
    conf = (SYSTEMD_DIR / "example.conf").read_text()
    line = re.search(r"^OPTIONS=(.*)$", conf, re.M)
    assert line is not None
    assert apply_o_options(base, [line.group(1)]).allow_other
    assert not re.search(r"^[^#]*KEY", conf, re.M | re.I), "example.conf must not hold a key"


# ------------------------------------------------------------------ keygen / key-md5


def test_keygen_writes_32_private_bytes_and_refuses_to_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "new.key"
    old_umask = os.umask(0)  # even with a permissive umask the file is 0600
    try:
        assert cli.main(["keygen", str(path)]) == 0
    finally:
        os.umask(old_umask)
    data = path.read_bytes()
    assert len(data) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    capsys.readouterr()
    assert cli.main(["keygen", str(path)]) == EXIT_KEY
    assert "refusing to overwrite" in capsys.readouterr().err
    assert path.read_bytes() == data
    other = tmp_path / "other.key"
    assert cli.main(["keygen", str(other)]) == 0
    assert other.read_bytes() != data


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_key_md5_matches_the_providers_openssl_recipe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k.key"
    assert cli.main(["keygen", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["key-md5", str(path)]) == 0
    ours = capsys.readouterr().out.strip()
    theirs = subprocess.run(f"cat '{path}' | openssl dgst -md5 -binary | base64", shell=True,
                            capture_output=True, text=True, check=True).stdout.strip()
    assert ours == theirs and len(base64.b64decode(ours)) == 16


def test_key_md5_of_a_base64_key_file_names_the_difference(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = os.urandom(32)
    raw_path, b64_path = tmp_path / "raw.key", tmp_path / "b64.key"
    for path, content in ((raw_path, raw), (b64_path, base64.b64encode(raw) + b"\n")):
        path.write_bytes(content)
        path.chmod(0o600)
    assert cli.main(["key-md5", str(raw_path)]) == 0
    raw_out = capsys.readouterr()
    assert cli.main(["key-md5", str(b64_path)]) == 0
    b64_out = capsys.readouterr()
    assert raw_out.out == b64_out.out  # the same key, the same MD5
    assert raw_out.err == "" and "base64" in b64_out.err


def test_key_md5_prints_one_line_per_key_and_per_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ssecfs.keys import SseCKey
    keys = [os.urandom(32) for _ in range(3)]
    multi, single = tmp_path / "multi.key", tmp_path / "single.key"
    multi.write_bytes(b"# ring\n" + b"".join(base64.b64encode(k) + b"\n" for k in keys[:2]))
    single.write_bytes(keys[2])
    for path in (multi, single):
        path.chmod(0o600)
    md5s = [SseCKey(k).md5_b64 for k in keys]
    assert cli.main(["key-md5", str(multi)]) == 0
    out = capsys.readouterr()
    assert out.out.split() == md5s[:2] and "2 keys" in out.err
    assert cli.main(["key-md5", str(multi), str(single)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{md5s[0]}  {multi}", f"{md5s[1]}  {multi}", f"{md5s[2]}  {single}"]
    for raw in keys:  # never a key itself
        assert base64.b64encode(raw).decode() not in out.out + out.err


# ------------------------------------------------------------------ logging


@pytest.fixture
def clean_logging() -> object:
    """Restore the root logger and the registered secrets after a test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    secrets = set(ssecfs_log._secrets)
    yield None
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)
    ssecfs_log._secrets.clear()
    ssecfs_log._secrets.update(secrets)


def test_every_form_of_the_key_is_redacted_tracebacks_included(
        tmp_path: Path, clean_logging: object) -> None:
    raw = bytes(range(200, 232))
    secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    ssecfs_log.register_key_bytes(raw)
    ssecfs_log.register_secret(secret_access_key)
    path = tmp_path / "log"
    handler = ssecfs_log.open_handler(ssecfs_log.LogTarget("file", str(path)))
    ssecfs_log.install_handler(handler, debug=True)
    lg = logging.getLogger("ssecfs.test")
    forms = {"raw": raw.decode("latin-1"), "b64": base64.b64encode(raw).decode(),
             "md5": base64.b64encode(hashlib.md5(raw).digest()).decode(),
             "urlsafe": base64.urlsafe_b64encode(raw).decode(), "hex": raw.hex(),
             "HEX": raw.hex().upper(), "repr": repr(raw)}
    for name, form in forms.items():
        lg.debug("%s form: %s", name, form)
    lg.info("headers %r", {"x-amz-server-side-encryption-customer-key": forms["b64"]})
    lg.warning("credentials %s", secret_access_key)
    try:
        try:
            raise ValueError(f"Invalid type for parameter SSECustomerKey, value: {raw!r}")
        except ValueError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError:
        lg.exception("a failure whose cause holds the key")
    handler.flush()
    text = path.read_bytes()
    assert b"a failure whose cause holds the key" in text and b"***" in text
    needles = [raw, secret_access_key.encode()] + [f.encode("utf-8") for f in forms.values()]
    needles += [repr(raw)[2:-1].encode()]
    for needle in needles:
        assert needle not in text, needle


def test_short_values_are_not_registered(clean_logging: object) -> None:
    ssecfs_log.register_secret("abc")
    assert ssecfs_log.redact("abc abc") == "abc abc"


def test_log_target_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    choose = ssecfs_log.choose_target
    assert choose(False, str(tmp_path / "x.log")) == ssecfs_log.LogTarget(
        "file", str(tmp_path / "x.log"))
    assert choose(True, None).kind == "stderr"
    monkeypatch.setattr(ssecfs_log, "SYSLOG_SOCKET", str(tmp_path / "no-such-socket"))
    assert choose(False, None) == ssecfs_log.LogTarget("file", ssecfs_log.default_log_file())
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert choose(True, None).kind == "journal-stderr"


def test_syslog_target_when_dev_log_answers(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    sock_path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(sock_path)
        monkeypatch.setattr(ssecfs_log, "SYSLOG_SOCKET", sock_path)
        target = ssecfs_log.choose_target(False, None)
        assert target.kind == "syslog"
        handler = ssecfs_log.open_handler(target)
        try:
            handler.handle(logging.makeLogRecord({"msg": "hello %s", "args": ("journal",),
                                                  "levelno": logging.INFO,
                                                  "levelname": "INFO", "name": "ssecfs.x"}))
            server.settimeout(5)
            data = server.recv(4096)
        finally:
            handler.close()
    assert re.match(rb"<30>ssecfs\[\d+\]: INFO ssecfs.x: hello journal", data), data


def test_journal_stderr_lines_carry_priorities() -> None:
    fmt = ssecfs_log.RedactingFormatter("%(message)s", priority_prefix=True)
    record = logging.makeLogRecord({"msg": "one\ntwo", "levelno": logging.ERROR})
    assert fmt.format(record) == "<3>one\n<3>two"


def test_unwritable_log_file_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write the log file"):
        ssecfs_log.open_handler(ssecfs_log.LogTarget("file", str(blocker / "sub" / "x.log")))


# ------------------------------------------------------------------ refusals: one line, exit code

# `ssecfs mount b MNT <args>` with {key} a good key file, {fifo} a FIFO, {open_fd} an fd of a
# key file of mode 0644, {theirs} a key file of uid 65534 (root only): each must end in one line
# on stderr with the exit code of errors.py, before anything is mounted or sent
REFUSED = [
    ("fifo-key-file", ["--key-file", "{fifo}"], EXIT_KEY, ["FIFO", "not a regular file"]),
    ("part_size-inf", ["-o", "part_size=inf"], EXIT_USAGE, ["part_size", "8M"]),
    ("wbm-1e400", ["-o", "write_buffer_memory=1e400"], EXIT_USAGE, ["write_buffer_memory"]),
    ("uid-negative", ["-o", "uid=-1"], EXIT_USAGE, ["uid", "4294967294"]),
    ("uid-huge", ["-o", "uid=99999999999"], EXIT_USAGE, ["uid", "4294967294"]),
    ("gid-negative", ["-o", "gid=-1"], EXIT_USAGE, ["gid", "4294967294"]),
    ("gid-huge", ["-o", "gid=99999999999"], EXIT_USAGE, ["gid", "4294967294"]),
    ("cache_ttl-nan", ["-o", "cache_ttl=nan"], EXIT_USAGE, ["cache_ttl", "finite"]),
    ("connect_timeout-negative", ["-o", "connect_timeout=-1"], EXIT_USAGE,
     ["connect_timeout", "above 0"]),
    ("read_timeout-inf", ["-o", "read_timeout=inf"], EXIT_USAGE, ["read_timeout", "finite"]),
    ("endpoint-no-host", ["--endpoint-url", "https://"], EXIT_STORE, ["no host", "https://HOST"]),
    ("endpoint-space", ["--endpoint-url", "https://s3 .example.com"], EXIT_STORE,
     ["space", "https://HOST"]),
    ("endpoint-port", ["--endpoint-url", "https://s3.example.com:x"], EXIT_STORE, ["port"]),
    ("endpoint-http", ["--endpoint-url", "http://127.0.0.1:1"], EXIT_STORE, ["https://"]),
    ("endpoint-o-no-host", ["-o", "endpoint=https://:9000"], EXIT_STORE, ["no host"]),
    ("key-fd-readable", ["--key-fd", "{open_fd}"], EXIT_KEY, ["--key-fd", "chmod 600"]),
    ("key-fd-huge", ["--key-fd", "99999999999"], EXIT_USAGE, ["--key-fd"]),
    ("key-fd-word", ["--key-fd", "abc"], EXIT_USAGE, ["--key-fd", "abc", "--help"]),
    ("unknown-flag", ["--frobnicate"], EXIT_USAGE, ["--frobnicate", "--help"]),
    ("key-file-theirs", ["--key-file", "{theirs}"], EXIT_KEY, ["uid 65534", "chown"]),
    ("key-fd-theirs", ["--key-fd", "{theirs_fd}"], EXIT_KEY, ["uid 65534", "chown"]),
]


@pytest.fixture
def no_mounting(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> int:
        raise AssertionError("a refused command line got as far as mounting")
    monkeypatch.setattr(cli, "_serve", refuse)
    monkeypatch.setattr(cli, "_daemonize", refuse)


def _refusal_args(tmp_path: Path, args: list[str]) -> list[str]:
    key = tmp_path / "k.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo, 0o600)
    places: dict[str, object] = {"key": key, "fifo": fifo}
    if any("{open" in a for a in args):
        readable = tmp_path / "open.key"
        readable.write_bytes(os.urandom(32))
        readable.chmod(0o644)
        places["open_fd"] = os.open(readable, os.O_RDONLY)
    if any("{theirs" in a for a in args):
        if os.getuid() != 0:
            pytest.skip("needs root to give a file to another user")
        theirs = tmp_path / "theirs.key"
        theirs.write_bytes(os.urandom(32))
        theirs.chmod(0o600)
        os.chown(theirs, 65534, 65534)
        places["theirs"] = theirs
        if any("{theirs_fd}" in a for a in args):
            places["theirs_fd"] = os.open(theirs, os.O_RDONLY)
    args = [a.format(**places) for a in args]
    if "--key-file" not in args and "--key-fd" not in args:
        args += ["--key-file", str(key)]
    if not any(a.startswith(("--endpoint-url", "endpoint")) for a in args):
        args += ["--endpoint-url", "https://127.0.0.1:1"]
    return args


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("args", "code", "needles"), [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_refused_command_lines_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_mounting: None,
        args: list[str], code: int, needles: list[str]) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    argv = ["mount", "b", str(mnt), *_refusal_args(tmp_path, args)]
    assert cli.main(argv) == code
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("ssecfs: "), err
    assert "unexpected" not in err and "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize(("opts", "code", "needle"), [
    ("key_file={fifo}", EXIT_KEY, "FIFO"),
    ("key_file={key},uid=99999999999", EXIT_USAGE, "uid"),
    ("key_file={key},cache_ttl=nan", EXIT_USAGE, "cache_ttl"),
    ("key_file={key},endpoint_url=https://", EXIT_STORE, "no host"),
])
def test_mount_fake_refuses_the_same(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_mounting: None,
        opts: str, code: int, needle: str) -> None:
    """mount -f (fake), as from fstab: the same checks through -o options."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    key = tmp_path / "k.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo, 0o600)
    if "endpoint_url" not in opts:
        opts += ",endpoint_url=https://127.0.0.1:1"
    opts = opts.format(key=key, fifo=fifo)
    assert cli.fstab_main(["b", str(mnt), "-f", "-o", opts], prog="mount.ssecfs") == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mount.ssecfs: ") and needle in err, err


def test_message_with_a_newline_stays_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["mount", "b", "/mnt", "--key-file", "/no/such\ndir/k",
                     "--endpoint-url", "https://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == EXIT_KEY and err.count("\n") == 1 and "such\\ndir" in err


def test_key_fd_of_a_pipe_is_still_fine() -> None:
    r, w = os.pipe()
    os.write(w, os.urandom(32))
    os.close(w)
    args = cli.build_parser().parse_args(["mount", "b", "/mnt", "--key-fd", str(r)])
    assert len(cli.load_ring(cli.config_from_args(args)).writer.raw) == 32
