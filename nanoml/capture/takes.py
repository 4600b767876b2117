"""Takes: the samples of one recording, checked for gaps and written as a file
of the dataset (`DIR/<label>/<label>.<n>.wav|csv`). Never prints.

    label = check_label("yes")                       # UsageError for a bad name
    out = prepare_out(Path("data"))                  # created, writable, not a file
    n = length_samples(parse_length("1.5"), 16000)   # 24000
    buf = TakeBuffer(n, "mic", channels=["audio"])   # chunks from the link go in
    buf.add(index, t_us, data)
    take = buf.finish(corrupt=0)                     # Take: samples, t_us, gaps, spans
    rel = write_take(out, "yes", take, rate=16000)   # "yes/yes.3.wav" (never overwrites)

A sample the board never delivered (a jump in its sample counter: a dropped
or corrupt line, a board-side overrun) is a gap: its place in the take is
filled with 0 so the timing of the rest stays true, and the take is kept
apart, in `DIR/_gaps/<label>/`, never mixed with the clean takes.
"""

from __future__ import annotations

import io
import os
import re
import wave
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..pipeline.spec import IMU_CHANNELS, IMU_UNITS

SENSORS = ("mic", "imu")
MIC_RATE = 16000
GAPS_DIR = "_gaps"
MANIFEST = "manifest.jsonl"
MAX_LABEL = 64
MAX_TAKE_SAMPLES = 16000 * 600          # 10 minutes of audio in memory per take
INDEX_MOD = 1 << 32                     # the board's sample counter is a uint32

_LENGTH = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|samples)?\s*")


# ---------------------------------------------------------------- checks

def check_label(label: str) -> str:
    """A label is a plain name: it becomes a folder and a file name prefix."""
    hint = "a label is a plain name: letters, digits, '-', '_' or '.', e.g. yes or noise_kitchen"
    if label is None or not label.strip():
        raise UsageError("--label must not be empty", hint)
    if any(ord(c) < 32 or ord(c) == 127 for c in label):
        raise UsageError("--label contains a control character", hint)
    if "/" in label or "\\" in label or os.sep in label or (os.altsep and os.altsep in label):
        raise UsageError(f"--label {label!r} contains a path separator", hint)
    if label in (".", "..") or label.startswith("."):
        raise UsageError(f"--label {label!r} would be a hidden or parent folder", hint)
    if label.startswith("_"):
        raise UsageError(f"--label {label!r}: names starting with '_' are reserved "
                         f"({GAPS_DIR}/ holds the takes with gaps)", hint)
    if label != label.strip() or ":" in label:
        raise UsageError(f"--label {label!r}: no spaces around it and no ':'", hint)
    if len(label) > MAX_LABEL:
        raise UsageError(f"--label is {len(label)} characters; at most {MAX_LABEL}", hint)
    return label


def parse_length(text: str) -> tuple[float, str]:
    """`--length`: seconds (`1.5`, `1.5s`), milliseconds (`500ms`) or samples
    (`16000samples`) -> (value, unit)."""
    m = _LENGTH.fullmatch(str(text))
    if not m:
        raise UsageError(f"--length {text!r}: give seconds (1.5 or 1.5s), milliseconds "
                         "(500ms) or samples (16000samples)")
    value, unit = float(m.group(1)), m.group(2) or "s"
    if unit == "samples" and not value.is_integer():
        raise UsageError(f"--length {text!r}: a count of samples is a whole number")
    if value <= 0:
        raise UsageError(f"--length {text!r} must be > 0")
    return value, unit


def length_samples(length: tuple[float, str], rate: float) -> int:
    value, unit = length
    n = int(value) if unit == "samples" else \
        round(value * rate / (1000.0 if unit == "ms" else 1.0))
    if n < 1:
        raise UsageError(f"--length {value:g}{unit} is less than one sample at {rate:g} Hz")
    if n > MAX_TAKE_SAMPLES:
        raise UsageError(f"--length {value:g}{unit} is {n:,} samples; one take holds at most "
                         f"{MAX_TAKE_SAMPLES:,}", hint="record more, shorter takes (--count)")
    return n


def prepare_out(out: Path, option: str = "--out") -> Path:
    """The dataset folder: created when missing; refused when it is a file, below
    a file, or cannot be written (probed)."""
    from ..atomic import os_error, probe_folder
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {p} is a file, not a folder",
                         hint="give a folder for the dataset (it is created when missing)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, p, "create the folder") from None
    probe_folder(p)
    if (p / MANIFEST).exists() and not (p / MANIFEST).is_file():
        raise UsageError(f"{p / MANIFEST} is not a regular file")
    return p


def check_sensor(board, sensor: str) -> None:
    """UsageError unless `board` (a nanoml.boards.Board) has `sensor`."""
    if sensor not in SENSORS:
        raise UsageError(f"unknown sensor '{sensor}'; use one of: {', '.join(SENSORS)}")
    if sensor not in board.sensors:
        has = ", ".join(s for s in SENSORS if s in board.sensors) or "none"
        raise UsageError(f"the {board.name} has no {'microphone' if sensor == 'mic' else 'IMU'} "
                         f"(its capture sensors: {has})",
                         hint="choose the board with --board (nanoml boards), or another --sensor")


def imu_channels(n: int) -> list[str]:
    if n not in (3, 6, 9):
        raise UsageError(f"--channels {n}: an IMU gives 3 (accelerometer), 6 (+ gyroscope) "
                         "or 9 (+ magnetometer) channels")
    return list(IMU_CHANNELS[:n])


def channel_units(channels: list[str]) -> list[str]:
    return ["int16" if c == "audio" else IMU_UNITS[c[0]] for c in channels]


# ---------------------------------------------------------------- one take

@dataclass
class Take:
    samples: object              # np.int16 [n] (mic) or np.float32 [n, channels] (imu)
    t_us: object                 # np.int64 [n]: the board's clock at each sample
    first_index: int             # the board's sample counter at the first sample
    gaps: int = 0                # samples never delivered (filled with 0)
    gap_spans: list = field(default_factory=list)   # [[offset, count], ...]
    corrupt: int = 0             # damaged lines seen during the take
    duplicates: int = 0          # samples delivered twice or outside the take (ignored)
    device_dropped: int = 0      # samples the board says it lost (not in the stream)
    clock: bool = False          # t_us is the board's clock (else nominal, from 0)


class TakeBuffer:
    """Collects the chunks of one take by the board's sample counter."""

    def __init__(self, n: int, sensor: str, channels: list[str], rate: float,
                 first_index: int | None = None):
        import numpy as np
        self.n = n
        self.sensor = sensor
        self.channels = channels
        self.rate = float(rate)
        shape = (n,) if sensor == "mic" else (n, len(channels))
        self.data = np.zeros(shape, dtype=np.int16 if sensor == "mic" else np.float32)
        self.t_us = np.zeros(n, dtype=np.int64)
        self.have = np.zeros(n, dtype=bool)
        self.first_index = first_index
        self.duplicates = 0
        self.received = 0
        self._t_base = None          # board clock of the take's first sample, unwrapped
        self.last_level = None
        self.clock = False

    def add(self, index: int, t_us: int, data) -> None:
        import numpy as np
        a = np.asarray(data)
        if self.sensor == "mic":
            a = a.reshape(-1).astype(np.int16, copy=False)
        else:
            a = a.reshape(-1, len(self.channels)).astype(np.float32, copy=False)
        if self.first_index is None:
            self.first_index = int(index)
        off = (int(index) - self.first_index) % INDEX_MOD
        if off >= self.n:                 # before the take's start, or past its end
            self.duplicates += len(a)
            return
        k = min(len(a), self.n - off)
        fresh = ~self.have[off:off + k]                 # a sample already here is kept
        self.duplicates += int(k - fresh.sum()) + (len(a) - k)
        where = off + np.flatnonzero(fresh)
        self.data[where] = a[:k][fresh]
        self.have[where] = True
        self.received += len(where)
        step = np.round(np.arange(k) * 1e6 / self.rate).astype(np.int64)
        if t_us is None:          # no clock (mic frames): the nominal time from the start
            t = np.round((off + np.arange(k)) * 1e6 / self.rate).astype(np.int64)
        else:                     # the board's clock (uint32 micros) unwrapped; samples
            self.clock = True     # within a frame at the rate from the frame's time
            now = int(t_us) % INDEX_MOD
            if self._t_base is None:
                self._t_base = now - round(off * 1e6 / self.rate)
            t = self._t_base + (now - self._t_base) % INDEX_MOD + step
        self.t_us[where] = t[fresh]
        self.last_level = level(a[:k], self.sensor)

    @property
    def done(self) -> bool:
        return self.received >= self.n

    @property
    def fraction(self) -> float:
        return self.received / self.n

    def finish(self, corrupt: int = 0) -> Take:
        import numpy as np
        missing = ~self.have
        spans = []
        if missing.any():
            d = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
            starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
            spans = [[int(s), int(e - s)] for s, e in zip(starts, ends)]
            # missing samples get a time at the nominal rate from their neighbours
            known = np.flatnonzero(self.have)
            if not self.clock:
                self.t_us = np.round(np.arange(self.n) * 1e6 / self.rate).astype(np.int64)
            elif len(known):
                idx = np.flatnonzero(missing)
                self.t_us[idx] = np.round(np.interp(idx, known, self.t_us[known])).astype(np.int64)
        return Take(self.data, self.t_us, self.first_index or 0, int(missing.sum()), spans,
                    int(corrupt), self.duplicates, clock=self.clock)


def level(a, sensor: str) -> float | None:
    """The live meter: RMS in dBFS of audio samples (-96 for silence), the mean
    accelerometer magnitude in g of IMU rows."""
    import numpy as np
    if len(a) == 0:
        return None
    if sensor == "mic":
        rms = float(np.sqrt(np.mean(np.square(a.astype(np.float64)))))
        return max(-96.0, 20.0 * np.log10(rms / 32768.0)) if rms > 0 else -96.0
    acc = a[:, :3].astype(np.float64)
    return float(np.mean(np.sqrt(np.sum(acc * acc, axis=1))))


# ---------------------------------------------------------------- files

def encode_wav(samples, rate: int = MIC_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def csv_header(channels: list[str]) -> str:
    """`t_us,ax[g],...`: each column with its unit (nanoml.pipeline.imu reads it back)."""
    return ",".join(["t_us"] + [f"{c}[{u}]" for c, u in zip(channels, channel_units(channels))])


def encode_csv(samples, t_us, channels: list[str]) -> bytes:
    """One row per sample: the board's clock (us), then each channel; values in
    the shortest text that gives the same float32 back (bit-exact)."""
    import numpy as np
    lines = [csv_header(channels)]
    strs = np.vectorize(lambda v: str(np.float32(v)), otypes=[object])(samples) \
        if len(samples) else np.empty((0, len(channels)), dtype=object)
    for t, row in zip(t_us.tolist(), strs.tolist()):
        lines.append(",".join([str(t)] + row))
    return ("\n".join(lines) + "\n").encode()


def take_name(label: str, n: int, sensor: str) -> str:
    return f"{label}.{n}.{'wav' if sensor == 'mic' else 'csv'}"


_NUMBERED = re.compile(r"(.+)\.(\d+)\.(wav|csv)")


def used_numbers(out: Path, label: str, entries: list[dict] = ()) -> set[int]:
    """Take numbers already used for `label`: its files (clean and kept apart)
    and its manifest lines."""
    used = set()
    for folder in (out / label, out / GAPS_DIR / label):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            m = _NUMBERED.fullmatch(name)
            if m and m.group(1) == label:
                used.add(int(m.group(2)))
    for e in entries:
        m = _NUMBERED.fullmatch(Path(str(e.get("file", ""))).name)
        if m and e.get("label") == label and m.group(1) == label:
            used.add(int(m.group(2)))
    return used


def write_take(out: Path, label: str, number: int, data: bytes, sensor: str,
               apart: bool) -> tuple[str, int]:
    """Write one take's file under `out` with the first free number >= `number`
    (never replacing a file); returns (path relative to `out`, number)."""
    from ..atomic import create_new, os_error
    folder = out / GAPS_DIR / label if apart else out / label
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, folder, "create the folder") from None
    while True:
        rel = folder.relative_to(out) / take_name(label, number, sensor)
        try:
            create_new(out / rel, data, "take")
            return rel.as_posix(), number
        except FileExistsError:
            number += 1
