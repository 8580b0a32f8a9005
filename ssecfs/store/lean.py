"""LeanRequests: HeadObject, GetObject, PutObject and ListObjectsV2 without botocore's
per-request machinery.

Why: botocore spends about 1.5 ms of CPU on each HeadObject (parameter validation, the
event system, serialising, parsing); under the GIL that caps a mount near 550 HEADs a second
on two cores, whatever the concurrency. The same request signed as botocore signs it
(`sigv4.py`) and sent over a urllib3 pool costs about 0.65 ms (measured on Ceph RGW, 16
threads: 1,116 vs 567 HEADs/s), sent from the loop (`loop_http.py`) about 0.15 ms.

Used for the requests a mount sends most and whose answers are simple: HEAD of a current
object (`ls -l`, lookups, every open), with its 200, 400, 403 and 404 answers (the store reads
them as it reads botocore's), PutObject (every small file) and UploadPart (its body sent as
the write buffer's pages, not joined into one copy of the part first), with their 200
answer; the same requests cost about 1 ms less CPU each this way. ListObjectsV2 pages
(every `ls`, a lookup of a new name) with their 200 answer, parsed here: botocore's parser
spends 60-180 ms of CPU on a page of 1,000 keys (measured on Ceph RGW), ElementTree 10.
GetObject (every read of a file: ranges of up to 16 MiB) with its 200 and 206 answers, the
body not decoded: 1.36 s of CPU per GiB against botocore's 1.42-1.70 (SeaweedFS, 16 MiB
ranges, 4 threads in one process). HEADs and small PUTs go out from the trio loop itself
(`loop_http.py`: no worker thread, another 0.5 ms less); larger bodies, GETs and listings
from worker threads over urllib3, whose TLS runs beside the loop. Every other answer (a
5xx, a redirect) and any failure to send or receive returns None and the store asks again
through botocore, which owns retries and their backoff. TLS is verified exactly as botocore
verifies it (the same CA bundle); credentials come from the client's signer, so refreshed
credentials are used as they refresh. Not used with an HTTPS proxy configured (botocore
honours it; these connections would not).
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import logging
import ssl
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import trio
import urllib3
from botocore.httpsession import get_cert_path
from botocore.utils import parse_timestamp

from ..keys import ALGORITHM, SseCKey
from .base import ListedObject, ListPage, datetime_ns
from .loop_http import LoopHttp
from .sigv4 import SigV4

log = logging.getLogger(__name__)

META_PREFIX = "x-amz-meta-"
HEAD_ANSWERED = (200, 400, 403, 404)  # what a HEAD answer means whoever sent it
# a PutObject body up to this is sent from the trio loop; a larger one from a worker thread,
# whose TLS encryption runs beside the loop
LOOP_BODY_MAX = 1024 * 1024


class LeanRequests:
    def __init__(self, endpoint_url: str, bucket: str, region: str, credentials: Any,
                 ca_bundle: str | bool | None, pool_size: int, connect_timeout: float,
                 read_timeout: float) -> None:
        url = urllib.parse.urlsplit(endpoint_url)
        if url.scheme != "https" or not url.hostname:
            raise ValueError("LeanRequests needs an https:// endpoint")
        self._bucket_path = "/" + urllib.parse.quote(bucket, safe="")
        self._signer = SigV4(credentials, region)
        # the Host header as botocore signs it: no default port
        self._host = url.netloc[:-4] if url.netloc.endswith(":443") else url.netloc
        context = ssl.create_default_context(cafile=get_cert_path(
            ca_bundle if ca_bundle else True))
        self._pool = urllib3.HTTPSConnectionPool(
            url.hostname, url.port or 443, maxsize=pool_size, block=False,
            ssl_context=context, retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout))
        # requests without a body to stream, sent from the trio loop (no worker thread)
        self._loop = LoopHttp(url.hostname, url.port or 443, context, pool_size,
                              connect_timeout, read_timeout)

    @classmethod
    def for_client(cls, client: Any, bucket: str, pool_size: int) -> LeanRequests | None:
        """One for this boto3 client, or None where it cannot be like botocore's requests
        (a proxy, no credentials, an endpoint botocore rewrites)."""
        if urllib.request.getproxies().get("https"):
            return None
        try:
            credentials = client._request_signer._credentials  # botocore keeps them here
            cfg = client.meta.config
            verify = client._endpoint.http_session._verify
            if credentials is None:
                return None
            return cls(str(client.meta.endpoint_url), bucket, str(client.meta.region_name),
                       credentials, verify, pool_size, float(cfg.connect_timeout),
                       float(cfg.read_timeout))
        except Exception as exc:  # private attributes: their absence only costs speed
            log.debug("lean requests are off: %s", exc)
            return None

    async def head(self, key: str, sse: SseCKey | None, limiter: trio.CapacityLimiter
                   ) -> tuple[int, Mapping[str, str]] | None:
        """(status, headers) of a HEAD of `key` answered 200, 400, 403 or 404; None for
        anything else (the caller asks botocore). Sent from the trio loop, as one of the
        `limiter`'s requests in flight."""
        async with limiter:
            return await self._in_loop("HEAD", key, sse, {}, b"", HEAD_ANSWERED)

    async def put(self, key: str, body: bytes, metadata: Mapping[str, str],
                  content: Mapping[str, str], sse: SseCKey | None,
                  limiter: trio.CapacityLimiter) -> tuple[int, Mapping[str, str]] | None:
        """(200, headers) of a PutObject; None for any other answer or a failure (the caller
        sends it again through botocore: storing the same body twice is harmless).
        `content`: the content headers by HTTP name. A body up to `LOOP_BODY_MAX` is sent
        from the trio loop, a larger one from a worker thread; either is one of the
        `limiter`'s requests in flight."""
        headers = {META_PREFIX + k: v for k, v in metadata.items()}
        headers.update(content)
        if len(body) <= LOOP_BODY_MAX:
            headers["Content-Length"] = str(len(body))
            async with limiter:
                return await self._in_loop("PUT", key, sse, headers, body, (200,))
        return await trio.to_thread.run_sync(self._send, "PUT", key, sse, headers, body,
                                             (200,), limiter=limiter)

    def upload_part(self, key: str, upload_id: str, number: int,
                    pieces: Sequence[bytes | memoryview], size: int, sse: SseCKey | None
                    ) -> tuple[int, Mapping[str, str]] | None:
        """(200, headers) of an UploadPart whose body is `pieces` (`size` bytes in all), each
        sent as it is: no joined copy of the part. None for any other answer or a failure
        (the caller sends it again through botocore: a part sent twice is replaced).
        Runs in a worker thread."""
        query = f"partNumber={number}&uploadId={urllib.parse.quote(upload_id, safe='-_.~')}"
        return self._send("PUT", key, sse, {"Content-Length": str(size)}, pieces, (200,),
                          query)

    def list_page(self, prefix: str, delimiter: str | None, token: str | None,
                  max_keys: int) -> ListPage | None:
        """One ListObjectsV2 page, asked as botocore asks (keys URL-encoded in the answer);
        None for any answer but 200, a failure, or an answer `parse_list_page` does not
        know (the caller asks botocore). Runs in a worker thread."""
        params = {"list-type": "2", "encoding-type": "url", "max-keys": str(max_keys),
                  "prefix": prefix}
        if delimiter:
            params["delimiter"] = delimiter
        if token:
            params["continuation-token"] = token
        query = "&".join(f"{_sigv4_quote(k)}={_sigv4_quote(v)}"
                         for k, v in sorted(params.items()))
        try:
            signed = self._signer.sign("GET", self._bucket_path, query, {"Host": self._host})
            resp = self._pool.request("GET", f"{self._bucket_path}?{query}", headers=signed,
                                      redirect=False)
            return parse_list_page(resp.data) if resp.status == 200 else None
        except Exception as exc:  # botocore asks again, and says what is wrong
            log.debug("lean ListObjectsV2 %s: %s; asking through botocore", prefix or "/",
                      type(exc).__name__)
            return None

    def _signed(self, method: str, key: str, sse: SseCKey | None, headers: dict[str, str],
                query: str) -> tuple[str, dict[str, str]]:
        """The request's path and its headers, signed (SigV4, the body unsigned)."""
        path = f"{self._bucket_path}/{urllib.parse.quote(key, safe='/~')}"
        target = f"{path}?{query}" if query else path
        if sse is not None:
            headers.update({
                "x-amz-server-side-encryption-customer-algorithm": ALGORITHM,
                "x-amz-server-side-encryption-customer-key": sse.b64,
                "x-amz-server-side-encryption-customer-key-MD5": sse.md5_b64})
        headers["Host"] = self._host
        # the body is not hashed (UNSIGNED-PAYLOAD), as for the store's own requests over
        # the verified TLS
        return target, self._signer.sign(method, path, query, headers)

    async def _in_loop(self, method: str, key: str, sse: SseCKey | None,
                       headers: dict[str, str], body: bytes, answered: tuple[int, ...]
                       ) -> tuple[int, Mapping[str, str]] | None:
        try:
            path, signed = self._signed(method, key, sse, headers, "")
        except Exception as exc:  # botocore asks again, and says what is wrong
            log.debug("lean %s %s: %s; asking through botocore", method, key,
                      type(exc).__name__)
            return None
        answer = await self._loop.request(method, path, signed, body)
        if answer is None or answer.status not in answered:
            return None
        return answer.status, answer.headers

    def get(self, key: str, rng: str | None, sse: SseCKey | None, etag: str | None,
            version_id: str | None) -> tuple[int, Mapping[str, str], bytes] | None:
        """(status, headers, body) of a GetObject answered 200 or 206, the body read whole
        (urllib3 holds it to the Content-Length) and not decoded (an object stored with a
        Content-Encoding is served as stored, as botocore serves it); None for any other
        answer or a failure (the caller asks botocore, which retries and names the error).
        `rng`: a Range header. Runs in a worker thread."""
        headers = {}
        if rng:
            headers["Range"] = rng
        if etag:
            headers["If-Match"] = etag
        query = f"versionId={_sigv4_quote(version_id)}" if version_id else ""
        resp = self._request("GET", key, sse, headers, None, query, decode_content=False)
        if resp is None or resp.status not in (200, 206):
            return None
        return resp.status, _headers(resp), resp.data

    def _send(self, method: str, key: str, sse: SseCKey | None, headers: dict[str, str],
              body: bytes | Sequence[bytes | memoryview] | None, answered: tuple[int, ...],
              query: str = "") -> tuple[int, Mapping[str, str]] | None:
        resp = self._request(method, key, sse, headers, body, query)
        if resp is None or resp.status not in answered:
            return None
        return resp.status, _headers(resp)

    def _request(self, method: str, key: str, sse: SseCKey | None, headers: dict[str, str],
                 body: bytes | Sequence[bytes | memoryview] | None, query: str,
                 **options: Any) -> urllib3.BaseHTTPResponse | None:
        """The answer to one request over the pool, its body read; None if it could not be
        sent or its answer not read whole."""
        try:
            path, signed = self._signed(method, key, sse, headers, query)
            # urllib3 sends an iterable body piece by piece (Content-Length is set: not
            # chunked); its annotation lists bytes only, a memoryview sends the same
            return self._pool.request(method, path, body=cast(Any, body), headers=signed,
                                      redirect=False, **options)
        except Exception as exc:  # botocore asks again, and retries what is worth it
            log.debug("lean %s %s: %s; asking through botocore", method, key,
                      type(exc).__name__)
            return None


def _headers(resp: urllib3.BaseHTTPResponse) -> dict[str, str]:
    # a header sent twice (SeaweedFS echoes the key MD5 twice) joined, as botocore does
    return {k.lower(): resp.headers[k] for k in resp.headers}


def head_response(headers: Mapping[str, str]) -> dict[str, Any]:
    """A lean HEAD's headers in the shape of botocore's head_object answer (the fields the
    store reads)."""
    out: dict[str, Any] = {
        "ContentLength": int(headers.get("content-length", "0") or 0),
        "ETag": headers.get("etag", ""),
        "Metadata": {k[len(META_PREFIX):]: v for k, v in headers.items()
                     if k.startswith(META_PREFIX)},
        "ResponseMetadata": {"HTTPHeaders": dict(headers)},
    }
    if "last-modified" in headers:
        with contextlib.suppress(TypeError, ValueError):
            out["LastModified"] = email.utils.parsedate_to_datetime(headers["last-modified"])
    for name, field in (("x-amz-server-side-encryption-customer-key-md5", "SSECustomerKeyMD5"),
                        ("x-amz-server-side-encryption-customer-algorithm",
                         "SSECustomerAlgorithm"), ("content-type", "ContentType")):
        if name in headers:
            out[field] = headers[name]
    return out


def parse_list_page(data: bytes) -> ListPage | None:
    """A ListObjectsV2 answer as the store's ListPage, read as botocore reads it (keys and
    prefixes URL-decoded when the answer says it encoded them); None for XML that is not
    a ListBucketResult or lacks what a page needs. Raises ET.ParseError for no XML."""
    root = ET.fromstring(data)
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if root.tag != ns + "ListBucketResult":
        return None
    decode: Callable[[str], str] = urllib.parse.unquote_plus \
        if root.findtext(ns + "EncodingType") == "url" else str
    objects = []
    for item in root.iterfind(ns + "Contents"):
        key = item.findtext(ns + "Key")
        if key is None:
            return None
        objects.append(ListedObject(key=decode(key), size=int(item.findtext(ns + "Size") or 0),
                                    etag=item.findtext(ns + "ETag") or "",
                                    last_modified_ns=_timestamp_ns(
                                        item.findtext(ns + "LastModified"))))
    prefixes = []
    for item in root.iterfind(ns + "CommonPrefixes"):
        prefix = item.findtext(ns + "Prefix")
        if prefix is None:
            return None
        prefixes.append(decode(prefix))
    token = None
    if (root.findtext(ns + "IsTruncated") or "").strip().lower() == "true":
        token = root.findtext(ns + "NextContinuationToken")
        if not token:
            return None  # truncated, and no way to ask for the rest
    return ListPage(tuple(objects), tuple(prefixes), token)


def _timestamp_ns(value: str | None) -> int:
    """An ISO 8601 LastModified in nanoseconds since the epoch, the same number botocore's
    parser gives (it is compared with what HEADs and older mounts saw); 0 if absent."""
    if not value:
        return 0
    dt: datetime.datetime | None = None
    if value.endswith("Z"):
        with contextlib.suppress(ValueError):
            dt = datetime.datetime.fromisoformat(value)  # 40 times faster than dateutil
    return datetime_ns(dt if dt is not None else parse_timestamp(value))


def _sigv4_quote(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")
