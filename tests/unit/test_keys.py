import base64
import hashlib
import os
import stat

import pytest

from ssecfs.keys import (
    KeyFileError,
    SseCKey,
    generate_key_file,
    load_key_fd,
    load_key_file,
    parse_key,
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
