"""When to try a delivery again: exponential back-off with full jitter.

Full jitter (a uniform draw in [0, cap]) spreads retries of many deliveries that failed together,
so an upstream that comes back is not hit by all of them at once. The random draw is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    base_seconds: float = 10.0
    max_seconds: float = 3600.0

    def delay(self, attempts: int, draw: float) -> timedelta:
        """Delay before attempt number `attempts + 1`; `draw` is uniform in [0, 1)."""
        if attempts < 1:
            attempts = 1
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** min(attempts - 1, 32))
        # never less than a tenth of the ceiling, so a retry is not immediate
        return timedelta(seconds=ceiling * (0.1 + 0.9 * draw))

    def next_attempt(
        self, *, attempts: int, now: datetime, valid_until: datetime, draw: float
    ) -> datetime | None:
        """The next attempt time, or None when it would fall after the validity period."""
        when = now + self.delay(attempts, draw)
        return when if when < valid_until else None
