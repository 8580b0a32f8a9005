"""Shared pytest fixtures: local S3 servers with real SSE-C, buckets and keys.

Fixtures (all plain sync fixtures):

* ``rgw`` / ``seaweedfs`` (session): a running server, started once under a temp dir and
  stopped at session end (also after failures / Ctrl-C / SIGTERM).
* ``s3server`` (session, parametrized, ids ``rgw`` / ``seaweedfs``): each e2e test using it
  runs against both. ``SSECFS_TEST_SERVERS=seaweedfs`` (comma/space separated) limits the kinds.
* ``bucket`` (function): a fresh, uniquely named bucket on ``s3server``; emptied and deleted
  afterwards (best effort).
* ``sse_key`` (function): 32 random bytes. ``key_file``: those bytes in a 0600 file (path).

Tests under tests/e2e get the ``e2e`` marker. ``@requires_fuse`` (tests/fuse_util.py) skips
without /dev/fuse or fusermount3, but fails under CI=true.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import private_helpers, servers
from tests.fuse_util import fuse_missing_reason, in_ci
from tests.servers import S3Server, ServerError

_E2E_DIR = Path(__file__).parent / "e2e"


def selected_server_kinds() -> list[str]:
    """Server kinds to test against: $SSECFS_TEST_SERVERS (e.g. "seaweedfs") or all."""
    raw = os.environ.get("SSECFS_TEST_SERVERS", "").strip()
    if not raw:
        return list(servers.KINDS)
    kinds = [k for k in re.split(r"[\s,]+", raw) if k]
    unknown = [k for k in kinds if k not in servers.KINDS]
    if unknown:
        raise pytest.UsageError(
            f"SSECFS_TEST_SERVERS: unknown server kind(s) {unknown}; use {', '.join(servers.KINDS)}"
        )
    return [k for k in servers.KINDS if k in kinds]


# --------------------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    # first, while the process has one thread: this checkout's mount helpers, in a private
    # mount namespace (tests/private_helpers.py); without root the system tests need
    # `make install-helpers` instead
    private_helpers.enter(Path(sys.executable).parent)
    config.addinivalue_line("markers", "e2e: needs real S3 servers and a FUSE mount")
    config.addinivalue_line(
        "markers",
        "requires_fuse: needs /dev/fuse and fusermount3 "
        "(skipped without them; fails under CI=true)",
    )
    # SIGTERM (e.g. a CI timeout) -> KeyboardInterrupt, so the session fixtures' teardown
    # still stops the servers. Only if nobody else handles SIGTERM already.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

        def _on_sigterm(signum: int, frame: object) -> None:
            raise KeyboardInterrupt("SIGTERM")

        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # s3server: parametrized over the selected kinds only (no skip noise for the others)
    if "s3server" in metafunc.fixturenames:
        kinds = selected_server_kinds()
        metafunc.parametrize("s3server", kinds, ids=kinds, indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            in_e2e = Path(str(item.path)).resolve().is_relative_to(_E2E_DIR.resolve())
        except (OSError, ValueError):
            in_e2e = False
        if in_e2e:
            item.add_marker(pytest.mark.e2e)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("requires_fuse") is None:
        return
    reason = fuse_missing_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{reason} -- CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parent of the test servers' state directories (one per kind)."""
    return tmp_path_factory.mktemp("servers")


def _run_server(kind: str, state_dir: Path) -> Iterator[S3Server]:
    if kind not in selected_server_kinds():
        pytest.skip(f"{kind} not in SSECFS_TEST_SERVERS={os.environ.get('SSECFS_TEST_SERVERS')}")
    state_dir = state_dir / kind
    # belt and braces: should the session end without running fixture teardown, stop
    # the daemons when the interpreter exits
    cleanup = functools.partial(servers.stop_dir, kind, state_dir)
    atexit.register(cleanup)
    try:
        srv = servers.start(kind, state_dir)
    except ServerError as e:
        pytest.fail(f"cannot start the {kind} test server: {e}", pytrace=False)
    try:
        yield srv
    finally:
        atexit.unregister(cleanup)
        servers.stop(srv)


@pytest.fixture(scope="session")
def rgw(servers_dir: Path) -> Iterator[S3Server]:
    """Ceph RGW 16.2 (memstore) on https://127.0.0.1:PORT, for the whole session."""
    yield from _run_server("rgw", servers_dir)


@pytest.fixture(scope="session")
def seaweedfs(servers_dir: Path) -> Iterator[S3Server]:
    """SeaweedFS `weed server` S3 gateway on https://127.0.0.1:PORT, for the whole session."""
    yield from _run_server("seaweedfs", servers_dir)


@pytest.fixture(scope="session")
def s3server(request: pytest.FixtureRequest) -> S3Server:
    """The S3 server of this parametrization (ids "rgw" / "seaweedfs")."""
    kind = getattr(request, "param", None)
    if kind is None:  # requested without parametrization (e.g. -p no:... tricks)
        kind = selected_server_kinds()[0]
    srv: S3Server = request.getfixturevalue(kind)
    return srv


def _bucket_name(nodeid: str) -> str:
    """Unique, valid bucket name (3-63 chars of [a-z0-9-]) hinting at the test."""
    name = nodeid.rsplit("::", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:36].strip("-") or "t"
    return f"t-{name}-{secrets.token_hex(6)}"


@pytest.fixture
def bucket(s3server: S3Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh bucket on s3server; emptied (incl. multipart uploads) and deleted afterwards."""
    name = _bucket_name(request.node.nodeid)
    s3server.create_bucket(name)
    try:
        yield name
    finally:
        s3server.purge_bucket(name)


@pytest.fixture
def sse_key() -> bytes:
    """A random 32-byte SSE-C customer key."""
    return secrets.token_bytes(32)


@pytest.fixture
def key_file(sse_key: bytes, tmp_path: Path) -> Path:
    """sse_key (raw 32 bytes) in a file with mode 0600."""
    path = tmp_path / "sse-c.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, sse_key)
    finally:
        os.close(fd)
    return path
