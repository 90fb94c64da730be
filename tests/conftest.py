"""Shared test configuration: hypothesis profiles (``HYPOTHESIS_PROFILE=fuzz`` for long runs)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, max_examples=100)
settings.register_profile(
    "fuzz", deadline=None, max_examples=20_000, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
