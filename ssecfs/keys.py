"""The SSE-C key: parsing the key file and building the request headers' values.

Invariants: the raw key bytes live only in an `SseCKey`; its repr and str never show them;
no error message built here contains them. The key is read from a file or an inherited file
descriptor, never from argv or the environment.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import pwd
import stat
from dataclasses import dataclass, field
from typing import Any

from .errors import EXIT_KEY, UserError

KEY_BYTES = 32
ALGORITHM = "AES256"

ACCEPTED_FORMS = (
    "32 raw bytes (openssl rand 32 > FILE), a 32-character text secret, "
    "or the base64 of 32 bytes (a trailing newline is fine)"
)


class KeyFileError(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_KEY)


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class SseCKey:
    """A 256-bit SSE-C customer key. Compares by MD5 so that no comparison leaks timing."""

    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_BYTES:
            raise KeyFileError(f"an SSE-C key must be {KEY_BYTES} bytes")

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    @property
    def md5_b64(self) -> str:
        """base64(MD5(key)): what the server echoes; safe to log, it identifies the key."""
        return base64.b64encode(hashlib.md5(self.raw).digest()).decode("ascii")

    def __repr__(self) -> str:
        return f"<SseCKey md5={self.md5_b64} (secret hidden)>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SseCKey) and self.md5_b64 == other.md5_b64

    def __hash__(self) -> int:
        return hash(self.md5_b64)

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("SseCKey cannot be pickled")


def parse_key(data: bytes, source: str = "key file") -> SseCKey:
    """Accept the three forms of ACCEPTED_FORMS; refuse anything else without echoing it."""
    if len(data) == KEY_BYTES:
        return SseCKey(data)
    text = data
    for ending in (b"\r\n", b"\n"):
        if text.endswith(ending):
            text = text[: -len(ending)]
            break
    if len(text) == KEY_BYTES:
        return SseCKey(text)
    stripped = text.strip()
    if len(stripped) == 44:  # base64 of 32 bytes, with one "=" of padding
        try:
            decoded = base64.b64decode(stripped, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) == KEY_BYTES:
            return SseCKey(decoded)
    raise KeyFileError(
        f"{source} does not hold an SSE-C key ({len(data)} bytes); accepted forms: {ACCEPTED_FORMS}"
    )


def check_permissions(path: str, st: os.stat_result, subject: str | None = None) -> None:
    """Refuse a key file that group or others may read or write, as ssh does."""
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{subject or f'key file {path}'} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )


def check_owner(path: str, st: os.stat_result, subject: str | None = None,
                uid: int | None = None) -> None:
    """Refuse a key file owned by anyone but root or the caller (`uid`, default: ours), as ssh
    does: its owner can read the key, and replace it with one of their own."""
    me = os.getuid() if uid is None else uid
    if st.st_uid in (0, me):
        return
    name = _user_name(me)
    you = name if name != str(me) else f"uid {me}"
    allowed = "root" if me == 0 else f"you ({you}) or root"
    raise KeyFileError(
        f"{subject or f'key file {path}'} belongs to {_describe_user(st.st_uid)}, not to "
        f"{allowed}; run as root: chown {name} {path} (or use a copy you own, "
        f"chmod 600)"
    )


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _describe_user(uid: int) -> str:
    name = _user_name(uid)
    return f"uid {uid}" if name == str(uid) else f"{name} (uid {uid})"


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def load_key_file(path: str) -> SseCKey:
    """Read and check the key file: it must exist, be a regular file, belong to the caller or
    root, and be private.

    O_NONBLOCK: opening a FIFO would otherwise wait for a writer, for ever; the file type is
    checked before anything is read (O_NONBLOCK changes nothing for a regular file).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} does not exist; create one with: ssecfs keygen {path}"
        ) from None
    except PermissionError:
        raise KeyFileError(f"key file {path} cannot be read: permission denied") from None
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(
                f"key file {path} is {_file_kind(st.st_mode)}, not a regular file; give a file "
                f"holding the key (ssecfs keygen PATH makes one), or pass a pipe with --key-fd"
            )
        check_owner(path, st)
        check_permissions(path, st)
        return parse_key(_read_all(fd, limit=4096), f"key file {path}")
    finally:
        os.close(fd)


def load_key_fd(fd: int) -> SseCKey:
    """Read the key from an inherited file descriptor (a pipe or an open file), then close it.

    A regular file behind the descriptor must pass the key file's checks (owner, mode): the
    same file is no safer for being opened by the caller's shell.
    """
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            path = _fd_path(fd)
            subject = f"the key file behind --key-fd {fd} ({path})"
            check_owner(path, st, subject)
            check_permissions(path, st, subject)
        data = _read_all(fd, limit=4096)
    except OSError as exc:
        raise KeyFileError(
            f"cannot read the key from file descriptor {fd}: {exc.strerror}; pass a descriptor "
            f"the shell opened, e.g. --key-fd 3 3<KEYFILE") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return parse_key(data, f"file descriptor {fd}")


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "the file"


def _read_all(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, limit + 1 - total)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise KeyFileError(f"key source is larger than {limit} bytes; {ACCEPTED_FORMS}")


def generate_key_file(path: str) -> SseCKey:
    """Write 32 random bytes with mode 0600; never overwrite an existing file."""
    raw = os.urandom(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return SseCKey(raw)


@dataclass(frozen=True, slots=True, repr=False)
class KeyRing:
    """The keys of a mount: `writer` encrypts everything the mount stores; `readers` (the
    writer included) open objects, chosen by the key MD5 the server echoes."""

    writer: SseCKey
    readers: tuple[SseCKey, ...] = ()

    def for_md5(self, md5: str | None) -> SseCKey | None:
        """The key whose MD5 is `md5` (None for an object stored without SSE-C)."""
        if md5 is None:
            return None
        for key in (self.writer, *self.readers):
            if key.md5_b64 == md5:
                return key
        return self.writer  # unknown: the server will refuse it with a KeyMismatch

    def __repr__(self) -> str:
        return f"<KeyRing writer={self.writer!r} readers={len(self.readers)}>"
