"""Failed sign-ins per client address, in a sliding minute: more than allowed answers 429.

Tokens are 256 random bits, so guessing is hopeless anyway; the limit keeps a guesser from
turning the login form into load on the database. Kept in memory, per server process.
"""

from __future__ import annotations

import threading
import time
from collections import deque

WINDOW_S = 60.0
MAX_ADDRESSES = 10_000  # bounded memory whatever the number of clients


class LoginThrottle:
    def __init__(self, failures_per_window: int, window_s: float = WINDOW_S) -> None:
        self.limit = failures_per_window
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: it may now)."""
        now = time.monotonic()
        with self._lock:
            recent = self._recent(address, now)
            if len(recent) < self.limit:
                return 0.0
            return max(0.0, recent[0] + self.window_s - now)

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if address not in self._failures and len(self._failures) >= MAX_ADDRESSES:
                self._failures.pop(next(iter(self._failures)))
            self._recent(address, now).append(now)

    def _recent(self, address: str, now: float) -> deque[float]:
        recent = self._failures.setdefault(address, deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        return recent
