from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from teleway.core.ratelimit import SlidingWindow, TokenBucket


@given(st.integers(1, 20), st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_sliding_window_never_exceeds_limit_in_any_second(limit: int, gaps: list[float]) -> None:
    window = SlidingWindow(limit, 1.0)
    now = 0.0
    sent: list[float] = []
    for gap in gaps:
        now += gap
        while (wait := window.delay(now)) > 0:  # callers re-check after sleeping
            now += wait
        window.record(now)
        sent.append(now)
    for i, t in enumerate(sent):
        inside = [u for u in sent[i:] if u - t < 1.0]
        assert len(inside) <= limit


def test_sliding_window_delay_values() -> None:
    w = SlidingWindow(2, 1.0)
    w.record(0.0)
    w.record(0.2)
    assert w.delay(0.5) == 0.5
    assert w.delay(1.0) == 0.0


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, capacity=5, now=0.0)
    assert all(bucket.take(0.0) for _ in range(5))
    assert not bucket.take(0.0)
    assert abs(bucket.wait_time(0.0) - 0.1) < 1e-9
    assert bucket.take(0.1)
