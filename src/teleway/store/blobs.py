"""Content-addressed blobs (attachments, rendered media) on the local disk.

A blob's id is the SHA-256 of its bytes in lower-case hex; it lives in `<directory>/ab/cd/<id>`
(the first two byte pairs of the id fan the files out over 65,536 directories). A blob is
written to a temporary file in its final directory, fsynced, renamed over its final name and the
directory fsynced, so after `put` returns the blob survives a power loss, and a crash at any
point leaves either the whole blob or no blob under its name (never a partial one). Writing the
same bytes twice is harmless: the id names the content.

File I/O runs in a worker thread so the event loop keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import tempfile
from pathlib import Path

from teleway.core.ports import StoreFull, StoreUnavailable

_BLOB_ID = re.compile(r"[0-9a-f]{64}")
MAX_BLOB = 64 * 1024 * 1024  # bytes; larger media does not belong in a message


class LocalBlobStore:
    """Implements `core.ports.BlobStore` under `directory` (created if missing)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_of(self, blob_id: str) -> Path:
        """Where a blob lives; KeyError for anything that is not a blob id (no path tricks)."""
        if not _BLOB_ID.fullmatch(blob_id):
            raise KeyError(blob_id)
        return self.directory / blob_id[:2] / blob_id[2:4] / blob_id

    async def put(self, data: bytes) -> str:
        if len(data) > MAX_BLOB:
            raise ValueError(f"blob of {len(data)} bytes; at most {MAX_BLOB} are kept")
        return await asyncio.to_thread(self._put, bytes(data))

    async def get(self, blob_id: str) -> bytes:
        path = self.path_of(blob_id)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise KeyError(blob_id) from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read blob {blob_id}: {exc}") from exc

    async def exists(self, blob_id: str) -> bool:
        try:
            path = self.path_of(blob_id)
        except KeyError:
            return False
        return await asyncio.to_thread(path.is_file)

    def _put(self, data: bytes) -> str:
        blob_id = hashlib.sha256(data).hexdigest()
        path = self.path_of(blob_id)
        try:
            if path.is_file() and path.stat().st_size == len(data):
                return blob_id  # same id, same size: the same bytes (SHA-256)
            self._make_directories(path.parent)
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                raise
            _fsync_directory(path.parent)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull(f"no room for blob {blob_id}: {exc}") from exc
            raise StoreUnavailable(f"cannot write blob {blob_id}: {exc}") from exc
        return blob_id

    def _make_directories(self, directory: Path) -> None:
        """Create the fan-out directories, fsyncing each parent whose entries changed."""
        missing = []
        current = directory
        while not current.exists():
            missing.append(current)
            if current == current.parent:
                break
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue
            _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
