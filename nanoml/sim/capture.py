"""The virtual board's raw sample capture (docs/protocol.md "Capture"): the
sample sources (a WAV or CSV file, or a synthetic signal) and the engine that
answers `cap` / `stop` / `dwin` and sends `cst` / `smp` / `cend` frames.

    srcs = sample_sources("words.wav")              # {"mic": ...}; None: synthetic, both
    eng = CaptureEngine(send, srcs, board="nano33ble_sense", firmware="nanoml-sim-0.x")
    eng.command(event)        # a CommandEvent from nanoml.serial.commands
    eng.step()                # sends the frames that are due; True while a take runs

A source is one stream: each take continues where the previous one stopped
(the virtual sensor only advances during takes), so take k of n samples is
exactly samples [k*n, (k+1)*n) of the file. At the end of a file the take ends
early with why=end. Samples are sent as read: WAV int16 as is, CSV values as
float32 (the board's IMU libraries give float): bit-exact both ways.
Never prints.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..pipeline.spec import IMU_CHANNELS, IMU_UNITS
from ..serial.protocol import SMP_IMU_BYTES, SMP_MIC_BYTES

MIC_RATE = 16000


def samples_per_frame(sensor: str, channels: int) -> int:
    """Samples in a full `smp` frame (the firmware uses the same rule)."""
    return SMP_MIC_BYTES // 2 if sensor == "mic" else SMP_IMU_BYTES // (4 * channels)


def channel_names(sensor: str, channels: int) -> list[str]:
    return ["mic"] if sensor == "mic" else list(IMU_CHANNELS[:channels])


def channel_units(sensor: str, channels: int) -> list[str]:
    return ["pcm16"] if sensor == "mic" else [IMU_UNITS[c[0]] for c in IMU_CHANNELS[:channels]]


class FileSamples:
    """A WAV (mic) or CSV (imu) file as one sample stream."""

    def __init__(self, path: str | Path, sensor: str):
        from .sources import source_kind
        kind = source_kind(path)
        if kind != sensor:
            from ..errors import UsageError
            raise UsageError(f"--source {path} feeds the {kind}, not the {sensor}",
                             hint="a .wav file for --sensor mic, a .csv file for --sensor imu")
        self.path, self.sensor, self.pos = str(path), sensor, 0
        self._data = {}
        if sensor == "mic":
            from ..pipeline.wav import read_wav
            self._data[1], _ = read_wav(path, expect_rate=MIC_RATE)

    def _of(self, channels: int):
        if channels not in self._data:
            from ..pipeline.imu import read_csv
            self._data[channels] = read_csv(self.path, list(IMU_CHANNELS[:channels]))
        return self._data[channels]

    def check(self, channels: int) -> None:
        """Read the file for that channel count now (errors before a take)."""
        self._of(channels)

    def read(self, n: int, channels: int):
        data = self._of(channels)
        out = data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


class SyntheticSamples:
    """A deterministic test signal: mic a 440 Hz tone with LCG noise (int16),
    IMU slow sines per channel (float32). Sample k depends on k only."""

    def __init__(self, sensor: str):
        self.path, self.sensor, self.pos = "synthetic", sensor, 0

    def check(self, channels: int) -> None:
        return None

    def read(self, n: int, channels: int):
        import numpy as np
        k = np.arange(self.pos, self.pos + n, dtype=np.int64)
        self.pos += n
        if self.sensor == "mic":
            s = (k * 1664525 + 1013904223) & 0xFFFFFFFF
            noise = ((s >> 16) & 0x3FF).astype(np.int64) - 512
            tone = np.round(8000 * np.sin(2 * np.pi * 440 * k / MIC_RATE)).astype(np.int64)
            return (tone + noise).astype(np.int16)
        c = np.arange(channels)
        v = np.sin(2 * np.pi * (k[:, None] / 100.0) * (0.5 + 0.25 * c[None, :]))
        return (v * (1 + c[None, :])).astype(np.float32)


def source_sensor(source: str | Path | None) -> str:
    """The sensor a source file feeds (mic for .wav, imu for .csv); None: mic."""
    if source is None or str(source) == "synthetic":
        return "mic"
    from .sources import source_kind
    return source_kind(source)


def sample_sources(source: str | Path | None, sensor: str | None = None) -> dict:
    """{sensor: samples} the virtual board plays: a file feeds its own sensor;
    the synthetic signal (None or "synthetic") feeds both."""
    if source is None or str(source) == "synthetic":
        return {s: SyntheticSamples(s) for s in ("mic", "imu")}
    sensor = sensor or source_sensor(source)
    return {sensor: FileSamples(source, sensor)}


class CaptureEngine:
    """Answers capture commands and plays takes from `source` (see the module doc)."""

    def __init__(self, send, sources: dict, *, board: str, firmware: str, sensors=("mic", "imu"),
                 imu_rate: int = 119, realtime: bool = False, windows: bool = False):
        from ..capture.link import board_revision
        self.send = send                  # send(msg_type, fields)
        self.sources = sources
        self.board, self.firmware = board, firmware
        self.revision = board_revision(board)
        self.sensors = tuple(sensors)
        self.imu_rate = imu_rate
        self.realtime = realtime
        self.take_no = 0
        self.take = None                  # dict of the running take
        self.det_windows = False
        self.windows = windows            # can send the raw window behind a detection
        self.samples_sent = 0
        self.frames_sent = 0

    @property
    def active(self) -> bool:
        return self.take is not None

    def command(self, ev) -> None:
        if ev.kind == "other":
            return
        if ev.kind == "rejected":
            self.send("cack", {"seq": ev.seq, "ok": False, "why": ev.why})
            return
        f = ev.fields
        why = self._refusal(ev.type, f)
        if why:
            self.send("cack", {"seq": ev.seq, "ok": False, "why": why})
            return
        self.send("cack", {"seq": ev.seq, "ok": True})
        if ev.type == "cap":
            self._begin(f)
        elif ev.type == "stop":
            self._finish("stop")
        else:
            self.det_windows = bool(f["on"])

    def _refusal(self, mtype: str, f: dict) -> str:
        if mtype == "stop":
            return "" if self.take is not None else "idle"
        if mtype == "dwin":
            return "" if self.windows or not f["on"] else "window"
        if self.take is not None:
            return "busy"
        sensor = f["sensor"]
        if sensor not in self.sensors or sensor not in self.sources:
            return "sensor"
        if sensor == "mic":
            return "rate" if f["rate"] != MIC_RATE else ("ch" if f["ch"] != 1 else "")
        if not 1 <= f["rate"] <= self.imu_rate:
            return "rate"
        return "" if f["ch"] in (3, 6, 9) else "ch"

    def _begin(self, f: dict) -> None:
        sensor, ch = f["sensor"], f["ch"]
        src = self.sources[sensor]
        src.check(ch)
        self.take_no = (self.take_no + 1) & 0xFFFFFFFF
        spf = samples_per_frame(sensor, ch)
        self.take = {"take": self.take_no, "sensor": sensor, "rate": f["rate"], "ch": ch,
                     "n": f["n"], "spf": spf, "seq": 0, "i": 0, "t0": time.monotonic(), "src": src}
        self.send("cst", {"take": self.take_no, "sensor": sensor, "rate": f["rate"], "ch": ch,
                          "n": f["n"], "fmt": "i16" if sensor == "mic" else "f32",
                          "names": channel_names(sensor, ch), "units": channel_units(sensor, ch),
                          "spf": spf, "board": self.board, "rev": self.revision,
                          "fw": self.firmware, "sim": True})

    def wait(self) -> float:
        """Seconds until the next frame is due (0 when not pacing, or idle: 1)."""
        t = self.take
        if t is None:
            return 1.0
        if not self.realtime:
            return 0.0
        due = t["t0"] + (t["i"] + t["spf"]) / t["rate"]
        return max(0.0, due - time.monotonic())

    def step(self, max_frames: int = 8) -> bool:
        """Send the frames that are due (at most max_frames); True while a take runs."""
        for _ in range(max_frames):
            t = self.take
            if t is None:
                return False
            if self.wait() > 0:
                return True
            want = t["spf"] if not t["n"] else min(t["spf"], t["n"] - t["i"])
            block = t["src"].read(want, t["ch"]) if want else None
            if block is not None and len(block):
                fields = {"take": t["take"], "seq": t["seq"], "i": t["i"], "n": len(block),
                          "d": block.astype("<i2" if t["sensor"] == "mic" else "<f4").tobytes()}
                fields["t_us"] = (t["i"] * 1_000_000 // t["rate"]) & 0xFFFFFFFF
                self.send("smp", fields)
                t["seq"] += 1
                t["i"] += len(block)
                self.frames_sent += 1
                self.samples_sent += len(block)
            if t["n"] and t["i"] >= t["n"]:
                self._finish("done")
            elif block is None or len(block) < want:
                self._finish("end")              # the file ended
        return self.take is not None

    def _finish(self, why: str) -> None:
        t = self.take
        if t is None:
            return
        self.send("cend", {"take": t["take"], "samples": t["i"], "frames": t["seq"], "drop": 0,
                           "why": why, "sim": True})
        self.take = None


def window_span(pipe, index: int) -> tuple[int, int]:
    """Samples [start, end) of the source behind window `index` of `pipe` (what
    the front end or the IMU window saw for that result; nanoml/pipeline/stream.py
    and imu.py cut them the same way)."""
    if pipe.source == "mic":
        last = pipe.frames - 1 + index * pipe.stride_frames        # its last front-end frame
        end = last * pipe.step_samples + pipe.window_samples
        return end - ((pipe.frames - 1) * pipe.step_samples + pipe.window_samples), end
    start = index * int(pipe.window["stride"])
    return start, start + int(pipe.window["samples"])


def send_window(send, take: int, pipe, data, det: int, *, board: str, firmware: str) -> None:
    """One detection window as a whole take: cst (det=), smp frames, cend."""
    from ..capture.link import board_revision
    mic = pipe.source == "mic"
    names = ["mic"] if mic else list(pipe.imu.channels)
    units = ["pcm16"] if mic else [IMU_UNITS[c[0]] for c in names]
    ch = len(names)
    spf = samples_per_frame("mic" if mic else "imu", ch)
    rate = int(pipe.sample_rate)
    send("cst", {"take": take, "sensor": "mic" if mic else "imu", "rate": rate, "ch": ch,
                 "n": len(data), "fmt": "i16" if mic else "f32", "names": names,
                 "units": units, "spf": spf, "board": board, "rev": board_revision(board),
                 "fw": firmware, "det": det, "sim": True})
    frames = 0
    for i in range(0, len(data), spf):
        block = data[i:i + spf]
        send("smp", {"take": take, "seq": frames, "i": i, "n": len(block),
                     "d": block.astype("<i2" if mic else "<f4").tobytes(),
                     "t_us": (i * 1_000_000 // rate) & 0xFFFFFFFF})
        frames += 1
    send("cend", {"take": take, "samples": len(data), "frames": frames, "drop": 0,
                  "why": "done", "sim": True})
