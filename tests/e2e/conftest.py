"""Fixtures for end-to-end tests: a bucket on each test server, mounted by a real ssecfs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fault_proxy import Proxy
from tests.fuse_util import require_fuse
from tests.mounting import Mount
from tests.servers import S3Server, ensure_tls

MountFactory = Callable[..., Mount]


@pytest.fixture
def mount_factory(s3server: S3Server, bucket: str, sse_key: bytes, key_file: Path,
                  tmp_path: Path) -> Iterator[MountFactory]:
    """make(options=[...], start=True, name="mnt") -> Mount on the test's bucket."""
    require_fuse()
    made: list[Mount] = []

    def make(options: list[str] | None = None, start: bool = True, name: str = "mnt",
             key: bytes | None = None, key_path: Path | None = None) -> Mount:
        m = Mount(server=s3server, bucket=bucket, key=key or sse_key,
                  key_file=key_path or key_file, path=tmp_path / name,
                  log_path=tmp_path / f"{name}.log", options=list(options or []))
        made.append(m)
        return m.start() if start else m

    yield make
    # every daemon ends cleanly: exit 0 at unmount and no traceback in its log (a test that
    # provokes another ending says so with Mount.expect_exit / expect_clean_log)
    problems = [f"{m.path.name}: {p}" for m in made for p in m.teardown_problems()]
    if problems:
        logs = "\n".join(f"--- {m.log_path}\n{m.log()[-4000:]}" for m in made)
        pytest.fail("; ".join(problems) + "\n" + logs)


@pytest.fixture
def mnt(mount_factory: MountFactory) -> Mount:
    """The test's bucket mounted with default options."""
    return mount_factory()


@pytest.fixture
def proxy(s3server: S3Server) -> Iterator[Proxy]:
    """A fault-injecting proxy in front of the test's server (tests/fault_proxy.py). It ends
    TLS with the server's own certificate, so it can also answer requests (500, 503)."""
    p = Proxy(urlsplit(s3server.endpoint).port,  # type: ignore[arg-type]
              tls=ensure_tls(Path(s3server.state_dir) / "tls"))
    yield p
    p.close()
    if p.failures:
        pytest.fail(f"the fault proxy failed: {p.failures}")
