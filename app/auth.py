"""The password gate of an exposed dashboard: nothing about any run is sent before the session gave the password.

The password comes from $KERASCOPE_PASSWORD (the command line refuses a non-loopback bind without it, unless
`--no-auth`). The entry script calls `require_password()` before it draws anything else; until the session is
authenticated the script stops there, so no page, run list or file runs. Attempts are compared in constant time and
failures are rate-limited for the whole process, since an attacker can open any number of sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import deque

import streamlit as st

from kerascope.app.cli import PASSWORD_ENV

AUTH_KEY = "kerascope_authenticated"
MAX_FAILURES = 5  # failed attempts allowed per FAILURE_WINDOW_S, across all sessions
FAILURE_WINDOW_S = 60.0


class FailureLimiter:
    """At most `max_failures` failed attempts in any `window_s` seconds; thread-safe, shared by every session.

    Args:
        max_failures: failures allowed inside one window.
        window_s: the sliding window, in seconds.

    Example:
    ```python
    limiter = FailureLimiter(5, 60.0)
    if limiter.wait_s() == 0 and not correct:
        limiter.failed()
    ```
    """

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def wait_s(self) -> float:
        """Seconds until the next attempt is checked (0: now)."""
        with self._lock:
            now = time.monotonic()
            while self._failures and now - self._failures[0] >= self.window_s:
                self._failures.popleft()
            if len(self._failures) < self.max_failures:
                return 0.0
            return self.window_s - (now - self._failures[0])

    def failed(self) -> None:
        with self._lock:
            self._failures.append(time.monotonic())


_limiter = FailureLimiter(MAX_FAILURES, FAILURE_WINDOW_S)  # module state: one per server process


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison (digests first, so that the time does not depend on the lengths either)."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())


def require_password() -> None:
    """Stop the script with a password form unless no password is configured or this session already gave it."""
    expected = os.environ.get(PASSWORD_ENV)
    if not expected or st.session_state.get(AUTH_KEY):
        return
    st.title("Kerascope")
    with st.form("kerascope_login"):
        given = st.text_input("Password", type="password", key="kerascope_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        wait = _limiter.wait_s()
        if wait > 0:
            st.error(f"Too many wrong passwords: try again in {wait:.0f} s.")
        elif password_matches(given, expected):
            st.session_state[AUTH_KEY] = True
            st.rerun()
        else:
            _limiter.failed()
            st.error("Wrong password.")
    st.stop()
