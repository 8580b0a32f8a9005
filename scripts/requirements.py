"""Print the requirements of pyproject.toml, one per line, for pip.

  python scripts/requirements.py --extra unit --without pyfuse3

Used by `make unit` / `make lint`, which install everything but pyfuse3: pyfuse3 compiles
against libfuse3, which needs apt (and root); the unit and core tests never import it.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def name_of(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()


def requirements(extras: list[str], without: set[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    reqs = list(project["dependencies"])
    todo = list(extras)
    while todo:
        for req in optional[todo.pop()]:
            inner = re.fullmatch(rf"{project['name']}\[(.+)\]", req)
            if inner:
                todo.extend(x.strip() for x in inner.group(1).split(","))
            else:
                reqs.append(req)
    return [r for r in reqs if name_of(r) not in without]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--without", action="append", default=[])
    args = ap.parse_args()
    print("\n".join(requirements(args.extra, {w.lower() for w in args.without})))


if __name__ == "__main__":
    main()
