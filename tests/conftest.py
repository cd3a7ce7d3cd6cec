"""Suite-wide settings: hypothesis profiles (HYPOTHESIS_PROFILE=fuzz for `make fuzz`) and the
shared database fixtures of tests/db_fixtures.py."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["db_fixtures"]

settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=200_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
