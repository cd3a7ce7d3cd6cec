"""Local content-addressed blobs: round trip, idempotence, atomic writes, disk full."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from teleway.core.ports import StoreFull, StoreUnavailable
from teleway.store.blobs import LocalBlobStore


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_round_trip(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    data = b"%PDF-1.4 fake document\x00\xff" * 100
    blob_id = await blobs.put(data)
    assert blob_id == hashlib.sha256(data).hexdigest()
    assert await blobs.exists(blob_id)
    assert await blobs.get(blob_id) == data
    path = tmp_path / "blobs" / blob_id[:2] / blob_id[2:4] / blob_id
    assert path.read_bytes() == data
    assert await blobs.put(b"") == hashlib.sha256(b"").hexdigest()


async def test_put_is_idempotent(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    first = await blobs.put(b"same bytes")
    second = await blobs.put(b"same bytes")
    assert first == second
    assert len(_files(tmp_path)) == 1


async def test_unknown_and_malformed_ids(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    unknown = "0" * 64
    assert not await blobs.exists(unknown)
    with pytest.raises(KeyError):
        await blobs.get(unknown)
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63, ""):
        assert not await blobs.exists(bad)
        with pytest.raises(KeyError):
            await blobs.get(bad)


async def test_crash_before_rename_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = LocalBlobStore(tmp_path)

    def crash(*_args: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreUnavailable):
        await blobs.put(b"half written")
    monkeypatch.undo()
    blob_id = hashlib.sha256(b"half written").hexdigest()
    assert not await blobs.exists(blob_id)
    assert _files(tmp_path) == []  # no temporary file left behind either
    assert await blobs.put(b"half written") == blob_id
    assert await blobs.get(blob_id) == b"half written"


async def test_disk_full_is_store_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = LocalBlobStore(tmp_path)

    def full(_descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreFull):
        await blobs.put(b"no room")
    monkeypatch.undo()
    assert _files(tmp_path) == []
