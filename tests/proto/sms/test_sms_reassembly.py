"""Reassembler: order, duplicates, expiry, eviction, reference reuse."""

from __future__ import annotations

import pytest

from teleway.proto.sms import (
    IncompleteReason,
    Reassembler,
    ReassemblyError,
)

KEY = ("447700900001", "447700900002")


def test_out_of_order_parts_complete() -> None:
    r = Reassembler()
    assert r.add(KEY, 3, 3, 9, b"C", now=1.0) is None
    assert r.add(KEY, 1, 3, 9, b"A", now=2.0) is None
    assert r.pending == 1
    done = r.add(KEY, 2, 3, 9, b"B", now=3.0)
    assert done is not None
    assert done.payload == b"ABC"
    assert done.parts == (b"A", b"B", b"C")
    assert (done.reference, done.total, done.first_seen, done.completed_at) == (9, 3, 1.0, 3.0)
    assert done.key_source == KEY
    assert r.pending == 0
    assert r.stats().completed == 1


def test_duplicates_ignored_and_counted_first_copy_wins() -> None:
    r = Reassembler()
    assert r.add(KEY, 1, 2, 1, b"first", now=0) is None
    assert r.add(KEY, 1, 2, 1, b"other", now=1) is None
    assert r.duplicates == 1
    done = r.add(KEY, 2, 2, 1, b"!", now=2)
    assert done is not None
    assert done.payload == b"first!"
    assert done.duplicates == 1


def test_late_duplicate_after_completion_is_counted_not_a_new_group() -> None:
    r = Reassembler()
    r.add(KEY, 1, 2, 1, b"a", now=0)
    assert r.add(KEY, 2, 2, 1, b"b", now=1) is not None
    assert r.add(KEY, 2, 2, 1, b"b", now=2) is None
    assert r.pending == 0
    assert r.duplicates == 1
    # After the timeout the memory is gone and the same part opens a group again.
    assert r.expire(now=100, timeout=50) == []
    assert r.add(KEY, 2, 2, 1, b"b", now=101) is None
    assert r.pending == 1


def test_reference_reused_with_new_content_is_a_new_message() -> None:
    r = Reassembler()
    r.add(KEY, 1, 2, 5, b"old1", now=0)
    r.add(KEY, 2, 2, 5, b"old2", now=1)
    assert r.add(KEY, 1, 2, 5, b"new1", now=2) is None
    done = r.add(KEY, 2, 2, 5, b"new2", now=3)
    assert done is not None and done.payload == b"new1new2"


def test_groups_are_keyed_by_source_reference_and_total() -> None:
    r = Reassembler()
    r.add(("a", "b"), 1, 2, 1, b"x", now=0)
    r.add(("a", "c"), 1, 2, 1, b"y", now=0)
    r.add(("a", "b"), 1, 3, 1, b"z", now=0)
    r.add(("a", "b"), 1, 2, 2, b"w", now=0)
    assert r.pending == 4
    done = r.add(("a", "c"), 2, 2, 1, b"Y", now=1)
    assert done is not None and done.payload == b"yY"


def test_single_part_passes_straight_through() -> None:
    r = Reassembler()
    done = r.add(KEY, 1, 1, 0, b"solo", now=5)
    assert done is not None and done.payload == b"solo"
    assert r.pending == 0


def test_expire_reports_received_and_missing_parts() -> None:
    r = Reassembler()
    r.add(KEY, 2, 4, 7, b"B", now=10)
    r.add(KEY, 4, 4, 7, b"D", now=12)
    r.add(("x", "y"), 1, 2, 1, b"later", now=20)
    assert r.expire(now=15, timeout=10) == []
    (gone,) = r.expire(now=20, timeout=10)
    assert gone.reason is IncompleteReason.EXPIRED
    assert gone.parts == ((2, b"B"), (4, b"D"))
    assert gone.missing == (1, 3)
    assert (gone.first_seen, gone.last_seen, gone.reference, gone.total) == (10, 12, 7, 4)
    assert r.pending == 1
    assert r.stats().expired == 1
    # A part of the expired group arriving now starts afresh.
    assert r.add(KEY, 1, 4, 7, b"A", now=21) is None
    assert r.pending == 2


def test_bounded_memory_evicts_oldest_and_reports_it() -> None:
    r = Reassembler(max_pending=2)
    r.add(KEY, 1, 2, 1, b"one", now=0)
    r.add(KEY, 1, 2, 2, b"two", now=1)
    r.add(KEY, 1, 2, 3, b"three", now=2)
    assert r.pending == 2
    assert r.stats().evicted == 1
    reports = r.expire(now=3, timeout=100)
    assert [(x.reference, x.reason) for x in reports] == [(1, IncompleteReason.EVICTED)]
    assert reports[0].parts == ((1, b"one"),)
    assert r.expire(now=3, timeout=100) == []  # reported once
    # The evicted group's other part now opens a new group (and evicts the next oldest).
    assert r.add(KEY, 2, 2, 1, b"late", now=4) is None
    assert r.add(KEY, 2, 2, 3, b"!", now=5) is not None


def test_eviction_reports_are_bounded_too() -> None:
    r = Reassembler(max_pending=1)
    for ref in range(5):
        r.add(KEY, 1, 2, ref, b"x", now=ref)
    stats = r.stats()
    assert stats.evicted == 4
    assert stats.evicted_unreported == 3
    assert [x.reference for x in r.expire(now=5, timeout=100)] == [3]


@pytest.mark.parametrize(
    ("part", "total", "ref"),
    [(0, 2, 1), (3, 2, 1), (1, 0, 1), (1, 256, 1), (1, 2, -1)],
)
def test_bad_numbering_raises(part: int, total: int, ref: int) -> None:
    with pytest.raises(ReassemblyError):
        Reassembler().add(KEY, part, total, ref, b"", now=0)


def test_max_pending_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Reassembler(max_pending=0)
