"""How long to leave a failing token endpoint alone before asking again."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import TokenError

MAX_RETRY_AFTER = 3600.0
"""An endpoint's `Retry-After` is honoured up to an hour: longer is an outage, not a pause."""


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter; permanent failures wait the longest.

    The n-th consecutive transient failure waits `initial · 2^(n-1)` seconds,
    capped at `maximum`; a permanent one (bad credentials, bad scope) waits
    `maximum` straight away. Each wait is drawn from [½, 1] of that ("equal
    jitter"), so proxies that failed together do not retry together, and it is
    never shorter than what the endpoint asked for in `Retry-After`.
    """

    initial: float = 1.0
    maximum: float = 60.0

    def delay(
        self, failures: int, error: TokenError, random: Callable[[], float] = random.random
    ) -> float:
        if error.permanent:
            base = self.maximum
        else:
            base = min(self.maximum, self.initial * 2 ** max(0, failures - 1))
        delay = base * (0.5 + random() / 2)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, MAX_RETRY_AFTER))
        return delay
