"""Extended attributes in object metadata, encoded as s3fs encodes them (pure).

s3fs keeps all of a file's extended attributes in one header, `x-amz-meta-xattr`: a JSON
object of name -> base64(value), names sorted, URL-encoded with only `A-Za-z0-9.-_~/` left
as they are. For example {"user.a": b"1"} is `%7B%22user.a%22%3A%22MQ%3D%3D%22%7D`.
s3fs's parser splits that object on "," and ":" rather than parsing JSON, so a name holding
`"` or `,` could not cross to s3fs: such names are refused here (EINVAL).

Namespaces: `user.*` and `trusted.*` are stored. `security.*` (SELinux labels, file
capabilities) and `system.posix_acl_*` (ACLs) are not: the kernel would enforce them, and it
cannot through this mount; they answer ENOTSUP, to a read as well (unless the object holds
one, written by s3fs): a reader such as `ls -l` takes that as "not on this filesystem" and
stops asking for each file, where ENODATA would cost it two requests to the daemon per file.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse

from .errors import InvalidName, NotSupported

META_NAME = "xattr"  # x-amz-meta-xattr, without the prefix boto3 strips
NAME_MAX = 255  # XATTR_NAME_MAX
VALUE_MAX = 64 * 1024  # XATTR_SIZE_MAX; S3's 2 KiB of metadata is the tighter bound
STORED_NAMESPACES = ("user.", "trusted.")

Xattrs = tuple[tuple[str, bytes], ...]  # sorted by name


def is_stored_namespace(name: str) -> bool:
    return name.startswith(STORED_NAMESPACES)


def check_name(name: str) -> None:
    """Raise if `name` cannot be stored: ENOTSUP for another namespace, EINVAL if s3fs could
    not read it back."""
    if not is_stored_namespace(name):
        raise NotSupported(f"extended attribute {name!r}: only user.* and trusted.* are kept")
    if len(name.encode()) > NAME_MAX or any(c in name for c in '",') or name in STORED_NAMESPACES:
        raise InvalidName(f"extended attribute name {name[:60]!r}")


def encode(xattrs: Xattrs) -> str:
    """The header value for `xattrs` (s3fs's layout)."""
    pairs = ",".join(f'"{name}":"{base64.b64encode(value).decode()}"'
                     for name, value in sorted(xattrs))
    return urllib.parse.quote("{" + pairs + "}", safe="-_.~/")


def decode(text: str) -> Xattrs:
    """The attributes of a header value; what cannot be read is skipped (as s3fs does)."""
    raw = urllib.parse.unquote(text.strip())
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0 or end <= start:
        return ()
    try:
        obj = json.loads(raw[start:end + 1])
        pairs = list(obj.items()) if isinstance(obj, dict) else []
    except ValueError:
        # not JSON: s3fs's own reading, pairs split on "," and the last ":"
        pairs = []
        for pair in raw[start + 1:end].split(","):
            name, sep, value = pair.rpartition(":")
            if sep:
                pairs.append((name.strip().strip('"'), value.strip().strip('"')))
    out: dict[str, bytes] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            continue
        try:
            out[name] = base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            continue
    return tuple(sorted(out.items()))


def with_attr(xattrs: Xattrs, name: str, value: bytes) -> Xattrs:
    return tuple(sorted({**dict(xattrs), name: value}.items()))


def without(xattrs: Xattrs, name: str) -> Xattrs:
    return tuple((n, v) for n, v in xattrs if n != name)


def get(xattrs: Xattrs, name: str) -> bytes | None:
    return dict(xattrs).get(name)
