"""The one table of domain errors and the errno each one becomes at the FUSE boundary.

Every exception raised inside ssecfs on purpose subclasses `SsecfsError`. The FUSE adapter
(`fuse_ops.py`) turns `exc.errno` into `pyfuse3.FUSEError`; the command line turns a
`UserError` into one line on stderr and `exc.exit_code`. Messages never contain key material.
"""

from __future__ import annotations

import contextlib
import errno as _errno
from collections.abc import Iterator


class SsecfsError(Exception):
    """Base of all ssecfs errors. `errno` is what a file operation reports."""

    errno: int = _errno.EIO
    status: int = 0  # the HTTP status of the S3 answer behind it, 0 if there was none


class NotFound(SsecfsError):
    errno = _errno.ENOENT


class Exists(SsecfsError):
    errno = _errno.EEXIST


class NotEmpty(SsecfsError):
    errno = _errno.ENOTEMPTY


class IsADirectory(SsecfsError):
    errno = _errno.EISDIR


class NotADirectory(SsecfsError):
    errno = _errno.ENOTDIR


class InvalidName(SsecfsError):
    # a name S3 cannot hold as one path component (".", "..", a slash, too long)
    errno = _errno.EINVAL


class NameTooLong(SsecfsError):
    errno = _errno.ENAMETOOLONG


class KeyMismatch(SsecfsError):
    """The object is SSE-C encrypted with a key other than the mount's.

    EACCES, not EIO: the bytes exist, this key is not allowed to read them. It is an error for
    that object only; the rest of the mount keeps working. `echoed_md5`: the object's key MD5
    when the server named it in its answer (a key ring then tries that key next).
    """

    errno = _errno.EACCES
    echoed_md5: str | None = None


class UnencryptedRefused(SsecfsError):
    """An object without SSE-C on a mount with `-o encrypted_only`."""

    errno = _errno.EACCES


class AccessDenied(SsecfsError):
    errno = _errno.EACCES


class Stale(SsecfsError):
    """The object changed in the bucket while a handle read it (ETag no longer matches)."""

    errno = _errno.ESTALE


class BadHandle(SsecfsError):
    errno = _errno.EBADF


class ReadOnly(SsecfsError):
    errno = _errno.EROFS


class TooBig(SsecfsError):
    errno = _errno.EFBIG


class NotSupported(SsecfsError):
    errno = _errno.EOPNOTSUPP


class NoAttribute(SsecfsError):
    """No extended attribute of that name (ENODATA, which Linux calls ENOATTR)."""

    errno = _errno.ENODATA


class MetadataTooLarge(SsecfsError):
    """The object's metadata would be over S3's 2 KiB limit on x-amz-meta-* headers."""

    errno = _errno.ENOSPC


class StoreError(SsecfsError):
    """A request to the object store failed for a reason not covered above (after retries)."""

    errno = _errno.EIO
    transient: bool = False  # worth asking again: a dropped connection, a 503, a timeout


class LocalDiskError(SsecfsError):
    """The local spill file could not be written or read (disk full, directory gone)."""

    def __init__(self, message: str, errno: int = _errno.EIO) -> None:
        super().__init__(message)
        self.errno = errno


class ServerNotImplemented(StoreError):
    """The server answered 501 NotImplemented: the caller should fall back to another method."""


class UserError(SsecfsError):
    """A problem the person at the terminal can fix: printed as one line, then exit."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


@contextlib.contextmanager
def one_error() -> Iterator[None]:
    """Around a nursery whose tasks fail with ssecfs errors: raise the first of them instead
    of trio's ExceptionGroup, so callers catch one typed error (and answer its errno)."""
    try:
        yield
    except BaseExceptionGroup as group:
        for exc in _leaves(group):
            if isinstance(exc, SsecfsError):
                raise exc from None
        raise


# Exit codes of `ssecfs mount` / `mount.ssecfs`, documented in docs/usage.md.
EXIT_USAGE = 2  # bad command line or -o option
EXIT_KEY = 3  # key file missing, unreadable, bad permissions or bad format
EXIT_STORE = 4  # endpoint, TLS, credentials or bucket problem
EXIT_MOUNT = 5  # mountpoint problem or FUSE failure
EXIT_DIRTY = 6  # unmounted, but some data could not be uploaded
