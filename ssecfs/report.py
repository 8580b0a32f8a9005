"""What `rotate-key` and `check` found, per object, and their JSON summaries (pure).

rotate-key results: "rotated" (now under the new key, verified), "skipped" (already under
the new key), "changed" (the object changed after it was read: left as it is, never
overwritten), "failed" (the error says why: unknown key, not encrypted, a request failed),
and with --dry-run "would_rotate". check statuses: "writing" (the ring's writing key opens
it), "old" (an old key does), "unknown" (no key of the ring does), "unencrypted" (stored
without SSE-C), and "error" (the HEAD failed for another reason; `error` says which).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROTATE_RESULTS = ("rotated", "skipped", "changed", "failed", "would_rotate")
CHECK_STATUSES = ("writing", "old", "unknown", "unencrypted")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One object's rotate-key result."""

    key: str
    version_id: str | None
    result: str
    size: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        """Whether the object is under the new key now."""
        return self.result in ("rotated", "skipped")


@dataclass(frozen=True, slots=True)
class Checked:
    """One object version's check status."""

    key: str
    version_id: str | None
    size: int
    status: str
    key_md5: str | None = None
    error: str | None = None

    @property
    def fine(self) -> bool:
        """Opens with the writing key, or is an empty directory marker stored without SSE-C
        (no data; SeaweedFS stores every marker so)."""
        return self.status == "writing" or (self.status == "unencrypted" and self.size == 0
                                            and self.key.endswith("/"))


def rotate_summary(outcomes: Sequence[Outcome], *, dry_run: bool = False,
                   interrupted: bool = False) -> dict[str, Any]:
    counts = {r: sum(1 for o in outcomes if o.result == r) for r in ROTATE_RESULTS}
    if not dry_run:
        del counts["would_rotate"]
    out: dict[str, Any] = dict(counts)
    if dry_run:
        out["dry_run"] = True
    if interrupted:
        out["interrupted"] = True
    out["objects"] = [{"key": o.key, "version_id": o.version_id, "result": o.result,
                       "error": o.error} for o in outcomes]
    return out


def check_summary(entries: Sequence[Checked]) -> dict[str, Any]:
    statuses = list(CHECK_STATUSES)
    if any(e.status == "error" for e in entries):
        statuses.append("error")
    totals = {s: {"objects": sum(1 for e in entries if e.status == s),
                  "bytes": sum(e.size for e in entries if e.status == s)} for s in statuses}
    objects: list[dict[str, Any]] = []
    for e in entries:
        item: dict[str, Any] = {"key": e.key, "version_id": e.version_id, "size": e.size,
                                "status": e.status, "key_md5": e.key_md5}
        if e.error is not None:
            item["error"] = e.error
        objects.append(item)
    return {"objects": objects, "totals": totals}
