"""Logging set-up: where the log goes, and the guarantee that it never holds a secret.

Where (first match wins; docs/usage.md "Logging"):
1. `-o log_file=PATH`: that file (appended to, created 0600; reopened after logrotate moves it);
2. the foreground (`-f`, systemd's Type=notify service): stderr. Under systemd (JOURNAL_STREAM
   names our stderr) each line carries a `<N>` priority prefix and no time stamp, because the
   journal adds both;
3. the background (`mount`, `mount.ssecfs`, a .mount unit): syslog through /dev/log, which on a
   systemd machine is the journal (`journalctl -t ssecfs`);
4. the background without /dev/log (containers, CI): DEFAULT_LOG_FILE (root) or
   $XDG_STATE_HOME/ssecfs/ssecfs.log. The daemon's stderr is /dev/null, so a log has to exist.

Secrets: every handler formats through `RedactingFormatter`, which replaces every registered
secret (the SSE-C key raw, base64, urlsafe base64, hex and Python-repr'd, and its MD5 as sent
in the key-MD5 header; the secret access key and session token) in the *final* text,
tracebacks included, before a byte is written. The `RedactSecrets` filter does the same on
the record for any handler added by someone else.
botocore, boto3, urllib3 and s3transfer stay at WARNING even with --debug, because their debug
output prints request headers and parameters; ssecfs logs each S3 request itself (store/s3.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import logging.handlers
import os
import sys
from dataclasses import dataclass

from .errors import EXIT_USAGE, UserError

_secrets: set[str] = set()

NOISY = ("botocore", "boto3", "urllib3", "s3transfer", "trio", "pyfuse3")
DEFAULT_LOG_FILE = "/var/log/ssecfs.log"
SYSLOG_SOCKET = "/dev/log"

_FILE_FORMAT = "%(asctime)s.%(msecs)03d ssecfs[%(process)d] %(levelname)s %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

# syslog priorities for systemd's "<N>" stderr prefix (sd-daemon(3))
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


def register_secret(value: str) -> None:
    """Never let `value` reach a log. Short values are refused: they would redact noise."""
    if len(value) >= 8:
        _secrets.add(value)


def register_key_bytes(raw: bytes) -> None:
    """Register every textual form in which key bytes could end up in a message, and the
    value of the key-MD5 header too: no value of an SSE-C header is ever logged."""
    digest = hashlib.md5(raw).digest()
    register_secret(base64.b64encode(digest).decode("ascii"))
    register_secret(digest.hex())
    register_secret(base64.b64encode(raw).decode("ascii"))
    register_secret(base64.urlsafe_b64encode(raw).decode("ascii"))
    register_secret(raw.hex())
    register_secret(raw.hex().upper())
    register_secret(repr(raw)[2:-1])  # b'\\x8f...' as Python prints bytes
    with contextlib.suppress(UnicodeDecodeError):
        register_secret(raw.decode("utf-8"))
    register_secret(raw.decode("latin-1"))


def redact(text: str) -> str:
    for s in _secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


class RedactSecrets(logging.Filter):
    """Scrub a record's message (and drop its traceback) if a secret is in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        text = message
        if record.exc_info and record.exc_info[1] is not None:
            text += str(record.exc_info[1])
        if any(s in text for s in _secrets):
            record.msg, record.args = redact(message), None
            record.exc_info, record.exc_text = None, None
        return True


class RedactingFormatter(logging.Formatter):
    """A Formatter whose output, tracebacks and exception chains included, holds no secret."""

    def __init__(self, fmt: str, datefmt: str | None = None, priority_prefix: bool = False):
        super().__init__(fmt, datefmt)
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        if self.priority_prefix:
            pri = _PRIORITY.get(record.levelno, 6)
            text = "\n".join(f"<{pri}>{line}" for line in text.split("\n"))
        return text


@dataclass(frozen=True, slots=True)
class LogTarget:
    """Where the log goes: kind "stderr", "journal-stderr", "syslog" or "file" (+ path)."""

    kind: str
    path: str = ""

    def describe(self) -> str:
        return {"stderr": "stderr", "journal-stderr": "the journal (stderr)",
                "syslog": f"syslog ({SYSLOG_SOCKET})"}.get(self.kind, self.path)


def default_log_file() -> str:
    if os.getuid() == 0:
        return DEFAULT_LOG_FILE
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return os.path.join(base, "ssecfs", "ssecfs.log")


def stderr_is_journal() -> bool:
    """True if systemd connected our stderr to the journal (JOURNAL_STREAM=dev:ino)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    try:
        st = os.fstat(2)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def choose_target(foreground: bool, log_file: str | None) -> LogTarget:
    if log_file:
        return LogTarget("file", os.path.abspath(log_file))
    if foreground:
        return LogTarget("journal-stderr" if stderr_is_journal() else "stderr")
    if _syslog_answers():
        return LogTarget("syslog")
    return LogTarget("file", default_log_file())


def _syslog_answers() -> bool:
    if not os.path.exists(SYSLOG_SOCKET):
        return False
    try:
        logging.handlers.SysLogHandler(address=SYSLOG_SOCKET).close()
    except OSError:
        return False
    return True


def open_handler(target: LogTarget) -> logging.Handler:
    """Create the handler; a log file that cannot be written is a UserError (before forking)."""
    handler: logging.Handler
    if target.kind == "file":
        try:
            os.makedirs(os.path.dirname(target.path) or ".", exist_ok=True)
            fd = os.open(target.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            os.close(fd)
            handler = logging.handlers.WatchedFileHandler(target.path, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write the log file {target.path}: {exc.strerror}; "
                            f"choose another with -o log_file=PATH", EXIT_USAGE) from None
        handler.setFormatter(RedactingFormatter(_FILE_FORMAT, _DATE_FORMAT))
    elif target.kind == "syslog":
        handler = logging.handlers.SysLogHandler(
            address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        # the pid is the record's, so a handler made before fork() names the daemon
        handler.setFormatter(RedactingFormatter("ssecfs[%(process)d]: %(levelname)s "
                                                "%(name)s: %(message)s"))
    elif target.kind == "journal-stderr":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s",
                                                priority_prefix=True))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter(_FILE_FORMAT, _DATE_FORMAT))
    return handler


def install_handler(handler: logging.Handler, debug: bool) -> None:
    """Make `handler` the only one on the root logger, with ssecfs's levels."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        if h is not handler:
            h.close()
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def setup_logging(debug: bool, foreground: bool, log_file: str | None = None) -> LogTarget:
    """Choose the target, open it and install it; returns the target chosen."""
    target = choose_target(foreground, log_file)
    install_handler(open_handler(target), debug)
    return target
