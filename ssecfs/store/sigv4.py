"""SigV4: AWS Signature Version 4 headers for the lean requests, as botocore's S3 signer makes
them (body unsigned: `UNSIGNED-PAYLOAD`, sent over verified TLS only).

Why not botocore's signer: it builds an AWSRequest, an email.message header map and the
four-HMAC signing key for every request, 75 µs of the 200 µs a HeadObject costs the loop;
this keeps the day's signing key and costs a fifth of that. tests/unit/test_sigv4.py checks
that its headers are byte for byte botocore's for the same request and time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# headers botocore leaves out of the signature (botocore.auth.SIGNED_HEADERS_BLACKLIST)
UNSIGNED_HEADERS = frozenset({
    "baggage", "connection", "expect", "keep-alive", "proxy-authenticate",
    "proxy-authorization", "te", "traceparent", "tracestate", "trailer", "transfer-encoding",
    "upgrade", "user-agent", "x-amzn-trace-id"})


class SigV4:
    def __init__(self, credentials: Any, region: str, service: str = "s3") -> None:
        self._credentials = credentials  # botocore's: refreshed ones are used as they refresh
        self._region, self._service = region, service
        self._day_key: tuple[str, str, bytes] = ("", "", b"")  # (secret, yyyymmdd, key)

    def __repr__(self) -> str:
        return f"<SigV4 region={self._region}>"

    def sign(self, method: str, path: str, query: str, headers: Mapping[str, str],
             now: float | None = None) -> dict[str, str]:
        """`headers` with X-Amz-Date, X-Amz-Content-SHA256, the session token if any, and
        Authorization added. `path` is sent as it is (S3 paths are not normalised);
        `query` is already in SigV4's encoding. Host must be among `headers`."""
        creds = self._credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day = stamp[:8]
        out = {k: v for k, v in headers.items() if k.lower() not in (
            "authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")}
        out["X-Amz-Date"] = stamp
        if creds.token:
            out["X-Amz-Security-Token"] = creds.token
        out["X-Amz-Content-SHA256"] = UNSIGNED_PAYLOAD
        signed: dict[str, list[str]] = {}
        for name, value in out.items():
            lname = name.lower()
            if lname not in UNSIGNED_HEADERS:
                signed.setdefault(lname, []).append(" ".join(value.split()))
        names = sorted(signed)
        signed_names = ";".join(names)
        canonical = "\n".join((
            method.upper(), path, _canonical_query(query),
            "".join(f"{n}:{','.join(signed[n])}\n" for n in names), signed_names,
            UNSIGNED_PAYLOAD))
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = "\n".join(("AWS4-HMAC-SHA256", stamp, scope,
                             hashlib.sha256(canonical.encode("utf-8")).hexdigest()))
        signature = hmac.new(self._signing_key(creds.secret_key, day),
                             to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                                f"SignedHeaders={signed_names}, Signature={signature}")
        return out

    def _signing_key(self, secret: str, day: str) -> bytes:
        kept_secret, kept_day, key = self._day_key
        if kept_day == day and hmac.compare_digest(kept_secret, secret):
            return key
        key = f"AWS4{secret}".encode()
        for part in (day, self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
        self._day_key = (secret, day, key)
        return key


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = sorted((k, v) for k, _, v in (pair.partition("=") for pair in query.split("&")))
    return "&".join(f"{k}={v}" for k, v in pairs)
