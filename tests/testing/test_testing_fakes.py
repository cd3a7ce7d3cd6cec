"""The clock and id fakes (the in-memory store is covered by tests/store's contract suite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from teleway.core.ids import ID_LENGTH
from teleway.testing.fakes import FakeClock, SequentialIds


def test_fake_clock() -> None:
    start = datetime(2030, 5, 1, tzinfo=UTC)
    clock = FakeClock(start)
    assert clock.now() == start
    assert clock.advance(1.5) == start + timedelta(seconds=1.5)
    assert clock.advance(timedelta(minutes=1)) == start + timedelta(seconds=61.5)
    clock.set(start)
    assert clock.now() == start
    assert FakeClock().now().tzinfo is not None
    with pytest.raises(ValueError):
        FakeClock(datetime(2030, 5, 1))
    with pytest.raises(ValueError):
        clock.set(datetime(2030, 5, 1))


def test_sequential_ids() -> None:
    ids = SequentialIds()
    made = [ids.new_id() for _ in range(50)]
    assert made == sorted(made)
    assert len(set(made)) == 50
    assert all(len(i) == ID_LENGTH for i in made)
    assert SequentialIds().new_id() == made[0]
    assert SequentialIds(start=3).new_id() == made[2]
