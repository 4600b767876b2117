"""IMU streams: a CSV file as the board's IMU, cut into (overlapping) windows,
normalised per channel and converted to the model's input tensor.

    samples = read_csv("walk.csv", pipe.imu.channels)     # float32 [n, channels]
    s = ImuStream(pipe)
    for w in s.feed(samples):                              # rows of any count
        w.t_ms, w.raw, w.tensor

CSV: a header row naming the columns; the pipeline's channels (ax, ay, az in
g, gx, gy, gz in degrees/s, mx, my, mz in uT: the units of both Nano 33 BLE
Sense revisions' libraries) must all be there, in any order (a name may carry its unit: `ax[g]`); other columns
(a time column, labels) are ignored. One row per sample at the pipeline's
`rate_hz`.

Windows (the board does the same; docs/pipeline.md "Streaming"): window i
holds samples ``[i*stride, i*stride + samples)``; its time is the end of its
last sample, ``t_ms = (i*stride + samples) * 1000 // rate_hz``. Each value is
normalised ``x' = (x - offset[c]) / scale[c]`` in float32 (offset 0 and scale
1 when the pipeline has none), then stored as the firmware stores a float:
float32 tensors take ``x'``; integer ones ``q = round(x' / input_scale) +
zero_point`` (float32 division, halves away from zero), saturated to the
dtype. Never prints.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from ..arrays import regular_file_size
from ..errors import InputError, UsageError
from .spec import IMU_CHANNELS, Imu, Pipeline, check_against, conversion_for
from .stream import Window

MAX_CSV_BYTES = 256 << 20


def _hint(channels) -> str:
    return "the first row must name the columns: " + ",".join(channels)


def _column_name(header: str) -> str:
    """A column's channel name: `ax`, `AX` and `ax[g]` (a unit after it, as
    `nanoml capture` writes) are all `ax`."""
    h = header.strip().lower()
    if h.endswith("]") and "[" in h:
        h = h[:h.index("[")].strip()
    return h


_TIME_UNITS = {"t_us": 1e-6, "t_ms": 1e-3, "t_s": 1.0}


def csv_layout(path) -> tuple[int | None, float | None]:
    """(IMU channels the CSV carries: 3, 6, 9 or None, its sample rate in Hz from a
    t_us / t_ms / t_s column: None without one), from its header and first rows: what a
    source file gives when the command line does not say."""
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        head = [f.readline() for _ in range(33)]
    names = [_column_name(h) for h in head[0].split(",")] if head and head[0] else []
    n = None
    for k in (9, 6, 3):
        if set(IMU_CHANNELS[:k]) <= set(names):
            n = k
            break
    col = next((i for i, c in enumerate(names) if c in _TIME_UNITS), None)
    rate = None
    if col is not None:
        try:
            t = [float(r.split(",")[col]) * _TIME_UNITS[names[col]] for r in head[1:] if r.strip()]
        except (ValueError, IndexError):
            t = []
        steps = sorted(b - a for a, b in zip(t, t[1:]))
        if steps and steps[len(steps) // 2] > 0:
            r = 1.0 / steps[len(steps) // 2]
            rate = float(round(r)) if abs(r - round(r)) < 0.01 * r else round(r, 3)  # clock jitter
    return n, rate


def read_csv(path, channels: list[str]):
    """float32 [rows, len(channels)] of the named columns of a CSV file."""
    import numpy as np
    from pathlib import Path
    p = Path(path)
    size = regular_file_size(p, "CSV file", _hint(channels))
    if size > MAX_CSV_BYTES:
        raise InputError(f"{p}: {size:,} bytes is more than the {MAX_CSV_BYTES:,} a CSV file "
                         "may have here", "split it into shorter files")
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh)
            header = next(rows, None)
            if not header:
                raise InputError(f"{p}: empty CSV file", _hint(channels))
            names = [_column_name(h) for h in header]
            missing = [c for c in channels if c not in names]
            if missing:
                raise InputError(f"{p}: no column {', '.join(missing)} (the pipeline reads "
                                 f"{', '.join(channels)}; the file has {', '.join(names)})",
                                 _hint(channels))
            cols = [names.index(c) for c in channels]
            data = []
            for line, row in enumerate(rows, start=2):
                if not row or all(not x.strip() for x in row):
                    continue
                try:
                    data.append([float(row[i]) for i in cols])
                except (IndexError, ValueError):
                    raise InputError(f"{p}: line {line}: not a number in every column of "
                                     f"{', '.join(channels)}", _hint(channels)) from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a text CSV file", _hint(channels)) from None
    except OSError as e:
        raise InputError(f"{p}: cannot read the CSV file ({e.strerror or e})") from None
    arr = np.array(data, dtype=np.float64).reshape(-1, len(channels))
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{p}: a value is not finite (nan or inf)", _hint(channels))
    return arr.astype(np.float32)


def imu_pipeline(model, rate_hz: float = 100.0, stride: int | None = None,
                 offset=None, scale=None) -> Pipeline:
    """An IMU pipeline shaped for `model`'s one input: channels = the input's
    last dimension above 1 (3, 6 or 9: ax.. then gx.. then mx..), samples =
    elements / channels, stride default = samples (windows back to back)."""
    ins = model.input_tensors
    if len(ins) != 1:
        raise UsageError(f"{model.path}: the model has {len(ins)} input tensors; an IMU "
                         "pipeline fills exactly one", hint="use a model with one input")
    t = ins[0]
    dims = [int(d) for d in t.shape if int(d) > 1]
    c = dims[-1] if dims else 1
    if c not in (3, 6, 9) or t.elements % c:
        raise UsageError(f"{model.path}: input {t.shape} is not IMU samples of 3, 6 or 9 "
                         "channels", hint="the input's last dimension above 1 is the channels")
    samples = t.elements // c
    q = t.quant
    tensor = conversion_for(t.dtype, q.scale[0] if q else None, q.zero_point[0] if q else None,
                            1.0, integer=False)
    pipe = Pipeline(source="imu", window={"samples": samples, "stride": int(stride or samples),
                                          "frames": samples},
                    tensor=tensor, imu=Imu(list(IMU_CHANNELS[:c]), float(rate_hz),
                                           offset, scale))
    check_against(pipe, t.shape, t.dtype, sum(o.elements for o in model.output_tensors))
    return pipe


def imu_to_tensor(values, pipe: Pipeline):
    """Normalised values and the model's input values of samples `values`
    (float32 [samples, channels]); see the module doc."""
    import numpy as np
    x = np.asarray(values, dtype=np.float32)
    im = pipe.imu
    if im.offset is not None:
        x = x - np.asarray(im.offset, dtype=np.float32)
    if im.scale is not None:
        x = x / np.asarray(im.scale, dtype=np.float32)
    x = x.astype(np.float32)
    conv = pipe.tensor
    if conv.dtype == "float32":
        return x, x.reshape(-1).copy()
    dtypes = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}
    v = x / np.float32(conv.input_scale)
    r = np.where(v >= 0, np.floor(v + np.float32(0.5)), np.ceil(v - np.float32(0.5)))
    q = np.clip(r.astype(np.float64) + conv.zero_point, conv.qmin, conv.qmax)
    return x, q.astype(dtypes[conv.dtype]).reshape(-1)


@dataclass
class _State:
    pending: object
    consumed: int = 0         # samples dropped from the front of `pending` so far
    windows: int = 0
    skip: int = 0             # samples still to drop (a stride longer than the window)


class ImuStream:
    """Windows of an IMU pipeline over a sample stream (see the module doc)."""

    def __init__(self, pipe: Pipeline):
        import numpy as np
        if pipe.source != "imu" or pipe.imu is None:
            raise UsageError("an IMU stream needs an imu pipeline")
        self.pipe = pipe
        self.samples = int(pipe.window["samples"])
        self.stride = int(pipe.window["stride"])
        self.rate = float(pipe.imu.rate_hz)
        self._s = _State(np.zeros((0, len(pipe.imu.channels)), dtype=np.float32))

    def reset(self) -> None:
        import numpy as np
        self._s = _State(np.zeros((0, len(self.pipe.imu.channels)), dtype=np.float32))

    def feed(self, rows) -> list[Window]:
        import numpy as np
        s = self._s
        buf = np.concatenate([s.pending, np.asarray(rows, dtype=np.float32)])
        drop = min(s.skip, len(buf))
        buf, s.skip, s.consumed = buf[drop:], s.skip - drop, s.consumed + drop
        out = []
        off = 0
        while len(buf) - off >= self.samples:
            chunk = buf[off:off + self.samples]
            start = s.consumed + off
            norm, tensor = imu_to_tensor(chunk, self.pipe)
            t_ms = int((start + self.samples) * 1000 // self.rate)
            out.append(Window(s.windows, t_ms, norm, tensor, 0))
            s.windows += 1
            off += self.stride
        keep = min(off, len(buf))
        s.pending = buf[keep:].copy()
        s.consumed += keep
        s.skip += off - keep
        return out
