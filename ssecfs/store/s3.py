"""S3Store: the only module that talks to boto3.

Rules:
- Every request that touches object data (HEAD, GET, PUT, CreateMultipartUpload, UploadPart,
  UploadPartCopy, CopyObject) carries the SSE-C triple of the key the caller passes (none for
  an object stored without SSE-C). Copies carry the copy-source triple of the source's key.
- Every exception becomes an `SsecfsError` in `_call`: nothing from botocore, urllib3 or a
  worker thread crosses the seam, so a loop over many files (the flush at unmount) goes on.
- Responses to reads must echo our key's MD5; an object answered without the echo is stored
  without SSE-C (RGW and SeaweedFS serve such objects even when the headers are sent).
- Servers differ on a wrong key: AWS and SeaweedFS answer 403, Ceph RGW 400, and AWS also
  answers 400 to SSE-C headers on an unencrypted object. A refused HEAD is therefore asked
  again without the key to tell "other key" from "not encrypted" from "no permission".
- boto3 calls run in worker threads (`trio.to_thread.run_sync`) under one CapacityLimiter
  (the lean HEADs and small PUTs run in the loop itself, under the same limiter);
  the threads touch no shared state. botocore retries throttling, 5xx and dropped connections
  with backoff (standard mode); a GET whose body is cut after the headers arrived is retried
  here (botocore's retries end with the headers).
- The key is never logged: debug lines name the operation, object, range, status and time.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import trio
import urllib3.exceptions
from botocore.config import Config

from ..config import EndpointUrlError, check_endpoint_shape
from ..content import BOTO_NAMES, HEADERS, Content, expires_time
from ..errors import (
    EXIT_STORE,
    AccessDenied,
    KeyMismatch,
    NotFound,
    ServerNotImplemented,
    SsecfsError,
    Stale,
    StoreError,
    TooBig,
    UserError,
)
from ..keys import ALGORITHM, SseCKey
from ..ranges import ByteRange
from ..stats import Stats
from .base import (
    Body,
    Chunks,
    ListedObject,
    ListedVersion,
    ListPage,
    ObjectHead,
    ObjectInfo,
    Part,
    Stored,
    Upload,
    VersionPage,
    datetime_ns,
)
from .lean import LeanRequests, head_response

# a lean HEAD's refusals, as `_translate` reads botocore's
LEAN_ERRORS: dict[int, type[SsecfsError]] = {404: NotFound, 403: AccessDenied, 400: StoreError}


def _content_of(resp: Mapping[str, Any]) -> Content:
    """The content headers of a HEAD answer, as the server sent them."""
    return Content.from_headers(resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}))


def _content_args(content: Content) -> dict[str, Any]:
    """boto3's parameters for the content headers an object is to have."""
    args: dict[str, Any] = {BOTO_NAMES[HEADERS[name]]: value
                            for name, value in content.http_headers().items()}
    if "Expires" in args:  # botocore takes a datetime
        when = expires_time(args["Expires"])
        assert when is not None  # http_headers() keeps only a usable one
        args["Expires"] = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return args

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_POOL = 32


class BodyCut(StoreError):
    """The answer's headers arrived, then its body was cut (botocore does not retry that)."""

    transient = True


# answers worth asking again: throttling and a server (or a gateway before it) in trouble
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRIED_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                           "Throttling", "ThrottlingException", "RequestTimeTooSkewed"})
TRANSIENT_BOTOCORE = (botocore.exceptions.ConnectionError,  # refused, reset, DNS, TLS cut
                      botocore.exceptions.HTTPClientError,  # includes read/connect timeouts
                      botocore.exceptions.ResponseStreamingError)


class EndpointError(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_STORE)


def check_endpoint_url(url: str | None) -> None:
    """Refuse any endpoint that is not `https://HOST[:PORT]` before a single request is made
    (`config.check_endpoint_shape`), wherever it came from: the command line, the environment
    (AWS_ENDPOINT_URL) or a profile."""
    if url is None:
        return
    try:
        check_endpoint_shape(url)
    except EndpointUrlError as exc:
        raise EndpointError(str(exc)) from None


def make_client(*, endpoint_url: str | None, region: str | None, profile: str | None,
                ca_bundle: str | None, retries: int, connect_timeout: float,
                read_timeout: float) -> Any:
    check_endpoint_url(endpoint_url)
    try:
        session = boto3.session.Session(profile_name=profile)
    except botocore.exceptions.ProfileNotFound:
        raise EndpointError(
            f"AWS profile {profile!r} not found in ~/.aws/config or ~/.aws/credentials"
        ) from None
    config = Config(
        # payload_signing_enabled=False: no SHA-256 of every body for the signature (~15% of
        # the CPU of a large upload); the endpoint is always verified TLS, which protects
        # the bytes in transit
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        # botocore >= 1.36 sends aws-chunked bodies with CRC trailers by default; Ceph RGW
        # (16.x) rejects those with 411 MissingContentLength
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": max(1, retries)},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=MAX_POOL,
        tcp_keepalive=True,
    )
    # An explicit CA bundle wins over AWS_CA_BUNDLE and friends in the environment.
    verify: str | bool = ca_bundle if ca_bundle else True
    try:
        client = session.client("s3", endpoint_url=endpoint_url,
                                region_name=region or "us-east-1", config=config, verify=verify)
    except ValueError as exc:  # botocore: "Invalid endpoint: ..." (e.g. from AWS_ENDPOINT_URL)
        raise EndpointError(f"the S3 endpoint is not usable: {exc}; expected "
                            f"https://HOST[:PORT]") from None
    # The endpoint may also come from AWS_ENDPOINT_URL or the profile: check what boto3 chose.
    check_endpoint_url(client.meta.endpoint_url)
    return client


def _status(exc: botocore.exceptions.ClientError) -> tuple[int, str]:
    resp: Any = exc.response
    status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    code = str(resp.get("Error", {}).get("Code", "") or status)
    return status, code


def echoed_md5s(value: object) -> set[str]:
    """The key MD5s a response echoes. SeaweedFS sends the header twice, which botocore
    joins as "X, X"."""
    if not value:
        return set()
    return {part.strip() for part in str(value).split(",") if part.strip()}


def _head_key_md5(key: str, detail: str, resp: Mapping[str, Any],
                  sse: SseCKey | None) -> str | None:
    """The key MD5 a HEAD answer proves (None: stored without SSE-C); KeyMismatch if it
    echoes another key's MD5 (named in `echoed_md5`: a ring tries that key) or shows SSE-C
    when no key was sent."""
    echoed = echoed_md5s(resp.get("SSECustomerKeyMD5"))
    if sse is not None and echoed and echoed != {sse.md5_b64}:
        err = KeyMismatch(f"HeadObject {key}{detail}: server echoed another key's MD5")
        if len(echoed) == 1:
            err.echoed_md5 = next(iter(echoed))  # the object's own key
        raise err
    if sse is None and resp.get("SSECustomerAlgorithm"):
        raise KeyMismatch(f"HeadObject {key}{detail}: encrypted with SSE-C, no key given")
    return sse.md5_b64 if (sse is not None and echoed) else None


class S3Store:
    def __init__(self, client: Any, bucket: str,
                 limiter: trio.CapacityLimiter | None = None, retry_time: float = 60.0,
                 stats: Stats | None = None, lean: bool = True) -> None:
        self._client = client
        # HEADs and PUTs without botocore's CPU cost (`lean.py`); None: off
        self._lean = LeanRequests.for_client(client, bucket, MAX_POOL) if lean else None
        self.stats = stats or Stats()
        self.bucket = bucket
        self._limiter = limiter or trio.CapacityLimiter(MAX_POOL)
        self._retry_time = max(0.0, retry_time)

    def __repr__(self) -> str:
        return f"<S3Store bucket={self.bucket}>"

    # ---------------------------------------------------------------- plumbing
    @staticmethod
    def _sse(sse: SseCKey | None) -> dict[str, Any]:
        return {} if sse is None else {"SSECustomerAlgorithm": ALGORITHM,
                                       "SSECustomerKey": sse.raw}

    @staticmethod
    def _copy_source_sse(sse: SseCKey | None) -> dict[str, Any]:
        return {} if sse is None else {"CopySourceSSECustomerAlgorithm": ALGORITHM,
                                       "CopySourceSSECustomerKey": sse.raw}

    async def _call(self, op: str, key: str, fn: Callable[..., T], *args: Any,
                    detail: str = "", **kwargs: Any) -> T:
        """One S3 request, repeated after transient failures (see `RETRIED_STATUSES`, and
        dropped or cut connections) with exponential backoff and jitter for up to
        `retry_time` seconds from the first failure; permanent failures are raised at
        once. botocore's own few attempts run inside each try."""
        deadline: float | None = None
        attempt = 0
        while True:
            try:
                return await self._once(op, key, fn, *args, detail=detail, **kwargs)
            except StoreError as exc:
                if not exc.transient:
                    raise
                now = trio.current_time()
                if deadline is None:
                    deadline = now + self._retry_time
                delay = min(0.25 * 2 ** attempt, 10.0) * random.uniform(0.5, 1.0)
                if now + delay > deadline:
                    raise
                attempt += 1
                self.stats.add("retries")
                log.debug("%s %s%s: %s; trying again in %.1fs (attempt %d)", op, key, detail,
                          exc, delay, attempt + 1)
                await trio.sleep(delay)

    async def _once(self, op: str, key: str, fn: Callable[..., T], *args: Any,
                    detail: str = "", **kwargs: Any) -> T:
        """Run one boto3 call in a worker thread; log it at debug level (no key material).
        Every exception leaves as an SsecfsError (see `_translate`)."""
        started = time.monotonic()
        status = "ok"
        self.stats.request(op)
        try:
            return await trio.to_thread.run_sync(partial(fn, *args, **kwargs),
                                                 limiter=self._limiter)
        except botocore.exceptions.ClientError as exc:
            code, name = _status(exc)
            status = f"{code} {name}"
            if code != 404:  # a miss is an answer, not an error
                self.stats.add("errors")
            raise self._translate(exc, op, key) from None
        except SsecfsError as exc:
            status = type(exc).__name__
            self.stats.add("errors")
            raise
        except Exception as exc:
            status = type(exc).__name__
            self.stats.add("errors")
            raise self._translate(exc, op, key) from None
        finally:
            log.debug("%s %s%s -> %s in %.3fs", op, key, detail, status,
                      time.monotonic() - started)

    @staticmethod
    def _translate(exc: Exception, op: str, key: str) -> SsecfsError:
        """Any exception as an ssecfs error (the message names the object, never a key).
        `.status` keeps the HTTP status for callers that must tell 400 from 403."""
        out: SsecfsError
        if isinstance(exc, botocore.exceptions.ClientError):
            status, code = _status(exc)
            where = f"{op} {key}: {status} {code}"
            if status == 404 or code in ("NoSuchKey", "NotFound", "NoSuchUpload"):
                out = NotFound(where)
            elif status == 412 or code == "PreconditionFailed":
                out = Stale(where)
            elif status == 501 or code == "NotImplemented":
                out = ServerNotImplemented(where)
            elif status == 403:
                out = AccessDenied(where)
            elif code == "EntityTooLarge":
                out = TooBig(where)
            else:
                out = StoreError(where)
                out.transient = status in RETRIED_STATUSES or code in RETRIED_CODES
            out.status = status
            return out
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            # its message quotes the parameters' values, and one of them is the key
            return StoreError(f"{op} {key}: botocore refused the request's parameters")
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            out = StoreError(f"{op} {key}: {exc}")
            out.transient = isinstance(exc, TRANSIENT_BOTOCORE)
            return out
        if isinstance(exc, OSError | urllib3.exceptions.HTTPError):
            out = StoreError(f"{op} {key}: {type(exc).__name__}: {exc}")
            out.transient = True  # a connection reset or refused below botocore
            return out
        # anything else a worker thread raised (OSError, urllib3, a bug): still an ssecfs
        # error, so that loops over many files go on and nothing escapes the seam
        return StoreError(f"{op} {key}: {type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------- reads
    async def head(self, key: str, sse: SseCKey | None, *,
                   encrypted: bool = False, version_id: str | None = None) -> ObjectInfo:
        pin = {"VersionId": version_id} if version_id else {}
        detail = f" version {version_id}" if version_id else ""
        try:
            resp = None if version_id else await self._lean_head(key, sse)
            if resp is None:
                resp = await self._call("HeadObject", key, self._client.head_object,
                                        detail=detail, Bucket=self.bucket, Key=key, **pin,
                                        **self._sse(sse))
            assert resp is not None
        except SsecfsError as exc:
            if sse is None or exc.status not in (400, 403):
                raise
            if encrypted:  # asked why before: under another key
                raise KeyMismatch(f"HeadObject {key}{detail}: {exc.status}: encrypted with "
                                  f"another key") from None
            return await self._head_refused(key, exc.status, version_id)
        return self._info(key, resp, _head_key_md5(key, detail, resp, sse))

    async def _lean_head(self, key: str, sse: SseCKey | None) -> Mapping[str, Any] | None:
        """A HEAD through `LeanRequests`: a 200 answer shaped as botocore's; 404, 400 and 403
        raised as `_translate` raises them; None when botocore has to ask (any other
        answer, a failed connection, or no lean path)."""
        if self._lean is None:
            return None
        started = time.monotonic()
        self.stats.request("HeadObject")
        answer = await self._lean.head(key, sse, self._limiter)
        status = "asked again through botocore" if answer is None else \
            "ok" if answer[0] == 200 else f"{answer[0]} {LEAN_ERRORS[answer[0]].__name__}"
        log.debug("HeadObject %s -> %s in %.3fs", key, status, time.monotonic() - started)
        if answer is None or answer[0] == 200:
            return None if answer is None else head_response(answer[1])
        if answer[0] != 404:
            self.stats.add("errors")
        err = LEAN_ERRORS[answer[0]](f"HeadObject {key}: {status}")
        err.status = answer[0]
        raise err

    async def _lean_put(self, key: str, body: bytes, metadata: Mapping[str, str],
                        content: Content, sse: SseCKey | None) -> Mapping[str, Any] | None:
        """A PutObject through `LeanRequests`: its answer shaped as botocore's, or None when
        botocore has to send it (any answer but 200, a failed connection, no lean path)."""
        if self._lean is None:
            return None
        started = time.monotonic()
        self.stats.request("PutObject")
        answer = await self._lean.put(key, body, metadata, content.http_headers(), sse,
                                      self._limiter)
        log.debug("PutObject %s (%d bytes) -> %s in %.3fs", key, len(body),
                  "ok" if answer else "sent again through botocore",
                  time.monotonic() - started)
        if answer is None:
            return None
        headers = answer[1]
        return {"ETag": headers.get("etag", ""),
                "SSECustomerKeyMD5": headers.get(
                    "x-amz-server-side-encryption-customer-key-md5")}

    async def _head_refused(self, key: str, status: int,
                            version_id: str | None = None) -> ObjectInfo:
        """HEAD with our key was refused (400/403): find out why, without the key."""
        pin = {"VersionId": version_id} if version_id else {}
        detail = f" version {version_id}" if version_id else ""
        try:
            resp = await self._call("HeadObject", key, self._client.head_object,
                                    Bucket=self.bucket, Key=key, **pin,
                                    detail=f"{detail} (no key)")
        except SsecfsError as exc:
            if exc.status == 400:
                # the object needs a customer key, and ours was refused: another key
                raise KeyMismatch(f"HeadObject {key}{detail}: {status}: encrypted with "
                                  f"another key") from None
            raise
        if resp.get("SSECustomerAlgorithm"):
            raise KeyMismatch(f"HeadObject {key}{detail}: encrypted with another key")
        return self._info(key, resp, None)

    @staticmethod
    def _info(key: str, resp: Mapping[str, Any], key_md5: str | None) -> ObjectInfo:
        return ObjectInfo(key=key, size=int(resp.get("ContentLength", 0)),
                          etag=str(resp.get("ETag", "")),
                          last_modified_ns=datetime_ns(resp.get("LastModified")),
                          metadata=dict(resp.get("Metadata", {})), key_md5=key_md5,
                          content=_content_of(resp))

    async def get_range(self, key: str, rng: ByteRange | None, sse: SseCKey | None, *,
                        etag: str | None = None, version_id: str | None = None) -> bytes:
        if rng is not None and len(rng) == 0:
            return b""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key, **self._sse(sse)}
        if rng is not None:
            args["Range"] = rng.http()
        if etag:
            args["IfMatch"] = etag
        if version_id:
            args["VersionId"] = version_id
        detail = f" [{rng.start}-{rng.end})" if rng is not None else ""
        if version_id:
            detail += f" version {version_id}"

        def fetch() -> tuple[bytes, str | None]:
            resp = self._client.get_object(**args)
            body = resp["Body"]
            try:
                data = body.read()
            except Exception as exc:
                raise BodyCut(f"GetObject {key}{detail}: the body was cut "
                              f"({type(exc).__name__})") from None
            finally:
                body.close()
            return data, resp.get("SSECustomerKeyMD5")

        # botocore retries a request until its headers arrive; a body cut after that (a
        # dropped connection mid-stream) is a BodyCut, which `_call` retries as a new GET
        try:
            answer = await self._lean_get(key, rng, sse, etag, version_id, detail)
            if answer is None:
                answer = await self._call("GetObject", key, fetch, detail=detail)
            data, echoed = answer
        except SsecfsError as exc:
            if sse is not None and exc.status in (400, 403):
                # re-ask HEAD to name the cause (other key, unencrypted, no permission)
                info = await self.head(key, sse, version_id=version_id)
                if not info.encrypted:
                    return await self.get_range(key, rng, None, etag=etag,
                                                version_id=version_id)
            raise
        if sse is not None and echoed_md5s(echoed) - {sse.md5_b64}:
            raise KeyMismatch(f"GetObject {key}: server echoed another key's MD5")
        self.stats.add("bytes_down", len(data))
        if rng is not None and len(data) != len(rng):
            # the object is shorter than the size we planned with: it changed under us
            raise Stale(f"GetObject {key}: asked for {len(rng)} bytes, got {len(data)}")
        return data

    async def _lean_get(self, key: str, rng: ByteRange | None, sse: SseCKey | None,
                        etag: str | None, version_id: str | None, detail: str
                        ) -> tuple[bytes, str | None] | None:
        """A GetObject through `LeanRequests`: its body and echoed key MD5, or None when
        botocore has to ask (any answer but 200 or 206, a failed or cut connection, no lean
        path)."""
        if self._lean is None:
            return None
        started = time.monotonic()
        self.stats.request("GetObject")
        answer = await trio.to_thread.run_sync(
            self._lean.get, key, rng.http() if rng is not None else None, sse, etag,
            version_id, limiter=self._limiter)
        log.debug("GetObject %s%s -> %s in %.3fs", key, detail,
                  "ok" if answer else "asked again through botocore", time.monotonic() - started)
        if answer is None:
            return None
        return answer[2], answer[1].get("x-amz-server-side-encryption-customer-key-md5")

    async def list_page(self, prefix: str, *, delimiter: str | None = "/",
                        token: str | None = None, max_keys: int = 1000) -> ListPage:
        lean = await self._lean_list(prefix, delimiter, token, max_keys)
        if lean is not None:
            return lean
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            args["Delimiter"] = delimiter
        if token:
            args["ContinuationToken"] = token
        resp: Any = await self._call("ListObjectsV2", prefix or "/",
                                     self._client.list_objects_v2, **args)
        objects = tuple(ListedObject(key=o["Key"], size=int(o.get("Size", 0)),
                                     etag=str(o.get("ETag", "")),
                                     last_modified_ns=datetime_ns(o.get("LastModified")))
                        for o in resp.get("Contents", ()))
        prefixes = tuple(p["Prefix"] for p in resp.get("CommonPrefixes", ()))
        next_token = resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
        return ListPage(objects, prefixes, next_token)

    async def _lean_list(self, prefix: str, delimiter: str | None, token: str | None,
                         max_keys: int) -> ListPage | None:
        """A ListObjectsV2 page through `LeanRequests`, or None when botocore has to ask
        (any answer but 200, a failed connection, XML it does not know, no lean path)."""
        if self._lean is None:
            return None
        started = time.monotonic()
        self.stats.request("ListObjectsV2")
        page = await trio.to_thread.run_sync(self._lean.list_page, prefix, delimiter, token,
                                             max_keys, limiter=self._limiter)
        log.debug("ListObjectsV2 %s -> %s in %.3fs", prefix or "/",
                  "ok" if page is not None else "asked again through botocore",
                  time.monotonic() - started)
        return page

    # ---------------------------------------------------------------- writes
    async def put(self, key: str, body: bytes, metadata: Mapping[str, str],
                  content: Content, sse: SseCKey | None, *,
                  if_match: str | None = None) -> Stored:
        self.stats.add("bytes_up", len(body))
        cond = {"IfMatch": if_match} if if_match else {}
        if not if_match:
            lean = await self._lean_put(key, body, metadata, content, sse)
            if lean is not None:
                return self._stored("PutObject", key, lean, str(lean.get("ETag", "")), sse)
        resp: Any = await self._call(
            "PutObject", key, self._client.put_object,
            detail=f" ({len(body)} bytes{', if-match' if if_match else ''})",
            Bucket=self.bucket, Key=key, Body=body, Metadata=dict(metadata),
            **_content_args(content), **cond, **self._sse(sse))
        return self._stored("PutObject", key, resp, str(resp.get("ETag", "")), sse)

    @staticmethod
    def _check_write_echo(op: str, key: str, resp: Mapping[str, Any],
                          sse: SseCKey | None) -> set[str]:
        echoed = echoed_md5s(resp.get("SSECustomerKeyMD5"))
        if sse is not None and echoed - {sse.md5_b64}:
            raise StoreError(f"{op} {key}: server echoed another key's MD5")
        return echoed

    def _stored(self, op: str, key: str, resp: Mapping[str, Any], etag: str,
                sse: SseCKey | None) -> Stored:
        echoed = self._check_write_echo(op, key, resp, sse)
        # ETags are kept quoted, as HEAD and LIST give them (SeaweedFS's CopyObject does not)
        if etag and not etag.startswith('"'):
            etag = f'"{etag}"'
        return Stored(etag, sse.md5_b64 if sse is not None and echoed else None)

    async def create_multipart(self, key: str, metadata: Mapping[str, str],
                               content: Content, sse: SseCKey | None) -> str:
        resp: Any = await self._call(
            "CreateMultipartUpload", key, self._client.create_multipart_upload,
            Bucket=self.bucket, Key=key, Metadata=dict(metadata), **_content_args(content),
            **self._sse(sse))
        self._check_write_echo("CreateMultipartUpload", key, resp, sse)
        return str(resp["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, body: Body,
                          sse: SseCKey | None) -> Part:
        self.stats.add("bytes_up", len(body))
        etag = await self._lean_upload_part(key, upload_id, number, body, sse)
        if etag:
            return Part(number, etag)
        resp: Any = await self._call(
            "UploadPart", key, self._client.upload_part,
            detail=f" part {number} ({len(body)} bytes)", Bucket=self.bucket, Key=key,
            UploadId=upload_id, PartNumber=number, Body=bytes(body), **self._sse(sse))
        return Part(number, str(resp["ETag"]))

    async def _lean_upload_part(self, key: str, upload_id: str, number: int, body: Body,
                                sse: SseCKey | None) -> str | None:
        """An UploadPart through `LeanRequests`, its pieces sent as they are (no joined
        copy); its ETag, or None when botocore has to send it."""
        if self._lean is None:
            return None
        started = time.monotonic()
        self.stats.request("UploadPart")
        pieces = body.pieces if isinstance(body, Chunks) else [body]
        answer = await trio.to_thread.run_sync(self._lean.upload_part, key, upload_id,
                                               number, pieces, len(body), sse,
                                               limiter=self._limiter)
        etag = answer[1].get("etag") if answer is not None else None
        log.debug("UploadPart %s part %d (%d bytes) -> %s in %.3fs", key, number, len(body),
                  "ok" if etag else "sent again through botocore", time.monotonic() - started)
        if answer is not None and sse is not None:
            self._check_write_echo("UploadPart", key, {"SSECustomerKeyMD5": answer[1].get(
                "x-amz-server-side-encryption-customer-key-md5")}, sse)
        return etag or None

    async def upload_part_copy(self, key: str, upload_id: str, number: int, source: str,
                               rng: ByteRange, sse: SseCKey | None,
                               source_sse: SseCKey | None, *,
                               source_etag: str | None = None) -> Part:
        cond = {"CopySourceIfMatch": source_etag} if source_etag else {}
        resp: Any = await self._call(
            "UploadPartCopy", key, self._client.upload_part_copy,
            detail=f" part {number} from {source} [{rng.start}-{rng.end})",
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
            CopySource={"Bucket": self.bucket, "Key": source},
            CopySourceRange=rng.http(), **cond, **self._sse(sse),
            **self._copy_source_sse(source_sse))
        return Part(number, str(resp["CopyPartResult"]["ETag"]))

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: Sequence[Part]) -> Stored:
        resp: Any = await self._call(
            "CompleteMultipartUpload", key, self._client.complete_multipart_upload,
            detail=f" ({len(parts)} parts)", Bucket=self.bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag}
                                       for p in sorted(parts, key=lambda p: p.number)]})
        # no key MD5 in this answer (and Ceph RGW's ETag is empty): a HEAD checks the object
        return Stored(str(resp.get("ETag", "") or ""), None)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self._call("AbortMultipartUpload", key, self._client.abort_multipart_upload,
                             Bucket=self.bucket, Key=key, UploadId=upload_id)

    async def copy(self, source: str, target: str, metadata: Mapping[str, str],
                   content: Content, sse: SseCKey | None,
                   source_sse: SseCKey | None, *, source_etag: str | None = None) -> Stored:
        cond = {"CopySourceIfMatch": source_etag} if source_etag else {}
        resp: Any = await self._call(
            "CopyObject", target, self._client.copy_object, detail=f" from {source}",
            Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source},
            MetadataDirective="REPLACE", Metadata=dict(metadata), **_content_args(content),
            **cond, **self._sse(sse), **self._copy_source_sse(source_sse))
        return self._stored("CopyObject", target, resp,
                            str(resp.get("CopyObjectResult", {}).get("ETag", "")), sse)

    async def delete(self, key: str) -> None:
        await self._call("DeleteObject", key, self._client.delete_object,
                         Bucket=self.bucket, Key=key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            resp: Any = await self._call(
                "DeleteObjects", batch[0], self._client.delete_objects,
                detail=f" ({len(batch)} keys)", Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise StoreError(f"DeleteObjects: {len(errors)} failed, e.g. "
                                 f"{first.get('Key')}: {first.get('Code')}")

    async def list_uploads(self, prefix: str) -> list[Upload]:
        """The unfinished multipart uploads under `prefix` (all pages)."""
        out: list[Upload] = []
        marker: dict[str, str] = {}
        while True:
            resp: Any = await self._call("ListMultipartUploads", prefix or "/",
                                         self._client.list_multipart_uploads,
                                         Bucket=self.bucket, Prefix=prefix, **marker)
            out += [Upload(u["Key"], u["UploadId"], datetime_ns(u.get("Initiated")))
                    for u in resp.get("Uploads", ())]
            if not resp.get("IsTruncated"):
                return out
            marker = {"KeyMarker": resp.get("NextKeyMarker", ""),
                      "UploadIdMarker": resp.get("NextUploadIdMarker", "")}

    # ---------------------------------------------------------------- start-up
    async def check_bucket(self, prefix: str, endpoint: str) -> None:
        """One cheap request that fails the way a misconfigured mount would; as a UserError."""
        try:
            await trio.to_thread.run_sync(partial(self._client.list_objects_v2,
                                                  Bucket=self.bucket, Prefix=prefix, MaxKeys=1),
                                          limiter=self._limiter)
        except Exception as exc:
            raise EndpointError(explain_startup_error(exc, self.bucket, endpoint)) from None


    # ---------------------------------------------------------------- rotation and checks
    # (rotate.py, check.py): one HEAD per key tried, versions, conditional writes, and every
    # content header a rewrite must keep

    async def head_as(self, key: str, sse: SseCKey | None, *,
                      version_id: str | None = None) -> ObjectHead:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key, **self._sse(sse)}
        if version_id:
            args["VersionId"] = version_id
        detail = f" version {version_id}" if version_id else ""
        if sse is None:
            detail += " (no key)"
        try:
            resp: Any = await self._call("HeadObject", key, self._client.head_object,
                                         detail=detail, **args)
        except SsecfsError as exc:
            if exc.status in (400, 403) and (sse is not None or exc.status == 400):
                # a refused key (RGW: 400, AWS/SeaweedFS: 403), or no key for an encrypted
                # object (400); HEAD answers have no body that would tell more
                out = KeyMismatch(f"HeadObject {key}{detail}: {exc.status}: refused")
                out.status = exc.status
                raise out from None
            raise
        key_md5 = _head_key_md5(key, detail, resp, sse)
        return ObjectHead(key=key, size=int(resp.get("ContentLength", 0)),
                          etag=str(resp.get("ETag", "")), metadata=dict(resp.get("Metadata", {})),
                          headers=_content_of(resp), key_md5=key_md5,
                          version_id=resp.get("VersionId") or version_id)

    async def list_versions_page(self, prefix: str, *,
                                 marker: tuple[str, str] | None = None,
                                 max_keys: int = 1000,
                                 delimiter: str | None = None) -> VersionPage:
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            args["Delimiter"] = delimiter
        if marker is not None:
            args["KeyMarker"] = marker[0]
            if marker[1]:
                args["VersionIdMarker"] = marker[1]
        resp: Any = await self._call("ListObjectVersions", prefix or "/",
                                     self._client.list_object_versions, **args)

        def listed(v: Mapping[str, Any], delete_marker: bool) -> ListedVersion:
            return ListedVersion(
                key=v["Key"],
                version_id=None if v.get("VersionId") in (None, "", "null")
                else str(v["VersionId"]),
                size=int(v.get("Size", 0)), etag=str(v.get("ETag", "")),
                is_latest=bool(v.get("IsLatest", False)),
                last_modified_ns=datetime_ns(v.get("LastModified")), delete_marker=delete_marker)

        versions = tuple(listed(v, False) for v in resp.get("Versions", ()))
        markers = tuple(listed(v, True) for v in resp.get("DeleteMarkers", ()))
        prefixes = tuple(p["Prefix"] for p in resp.get("CommonPrefixes", ()))
        nxt = None
        if resp.get("IsTruncated"):
            nxt = (str(resp.get("NextKeyMarker", "")), str(resp.get("NextVersionIdMarker", "")))
        return VersionPage(versions, nxt, markers, prefixes)

    async def versioning(self) -> str:
        resp: Any = await self._call("GetBucketVersioning", "/",
                                     self._client.get_bucket_versioning, Bucket=self.bucket)
        return str(resp.get("Status") or "")


def explain_startup_error(exc: BaseException, bucket: str, endpoint: str) -> str:
    """One line that says what is wrong and what to do, for the first request of a mount."""
    if isinstance(exc, botocore.exceptions.SSLError):
        return (f"the TLS certificate of {endpoint} is not trusted: pass the CA that signed it "
                f"with --ca-bundle PATH (-o ca_bundle=PATH)")
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError)):
        return (f"cannot reach the S3 endpoint {endpoint}: check --endpoint-url and the "
                f"network ({type(exc).__name__})")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ("no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "write ~/.aws/credentials, or name a profile with --profile")
    if isinstance(exc, botocore.exceptions.ClientError):
        status, code = _status(exc)
        if code == "NoSuchBucket" or status == 404:
            return f"bucket {bucket} does not exist at {endpoint}: check the bucket name"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "AuthorizationHeaderMalformed"):
            return (f"the S3 credentials were refused by {endpoint} ({code}): check "
                    f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or --profile")
        if status == 403:
            return (f"access to bucket {bucket} was denied ({code}): check that these "
                    f"credentials may list and read it")
        if status == 301 or code == "PermanentRedirect":
            return f"bucket {bucket} lives in another region: pass --region"
        return f"the S3 endpoint {endpoint} refused to list bucket {bucket}: {status} {code}"
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return f"cannot talk to the S3 endpoint {endpoint}: {exc}"
    return f"cannot talk to the S3 endpoint {endpoint}: {type(exc).__name__}: {exc}"
