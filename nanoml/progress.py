"""Progress of long steps: domain code reports, the CLI shows.

Domain code never prints; it reports what it is doing::

    from nanoml import progress
    progress.report("flashing the profiling firmware")    # a new step
    progress.detail("sample 3 of 32")                      # within the current step
    progress.line(pio_output_line)                         # PlatformIO output: its step

(or it takes an `on_stage` callback, and the CLI passes `Progress.step`).
Nothing happens unless a command listens; the CLI does, with
`commands._common.show_progress`::

    with show_progress(enabled=not json_out) as p:
        result = domain.long_job(..., on_stage=p.step)

which draws one status line on stderr with rich, only when stderr is a terminal
(never with --json, in pipes, logs or CI). Reports may come from any thread.
"""

from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_active: list["Progress"] = []


def report(text: str) -> None:
    """Start a new step (shown as the status line)."""
    p = _current()
    if p is not None:
        p.step(text)


def detail(text: str) -> None:
    """Say how far the current step is ("sample 3 of 32")."""
    p = _current()
    if p is not None:
        p.detail(text)


def line(text: str) -> None:
    """A line of a tool's output (PlatformIO): shown as the step it names, if any."""
    p = _current()
    if p is not None:
        p.line(text)


def _current() -> "Progress | None":
    with _lock:
        return _active[-1] if _active else None


class Progress:
    """The steps of one command; `steps` keeps what was reported, `sink(text)` shows it."""

    def __init__(self, sink=None):
        self._sink = sink
        self.current = ""
        self.steps: list[str] = []

    def step(self, text: str) -> None:
        self.current = str(text)
        self.steps.append(self.current)
        self._show(self.current)

    def detail(self, text: str) -> None:
        self._show(f"{self.current}: {text}" if self.current else str(text))

    def line(self, text: str) -> None:
        from .firmware.pio import step_of
        s = step_of(text)
        if s:
            self.detail(s)

    def _show(self, text: str) -> None:
        if self._sink is not None:
            self._sink(text)


@contextlib.contextmanager
def listening(sink=None):
    """Collect the block's reports in a Progress (shown through `sink`, if given)."""
    p = Progress(sink)
    with _lock:
        _active.append(p)
    try:
        yield p
    finally:
        with _lock:
            _active.remove(p)
