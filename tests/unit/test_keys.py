import base64
import hashlib
import os
import stat

import pytest

from ssecfs.errors import EXIT_KEY
from ssecfs.keys import (
    KeyFileError,
    KeyRing,
    SseCKey,
    check_owner,
    generate_key_file,
    load_key_fd,
    load_key_file,
    load_key_ring,
    parse_key,
    parse_keys,
)

RAW = bytes(range(32))


def test_raw_32_bytes():
    assert parse_key(RAW).raw == RAW


def test_raw_key_ending_in_newline_byte_is_raw():
    raw = bytes(31) + b"\n"
    assert parse_key(raw).raw == raw


def test_text_secret_with_and_without_newline():
    secret = b"32bytesOfTotallyRandomCharacters"
    assert parse_key(secret).raw == secret
    assert parse_key(secret + b"\n").raw == secret
    assert parse_key(secret + b"\r\n").raw == secret


def test_base64_form():
    assert parse_key(base64.b64encode(RAW) + b"\n").raw == RAW


@pytest.mark.parametrize("data", [b"", b"short", bytes(33) + b"xx", b"A" * 44, b"x" * 100])
def test_bad_forms_are_refused_without_echo(data):
    with pytest.raises(KeyFileError) as exc:
        parse_key(data)
    assert "accepted forms" in str(exc.value)
    if len(data) > 4:
        assert data.decode(errors="replace") not in str(exc.value)


def test_md5_matches_openssl_recipe():
    key = SseCKey(RAW)
    assert key.md5_b64 == base64.b64encode(hashlib.md5(RAW).digest()).decode()
    assert key.b64 == base64.b64encode(RAW).decode()


def test_repr_and_str_hide_the_key():
    key = SseCKey(RAW)
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert key.b64 not in text and RAW.hex() not in text and "hidden" in text


def test_key_cannot_be_pickled():
    import pickle
    with pytest.raises(TypeError):
        pickle.dumps(SseCKey(RAW))


def test_load_key_file_checks(tmp_path):
    path = tmp_path / "k"
    with pytest.raises(KeyFileError, match="does not exist.*ssecfs keygen"):
        load_key_file(str(path))
    path.write_bytes(RAW)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(str(path))
    path.chmod(0o600)
    assert load_key_file(str(path)).raw == RAW
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key_file(str(tmp_path))


def test_load_key_fd():
    r, w = os.pipe()
    os.write(w, base64.b64encode(RAW))
    os.close(w)
    assert load_key_fd(r).raw == RAW


def test_keygen_writes_private_file_and_refuses_overwrite(tmp_path):
    path = tmp_path / "new.key"
    key = generate_key_file(str(path))
    assert path.read_bytes() == key.raw and len(key.raw) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_key_file(str(path))


# ------------------------------------------------- what is not a private regular file

def _one_line(exc: pytest.ExceptionInfo[KeyFileError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and exc.value.exit_code == EXIT_KEY
    return message


@pytest.mark.timeout(10)
def test_fifo_key_file_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError) as exc:
        load_key_file(str(fifo))  # without O_NONBLOCK, open(2) would wait for ever
    message = _one_line(exc)
    assert "FIFO" in message and "not a regular file" in message and "--key-fd" in message


@pytest.mark.parametrize(("path", "kind"), [("/dev/null", "character device"),
                                             ("/", "directory")])
def test_other_non_regular_key_files_are_refused(path, kind):
    with pytest.raises(KeyFileError) as exc:
        load_key_file(path)
    message = _one_line(exc)
    assert kind in message and "ssecfs keygen" in message


def _stat(uid: int, mode: int = 0o100600) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, 0, 32, 0, 0, 0))


@pytest.mark.parametrize(("owner", "me", "ok"), [
    (1000, 1000, True),  # mine
    (0, 1000, True),  # root's, e.g. /etc/ssecfs/NAME.key read through a group ACL
    (0, 0, True),
    (1001, 1000, False),  # someone else's
    (1000, 0, False),  # even root refuses a user's key file, as ssh does for its own files
])
def test_key_file_owner_must_be_the_caller_or_root(owner, me, ok):
    if ok:
        check_owner("/k", _stat(owner), uid=me)
        return
    with pytest.raises(KeyFileError) as exc:
        check_owner("/k", _stat(owner), uid=me)
    message = _one_line(exc)
    assert f"uid {owner}" in message and "/k" in message  # whose it is
    assert "chown" in message and "copy" in message  # what to do


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_key_file_of_another_user_is_refused(tmp_path):
    path = tmp_path / "theirs.key"
    path.write_bytes(RAW)
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(KeyFileError) as exc:
        load_key_file(str(path))
    message = _one_line(exc)
    assert "uid 65534" in message and f"chown root {path}" in message
    os.chown(path, 0, 0)
    assert load_key_file(str(path)).raw == RAW


def test_owner_is_checked_before_the_mode(tmp_path):
    # chmod on someone else's file would not help: the message must say chown
    with pytest.raises(KeyFileError, match="chown"):
        check_owner("/k", _stat(4242, 0o100644), uid=1000)


# ------------------------------------------------- --key-fd

def _open_fd(path, data, mode):
    path.write_bytes(data)
    path.chmod(mode)
    return os.open(path, os.O_RDONLY)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_fd_of_a_file_readable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "open.key"
    fd = _open_fd(path, RAW, mode)
    with pytest.raises(KeyFileError) as exc:
        load_key_fd(fd)
    message = _one_line(exc)
    assert f"--key-fd {fd}" in message and f"chmod 600 {path}" in message
    with pytest.raises(OSError):
        os.fstat(fd)  # closed all the same


def test_key_fd_of_a_private_file_is_fine(tmp_path):
    assert load_key_fd(_open_fd(tmp_path / "k", RAW, 0o600)).raw == RAW


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_key_fd_of_another_users_file_is_refused(tmp_path):
    path = tmp_path / "theirs.key"
    fd = _open_fd(path, RAW, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(KeyFileError) as exc:
        load_key_fd(fd)
    assert "uid 65534" in _one_line(exc)


def test_key_fd_of_a_socket_is_fine():
    import socket
    a, b = socket.socketpair()
    with a, b:
        a.sendall(RAW)
        a.shutdown(socket.SHUT_WR)
        assert load_key_fd(os.dup(b.fileno())).raw == RAW


def test_key_fd_not_open():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(KeyFileError) as exc:
        load_key_fd(r)
    assert "--key-fd 3 3<KEYFILE" in _one_line(exc)


# ------------------------------------------------- several keys: the key ring

def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def _private(path, content: bytes):
    path.write_bytes(content)
    path.chmod(0o600)
    return str(path)


K1, K2, K3 = bytes(range(32)), bytes(range(1, 33)), b"32bytesOfTotallyRandomCharacters"


def test_a_multi_key_file_holds_one_key_per_line_the_first_writing():
    data = b"# written 2026-12\n" + _b64(K1) + b"\n\n  " + _b64(K2) + b"  \r\n" + K3 + b"\n"
    keys = parse_keys(data)
    assert [k.raw for k in keys] == [K1, K2, K3]


@pytest.mark.parametrize("data", [RAW, RAW + b"\n", K3, K3 + b"\r\n", _b64(RAW) + b"\n"])
def test_a_single_key_file_keeps_every_form(data):
    assert len(parse_keys(data)) == 1


def test_a_bad_line_is_named_by_number_never_by_content():
    bad = b"this-is-no-key-but-secret-ish-stuff"
    with pytest.raises(KeyFileError) as exc:
        parse_keys(_b64(K1) + b"\n# c\n" + bad + b"\n" + _b64(K2) + b"\n", "key file /k")
    message = str(exc.value)
    assert "line 3 of key file /k" in message and bad.decode() not in message
    assert _b64(K1).decode() not in message and _b64(K2).decode() not in message


def test_a_comment_the_length_of_a_text_secret_is_refused():
    hashed = b"#" + K3[1:]
    with pytest.raises(KeyFileError, match="line 2") as exc:
        parse_keys(_b64(K1) + b"\n" + hashed + b"\n" + _b64(K2) + b"\n")
    assert hashed.decode() not in str(exc.value)


def test_a_file_of_comments_only_holds_no_key():
    with pytest.raises(KeyFileError, match="does not hold an SSE-C key"):
        parse_keys(b"# nothing\n\n# here\n")


def test_load_key_ring_orders_and_dedupes(tmp_path):
    main = _private(tmp_path / "main", _b64(K1) + b"\n" + _b64(K2) + b"\n")
    old1 = _private(tmp_path / "old1", K3)
    old2 = _private(tmp_path / "old2", _b64(K2) + b"\n" + _b64(K1) + b"\n")  # duplicates
    ring = load_key_ring(main, [old1, old2])
    assert ring.writer.raw == K1
    assert [k.raw for k in ring.readers] == [K2, K3]
    assert len(ring) == 3 and [k.raw for k in ring.keys] == [K1, K2, K3]
    assert load_key_file(main).raw == K1  # one key wanted: the writing one
    assert load_key_ring(old1).writer.raw == K3 and len(load_key_ring(old1)) == 1


def test_load_key_ring_checks_old_key_files_too(tmp_path):
    main = _private(tmp_path / "main", RAW)
    loose = tmp_path / "loose"
    loose.write_bytes(_b64(K2))
    loose.chmod(0o640)
    with pytest.raises(KeyFileError, match=f"key file {loose} is accessible.*chmod 600"):
        load_key_ring(main, [str(loose)])
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key_ring(main, [str(tmp_path / "missing")])
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key_ring(main, [str(tmp_path)])


def test_load_key_ring_takes_one_source(tmp_path):
    main = _private(tmp_path / "main", K3)
    with pytest.raises(KeyFileError, match="not both"):
        load_key_ring(main, key_fd=0)
    with pytest.raises(KeyFileError, match="no key given"):
        load_key_ring(None)
    r, w = os.pipe()
    os.write(w, _b64(K1) + b"\n" + _b64(K2) + b"\n")
    os.close(w)
    ring = load_key_ring(None, [main], key_fd=r)
    assert [k.raw for k in ring.keys] == [K1, K2, K3]


def test_key_ring_picks_by_md5_and_hides_keys():
    ring = KeyRing(SseCKey(K1), (SseCKey(K2), SseCKey(K1), SseCKey(K2)))
    assert [k.raw for k in ring.readers] == [K2]
    assert ring.for_md5(SseCKey(K2).md5_b64).raw == K2
    assert ring.for_md5(None) is None
    assert ring.for_md5(SseCKey(K3).md5_b64).raw == K1  # unknown: the server refuses it
    assert ring.known(SseCKey(K3).md5_b64) is None
    assert [k.raw for k in ring.trial_order(SseCKey(K2))] == [K2, K1]
    for text in (repr(ring), str(ring)):
        for raw in (K1, K2):
            assert _b64(raw).decode() not in text and raw.hex() not in text


def test_the_daemon_disables_core_dumps():
    import subprocess
    import sys
    code = ("import resource, ctypes; from ssecfs.mount import no_core_dumps; "
            "assert no_core_dumps() == []; "
            "assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0); "
            "assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 0")  # PR_GET_DUMPABLE
    subprocess.run([sys.executable, "-c", code], check=True)
