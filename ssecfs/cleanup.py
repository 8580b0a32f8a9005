"""`ssecfs cleanup BUCKET[/PREFIX]`: abort unfinished multipart uploads.

A multipart upload that a crash (or a long outage) interrupted stays on the server, holding
storage, until it is aborted. This lists them under the prefix and aborts those started more
than `older_than` seconds ago (default one hour, so that uploads of a running mount are left
alone). No SSE-C key is needed: listing and aborting uploads carry none.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .store.base import ObjectStore


async def abort_stale_uploads(store: ObjectStore, prefix: str, older_than: float,
                              dry_run: bool, say: Callable[[str], None],
                              now_ns: int | None = None) -> int:
    """Abort (or with `dry_run` only name) the stale uploads; how many there were."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    limit = now_ns - int(older_than * 1e9)
    stale = [u for u in await store.list_uploads(prefix) if u.initiated_ns <= limit]
    for u in stale:
        if not dry_run:
            await store.abort_multipart(u.key, u.upload_id)
        age_h = (now_ns - u.initiated_ns) / 3.6e12
        say(f"{'would abort' if dry_run else 'aborted'} {u.key} (upload {u.upload_id}, "
            f"started {age_h:.1f} h ago)")
    return len(stale)
