"""Rate limits with time passed in.

`SlidingWindow` is exact over any interval of `per` seconds (an upstream that allows 50 msg/s
never sees 51 inside any one second); `TokenBucket` allows bursts up to its capacity and is used
where a client's average rate matters (per-account throughput, authentication failures).
"""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    def __init__(self, limit: int, per: float = 1.0) -> None:
        if limit < 1 or per <= 0:
            raise ValueError("limit must be >= 1 and per > 0")
        self.limit = limit
        self.per = per
        self._times: deque[float] = deque()

    def delay(self, now: float, pending: int = 0) -> float:
        """Seconds to wait before the next event is allowed (0 when allowed now). `pending`:
        events already allowed that will be recorded at `now` or later."""
        while self._times and now - self._times[0] >= self.per:
            self._times.popleft()
        over = len(self._times) + pending - self.limit  # >= 0: this many must leave first
        if over < 0:
            return 0.0
        if over >= len(self._times):  # the pending ones alone fill the window: ask again later
            return self.per
        # never 0 here: rounding can make the difference vanish while the oldest is still inside
        return max(self._times[over] + self.per - now, 1e-9)

    def record(self, now: float) -> None:
        self._times.append(now)


class TokenBucket:
    def __init__(self, rate: float, capacity: float | None = None, *, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._stamp = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._stamp = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Take `amount` tokens if available; False (and nothing taken) otherwise."""
        self._refill(now)
        if self._tokens >= amount:
            self._tokens -= amount
            return True
        return False

    def wait_time(self, now: float, amount: float = 1.0) -> float:
        self._refill(now)
        return max(0.0, (amount - self._tokens) / self.rate)
