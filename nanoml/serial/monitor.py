"""The monitor's engine: read a board's port, decode lines, keep statistics,
survive resets and unplugging. It yields records (plain dicts, JSON-ready) and
never prints; `nanoml monitor` renders them.

Record types (each has "type" and "t", the host's Unix time):
  hello, res, det, end, op, arena, err, ack (protocol messages, fields as in
  docs/protocol.md), <other> (unknown types from newer firmware),
  foreign {text}, corrupt {reason, text, detail}, status {event, port, message}.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..errors import BoardNotFound, NanomlError
from .ports import find_board_port, open_port, reused_pty_link
from .protocol import PROTOCOL_VERSION, Corrupt, Foreign, Message, Parsed, printable
from .stream import StreamDecoder

RECONNECT_INTERVAL_S = 0.25
LATENCY_WINDOW = 1000          # results kept for the percentiles
RATE_WINDOW_S = 5.0
SEQ_MOD = 1 << 32              # res seq is a uint32: it wraps to 0 after 4294967295
# Most results a board can send per second: USB full speed (1.5 MB/s) over the
# shortest res line (~30 B). A forward jump in seq larger than this rate allows
# (plus SEQ_GAP_SLACK) is a reset or a stray counter, not results missed.
MAX_RESULT_RATE_HZ = 50_000
SEQ_GAP_SLACK = 1000


class Connector:
    """How to (re)open the port: a fixed path (--port, --sim's symlink) is
    reopened as it is; without one the board is found again by VID:PID (its
    tty name may change when it re-enumerates)."""

    def __init__(self, board=None, port: str | None = None, baud: int = 115200,
                 ports_fn: Callable[[], list] | None = None):
        self.board = board
        self.port = port
        self.baud = baud
        self.ports_fn = ports_fn
        self.current: str | None = port

    def connect(self):
        listing = self.ports_fn() if self.ports_fn else None
        if self.port:
            path = self.port
            if reused_pty_link(path):          # a dead sim's link: wait for the new one
                raise BoardNotFound(f"{path} points to a pseudo-terminal newer than the link "
                                    "(the virtual board that made it is gone)",
                                    hint="start `nanoml sim` again with the same --link")
        else:
            path = find_board_port(self.board, None, ports=listing).device
        ser = open_port(path, self.baud)
        self.current = path
        return ser


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


@dataclass
class MonitorStats:
    results: int = 0
    messages: int = 0
    foreign: int = 0
    corrupt: int = 0              # checksum / framing / overflow failures
    invalid: int = 0              # checksum fine, content breaks the table
    unknown: int = 0              # message types this host does not know
    missed: int = 0               # gaps in res seq
    restarts: int = 0             # res seq went back or jumped impossibly far (board reset)
    reconnects: int = 0
    acks_ok: int = 0
    acks_rejected: int = 0
    errors: int = 0
    dets: int = 0                 # detections (det frames) of the pipeline's recognizer
    last_det: dict | None = None
    # real-time accounting of a pipeline firmware (res fus= / drop=): front-end µs per
    # inference and the board's count of sensor samples dropped since boot
    feature_us_last: int | None = None
    feature_us_max: int | None = None
    dropped: int | None = None
    ended: bool = False           # the sim's file source ended (an `end` frame)
    lat_min: int | None = None
    lat_max: int | None = None
    last_seq: int | None = None
    last_out: list[float] = field(default_factory=list)
    last_top: int | None = None
    last_err: str | None = None
    sim: bool = False
    hello: dict | None = None
    first_t: float | None = None
    last_t: float | None = None
    _lat: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW), repr=False)
    _times: deque = field(default_factory=deque, repr=False)

    def update(self, p: Parsed, t: float) -> None:
        if isinstance(p, Foreign):
            self.foreign += 1
            return
        if isinstance(p, Corrupt):
            if p.reason == "invalid":
                self.invalid += 1
            else:
                self.corrupt += 1
            return
        self.messages += 1
        if not p.known:
            self.unknown += 1
            return
        f = p.fields
        if p.type == "res":
            self._result(f, t)
        elif p.type == "hello":
            self.hello = dict(f)
            self.sim = bool(f.get("sim"))
        elif p.type == "ack":
            if f["ok"]:
                self.acks_ok += 1
            else:
                self.acks_rejected += 1
        elif p.type == "err":
            self.errors += 1
            self.last_err = f"{f['code']}: {f['msg']}"
        elif p.type == "det":
            self.dets += 1
            self.last_det = dict(f)
        elif p.type == "end":
            self.ended = True

    def _result(self, f: dict, t: float) -> None:
        self.results += 1
        seq = f["seq"]
        if self.last_seq is not None:
            self._seq_step(seq, t)
        self.last_seq = seq
        us = f["us"]
        self._lat.append(us)
        self.lat_min = us if self.lat_min is None else min(self.lat_min, us)
        self.lat_max = us if self.lat_max is None else max(self.lat_max, us)
        self.last_out = f["out"]
        self.last_top = f["top"]
        if f.get("fus") is not None:
            self.feature_us_last = f["fus"]
            self.feature_us_max = max(self.feature_us_max or 0, f["fus"])
        if f.get("drop") is not None:
            self.dropped = f["drop"]
        if f.get("sim"):
            self.sim = True
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        self._times.append(t)
        while self._times and self._times[0] < t - RATE_WINDOW_S:
            self._times.popleft()

    def _seq_step(self, seq: int, t: float) -> None:
        """Count the results missed between the last seq and this one (modulo
        2^32: 4294967295 -> 0 is the next result), or a restart when the
        counter went back (a reset starts it again) or jumped further than a
        board can count in the time since the last result."""
        step = (seq - self.last_seq) % SEQ_MOD
        if step == 0 or step >= SEQ_MOD // 2:
            self.restarts += 1
            return
        gap = step - 1
        elapsed = max(0.0, t - self.last_t) if self.last_t is not None else 0.0
        if gap > elapsed * MAX_RESULT_RATE_HZ + SEQ_GAP_SLACK:
            self.restarts += 1
        else:
            self.missed += gap

    def rate(self, now: float | None = None) -> float | None:
        """Inferences per second over the last few seconds."""
        if len(self._times) < 2:
            return None
        now = self._times[-1] if now is None else now
        span = max(now, self._times[-1]) - self._times[0]
        if now - self._times[-1] > RATE_WINDOW_S:
            return 0.0
        return (len(self._times) - 1) / span if span > 0 else None

    def latency(self) -> dict:
        s = sorted(self._lat)
        return {"min": self.lat_min, "p50": percentile(s, 50), "p95": percentile(s, 95),
                "max": self.lat_max, "window": len(s)}

    def summary(self) -> dict:
        span = (self.last_t - self.first_t) if self.first_t is not None else 0.0
        return {
            "results": self.results, "messages": self.messages, "foreign": self.foreign,
            "corrupt": self.corrupt, "invalid": self.invalid, "unknown": self.unknown,
            "missed": self.missed, "restarts": self.restarts, "reconnects": self.reconnects,
            "acks_ok": self.acks_ok, "acks_rejected": self.acks_rejected, "errors": self.errors,
            "dets": self.dets,
            "feature_us": (None if self.feature_us_last is None else
                           {"last": self.feature_us_last, "max": self.feature_us_max}),
            "dropped_samples": self.dropped,
            "rate_hz": (self.results - 1) / span if span > 0 else None,
            "latency_us": self.latency(), "sim": self.sim,
            "hello": self.hello,
        }


def to_record(p: Parsed, t: float, labels: list[str] | None = None) -> dict:
    if isinstance(p, Message):
        rec = {"type": p.type, "t": t}
        rec.update(p.fields)
        if p.extra:
            rec["extra"] = p.extra
        if not p.known:
            rec["known"] = False
        if p.type == "res" and labels and 0 <= p.fields["top"] < len(labels):
            rec["label"] = labels[p.fields["top"]]
        return rec
    rec = p.to_json()
    rec["t"] = t
    rec["text"] = printable(rec["text"])        # a bare CR or an escape code stays on its line
    return rec


def raw_text(p: Parsed) -> str:
    return p.raw if isinstance(p, Message) else p.text


def status(event: str, port: str | None, message: str, t: float | None = None) -> dict:
    return {"type": "status", "t": time.time() if t is None else t, "event": event,
            "port": port, "message": message}


class Monitor:
    """Iterate over records from a board until a count, a duration or Ctrl-C."""

    def __init__(self, connector: Connector, labels: list[str] | None = None,
                 on_connect: Callable | None = None, tap: Callable | None = None):
        self.connector = connector
        self.labels = labels
        # on_connect(ser): after every (re)connection (monitor --save asks for the
        # detection windows there); tap(parsed): sees every decoded line first
        self.on_connect = on_connect
        self.tap = tap
        self.stats = MonitorStats()
        self.decoder = StreamDecoder()
        self.exit_reason: str | None = None
        # set by a signal handler: the loop ends between reads, after the batch in hand
        # was handed over (a result is never counted without being delivered)
        self.stop_requested = False
        self._ser = None

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except Exception:  # noqa: BLE001 - closing a dead port
                pass
            self._ser = None

    def records(self, count: int | None = None, duration: float | None = None,
                sleep: Callable[[float], None] = time.sleep) -> Iterator[dict]:
        """Yields records one by one (see `batches`)."""
        for batch in self.batches(count, duration, sleep):
            for rec, _raw in batch:
                yield rec

    def batches(self, count: int | None = None, duration: float | None = None,
                sleep: Callable[[float], None] = time.sleep) -> Iterator[list[tuple[dict, str]]]:
        """Yields lists of (record, raw line) pairs: all the lines completed by
        one read from the port (a status record comes alone, its raw text is
        its message). The first connection must succeed
        (raises a NanomlError otherwise); later disconnects are waited out.
        Stops after `count` results, `duration` seconds, or the `end` frame of a
        sim playing a file (exit_reason "count", "duration", "end")."""
        start = time.monotonic()
        deadline = start + duration if duration else None
        self._ser = self.connector.connect()
        self._connected()
        yield [_st("connected", self.connector.current, f"connected to {self.connector.current}")]
        try:
            while True:
                if self.stop_requested:
                    self.exit_reason = "interrupt"
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    self.exit_reason = "duration"
                    return
                try:
                    ser = self._ser
                    data = ser.read(ser.in_waiting or 1)
                except Exception as e:  # noqa: BLE001 - SerialException/OSError: port gone
                    tail = [self._record(p) for p in self.decoder.flush()]
                    if tail:
                        yield tail
                    self.close()
                    yield [_st("disconnected", self.connector.current,
                               f"lost {self.connector.current} ({_short(e)}); waiting for the "
                               "board to come back")]
                    ok = yield from self._reconnect(deadline, sleep)
                    if not ok:
                        self.exit_reason = "interrupt" if self.stop_requested else "duration"
                        return
                    continue
                if not data:
                    continue
                now = time.time()
                batch = []
                for p in self.decoder.feed(data):
                    batch.append(self._record(p, now))
                    if count is not None and self.stats.results >= count:
                        self.exit_reason = "count"
                        yield batch
                        return
                    if self.stats.ended:
                        self.exit_reason = "end"
                        yield batch
                        return
                if batch:
                    yield batch
        finally:
            self.close()

    def _record(self, p: Parsed, t: float | None = None) -> tuple[dict, str]:
        t = time.time() if t is None else t
        if self.tap is not None:
            self.tap(p)
        self.stats.update(p, t)
        rec = to_record(p, t, self.labels)
        if rec["type"] == "hello" and rec.get("proto") != PROTOCOL_VERSION:
            rec["warning"] = (f"firmware speaks protocol {rec.get('proto')}, this nanoml "
                              f"speaks {PROTOCOL_VERSION}: update the one that is older")
        return rec, raw_text(p)

    def _connected(self) -> None:
        if self.on_connect is not None:
            self.on_connect(self._ser)

    def _reconnect(self, deadline: float | None, sleep):
        last_msg = None
        while True:
            if self.stop_requested or (deadline is not None and time.monotonic() >= deadline):
                return False
            try:
                self._ser = self.connector.connect()
            except NanomlError as e:
                msg = e.message
                if msg != last_msg:
                    if "bootloader" in msg:
                        event, text = "bootloader", f"{msg}: {e.hint}"
                    elif isinstance(e, BoardNotFound):
                        event, text = "waiting", f"waiting for the board to come back ({msg})"
                    else:
                        event, text = "waiting", f"cannot reopen the port: {msg}" + (
                            f" ({e.hint})" if e.hint else "")
                    yield [_st(event, self.connector.current, text)]
                    last_msg = msg
                sleep(RECONNECT_INTERVAL_S)
                continue
            self.stats.reconnects += 1
            self._connected()
            yield [_st("reconnected", self.connector.current,
                       f"reconnected to {self.connector.current}")]
            return True


def _st(event: str, port: str | None, message: str) -> tuple[dict, str]:
    return status(event, port, message), message


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__
