"""Back-off delays: exponential with jitter, permanent failures slow, Retry-After honoured."""

from __future__ import annotations

import pytest

from mitm_oauth.errors import TokenError
from mitm_oauth.oauth.backoff import MAX_RETRY_AFTER, Backoff

TRANSIENT = TokenError("timeout")
PERMANENT = TokenError("refused", status=401, error="invalid_client")


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [(1, 0.5, 1), (2, 1, 2), (3, 2, 4), (6, 16, 32), (7, 30, 60), (50, 30, 60)],
)
def test_transient_failures_double_up_to_the_maximum(failures, low, high):
    backoff = Backoff(initial=1, maximum=60)
    assert backoff.delay(failures, TRANSIENT, random=lambda: 0.0) == low
    assert backoff.delay(failures, TRANSIENT, random=lambda: 1.0) == high


def test_permanent_failures_wait_the_maximum_at_once():
    assert Backoff(maximum=60).delay(1, PERMANENT, random=lambda: 0.0) == 30


def test_retry_after_is_a_floor_capped_at_an_hour():
    slow = TokenError("busy", status=503, retry_after=90)
    assert Backoff().delay(1, slow, random=lambda: 1.0) == 90
    absurd = TokenError("busy", status=503, retry_after=86400)
    assert Backoff().delay(1, absurd) == MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (TokenError("timeout"), False),
        (TokenError("x", status=500), False),
        (TokenError("x", status=503), False),
        (TokenError("x", status=429), False),
        (TokenError("x", status=408), False),
        (TokenError("bad json", status=200), False),
        (TokenError("x", status=400), True),
        (TokenError("x", status=401), True),
        (TokenError("x", status=302), True),
        (TokenError("x", status=200, error="invalid_scope"), True),
        (TokenError("x", status=500, error="invalid_client"), True),
    ],
)
def test_permanent_or_transient(error, permanent):
    assert error.permanent is permanent
