"""The four races of the core issue, through a real kernel mount on both servers: `mv` and `rm`
run by another process while `close()` of the same file (or a file in the moved directory) is
uploading. The rule: an upload, a rename and an unlink of one file are ordered, and nothing a
`close()` acknowledged is lost or comes back after an `rm`. (tests/core/test_races.py pins each
interleaving exactly; here the timing comes from a real upload of a large file.)"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

from tests.e2e.conftest import MountFactory
from tests.mounting import Mount

MiB = 1024 * 1024
BIG = 48 * MiB
OPTIONS = ["part_size=5M"]


class Closer(threading.Thread):
    """Writes `data` to `path`, then closes it in this thread; records what close() said."""

    def __init__(self, path: Path, data: bytes, fd: int | None = None) -> None:
        super().__init__(daemon=True)
        self.fd = fd if fd is not None else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self.data = data
        self.error: OSError | None = None
        self.closed = False

    def run(self) -> None:
        try:
            view = memoryview(self.data)
            while view:
                view = view[os.write(self.fd, view):]
            os.close(self.fd)
            self.closed = True
        except OSError as exc:
            self.error = exc


def wait_for_upload(mnt: Mount, key: str, since: int, timeout: float = 60) -> None:
    """Until the daemon logs the first part of `key`'s multipart upload: close() is uploading."""
    pattern = re.compile(rf"(UploadPart|CreateMultipartUpload) {re.escape(key)}\b")
    deadline = time.monotonic() + timeout
    while not pattern.search(mnt.log()[since:]):
        assert time.monotonic() < deadline, f"no upload of {key} seen in the log"
        time.sleep(0.01)


def sh(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, timeout=300)


def finish(closer: Closer) -> None:
    closer.join(300)
    assert not closer.is_alive(), "close() did not return"
    assert closer.error is None and closer.closed, f"close() failed: {closer.error}"


def test_mv_onto_a_file_whose_close_is_uploading(mount_factory: MountFactory) -> None:
    mnt = mount_factory(OPTIONS)
    (mnt / "a").write_bytes(b"the content of a")
    (mnt / "b").write_bytes(b"old b")
    mark = mnt.log_mark()
    closer = Closer(mnt / "b", os.urandom(BIG))
    closer.start()
    wait_for_upload(mnt, "b", mark)
    sh("mv", mnt / "a", mnt / "b")
    finish(closer)
    # mv replaced b after (or instead of) b's upload: b holds a's content, a is gone
    assert (mnt / "b").read_bytes() == b"the content of a"
    assert not (mnt / "a").exists()
    mnt.restart()
    assert mnt.keys() == ["b"]
    assert mnt.get("b") == b"the content of a"
    assert (mnt / "b").read_bytes() == b"the content of a"
    assert mnt.uploads() == []


def test_mv_of_a_new_file_whose_close_is_uploading(mount_factory: MountFactory) -> None:
    mnt = mount_factory(OPTIONS)
    data = os.urandom(BIG)
    mark = mnt.log_mark()
    closer = Closer(mnt / "src", data)
    closer.start()
    wait_for_upload(mnt, "src", mark)
    sh("mv", mnt / "src", mnt / "dst")
    finish(closer)
    assert os.listdir(mnt.path) == ["dst"]
    mnt.restart()
    assert mnt.keys() == ["dst"]
    assert mnt.get("dst") == data
    assert (mnt / "dst").read_bytes() == data
    assert not (mnt / "src").exists()


def test_rm_while_close_uploads(mount_factory: MountFactory) -> None:
    mnt = mount_factory(OPTIONS)
    mark = mnt.log_mark()
    closer = Closer(mnt / "f", os.urandom(BIG))
    closer.start()
    wait_for_upload(mnt, "f", mark)
    sh("rm", mnt / "f")
    finish(closer)
    assert os.listdir(mnt.path) == []
    time.sleep(1)  # anything still in flight would land now
    assert mnt.keys() == []
    mnt.restart()
    assert os.listdir(mnt.path) == []
    assert mnt.uploads() == []


def test_mv_of_a_directory_while_a_file_in_it_is_written_and_closed(
        mount_factory: MountFactory) -> None:
    mnt = mount_factory(OPTIONS)
    (mnt / "d").mkdir()
    filler = os.urandom(BIG)
    (mnt / "d" / "filler").write_bytes(filler)  # makes the directory's copy take a while
    (mnt / "d" / "file").write_bytes(b"old content")
    fd = os.open(mnt / "d" / "file", os.O_WRONLY | os.O_TRUNC)
    mover = subprocess.Popen(["mv", str(mnt / "d"), str(mnt / "e")])
    time.sleep(0.05)
    closer = Closer(mnt / "d" / "file", b"new content", fd=fd)
    closer.start()
    assert mover.wait(300) == 0
    finish(closer)
    assert sorted(os.listdir(mnt.path)) == ["e"]
    assert (mnt / "e" / "file").read_bytes() == b"new content"
    mnt.restart()
    assert sorted(mnt.keys()) == ["e/", "e/file", "e/filler"]
    assert mnt.get("e/file") == b"new content"
    assert mnt.get("e/filler") == filler
    assert (mnt / "e" / "file").read_bytes() == b"new content"
