"""Liveness and readiness of one worker process (a source runner or a sink worker).

The worker's main loop calls :meth:`Health.beat` as it goes round; the loop is
*alive* while the last beat is younger than ``stale_after_s`` (and before its
first beat: connecting and waiting for a consistent point are not checked). Readiness is a
set of named conditions, each either met (``None``) or blocked with a short
reason ("waiting for partition assignment", "standby", ...): the worker is
*ready* when every condition is met, every registered check passes, and no
error was reported in the last ``error_window_s`` seconds.

Thread-safe: the worker loop, an HA elector and the HTTP server thread
(:mod:`cdc.observability.server`) may call it at the same time. ``beat`` is a
single attribute store, cheap enough for a loop to call on every round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# A loop that has not beaten for this long is wedged (/healthz 503).
STALE_AFTER_S = 60.0
# An error this recent makes the worker not ready (/readyz 503).
ERROR_WINDOW_S = 15.0
MAIN = "main"
# The reason an HA elector gives while its process waits as the spare of a pair.
STANDBY = "standby"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One probe's answer: ``ok`` and the reasons why not (empty when ok)."""

    ok: bool
    reasons: tuple[str, ...]
    detail: dict[str, object]

    def body(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "unavailable", "reasons": list(self.reasons),
                **self.detail}


class Health:
    """The liveness heartbeat and the readiness conditions of one worker."""

    def __init__(
        self,
        role: str,
        name: str,
        *,
        initial: str | None = "starting",
        stale_after_s: float = STALE_AFTER_S,
        error_window_s: float = ERROR_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role = role
        self.name = name
        self.stale_after_s = stale_after_s
        self.error_window_s = error_window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat: float | None = None  # startup (connecting, slot creation) is exempt
        self._conditions: dict[str, str] = {} if initial is None else {MAIN: initial}
        self._checks: list[Callable[[], str | None]] = []
        self._error: tuple[float, str] | None = None
        self.state = "starting"  # a word for people (status pages, /readyz body)

    # -- what the worker calls -----------------------------------------------------------

    def beat(self) -> None:
        """The main loop went round (it is not wedged)."""
        self._last_beat = self._clock()

    def set_ready(self, reason: str | None, *, part: str = MAIN) -> None:
        """Condition ``part`` is met (``None``) or blocked for ``reason`` (e.g. "standby")."""
        with self._lock:
            if reason is None:
                self._conditions.pop(part, None)
            else:
                self._conditions[part] = reason

    def set_state(self, state: str) -> None:
        """What the worker does now ("snapshotting", "streaming", ...), shown in the bodies."""
        self.state = state

    def error(self, message: str) -> None:
        """An error happened now: not ready for the next ``error_window_s`` seconds."""
        with self._lock:
            self._error = (self._clock(), message[:300])

    @property
    def standby(self) -> bool:
        """Whether a condition is blocked for the reason "standby" (an HA pair's spare)."""
        with self._lock:
            return STANDBY in self._conditions.values()

    def add_check(self, check: Callable[[], str | None]) -> None:
        """A condition evaluated at probe time: returns a reason, or None when met."""
        with self._lock:
            self._checks.append(check)

    # -- what the probes read ------------------------------------------------------------

    def liveness(self) -> Verdict:
        last = self._last_beat
        age = 0.0 if last is None else self._clock() - last
        detail: dict[str, object] = {"role": self.role, "name": self.name,
                                     "seconds_since_beat": round(age, 3)}
        if age > self.stale_after_s:
            return Verdict(False, (f"main loop silent for {age:.0f}s "
                                   f"(limit {self.stale_after_s:.0f}s)",), detail)
        return Verdict(True, (), detail)

    def readiness(self) -> Verdict:
        now = self._clock()
        with self._lock:
            reasons = [r if part == MAIN else f"{part}: {r}"
                       for part, r in self._conditions.items()]
            checks = list(self._checks)
            err = self._error
        for check in checks:
            try:
                why = check()
            except Exception as e:  # a probe never fails on a broken check
                why = f"check failed: {e}"
            if why:
                reasons.append(why)
        if err is not None and now - err[0] < self.error_window_s:
            reasons.append(f"error {now - err[0]:.0f}s ago: {err[1]}")
        live = self.liveness()
        if not live.ok:
            reasons.extend(live.reasons)
        detail: dict[str, object] = {"role": self.role, "name": self.name, "state": self.state}
        return Verdict(not reasons, tuple(reasons), detail)
