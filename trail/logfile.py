"""Complete lines of one log file name, across rotations, from a position that survives restarts.

A position is the file's identity (device, inode), the byte offset after the last complete line
read, and a fingerprint (SHA-256 of the file's first bytes) that tells the same file from one
that replaced it, even under the same inode. Two ways a log is rotated:
- rename (logrotate's default, `postfix logrotate`): the name points at a new file while the
  writer may still finish lines in the old one until it reopens. The old file is read to its
  end; the new one is taken once it has data or the old one has been quiet for `grace` seconds.
- copytruncate: the file is copied to a sibling name and cut to zero. Seen as a file shorter
  than the offset, or whose first bytes changed: the rest of the copy (found by its
  fingerprint) is read from the offset, then the cut file from its start. Lines written between
  the copy and the cut are lost by copytruncate itself (logrotate(8) says so).
After a restart the saved file is looked for under the name, then among its siblings (by inode,
then by fingerprint, then compressed ones by the fingerprint of their content), so a rotation
while the follower was stopped loses nothing either. A compressed sibling is decompressed into
an unnamed temporary file and read from there: offsets and fingerprints are of the content.
"""

import bz2
import gzip
import hashlib
import logging
import lzma
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

FINGERPRINT_BYTES = 1024
CHUNK_BYTES = 1 << 20
# What logrotate and `postfix logrotate` compress with, as far as the standard library reads it.
DECOMPRESSORS: dict[str, type[gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile]] = {
    ".gz": gzip.GzipFile,
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
}
COMPRESSED = (*DECOMPRESSORS, ".zst", ".lz4")


@dataclass(frozen=True)
class Position:
    device: int
    inode: int
    offset: int
    fingerprint: str  # SHA-256 hex of the first fingerprint_length bytes
    fingerprint_length: int


def _fingerprint(fd: int, length: int) -> str:
    return hashlib.sha256(os.pread(fd, length, 0)).hexdigest()


class _Source:
    """One open file and the offset of its next unread byte."""

    def __init__(self, path: Path, fd: int, offset: int) -> None:
        self.path, self.fd, self.offset = path, fd, offset
        st = os.fstat(fd)
        self.device, self.inode = st.st_dev, st.st_ino
        self.fingerprint_length = min(offset, FINGERPRINT_BYTES)
        self.fingerprint = _fingerprint(fd, self.fingerprint_length)

    def position(self) -> Position:
        return Position(self.device, self.inode, self.offset, self.fingerprint, self.fingerprint_length)

    def advance(self, consumed: int) -> None:
        self.offset += consumed
        if self.fingerprint_length < FINGERPRINT_BYTES:
            self.fingerprint_length = min(self.offset, FINGERPRINT_BYTES)
            self.fingerprint = _fingerprint(self.fd, self.fingerprint_length)

    def still_starts_as_read(self) -> bool:
        return _fingerprint(self.fd, self.fingerprint_length) == self.fingerprint

    def close(self) -> None:
        os.close(self.fd)


def _open(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _matches(fd: int, position: Position) -> bool:
    st = os.fstat(fd)
    return st.st_size >= position.offset and _fingerprint(fd, position.fingerprint_length) == position.fingerprint


def _decompressed(path: Path, position: Position) -> _Source | None:
    """A compressed rotated file whose content starts as the saved file did, decompressed into an
    unnamed temporary file (gone when closed), positioned at the saved offset."""
    try:
        with DECOMPRESSORS[path.suffix](path, "rb") as packed:
            head = packed.read(position.fingerprint_length)
            if hashlib.sha256(head).hexdigest() != position.fingerprint:
                return None
            content = tempfile.TemporaryFile()  # noqa: SIM115 -- its descriptor outlives this block
            content.write(head)
            shutil.copyfileobj(packed, content, CHUNK_BYTES)
    except (OSError, EOFError, lzma.LZMAError):  # unreadable or cut short: not the file
        return None
    fd = os.dup(content.fileno())
    content.close()
    if os.fstat(fd).st_size < position.offset:
        os.close(fd)
        return None
    return _Source(path, fd, position.offset)


class LogReader:
    def __init__(self, path: Path, position: Position | None = None, grace: float = 5.0) -> None:
        self.path = Path(path)
        self.grace = grace
        self.source: _Source | None = None
        # While the rest of a rotated file is read: the file to continue with afterwards.
        self._then: tuple[Path, int] | None = None
        self._quiet_since: float | None = None
        self._resume(position)

    @property
    def position(self) -> Position | None:
        return self.source.position() if self.source else None

    def close(self) -> None:
        if self.source:
            self.source.close()
            self.source = None
        if self._then:
            os.close(self._then[1])
            self._then = None

    def _siblings(self) -> tuple[list[Path], list[Path]]:
        """The rotated files beside the log: plain ones, and compressed ones this can read."""
        try:
            names = sorted(p for p in self.path.parent.iterdir() if p.name.startswith(self.path.name))
        except FileNotFoundError:
            return [], []
        names = [p for p in names if p != self.path and p.is_file()]
        plain = [p for p in names if not p.name.endswith(COMPRESSED)]
        return plain, [p for p in names if p.suffix in DECOMPRESSORS]

    def _find(self, position: Position, exclude_inode: int | None = None) -> _Source | None:
        """The saved file among the rotated siblings: by identity first, then by its first bytes,
        then a compressed one by the first bytes of its content."""
        candidates, compressed = self._siblings()
        by_identity = []
        for path in candidates:
            try:
                st = path.stat()
            except FileNotFoundError:  # removed by the rotation meanwhile
                continue
            if (st.st_dev, st.st_ino) == (position.device, position.inode):
                by_identity.append(path)
        if position.fingerprint_length == 0:  # nothing read yet: every file starts "the same"
            candidates, compressed = by_identity, []
        for path in by_identity + [p for p in candidates if p not in by_identity]:
            fd = _open(path)
            if fd is None:
                continue
            if os.fstat(fd).st_ino != exclude_inode and _matches(fd, position):
                return _Source(path, fd, position.offset)
            os.close(fd)
        for path in compressed:
            found = _decompressed(path, position)
            if found is not None:
                return found
        return None

    def _resume(self, position: Position | None) -> None:
        fd = _open(self.path)
        if position is None:
            if fd is not None:
                self.source = _Source(self.path, fd, 0)
            return
        if fd is not None:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (position.device, position.inode) and _matches(fd, position):
                self.source = _Source(self.path, fd, position.offset)
                return
        rotated = self._find(position, exclude_inode=os.fstat(fd).st_ino if fd is not None else None)
        if rotated is not None:
            logger.info("maillog: %s was rotated while stopped; reading the rest of %s", self.path, rotated.path)
            self.source = rotated
            if fd is not None:
                self._then = (self.path, fd)
            return
        logger.warning("maillog: the file last read is gone; reading %s from its start", self.path)
        if fd is not None:
            self.source = _Source(self.path, fd, 0)

    def read_lines(self) -> list[str]:
        """The next complete lines (up to about a megabyte of them); [] when there are none now."""
        if self.source is None:
            fd = _open(self.path)
            if fd is None:
                return []
            self.source = _Source(self.path, fd, 0)
        source = self.source
        if self._then is None and (os.fstat(source.fd).st_size < source.offset or not source.still_starts_as_read()):
            # Checked before every read: a file cut and regrown past the offset must not be
            # read from the middle of its new lines.
            return self._truncated()
        data = os.pread(source.fd, CHUNK_BYTES, source.offset)
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) == CHUNK_BYTES:
            end = len(data)  # a megabyte without a line break is no log line: skipped
        if end:
            source.advance(end)
            self._quiet_since = None
            return data[:end].decode("utf-8", "replace").splitlines()
        return self._after_end(data)

    def _after_end(self, partial: bytes) -> list[str]:
        """At the end of the current file: has it been rotated?"""
        source = self.source
        assert source is not None
        if self._then is not None:
            return self._continue_with(*self._then, last=partial)
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return []
        if (named.st_dev, named.st_ino) == (source.device, source.inode):
            return []
        # Renamed away: take the new file once the writer uses it, or the old one stays quiet.
        now = time.monotonic()
        if self._quiet_since is None:
            self._quiet_since = now
        if named.st_size == 0 and now - self._quiet_since < self.grace:
            return []
        data = os.pread(source.fd, CHUNK_BYTES, source.offset)
        if data.count(b"\n") or len(data) > len(partial):
            return self.read_lines()  # the writer finished more lines in the old file
        fd = _open(self.path)
        if fd is None:
            return []
        return self._continue_with(self.path, fd, last=partial)

    def _truncated(self) -> list[str]:
        source = self.source
        assert source is not None
        copy = self._find(source.position(), exclude_inode=source.inode)
        if copy is None:
            logger.warning("maillog: %s was truncated and no copy was found; reading it from its start", self.path)
            self.source = _Source(source.path, source.fd, 0)
            return self.read_lines()
        logger.info("maillog: %s was copied and truncated; reading the rest of %s", self.path, copy.path)
        self._then = (source.path, source.fd)
        self.source = copy
        return self.read_lines()

    def _continue_with(self, path: Path, fd: int, last: bytes) -> list[str]:
        """The rotated file is read to its end: its unfinished last line, then the next file."""
        old = self.source
        assert old is not None
        if old.fd != fd:
            old.close()
        self._then = None
        self._quiet_since = None
        self.source = _Source(path, fd, 0)
        return [last.decode("utf-8", "replace")] if last.strip() else self.read_lines()
