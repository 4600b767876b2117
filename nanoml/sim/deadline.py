"""A wall-clock deadline for a whole command (`--timeout`), carried through every
step and child process it starts.

    d = Deadline(20)            # or Deadline(None): no limit
    d.left(cap=5)               # seconds a step may wait: min(cap, time left)
    d.check("reading results")  # raises TimedOut once the time is up
"""

from __future__ import annotations

import time

from ..errors import NanomlError


class TimedOut(NanomlError):
    """The command's --timeout passed (exit 1: the job could not be done in time)."""
    exit_code = 1


class Deadline:
    def __init__(self, seconds: float | None, clock=time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._end = None if seconds is None else clock() + seconds

    @classmethod
    def of(cls, value: "Deadline | float | None") -> "Deadline":
        return value if isinstance(value, Deadline) else cls(value)

    @property
    def expired(self) -> bool:
        return self._end is not None and self._clock() >= self._end

    def left(self, cap: float | None = None) -> float | None:
        """Seconds a step may still take: the time left, at most `cap` (None: unbounded)."""
        if self._end is None:
            return cap
        rest = max(0.0, self._end - self._clock())
        return rest if cap is None else min(cap, rest)

    def error(self, what: str) -> TimedOut:
        return TimedOut(f"timed out after {self.seconds:g} s (--timeout) while {what}",
                        hint="raise --timeout, or try a smaller model")

    def check(self, what: str) -> None:
        if self.expired:
            raise self.error(what)
