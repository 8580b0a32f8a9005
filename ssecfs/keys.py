"""SSE-C keys: parsing key files, and the mount's key ring.

Invariants: the raw key bytes live only in an `SseCKey`; its repr and str never show them;
no error message built here contains them (a bad line of a key file is named by its number,
never by its content). Keys are read from files or an inherited file descriptor, never from
argv or the environment.

Key files (`parse_keys`): a file holding one key keeps every form accepted so far (32 raw
bytes, a 32-character text secret, base64 of 32 bytes). A file of several lines holds one key
per line, as s3fs's SSE-C key files do, the first one writing: each line is the base64 of 32
bytes or a 32-character text secret; blank lines and lines starting with "#" are skipped.

The key ring (`KeyRing`, built by `load_key_ring`): the first key of `--key-file` (or
`--key-fd`) writes; every other key of it and every key of each `--old-key-file` only reads.
Keys appearing twice (same MD5) are kept once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import pwd
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import EXIT_KEY, UserError

KEY_BYTES = 32
ALGORITHM = "AES256"

ACCEPTED_FORMS = (
    "32 raw bytes (openssl rand 32 > FILE), a 32-character text secret, "
    "or the base64 of 32 bytes (a trailing newline is fine); several keys: one base64 key "
    "per line, the first one writing"
)
LINE_FORMS = "the base64 of 32 bytes or a 32-character text secret"
KEY_SOURCE_LIMIT = 64 * 1024  # a key file of hundreds of keys still fits


class KeyFileError(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_KEY)


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class SseCKey:
    """A 256-bit SSE-C customer key. Compares by MD5 so that no comparison leaks timing."""

    raw: bytes = field(repr=False)
    # computed once: every request that carries the key sends both
    _b64: str = field(init=False, repr=False)
    _md5_b64: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_BYTES:
            raise KeyFileError(f"an SSE-C key must be {KEY_BYTES} bytes")
        object.__setattr__(self, "_b64", base64.b64encode(self.raw).decode("ascii"))
        object.__setattr__(self, "_md5_b64",
                           base64.b64encode(hashlib.md5(self.raw).digest()).decode("ascii"))

    @property
    def b64(self) -> str:
        return self._b64

    @property
    def md5_b64(self) -> str:
        """base64(MD5(key)): what the server echoes; safe to log, it identifies the key."""
        return self._md5_b64

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
    decoded = _b64_key(text.strip())
    if decoded is not None:
        return decoded
    raise KeyFileError(
        f"{source} does not hold an SSE-C key ({len(data)} bytes); accepted forms: {ACCEPTED_FORMS}"
    )


def _single_key(data: bytes) -> SseCKey | None:
    """The key of a one-key file in any of its three forms, else None."""
    try:
        return parse_key(data)
    except KeyFileError:
        return None


def parse_keys(data: bytes, source: str = "key file") -> tuple[SseCKey, ...]:
    """All keys of a key file, the writing one first: a one-key file in any form of
    `parse_key`, else one key per line (`LINE_FORMS`); blank and "#" lines are skipped.

    An error names the line by its number, never by its content. A "#" line of exactly 32
    characters is refused: it may be a text secret that would otherwise silently be skipped
    (and a later key would write in its place).
    """
    single = _single_key(data)
    if single is not None:
        return (single,)
    lines = [line for line in data.split(b"\n") if line.strip()]
    if len(lines) <= 1:  # no list of keys: say what one key may look like
        return (parse_key(data, source),)
    keys: list[SseCKey] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.removesuffix(b"\r")
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(b"#"):
            if len(line) == KEY_BYTES:
                raise KeyFileError(
                    f"line {number} of {source} starts with '#' but has the length of a text "
                    f"secret: write that key in base64 (or make the comment longer)")
            continue
        key = _line_key(line, stripped)
        if key is None:
            raise KeyFileError(f"line {number} of {source} is not a key; each line must be "
                               f"{LINE_FORMS} (blank lines and '#' comments are skipped)")
        keys.append(key)
    if not keys:
        raise KeyFileError(
            f"{source} does not hold an SSE-C key ({len(data)} bytes); accepted forms: "
            f"{ACCEPTED_FORMS}")
    return tuple(keys)


def _b64_key(stripped: bytes) -> SseCKey | None:
    """The key whose base64 (44 characters, one "=" of padding) `stripped` is, if it is."""
    if len(stripped) != 44:
        return None
    try:
        decoded = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        return None
    return SseCKey(decoded) if len(decoded) == KEY_BYTES else None


def _line_key(line: bytes, stripped: bytes) -> SseCKey | None:
    decoded = _b64_key(stripped)
    if decoded is not None:
        return decoded
    if len(line) == KEY_BYTES:
        return SseCKey(line)
    return None


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
    """The writing key of the key file at `path` (its first key): see `load_keys_file`."""
    return load_keys_file(path)[0]


def load_keys_file(path: str) -> tuple[SseCKey, ...]:
    """Read and check a key file: it must exist, be a regular file, belong to the caller or
    root, and be private. Its keys, the writing one first (`parse_keys`).

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
        return parse_keys(_read_all(fd, limit=KEY_SOURCE_LIMIT), f"key file {path}")
    finally:
        os.close(fd)


def load_key_fd(fd: int) -> SseCKey:
    """The writing key read from file descriptor `fd`: see `load_keys_fd`."""
    return load_keys_fd(fd)[0]


def load_keys_fd(fd: int) -> tuple[SseCKey, ...]:
    """Read the keys from an inherited file descriptor (a pipe or an open file), then close
    it; one key in any form, or one per line as in a key file.

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
        data = _read_all(fd, limit=KEY_SOURCE_LIMIT)
    except OSError as exc:
        raise KeyFileError(
            f"cannot read the key from file descriptor {fd}: {exc.strerror}; pass a descriptor "
            f"the shell opened, e.g. --key-fd 3 3<KEYFILE") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return parse_keys(data, f"file descriptor {fd}")


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
    """The keys of a mount: `writer` encrypts everything the mount stores; `readers` are the
    other keys, which only open objects. Which key opens an object is chosen by the key MD5
    the server echoes (`for_md5`), or found by trying the ring once (`trial_order`).

    `readers` never holds the writer, nor a key twice (compared by MD5).
    """

    writer: SseCKey
    readers: tuple[SseCKey, ...] = ()

    def __post_init__(self) -> None:
        readers = tuple(dict.fromkeys(k for k in self.readers if k != self.writer))
        object.__setattr__(self, "readers", readers)

    @classmethod
    def of(cls, keys: Iterable[SseCKey]) -> KeyRing:
        """The ring of `keys`, the first one writing."""
        first, *rest = keys
        return cls(first, tuple(rest))

    @property
    def keys(self) -> tuple[SseCKey, ...]:
        """Every key, the writer first."""
        return (self.writer, *self.readers)

    def __len__(self) -> int:
        return 1 + len(self.readers)

    def known(self, md5: str | None) -> SseCKey | None:
        """The key of the ring whose MD5 is `md5`, None if there is none."""
        for key in self.keys:
            if key.md5_b64 == md5:
                return key
        return None

    def for_md5(self, md5: str | None) -> SseCKey | None:
        """The key whose MD5 is `md5` (None for an object stored without SSE-C)."""
        if md5 is None:
            return None
        return self.known(md5) or self.writer  # unknown: the server refuses it (KeyMismatch)

    def trial_order(self, first: SseCKey | None = None) -> tuple[SseCKey, ...]:
        """The keys to try on an object, each once: `first` (the one remembered for it),
        then the writer, then the readers in the order given."""
        return tuple(dict.fromkeys((first, *self.keys) if first is not None else self.keys))

    def __repr__(self) -> str:
        return f"<KeyRing writer={self.writer!r} readers={len(self.readers)}>"


def load_key_ring(key_file: str | None, old_key_files: Sequence[str] = (),
                  key_fd: int | None = None) -> KeyRing:
    """The key ring of `--key-file` (or `--key-fd`) and `--old-key-file`s: the first key of
    the key file (or descriptor) writes; its other keys and every key of the old key files
    read. Every file gets the checks of `load_keys_file` (owner, mode, form)."""
    if key_file is not None and key_fd is not None:
        raise KeyFileError("give the key once: --key-file or --key-fd, not both")
    if key_fd is not None:
        keys = list(load_keys_fd(key_fd))
    elif key_file is not None:
        keys = list(load_keys_file(key_file))
    else:
        raise KeyFileError("no key given: pass --key-file PATH (or -o key_file=PATH)")
    for path in old_key_files:
        keys.extend(load_keys_file(path))
    return KeyRing.of(keys)
