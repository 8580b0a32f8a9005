"""The content headers an object is stored with, and the type a new file gets (pure).

Other tools (aws-cli, s3cmd, web uploads) set Content-Type, Cache-Control and friends; the
mount keeps them on every rewrite, chmod, touch or rename of the object. A file the mount
creates gets its Content-Type from its name, as s3fs and aws-cli do (`.txt` is text/plain,
an unknown ending application/octet-stream).
"""

from __future__ import annotations

import email.utils
import mimetypes
from dataclasses import dataclass, replace

DEFAULT_TYPE = "application/octet-stream"
DIRECTORY_TYPE = "application/x-directory"  # s3fs's type for directory objects

# header name as HTTP has it -> field of `Content` (and the boto3 parameter, in CamelCase)
HEADERS = {
    "content-type": "type",
    "cache-control": "cache_control",
    "content-disposition": "disposition",
    "content-encoding": "encoding",
    "content-language": "language",
    "expires": "expires",
}
BOTO_NAMES = {
    "type": "ContentType",
    "cache_control": "CacheControl",
    "disposition": "ContentDisposition",
    "encoding": "ContentEncoding",
    "language": "ContentLanguage",
    "expires": "Expires",
}

_types = mimetypes.MimeTypes()  # the built-in table: the same answer on every machine


@dataclass(frozen=True, slots=True)
class Content:
    """Content headers; an empty string is a header the object does not have."""

    type: str = DEFAULT_TYPE
    cache_control: str = ""
    disposition: str = ""
    encoding: str = ""
    language: str = ""
    expires: str = ""  # the HTTP date as the server gave it

    def with_type(self, content_type: str) -> Content:
        return replace(self, type=content_type)

    def http_headers(self) -> dict[str, str]:
        """HTTP header name -> value, for the headers an upload sends (an Expires that is no
        HTTP date is left out: servers refuse it)."""
        out = {name: value for name, field in HEADERS.items() if (value := getattr(self, field))}
        if "expires" in out and expires_time(out["expires"]) is None:
            del out["expires"]
        return out

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> Content:
        """From HTTP response headers (any case); an unusable Expires is left out."""
        lower = {k.lower(): v for k, v in headers.items()}
        values = {field: lower.get(name, "").strip() for name, field in HEADERS.items()}
        if values["expires"] and expires_time(values["expires"]) is None:
            values["expires"] = ""
        values["type"] = values["type"] or DEFAULT_TYPE
        return cls(**values)


def expires_time(text: str) -> float | None:
    """An HTTP date as seconds since the epoch; None when it is not one."""
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def type_for_name(name: str) -> str:
    """The Content-Type of a new file called `name` (its extension decides)."""
    guessed, _ = _types.guess_type(name, strict=False)
    return guessed or DEFAULT_TYPE


def for_new_file(name: str) -> Content:
    return Content(type_for_name(name))
