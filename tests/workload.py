"""One worker of the end-to-end model test: seeded random file operations on a directory of
the mount and on a local reference directory, in lockstep, each result compared.

  python -m tests.workload --seed 7 --ops 700 MOUNT_DIR REF_DIR

Exits 0 when every operation gave the same errno and the same bytes on both sides; else
prints the operation, both answers and the last operations, and exits 1. Several of these
run at once on one mount (one directory each), as several processes of a user would.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

NAMES = ["f0", "f1", "f2", "d0", "d1", "d0/f0", "d0/f1", "d1/f0", "d0/e0", "d0/e0/f0"]
SIZES = [0, 10, 5000, 70_000, 1 << 20 | 7]


def answer(fn: Callable[[], object]) -> tuple[int, object]:
    try:
        return 0, fn()
    except OSError as exc:
        return exc.errno or -1, None


def pwrite(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def stat_of(path: Path) -> tuple[bool, int]:
    st = path.lstat()
    is_dir = (st.st_mode & 0o170000) == 0o040000
    return is_dir, 0 if is_dir else st.st_size


def operation(rng: random.Random) -> tuple[str, Callable[[Path], object]]:
    kind = rng.choice(["write"] * 4 + ["pwrite"] * 2 + ["truncate", "rename", "rename",
                      "unlink", "mkdir", "mkdir", "rmdir", "read", "read", "list", "stat"])
    name, other = rng.choice(NAMES), rng.choice(NAMES)
    data = rng.randbytes(rng.choice(SIZES))
    offset, size = rng.randrange(0, 3 << 19), rng.choice(SIZES)
    ops: dict[str, Callable[[Path], object]] = {
        "write": lambda d: (d / name).write_bytes(data),
        "pwrite": lambda d: pwrite(d / name, offset, data[:70_000] or b"x"),
        "truncate": lambda d: os.truncate(d / name, size),
        "rename": lambda d: os.rename(d / name, d / other),
        "unlink": lambda d: os.unlink(d / name),
        "mkdir": lambda d: os.mkdir(d / name),
        "rmdir": lambda d: os.rmdir(d / name),
        "read": lambda d: (d / name).read_bytes(),
        "list": lambda d: sorted(os.listdir(d / name)),
        "stat": lambda d: stat_of(d / name),
    }
    what = f"{kind} {name}" + (f" -> {other}" if kind == "rename" else "")
    return what, ops[kind]


def tree(root: Path) -> dict[str, bytes | None]:
    """Everything below `root`: "dir/" -> None, "file" -> its bytes (to compare two trees)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirs:
            out[os.path.normpath(os.path.join(rel, d)) + "/"] = None
        for f in files:
            out[os.path.normpath(os.path.join(rel, f))] = Path(dirpath, f).read_bytes()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--ops", type=int, default=700)
    ap.add_argument("mount", type=Path)
    ap.add_argument("ref", type=Path)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    done: list[str] = []
    for _ in range(args.ops):
        what, op = operation(rng)
        got, want = answer(partial(op, args.mount)), answer(partial(op, args.ref))
        done.append(f"{what} = {got[0]}")
        if got != want:
            shown = [str(x)[:80] for x in (got, want)]
            print(f"seed {args.seed}: {what}: the mount answered {shown[0]}, the local "
                  f"directory {shown[1]}; last operations: {done[-10:]}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
