"""Example counts for Hypothesis tests that the active profile (dev or ci) scales."""

from __future__ import annotations

from hypothesis import settings

BASE_EXAMPLES = 100  # Hypothesis' own default: what a test's written count is relative to


def examples(count: int) -> int:
    """`count` examples at Hypothesis' default, scaled like the loaded profile's
    max_examples (a quarter in dev, twice in ci); never fewer than 10."""
    active = settings()  # a fresh settings object inherits the loaded profile
    return max(10, count * active.max_examples // BASE_EXAMPLES)
