"""A model running in TFLM's host interpreter (the `tflite-micro` package):
the compute half of the virtual board.

`SimModel` loads a .tflite, describes its inputs/outputs the way the hello line
does, builds the synthetic inputs the firmware builds, runs one inference on
raw tensor bytes and returns dequantized outputs. It never prints.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..model import tflite
from ..serial.synthetic import synthetic_inputs
from .deadline import Deadline
from .isolated import (MAX_ARENA_BYTES, HostInterpreter, HostInterpreterError,
                       host_arena_bisect, probe)

_TYPE_CODES = {name: code for code, name in tflite.TENSOR_TYPES.items()}
# Arena handed to the host interpreter when none is given. The host build has
# 64-bit pointers, so it needs more than the board; the board's real arena is
# set by the firmware build.
DEFAULT_MIN_ARENA = 64 * 1024


@dataclass(frozen=True)
class TensorInfo:
    dtype: str               # numpy/TFLite name: int8, uint8, int16, float32, ...
    shape: tuple[int, ...]
    nbytes: int
    scale: float | None      # per-tensor quantization (None for float tensors)
    zero_point: int | None

    @property
    def dtype_code(self) -> int:
        return _TYPE_CODES.get(self.dtype, -1)

    @property
    def quantized(self) -> bool:
        return self.scale is not None and np.dtype(self.dtype).kind in "iu"

    def spec(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape)}

    def to_json(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape), "nbytes": self.nbytes,
                "scale": self.scale, "zero_point": self.zero_point}


@dataclass
class Inference:
    outputs: list[float]         # dequantized, all output tensors flattened in order
    q: list[int] | None          # raw quantized outputs, when the outputs are integer
    top: int                     # argmax of output 0
    us: int                      # host time of invoke(), microseconds
    raw: list[np.ndarray]        # output tensors as the interpreter returned them

    def to_json(self) -> dict:
        return {"out": self.outputs, "q": self.q, "top": self.top, "us": self.us}


def _details(d: dict) -> TensorInfo:
    dtype = np.dtype(d["dtype"])
    shape = tuple(int(x) for x in d["shape"])
    q = d.get("quantization_parameters") or {}
    scales = list(q.get("scales", []))
    zps = list(q.get("zero_points", []))
    scale = float(scales[0]) if len(scales) == 1 else None
    zp = int(zps[0]) if len(zps) == 1 and scale is not None else None
    n = int(np.prod(shape)) if shape else 1
    return TensorInfo(dtype=dtype.name, shape=shape, nbytes=n * dtype.itemsize, scale=scale,
                      zero_point=zp)


class SimModel:
    """One model in the TFLM host interpreter."""

    def __init__(self, path: str | Path, arena_size: int | None = None,
                 measure_arena: bool = True, deadline: Deadline | float | None = None,
                 preserve: bool = False):
        p = Path(path)
        self.model = tflite.load(p)           # raises ModelError (one line) when unusable
        self.path = str(p)
        self.sha256 = self.model.sha256
        data = bytes(self.model.raw)
        deadline = Deadline.of(deadline)
        self.arena_size = default_arena(len(data)) if arena_size is None else arena_size
        n_in, n_out = len(self.model.main.inputs), len(self.model.main.outputs)
        start_timeout = None
        if arena_size is not None:
            start_timeout = _given_arena_timeout(self.model, data, arena_size, deadline)
        try:                                  # the interpreter lives in a worker process
            self._ip = HostInterpreter(data, self.arena_size, n_in, n_out, deadline=deadline,
                                       start_timeout=start_timeout, preserve=preserve)
        except HostInterpreterError as e:
            if arena_size is not None:
                _raise_if_arena_too_small(self.model, data, arena_size, deadline)
            raise HostInterpreterError(f"{p}: {e.message}", e.hint, e.status, e.step) from None
        self.start_seconds = self._ip.start_seconds
        self.inputs = [_details(d) for d in self._ip.inputs]
        self.outputs = [_details(d) for d in self._ip.outputs]
        self.preserve = preserve
        # kPreserveAllTensors records no allocations: no arena figure then
        self.arena_used = self._measure_arena() if measure_arena and not preserve else None

    def close(self) -> None:
        """Stop the interpreter's worker process."""
        self._ip.close()

    # -- description -------------------------------------------------------
    @property
    def ops(self) -> list[str]:
        """Distinct operator names in order of first use (the hello `ops=`)."""
        seen: list[str] = []
        for op in self.model.main.operators:
            if op.display_name not in seen:
                seen.append(op.display_name)
        return seen

    @property
    def input_bytes(self) -> int:
        return sum(t.nbytes for t in self.inputs)

    def to_json(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "arena_size": self.arena_size,
                "arena_used": self.arena_used, "ops": self.ops,
                "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs]}

    # -- running -----------------------------------------------------------
    def synthetic(self, seq: int) -> list[bytes]:
        """The firmware's synthetic input for inference `seq` (one bytes per input)."""
        return synthetic_inputs(seq, [(t.nbytes, t.dtype_code) for t in self.inputs])

    def split_payload(self, payload: bytes) -> list[bytes]:
        """An input frame's payload (all inputs concatenated) -> one bytes per input."""
        if len(payload) != self.input_bytes:
            raise ValueError(f"payload is {len(payload)} bytes, the inputs take {self.input_bytes}")
        out, off = [], 0
        for t in self.inputs:
            out.append(payload[off:off + t.nbytes])
            off += t.nbytes
        return out

    def run(self, inputs: list[bytes]) -> Inference:
        arrays = [np.frombuffer(data, dtype=np.dtype(t.dtype).newbyteorder("<"))
                  .astype(t.dtype).reshape(t.shape) for t, data in zip(self.inputs, inputs)]
        outs, us = self._ip.run(arrays)
        raw = [np.asarray(a) for a in outs]
        deq: list[float] = []
        q: list[int] | None = [] if all(t.quantized for t in self.outputs) else None
        for t, arr in zip(self.outputs, raw):
            flat = arr.reshape(-1)
            if t.quantized:
                deq.extend(((flat.astype(np.float64) - t.zero_point) * t.scale)
                           .astype(np.float32).tolist())
                if q is not None:
                    q.extend(int(v) for v in flat)
            else:
                deq.extend(flat.astype(np.float32).tolist())
        first = raw[0].reshape(-1) if raw else np.zeros(1)
        top = int(np.argmax(first)) if first.size else 0
        return Inference(outputs=deq, q=q, top=top, us=int(us), raw=raw)

    def reset(self) -> None:
        """Reset variable tensors (stateful models), as a board reset would."""
        self._ip.reset()

    def tensors(self, indices: list[int]) -> list[np.ndarray]:
        """Subgraph 0's tensors `indices` as the last run() left them (needs
        preserve=True: every tensor keeps its own memory)."""
        if not self.preserve:
            raise ValueError("SimModel(preserve=True) is needed to read intermediate tensors")
        return [np.asarray(a) for a in self._ip.tensors(indices)]

    # -- arena -------------------------------------------------------------
    def _measure_arena(self) -> int | None:
        """Arena bytes the host interpreter allocated, read from TFLM's
        RecordingMicroAllocator report."""
        m = re.search(r"Arena allocation total (\d+) bytes", self._ip.allocations())
        return int(m.group(1)) if m else None


def default_arena(model_bytes: int) -> int:
    """The host interpreter's arena when none is given."""
    return min(MAX_ARENA_BYTES, max(DEFAULT_MIN_ARENA, 10 * model_bytes))


def _given_arena_timeout(model, data: bytes, arena_size: int, deadline) -> float | None:
    """How long start-up with a user-given arena may take: a too-small arena can
    hang TFLM (LSTM models), so it gets 20x what the default arena took (>= 2 s).
    Raises UsageError at once when the arena is below the board's exact need."""
    try:
        from ..memory import predict_arena
        pred = predict_arena(model)
    except Exception:  # noqa: BLE001 - no prediction for this model: just try
        pred = None
    if pred is not None and pred.exact and 0 < arena_size < pred.min_bytes:
        _raise_if_arena_too_small(model, data, arena_size, deadline)
    main = model.main
    t0 = time.monotonic()
    if probe(data, default_arena(len(data)), len(main.inputs), len(main.outputs),
             deadline=deadline) != "ok":
        return None
    return max(2.0, 20 * (time.monotonic() - t0))


def _raise_if_arena_too_small(model, data: bytes, arena_size: int, deadline) -> None:
    """The given arena failed: if the default one works, say how much is needed."""
    main = model.main
    default = max(default_arena(len(data)), 2 * arena_size)
    if default > MAX_ARENA_BYTES or arena_size <= 0:
        return
    need = host_arena_bisect(data, default, lo=arena_size, deadline=deadline,
                             n_inputs=len(main.inputs), n_outputs=len(main.outputs))
    if need is None:
        return                               # the model fails with any arena
    board = ""
    try:
        from ..memory import predict_arena
        board = f"; nanoml predicts {predict_arena(model).min_bytes:,} B on the board"
    except Exception:  # noqa: BLE001 - the figure is extra information
        pass
    raise UsageError(
        f"an arena of {arena_size:,} B is too small for {Path(model.path).name}: "
        f"the host interpreter needs at least {need:,} B (64-bit build{board})",
        hint=f"pass --arena {need} or more, or leave --arena out (default "
             f"{default_arena(len(data)):,} B)")
