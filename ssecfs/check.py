"""`ssecfs check`: which key of a key ring opens each object (or version) of a bucket.

One HEAD per key tried (`scan.probe`: the writing key first, then each old key, then one
without a key if all were refused), no data read. An object under the writing key costs one
request; "old" means rotate-key still has work; "unknown" objects open with no key given
(their key is lost, or it is another tool's); "unencrypted" objects are stored without SSE-C.
"""

from __future__ import annotations

from .errors import NotFound, SsecfsError
from .keys import KeyRing, SseCKey
from .report import Checked
from .scan import probe
from .store.base import ListedVersion, ObjectStore


def old_keys(ring: KeyRing) -> tuple[SseCKey, ...]:
    """The ring's keys besides the writing one, in order, each once."""
    out: list[SseCKey] = []
    for key in ring.readers:
        if key != ring.writer and key not in out:
            out.append(key)
    return tuple(out)


async def check_one(store: ObjectStore, ring: KeyRing, item: ListedVersion) -> Checked:
    """The status of one object version; never raises an SsecfsError."""
    def out(status: str, md5: str | None = None, error: str | None = None) -> Checked:
        return Checked(item.key, item.version_id, item.size, status, md5, error)

    try:
        found = await probe(store, item.key, (ring.writer, *old_keys(ring)),
                            version_id=item.version_id)
    except NotFound:
        return out("error", error="deleted since it was listed")
    except SsecfsError as exc:
        return out("error", error=str(exc))
    if found.unencrypted:
        return out("unencrypted")
    if found.key is None:
        return out("unknown")
    return out("writing" if found.key == ring.writer else "old", found.key.md5_b64)
