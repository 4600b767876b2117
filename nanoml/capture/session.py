"""One `nanoml capture` run: takes recorded from a raw sample link into the
dataset, each written whole and listed in the manifest. Never prints: it
reports to `observer` (the CLI's live view) and through nanoml.progress.

    req = CaptureRequest(out, "yes", "mic", count=10, samples=16000, rate=16000,
                         channels=["audio"], countdown=3)
    res = CaptureResult()
    run_capture(link, req, res, observer)     # res.takes fills as takes are written

A take is committed (file, then its manifest line) with SIGINT and SIGTERM
held back, so an interrupt never leaves a file without its line; one that
arrives during a take discards that take (it only lived in memory) and ends
the run with every earlier take intact. A board that vanishes does the same.
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import progress
from ..errors import NanomlError
from . import takes as T
from .manifest import MANIFEST_VERSION, append_entry, read_manifest, sha256


@dataclass
class CaptureRequest:
    out: Path
    label: str
    sensor: str                  # "mic" or "imu"
    count: int
    samples: int                 # per take
    rate: float
    channels: list[str]          # ["audio"] or ["ax", ...]
    countdown: float = 3.0
    source: str | None = None    # what the sim plays (recorded in the manifest)
    extra: dict = field(default_factory=dict)   # more manifest keys (monitor --save)


@dataclass
class CaptureResult:
    takes: list[dict] = field(default_factory=list)     # manifest entries written
    stopped: str | None = None   # None (all done), "interrupted", "board-gone", "source-ended"
    error: NanomlError | None = None
    discarded: int = 0           # partial takes thrown away (0 or 1)

    @property
    def with_gaps(self) -> int:
        return sum(1 for t in self.takes if t["gaps"])


def run_capture(link, req: CaptureRequest, res: CaptureResult, observer=None) -> CaptureResult:
    """Record `req.count` takes from `link` (nanoml.capture.link); KeyboardInterrupt
    and the link's errors propagate after `res` holds what was written."""
    entries, _ = read_manifest(req.out)
    used = T.used_numbers(req.out, req.label, entries)
    number = max(used, default=0) + 1
    for i in range(req.count):
        progress.report(f"take {i + 1} of {req.count}")
        _countdown(req, i, observer)
        take = record_take(link, req, i, observer, res)
        if take is None:
            return res
        entry, number = commit_take(req, take, number, board_info(link), into=res.takes)
        number += 1
        if observer is not None:
            observer.take(i, entry)
    return res


def record_take(link, req: CaptureRequest, i: int, observer, res: CaptureResult):
    """One take's samples (a takes.Take), or None when the source ended before
    it was whole (`res.stopped` says so). The link: nanoml.capture.link."""
    # `smp i=` counts samples within the take from 0 (docs/protocol.md "Capture")
    buf = T.TakeBuffer(req.samples, req.sensor, req.channels, req.rate, first_index=0)
    last_shown = 0.0
    try:
        link.start_take(req.sensor, int(req.rate), len(req.channels), req.samples)
        for ev in link.events():
            if not hasattr(ev, "samples"):          # a Gap: the buffer sees the hole
                continue
            buf.add(ev.first, ev.t_us, ev.samples)
            now = time.monotonic()
            if observer is not None and (now - last_shown > 0.05 or buf.done):
                observer.level(i, buf.fraction, buf.last_level)
                last_shown = now
    except BaseException:
        res.discarded += 1 if buf.received else 0  # a take that had begun is thrown away
        with contextlib.suppress(Exception):
            link.abort()
        raise
    end = link.end
    if end is not None and end.why == "end" and not buf.done:
        res.discarded += 1 if buf.received else 0   # the sim's source ran out
        res.stopped = "source-ended"
        return None
    take = buf.finish(end.corrupt if end is not None else 0)
    if end is not None and end.dropped:             # lost on the device: not in the stream
        take.gaps += int(end.dropped)
        take.device_dropped = int(end.dropped)
    return take


def commit_take(req: CaptureRequest, take, number: int, info: dict,
                into: list | None = None) -> tuple[dict, int]:
    """Write the take's file, append its manifest line and the entry to `into`,
    with SIGINT/SIGTERM held back (an interrupt lands after all three)."""
    if req.sensor == "mic":
        data = T.encode_wav(take.samples, int(req.rate))
    else:
        data = T.encode_csv(take.samples, take.t_us, req.channels)
    apart = bool(take.gaps or take.corrupt)
    with _signals_held():
        rel, number = T.write_take(req.out, req.label, number, data, req.sensor, apart)
        entry = _entry(req, take, rel, data, info, apart)
        append_entry(req.out, entry)
        if into is not None:
            into.append(entry)
    return entry, number


def _entry(req: CaptureRequest, take, rel: str, data: bytes, info: dict, apart: bool) -> dict:
    from .. import __version__
    return {
        "v": MANIFEST_VERSION, "file": rel, "label": req.label, "sensor": req.sensor,
        "rate_hz": req.rate, "channels": list(req.channels),
        "units": T.channel_units(req.channels), "samples": int(len(take.samples)),
        "duration_s": round(len(take.samples) / req.rate, 6),
        "gaps": take.gaps, "gap_spans": take.gap_spans, "corrupt_lines": take.corrupt,
        "device_dropped": take.device_dropped,
        "kept_apart": apart, "sha256": sha256(data), "bytes": len(data),
        "first_index": take.first_index,
        "t_start_us": int(take.t_us[0]) if take.clock and len(take.t_us) else None,
        "board": info.get("board"), "revision": info.get("revision"),
        "firmware": info.get("firmware"), "serial_number": info.get("serial_number"),
        "sim": bool(info.get("sim")), "port": info.get("port"), "source": req.source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nanoml": __version__, **req.extra,
    }


def board_info(link) -> dict:
    """What the link knows about its board, as a dict (attributes or keys)."""
    info = getattr(link, "info", None)
    if info is None:
        return {}
    if hasattr(info, "to_json"):
        info = info.to_json()
    if not isinstance(info, dict):
        info = {k: getattr(info, k) for k in dir(info) if not k.startswith("_")
                and not callable(getattr(info, k))}
    return {k: info.get(k) for k in ("board", "revision", "firmware", "serial_number",
                                     "sim", "port", "sensors")}


def _countdown(req: CaptureRequest, i: int, observer) -> None:
    end = time.monotonic() + req.countdown
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        if observer is not None:
            observer.countdown(i, left)
        time.sleep(min(0.1, left))


@contextlib.contextmanager
def _signals_held():
    """SIGINT/SIGTERM wait until the block is done (then they are delivered)."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, ValueError, OSError):     # not the main thread / no POSIX masks
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
