"""SlidingWindow.delay with events already allowed but not yet recorded (`pending`)."""

from __future__ import annotations

import pytest

from teleway.core.ratelimit import SlidingWindow


def test_pending_events_count_against_the_limit() -> None:
    window = SlidingWindow(3, per=1.0)
    window.record(10.0)
    window.record(10.5)
    assert window.delay(10.6) == 0.0  # one more fits
    # one allowed but not recorded yet: the window is full until 10.0 leaves
    assert window.delay(10.6, pending=1) == pytest.approx(0.4)
    # two pending: 10.5 must leave as well
    assert window.delay(10.6, pending=2) == pytest.approx(0.9)
    assert window.delay(11.2, pending=1) == 0.0  # 10.0 left: 10.5 plus the pending one


def test_pending_alone_filling_the_window_asks_again_later() -> None:
    window = SlidingWindow(2, per=1.0)
    assert window.delay(5.0, pending=1) == 0.0
    assert window.delay(5.0, pending=2) > 0
