"""Media bytes on the local file system, content addressed.

A key is the SHA-256 of the bytes, so writing is idempotent and replicas that
share the directory never overwrite each other's data with something else.
Writes go to a temporary file that is fsynced and renamed: a crash leaves
either the whole blob or none (and a ``.tmp-*`` file that ``sweep_temp`` removes).

The directory is created once, with a marker file naming it. It is never re-created
behind the operator's back: a moved or replaced directory (no marker, or another one)
makes ``check`` fail, so health turns NOT_SERVING, and writes fail instead of scattering
new blobs into an empty directory the database knows nothing about.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MARKER = ".alive-blobs"
_HEX = frozenset("0123456789abcdef")


class BlobStoreUnavailable(OSError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BlobStore:
    def __init__(self, root: Path, create: bool = True) -> None:
        """``create``: make the directory (and its marker) if it does not exist yet. The
        server passes False and decides itself (a missing directory with videos in the
        database is an outage, not a fresh start)."""
        self.root = root
        self._marker_id: str | None = None
        if create and not root.exists():
            self.create()

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.adopt()

    def adopt(self) -> None:
        """Mark an existing directory as this blob store (one made before markers existed)."""
        marker = self.root / MARKER
        if not marker.exists():
            marker.write_text(secrets.token_hex(8) + "\n")

    def marker_id(self) -> str | None:
        try:
            return (self.root / MARKER).read_text().strip() or None
        except OSError:
            return None

    def check(self, min_free_bytes: int = 0) -> None:
        """Raise BlobStoreUnavailable unless the directory is the one first seen, writable,
        and has ``min_free_bytes`` free."""
        if not self.root.is_dir():
            raise BlobStoreUnavailable("BLOB_STORE_MISSING", f"{self.root} is gone")
        current = self.marker_id()
        if current is None or (self._marker_id is not None and current != self._marker_id):
            raise BlobStoreUnavailable("BLOB_STORE_REPLACED",
                                       f"{self.root} is not the blob directory this server "
                                       "started with (its marker is missing or different)")
        self._marker_id = self._marker_id or current
        if not os.access(self.root, os.W_OK):
            raise BlobStoreUnavailable("BLOB_STORE_READ_ONLY", f"{self.root} is not writable")
        stat = os.statvfs(self.root)
        free = stat.f_bavail * stat.f_frsize
        if free < min_free_bytes:
            raise BlobStoreUnavailable("DISK_FULL", (
                f"{free // (1024 * 1024)} MB free under {self.root}; at least "
                f"{min_free_bytes // (1024 * 1024)} MB are needed"))

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in _HEX for c in key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key

    def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if path.exists() and path.stat().st_size == len(data):
            os.utime(path)  # fresh again: gc keeps young blobs, and a row is about to point here
            return key
        if not self.root.is_dir():  # never re-created here: see the module docstring
            raise BlobStoreUnavailable("BLOB_STORE_MISSING", f"{self.root} is gone")
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def keys(self) -> Iterator[str]:
        """Every stored blob's key (temporary files and anything else are skipped)."""
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            for path in shard.iterdir():
                name = path.name
                if len(name) == 64 and name.startswith(shard.name) and set(name) <= _HEX:
                    yield name

    def delete(self, key: str) -> int:
        """Remove one blob; returns the bytes freed (0 when it was not there)."""
        path = self._path(key)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def sweep_temp(self, older_than_s: float = 3600.0) -> int:
        """Remove ``.tmp-*`` files a killed writer left behind. Only old ones: another
        replica sharing the directory may be writing one right now."""
        removed = 0
        cutoff = time.time() - older_than_s
        if not self.root.is_dir():
            return 0
        for path in self.root.glob("*/.tmp-*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
