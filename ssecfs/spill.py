"""Encrypted spill file for write buffers that outgrow memory.

No plaintext reaches the disk: every page is sealed with AES-256-GCM under a random key that
exists only in this process's memory (lost at exit, so a leftover file is unreadable noise).
The slot number is the associated data, so a page cannot be swapped into another slot
unnoticed. One file per mount, named spill-<pid>-<random>.bin, mode 0600; files left by dead
processes are removed at start, ours at exit.

Records are written and read with O_DIRECT where the filesystem allows it (tmpfs may not):
the disk takes each record straight out of an aligned buffer of ours, instead of the kernel
copying it into the page cache first — on a 2-core machine that copy cost more CPU than the
encryption (0.38 against 0.05 s for 480 MiB, measured), and a big file's spill would also
push other files out of the page cache. Each record is padded to a multiple of `ALIGN`.

The AES-GCM work and the pread/pwrite run in worker threads (as s3ql does with its crypto), so
a big write does not stall every other request of the mount; slot bookkeeping stays on the
trio thread. A record is only reported stored once pwrite wrote all of it: a short write is
an error, and the caller keeps the page in memory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import secrets
import threading

import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import LocalDiskError

log = logging.getLogger(__name__)

NONCE = 12
TAG = 16
HEAD = NONCE + 8  # the nonce, then the plaintext length
ALIGN = 4096  # what O_DIRECT needs of offsets, lengths and buffers
KEPT_BUFFERS = 4  # aligned record buffers kept for reuse (more spill at once: made and freed)


def _padded(n: int) -> int:
    """`n` rounded up to a multiple of `ALIGN`."""
    return -(-n // ALIGN) * ALIGN


class SpillFile:
    def __init__(self, directory: str, slot_size: int) -> None:
        self.directory = directory
        self.slot_size = slot_size  # largest plaintext page
        self._record = _padded(HEAD + slot_size + TAG)
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._fd: int | None = None
        self._direct = False
        # page-aligned record buffers for O_DIRECT, reused (a fresh one costs page faults)
        self._buffers: list[mmap.mmap] = []
        self._buffers_lock = threading.Lock()
        self.path: str | None = None
        self._free: list[int] = []
        self._slots = 0

    def __repr__(self) -> str:
        return f"<SpillFile {self.path} slots={self._slots}>"

    def _open(self) -> int:
        if self._fd is None:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self.path = os.path.join(self.directory,
                                     f"spill-{os.getpid()}-{secrets.token_hex(4)}.bin")
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                               0o600)
            # O_DIRECT set afterwards: an open with it creates the file before it is refused
            try:
                fcntl.fcntl(self._fd, fcntl.F_SETFL,
                            fcntl.fcntl(self._fd, fcntl.F_GETFL) | os.O_DIRECT)
                self._direct = True
            except OSError as exc:  # EINVAL: this filesystem has no O_DIRECT
                log.debug("the spill file is written through the page cache: %s",
                          exc.strerror or exc)
        return self._fd

    async def store(self, data: bytes | bytearray) -> int:
        """Seal `data` into a free slot; the slot number once it is fully on disk.
        Raises LocalDiskError (with the errno, e.g. ENOSPC) if it could not be stored."""
        if len(data) > self.slot_size:
            raise ValueError("page larger than a spill slot")
        try:
            fd = self._open()
        except OSError as exc:
            raise self._failed("create", exc) from None
        slot = self._free.pop() if self._free else self._next_slot()
        try:
            await trio.to_thread.run_sync(self._seal, fd, slot, bytes(data))
        except OSError as exc:
            self._free.append(slot)
            raise self._failed("write", exc) from None
        except BaseException:
            self._free.append(slot)
            raise
        return slot

    def _failed(self, what: str, exc: OSError) -> LocalDiskError:
        where = self.path or self.directory
        log.warning("cannot %s the spill file in %s: %s; the page stays in memory",
                    what, where, exc.strerror or exc)
        return LocalDiskError(f"spill file {where}: {exc.strerror or exc}",
                              exc.errno or errno.EIO)

    def _seal(self, fd: int, slot: int, data: bytes) -> None:
        """Runs in a worker thread: touches only its arguments, the AEAD object and the
        buffer list (under its lock)."""
        nonce = os.urandom(NONCE)
        sealed = self._aead.encrypt(nonce, data, slot.to_bytes(8, "big"))
        head = nonce + len(data).to_bytes(8, "big")
        written = want = 0
        direct = self._direct  # read once: another thread may turn it off meanwhile
        if direct:
            want = _padded(len(head) + len(sealed))
            try:
                written = self._write_direct(fd, slot, head, sealed, want)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # opened with O_DIRECT, but its writes refused: through the page cache
                log.debug("the spill file refuses O_DIRECT writes; writing it buffered")
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
                self._direct = direct = False
        if not direct:
            want = len(head) + len(sealed)
            written = os.pwritev(fd, [head, sealed], slot * self._record)  # no joined copy
        if written != want:
            raise OSError(errno.ENOSPC, f"short write to the spill file ({written} of "
                          f"{want} bytes)")

    def _write_direct(self, fd: int, slot: int, head: bytes, sealed: bytes,
                      length: int) -> int:
        """The record written whole (`length` bytes, padded) from an aligned buffer."""
        buf = self._take()
        try:
            with memoryview(buf) as view:
                view[:HEAD] = head
                view[HEAD : HEAD + len(sealed)] = sealed
                with view[:length] as record:
                    return os.pwrite(fd, record, slot * self._record)
        finally:
            self._give(buf)

    def _take(self) -> mmap.mmap:
        with self._buffers_lock:
            if self._buffers:
                return self._buffers.pop()
        return mmap.mmap(-1, self._record)  # anonymous: page-aligned

    def _give(self, buf: mmap.mmap) -> None:
        with self._buffers_lock:
            if len(self._buffers) < KEPT_BUFFERS:
                self._buffers.append(buf)
                return
        buf.close()

    def _next_slot(self) -> int:
        self._slots += 1
        return self._slots - 1

    async def load(self, slot: int) -> bytearray:
        try:
            return await trio.to_thread.run_sync(self._unseal, self._open(), slot)
        except OSError as exc:
            raise self._failed("read", exc) from None
        except InvalidTag:
            log.error("a page of the spill file %s does not decrypt: it was changed on disk",
                      self.path)
            raise LocalDiskError(f"spill file {self.path}: a page failed authentication") \
                from None

    def _unseal(self, fd: int, slot: int) -> bytearray:
        """Runs in a worker thread."""
        if not self._direct:
            head = os.pread(fd, HEAD, slot * self._record)
            nonce, length = head[:NONCE], int.from_bytes(head[NONCE:], "big")
            sealed = os.pread(fd, length + TAG, slot * self._record + HEAD)
            return bytearray(self._aead.decrypt(nonce, sealed, slot.to_bytes(8, "big")))
        buf = self._take()
        try:
            with memoryview(buf) as view:
                got = os.preadv(fd, [view], slot * self._record)
                nonce, length = bytes(view[:NONCE]), int.from_bytes(view[NONCE:HEAD], "big")
                if length > self.slot_size or got < HEAD + length + TAG:
                    raise InvalidTag  # a record cut or changed on disk
                with view[HEAD : HEAD + length + TAG] as record:
                    return bytearray(self._aead.decrypt(nonce, record,
                                                        slot.to_bytes(8, "big")))
        finally:
            self._give(buf)

    def free(self, slot: int) -> None:
        self._free.append(slot)

    def close(self) -> None:
        with self._buffers_lock:
            for buf in self._buffers:
                buf.close()
            self._buffers.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = None


def remove_stale_spill_files(directory: str) -> int:
    """Delete spill files whose process is gone (their key died with it). Returns how many."""
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        if not (name.startswith("spill-") and name.endswith(".bin")):
            continue
        pid = name.split("-")[1]
        if pid.isdigit() and os.path.exists(f"/proc/{pid}"):  # still running (or us)
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed += 1
        except OSError:
            pass
    if removed:
        log.info("removed %d stale spill file(s) from %s", removed, directory)
    return removed
