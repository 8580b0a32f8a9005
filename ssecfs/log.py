"""Logging set-up: stderr in the foreground, syslog/journal in the background.

Defence in depth for principle 1: `RedactSecrets` replaces every registered secret (the key in
raw, base64 and hex form, the secret access key) in every record before any handler sees it,
and botocore's own loggers stay at WARNING even with --debug because they print request
headers and parameters.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

_secrets: set[str] = set()

NOISY = ("botocore", "boto3", "urllib3", "s3transfer", "trio", "pyfuse3")


def register_secret(value: str) -> None:
    if len(value) >= 8:
        _secrets.add(value)


class RedactSecrets(logging.Filter):
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
            for s in _secrets:
                message = message.replace(s, "***")
            record.msg, record.args = message, None
            record.exc_info, record.exc_text = None, None
        return True


def setup_logging(debug: bool, foreground: bool) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    if foreground or not os.path.exists("/dev/log"):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    else:
        handler = logging.handlers.SysLogHandler(address="/dev/log",
                                                 facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter(f"ssecfs[{os.getpid()}]: %(levelname)s %(message)s"))
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
