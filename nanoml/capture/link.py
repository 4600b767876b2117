"""The raw sample link: start takes on a board (or the virtual board) and get
its samples back with proof that nothing was lost.

    with open_link(port=None, sim="words.wav", sensor="mic") as link:
        link.info                        # LinkInfo: board, revision, firmware, sim, port
        start = link.start_take(16000)   # TakeStart: rate, channels, fmt, units, names...
        for ev in link.events():         # Block | Gap, then the iterator ends
            ...
        link.end                         # TakeEnd of that take: counts and gaps
        take = link.take(16000)          # or all at once: Take (start, blocks, gaps, end)

Protocol: docs/protocol.md "Capture" (cap / cack / cst / smp / cend). Every
`smp` frame carries its frame number and the index of its first sample, so a
lost or garbled frame shows up as a Gap (expected index, samples missing);
gaps are reported, never joined over. `TakeAssembler` does that bookkeeping
on parsed lines alone (monitor --save feeds it the lines it reads).

Errors (NanomlError, one line): BoardNotFound (no port, or the board went
away: BoardVanished), SensorAbsent (the board has no such sensor), CaptureError
(no answer, refused command, take never ended). Never prints.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BoardNotFound, NanomlError, UsageError
from ..serial.protocol import CAPTURE_FORMATS, Corrupt, Message, encode_line

SENSORS = ("mic", "imu")
MIC_RATE = 16000
IMU_CHANNEL_COUNTS = (3, 6, 9)
ANSWER_TIMEOUT_S = 3.0           # cap -> cack + cst
FRAME_TIMEOUT_S = 3.0            # silence within a take before it counts as lost


class CaptureError(NanomlError):
    """The board did not do what the capture asked (no answer, refused, cut)."""
    why: str | None = None       # the board's refusal token (cack why=), when refused


class SensorAbsent(UsageError):
    """The board (or its firmware) has no such sensor."""


class BoardVanished(BoardNotFound):
    """The port went away during a take (unplugged, reset, sim stopped)."""


@dataclass
class LinkInfo:
    board: str | None = None
    revision: str | None = None
    firmware: str | None = None
    sim: bool = False
    port: str | None = None
    proto: int | None = None
    sensors: list[str] = field(default_factory=list)   # what capture can use on this board
    serial_number: str | None = None                   # the USB serial number (a board's port)

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TakeStart:
    take: int
    sensor: str
    rate: int
    channels: int
    samples: int                 # asked for (0: until stop)
    fmt: str                     # i16 | f32
    names: list[str]
    units: list[str]
    spf: int
    board: str
    revision: str
    firmware: str
    det: int | None = None       # a detection window: the det's seq
    sim: bool = False

    @property
    def dtype(self) -> str:
        return {"i16": "<i2", "f32": "<f4"}[self.fmt]

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Block:
    """Consecutive samples of a take: [first, first + len(samples))."""
    first: int
    samples: object              # np.ndarray: int16 [n] (mic) or float32 [n, channels] (imu)
    seq: int                     # the smp frame number
    t_us: int | None = None      # board clock (micros()) at the first sample

    @property
    def end(self) -> int:
        return self.first + len(self.samples)

    # the names `nanoml capture` reads
    @property
    def index(self) -> int:
        return self.first

    @property
    def data(self):
        return self.samples

    @property
    def n(self) -> int:
        return len(self.samples)


@dataclass
class Gap:
    """Samples [first, first + missing) that did not arrive intact."""
    first: int
    missing: int
    frames: int                  # smp frames missing (by frame number)
    reason: str                  # seq (frames lost), drop (the device lost samples), end (tail)

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TakeEnd:
    take: int
    samples: int                 # the board: samples sent
    frames: int                  # the board: frames sent
    dropped: int                 # the board: samples lost on the device
    why: str                     # done | stop | end | error
    received: int = 0            # the host: samples that arrived intact
    corrupt: int = 0             # the host: garbled nanoml lines during the take
    gaps: list[Gap] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.gaps and self.dropped == 0 and self.received == self.samples

    @property
    def gap_samples(self) -> int:
        return sum(g.missing for g in self.gaps)

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "gaps"}
        d["gaps"] = [g.to_json() for g in self.gaps]
        d["complete"] = self.complete
        return d


@dataclass
class Take:
    start: TakeStart
    blocks: list[Block]
    end: TakeEnd

    def samples(self):
        """All samples in order (np.ndarray); raises CaptureError when the take
        has gaps (they are never joined over)."""
        import numpy as np
        if not self.end.complete:
            raise CaptureError(f"take {self.start.take} has {len(self.end.gaps)} gap(s), "
                               f"{self.end.gap_samples} sample(s) missing",
                               hint="record it again")
        if not self.blocks:
            shape = (0,) if self.start.sensor == "mic" else (0, self.start.channels)
            return np.zeros(shape, self.start.dtype)
        return np.concatenate([b.samples for b in self.blocks])


def _start_of(f: dict) -> TakeStart:
    return TakeStart(f["take"], f["sensor"], f["rate"], f["ch"], f["n"], f["fmt"],
                     list(f["names"]), list(f["units"]), f["spf"], f["board"], f["rev"],
                     f["fw"], f.get("det"), bool(f.get("sim", False)))


class TakeAssembler:
    """Parsed lines in, take events out (TakeStart, Block, Gap, TakeEnd).

    Only `cst`/`smp`/`cend` lines and corrupt nanoml lines matter; everything
    else gives nothing. A frame of another take, or one before any `cst`, is
    ignored (counted in `stray`)."""

    def __init__(self):
        self.start: TakeStart | None = None
        self.stray = 0
        self._reset()

    def _reset(self) -> None:
        self._seq = 0                # next frame expected
        self._next = 0               # next sample index expected
        self._received = 0
        self._corrupt = 0
        self._gaps: list[Gap] = []

    @property
    def active(self) -> bool:
        return self.start is not None

    def feed(self, p) -> list:
        if isinstance(p, Corrupt):
            if self.start is not None and p.text.startswith("~nm "):
                self._corrupt += 1
            return []
        if not isinstance(p, Message):
            return []
        f = p.fields
        if p.type == "cst":
            out = []
            if self.start is not None:           # a new take before the old one ended
                out.append(self._finish({"take": self.start.take, "samples": self._next,
                                         "frames": self._seq, "drop": 0, "why": "error"}))
            try:
                self.start = _start_of(f)
            except KeyError:
                self.stray += 1
                return out
            if f["fmt"] not in CAPTURE_FORMATS.values():
                self.start = None
                self.stray += 1
                return out
            self._reset()
            return out + [self.start]
        if self.start is None or f.get("take") != self.start.take:
            if p.type in ("smp", "cend"):
                self.stray += 1
            return []
        if p.type == "smp":
            return self._frame(f)
        if p.type == "cend":
            return [self._finish(f)]
        return []

    def _frame(self, f: dict) -> list:
        import numpy as np
        st = self.start
        item = 2 if st.fmt == "i16" else 4
        n, data = f["n"], f["d"]
        if n == 0 or n > st.spf or len(data) != n * st.channels * item:
            self._corrupt += 1               # a well-formed line that breaks the take's shape
            return []
        out = []
        seq, first = f["seq"], f["i"]
        if seq < self._seq or first < self._next:
            self._corrupt += 1               # an old or repeated frame: never re-joined
            return []
        if seq > self._seq or first > self._next:
            g = Gap(self._next, first - self._next, seq - self._seq,
                    "seq" if seq > self._seq else "drop")
            self._gaps.append(g)
            out.append(g)
        a = np.frombuffer(data, st.dtype)
        if st.sensor != "mic":
            a = a.reshape(n, st.channels)
        out.append(Block(first, a.astype(a.dtype.newbyteorder("=")), seq, f.get("t_us")))
        self._seq, self._next = seq + 1, first + n
        self._received += n
        return out

    def _finish(self, f: dict) -> TakeEnd:
        end = TakeEnd(f["take"], f["samples"], f["frames"], f["drop"], f["why"],
                      self._received, self._corrupt, list(self._gaps))
        if f["samples"] > self._next:        # frames missing at the end of the take
            end.gaps.append(Gap(self._next, f["samples"] - self._next,
                                max(0, f["frames"] - self._seq), "end"))
        self.start = None
        self._reset()
        return end

    def lost(self, why: str = "error") -> TakeEnd | None:
        """End the running take as cut off (no cend came); None when idle."""
        if self.start is None:
            return None
        return self._finish({"take": self.start.take, "samples": self._next,
                             "frames": self._seq, "drop": 0, "why": why})


def board_has_sensor(board_id: str, sensor: str) -> bool:
    from ..boards import get_board
    return sensor in get_board(board_id).sensors


def board_revision(board_id: str) -> str:
    """rev2 for the Rev2 profile, rev1 otherwise (boards/*.toml)."""
    return "rev2" if board_id.endswith("_rev2") else "rev1"


def check_request(sensor: str, rate: int | None, channels: int | None,
                  board_id: str | None = None) -> tuple[int, int]:
    """(rate, channels) for a take, defaults filled in; UsageError/SensorAbsent
    for what no board of that profile can do."""
    from ..boards import get_board
    if sensor not in SENSORS:
        raise UsageError(f"unknown sensor '{sensor}'; use one of: {', '.join(SENSORS)}")
    b = get_board(board_id) if board_id else None
    if b is not None and sensor not in b.sensors:
        raise SensorAbsent(f"the {b.name} has no {'microphone' if sensor == 'mic' else 'IMU'}",
                           hint="use --sensor imu, or the Sense board (--board nano33ble_sense)"
                           if sensor == "mic" else "pick a board with an IMU")
    if sensor == "mic":
        if rate not in (None, MIC_RATE) or channels not in (None, 1):
            raise UsageError(f"the microphone gives {MIC_RATE} samples/s of 1 channel",
                             hint="leave --rate and --channels out for --sensor mic")
        return MIC_RATE, 1
    odr = int((b.sensors.get("imu", {}).get("odr_hz") if b else None) or 119)
    rate = odr if rate is None else int(rate)
    channels = 9 if channels is None else int(channels)
    if not 1 <= rate <= odr:
        raise UsageError(f"IMU rate {rate} Hz: the {b.name if b else 'IMU'} gives 1 .. {odr} Hz",
                         hint=f"use --rate {min(max(rate, 1), odr)}")
    if channels not in IMU_CHANNEL_COUNTS:
        raise UsageError(f"IMU channels {channels}: use 3 (acc), 6 (+ gyro) or 9 (+ mag)")
    return rate, channels


class CaptureLink:
    """One open link to a board's raw sample stream (see the module doc)."""

    def __init__(self, ser, *, port: str | None = None, board_id: str | None = None,
                 sim_board=None):
        from ..serial.stream import StreamDecoder
        self.ser = ser
        self.board = sim_board              # the in-process virtual board, when sim
        self.info = LinkInfo(port=port, sim=sim_board is not None, board=board_id,
                             revision=board_revision(board_id) if board_id else None)
        if board_id:
            self.info.sensors = _board_sensors(board_id)
        self.decoder = StreamDecoder()
        self.assembler = TakeAssembler()
        self.end: TakeEnd | None = None     # the last take's end
        self.started: TakeStart | None = None
        self.corrupt = 0                    # garbled nanoml lines since the link opened
        self.source_ended = False           # the last take ended with the sim's file (why=end)
        self.other: list = []               # det/res/err lines seen during takes
        self.sensor = self.rate = self.channels = None
        self._cmd_seq = 0
        self._pending: list = []            # parsed lines read but not fed yet
        self._evq = deque()                 # take events not handed out yet

    @property
    def last_end(self) -> dict | None:
        """The last take's end as a dict (cend fields + the host's counts)."""
        return self.end.to_json() if self.end is not None else None

    @property
    def take_stats(self) -> dict:
        e = self.end
        return {"corrupt": e.corrupt if e else 0, "gaps": len(e.gaps) if e else 0,
                "dropped": e.dropped if e else 0, "received": e.received if e else 0}

    # -- lifecycle
    def close(self) -> None:
        try:
            if self.assembler.active:
                self.abort()
            try:
                self.ser.close()
            except OSError:
                pass
        finally:
            if self.board is not None:
                self.board.stop()
                self.board = None

    def __enter__(self) -> "CaptureLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading
    def _read(self) -> list:
        try:
            data = self.ser.read(self.ser.in_waiting or 1)
        except Exception as e:  # noqa: BLE001 - SerialException/OSError: the port is gone
            raise self._vanished(f"{type(e).__name__}: {e}") from None
        if self.board is not None and self.board.error is not None:
            raise CaptureError(f"the virtual board stopped: {self.board.error}")
        out = []
        for p in self.decoder.feed(data) if data else ():
            if isinstance(p, Message) and p.type == "hello":
                self._hello(p.fields)
            elif isinstance(p, Corrupt) and p.text.startswith("~nm "):
                self.corrupt += 1
            out.append(p)
        return out

    def _vanished(self, detail: str) -> BoardVanished:
        take = f" during take {self.started.take}" if self.assembler.active and self.started \
            else ""
        self.assembler.lost()
        return BoardVanished(f"the board went away{take} ({detail})",
                             hint="plug it back in (or restart the sim) and capture again; "
                                  "finished takes are kept")

    def _hello(self, f: dict) -> None:
        self.info.board = f.get("board") or self.info.board
        self.info.firmware = f.get("fw") or self.info.firmware
        self.info.proto = f.get("proto", self.info.proto)
        self.info.sim = bool(f.get("sim")) or self.info.sim
        if self.info.board:
            self.info.revision = board_revision(self.info.board)
            built = f.get("input")
            self.info.sensors = [s for s in _board_sensors(self.info.board) if s == built]

    def wait_hello(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for p in self._read():
                if isinstance(p, Message) and p.type == "hello":
                    return
        raise BoardNotFound(f"no hello from the board on {self.info.port} within {timeout:g} s",
                            hint="is a nanoml firmware running on it (nanoml flash MODEL "
                                 "--input mic|imu)? or use --sim")

    def _command(self, mtype: str, fields: dict, wait: bool = True,
                 timeout: float = ANSWER_TIMEOUT_S) -> dict | None:
        """Send one command; wait for its cack (resent every second: a board
        that just booted may miss the first). Raises CaptureError when refused."""
        self._cmd_seq = (self._cmd_seq + 1) & 0xFFFFFFFF
        seq = self._cmd_seq
        line = b"\n" + encode_line(mtype, {"seq": seq, **fields})
        end = time.monotonic() + timeout
        resend = 0.0
        while True:
            now = time.monotonic()
            if now >= resend:
                try:
                    self.ser.write(line)
                    self.ser.flush()
                except Exception as e:  # noqa: BLE001 - port gone
                    raise self._vanished(f"{type(e).__name__}: {e}") from None
                resend = now + 1.0
            if not wait:
                return None
            if now >= end:
                raise CaptureError(f"no answer to the capture command from the board within "
                                   f"{timeout:g} s",
                                   hint="is it running a nanoml firmware built by this version "
                                        "(nanoml build --input mic|imu), or `nanoml sim`?")
            got = self._read()
            for k, p in enumerate(got):
                if isinstance(p, Message) and p.type == "cack" and p.fields["seq"] == seq:
                    self._pending.extend(got[k + 1:])
                    if not p.fields["ok"]:
                        self._refused(mtype, p.fields.get("why", "?"))
                    return p.fields
                self._pending.append(p)

    def _refused(self, mtype: str, why: str) -> None:
        if why == "sensor":
            raise SensorAbsent(f"the board has no {self.sensor} for capture (or its firmware "
                               "was built for the other sensor)",
                               hint=f"flash a firmware built with --input {self.sensor}, or "
                                    "use the other --sensor")
        err = CaptureError(f"the board refused '{mtype}' (why={why})",
                           hint="see docs/protocol.md, capture refusals")
        err.why = why
        raise err

    def start_take(self, sensor: str, rate: int | None = None, channels: int | None = None,
                   samples: int = 0) -> TakeStart:
        """Ask for a take of `samples` samples (0: until stop); returns its
        TakeStart once the board has begun it. A take still running (its
        reader stopped early) is read to its end first."""
        self.sensor = sensor
        self.rate, self.channels = check_request(sensor, rate, channels, self.info.board)
        if not 0 <= samples <= 0xFFFFFFFF:
            raise UsageError(f"take length {samples}: 0 .. {0xFFFFFFFF} samples")
        if self.assembler.active or self._evq:
            for _ in self.events():
                pass
        self._evq.clear()
        self.end = None
        self.source_ended = False
        self._pending = []
        cap = {"sensor": sensor, "rate": self.rate, "ch": self.channels, "n": samples}
        try:
            self._command("cap", cap)
        except CaptureError as e:
            if e.why != "busy":
                raise
            self._command("stop", {})        # a take we aborted still runs: end it, once
            self._command("cap", cap)
        end = time.monotonic() + ANSWER_TIMEOUT_S
        while time.monotonic() < end:
            got = self._pending_or_read()
            for k, p in enumerate(got):
                for ev in self.assembler.feed(p):
                    if isinstance(ev, TakeStart) and ev.det is None:
                        self.started = ev
                        self._learn(ev)
                        self._pending = got[k + 1:] + self._pending
                        return ev
        raise CaptureError(f"the board accepted the take but sent no start within "
                           f"{ANSWER_TIMEOUT_S:g} s")

    def _learn(self, st: TakeStart) -> None:
        self.info.board, self.info.revision = st.board, st.revision
        self.info.firmware, self.info.sim = st.firmware, st.sim or self.info.sim

    def _pending_or_read(self) -> list:
        if self._pending:
            out, self._pending = self._pending, []
            return out
        return self._read()

    def abort(self) -> None:
        """Ask the board to end the running take now; never raises (Ctrl-C)."""
        try:
            self._command("stop", {}, wait=False)
        except Exception:  # noqa: BLE001 - best effort
            pass
        self.end = self.assembler.lost("stop") or self.end

    def set_detection_windows(self, on: bool) -> None:
        """Ask the firmware to send (or not) the raw window behind each detection."""
        self._command("dwin", {"on": bool(on)})

    def events(self, frame_timeout: float = FRAME_TIMEOUT_S):
        """Block and Gap events of the running take; ends after its cend (then
        `self.end` holds the TakeEnd). Raises BoardVanished when the port goes
        away or the board goes silent for `frame_timeout`. Events not taken
        yet (the caller stopped early) wait for the next call."""
        last = time.monotonic()
        while True:
            while self._evq:
                ev = self._evq.popleft()
                if isinstance(ev, TakeEnd):
                    self.end = ev
                    self.source_ended = ev.why == "end"
                    return
                if isinstance(ev, (Block, Gap)):
                    yield ev
            if not self.assembler.active:
                return
            got = self._pending_or_read()
            if got:
                last = time.monotonic()
            elif time.monotonic() - last > frame_timeout:
                self.end = self.assembler.lost()
                raise BoardVanished(f"take {self.started.take}: nothing from the board for "
                                    f"{frame_timeout:g} s",
                                    hint="is the board still attached? finished takes are kept")
            for p in got:
                self._evq.extend(self.assembler.feed(p))
                if isinstance(p, Message) and p.type in ("det", "res", "err"):
                    self.other.append(p)

    def take(self, sensor: str, rate: int | None = None, channels: int | None = None,
             samples: int = 0):
        """Start a take and yield its Blocks (chunk.index, chunk.t_us, chunk.data)
        until the board ends it; gaps show as index jumps (and in self.end.gaps)."""
        self.start_take(sensor, rate, channels, samples)
        for ev in self.events():
            if isinstance(ev, Block):
                yield ev

    def record(self, sensor: str, rate: int | None = None, channels: int | None = None,
               samples: int = 0) -> Take:
        """One whole take at once: Take(start, blocks, end)."""
        blocks = list(self.take(sensor, rate, channels, samples))
        return Take(self.started, blocks, self.end)


BoardGone = BoardVanished


def _board_sensors(board_id: str) -> list[str]:
    from ..boards import get_board
    return [s for s in SENSORS if s in get_board(board_id).sensors]


def open_link(port: str | None = None, sim: bool = False, source: str | Path | None = None, *,
              fast: bool = False, board: str | None = None, timeout: float = 10.0,
              sensor: str | None = None, baud: int = 115200) -> CaptureLink:
    """Open the raw sample link of a board (`port`, or the one found by USB id;
    waits up to `timeout` s for its hello) or of a virtual board (`sim`) that
    runs in this process on a pseudo-terminal, its `sensor` fed by `source`
    (a .wav/.csv file; None: a synthetic signal); `fast`: as fast as the host
    reads (else at the sensor's rate)."""
    from ..boards import get_board
    board_id = get_board(board).id
    vb = None
    if sim:
        from ..sim.capture import source_sensor
        from ..sim.sensor_board import SensorBoard
        if source is not None:
            check_request(sensor or source_sensor(source), None, None, board_id)
        vb = SensorBoard(source, sensor=sensor, board=board_id, realtime=not fast).start()
        path = vb.port
    else:
        from ..serial.ports import find_board_port
        found = find_board_port(board_id, port)
        path = found.device
    from ..serial.ports import open_port
    try:
        ser = open_port(path, baud, timeout=0.05)
    except BaseException:
        if vb is not None:
            vb.stop()
        raise
    link = CaptureLink(ser, port=path, board_id=board_id, sim_board=vb)
    link.info.serial_number = None if vb is not None else found.serial_number
    if vb is not None:
        link.info.firmware = vb.engine.firmware
        link.info.sensors = [s for s in vb.samples if s in link.info.sensors]
    else:
        try:
            link.wait_hello(timeout)
        except BaseException:
            ser.close()
            raise
    return link
