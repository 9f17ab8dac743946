"""Freshness decisions as pure functions (no I/O); see RFC 9111 §4 for the vocabulary.

Kinds: immutable entries never go stale; metadata entries are fresh until `expires_at`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    SERVE = "serve"            # fresh copy: answer from the store
    REVALIDATE = "revalidate"  # stale copy: conditional request upstream
    FETCH = "fetch"            # nothing stored: plain request upstream
    NEGATIVE = "negative"      # a recent 404/410 is remembered: answer 404 without asking


class Outcome(enum.Enum):
    STORE = "store"            # 200: store the new body
    REFRESH = "refresh"        # 304: keep the body, restart its TTL
    NOT_FOUND = "not_found"    # 404/410: remember for negative_ttl, answer 404
    SERVE_STALE = "stale"      # upstream failed but a stale copy exists: serve it
    FAIL = "fail"              # upstream failed and nothing to fall back on


@dataclass(frozen=True)
class Stored:
    """What the policy needs to know about a stored entry."""

    expires_at: float | None
    has_validator: bool


def decide(stored: Stored | None, negative: bool, now: float) -> Action:
    """What to do with a request, given the stored entry (if any) and the negative cache."""
    if stored is not None:
        if stored.expires_at is None or now < stored.expires_at:
            return Action.SERVE
        return Action.REVALIDATE
    if negative:
        return Action.NEGATIVE
    return Action.FETCH


# Statuses after which a stale copy is served instead of the error (stale-if-error, RFC 5861).
STALE_IF_ERROR = frozenset({408, 425, 429, 500, 502, 503, 504})


def classify(status: int | None, have_stored: bool) -> Outcome:
    """What an upstream answer means; status None stands for a connection error or timeout."""
    if status == 304 and have_stored:
        return Outcome.REFRESH
    if status is not None and 200 <= status < 300 and status != 206:
        return Outcome.STORE
    if status in (404, 410):
        return Outcome.NOT_FOUND
    if have_stored and (status is None or status in STALE_IF_ERROR or status >= 500):
        return Outcome.SERVE_STALE
    return Outcome.FAIL


def error_status(status: int | None, timed_out: bool) -> int:
    """The status depot answers when the upstream failed and nothing is cached."""
    if timed_out:
        return 504
    return 502
