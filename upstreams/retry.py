"""Retry policy for upstream requests: which failures to retry and how long to wait."""
from __future__ import annotations


def retryable(status: int | None) -> bool:
    """Whether the upstream client may retry: connect errors and 502/503/504 only."""
    return status is None or status in (502, 503, 504)


def backoff(attempt: int, base: float = 0.2, cap: float = 2.0) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped."""
    return min(cap, base * (2 ** (attempt - 1)))
