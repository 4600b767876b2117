"""A model running in TFLM's host interpreter (the `tflite-micro` package):
the compute half of the virtual board.

`SimModel` loads a .tflite, describes its inputs/outputs the way the hello line
does, builds the synthetic inputs the firmware builds, runs one inference on
raw tensor bytes and returns dequantized outputs. It never prints.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, NanomlError
from ..model import tflite
from ..serial.synthetic import synthetic_inputs

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
                 measure_arena: bool = True):
        p = Path(path)
        self.model = tflite.load(p)           # raises ModelError (one line) when unusable
        self.path = str(p)
        self.sha256 = self.model.sha256
        data = bytes(self.model.raw)
        self.arena_size = arena_size or max(DEFAULT_MIN_ARENA, 10 * len(data))
        from tflite_micro.python.tflite_micro import runtime
        try:
            self._ip = runtime.Interpreter.from_bytes(data, arena_size=self.arena_size)
        except (RuntimeError, ValueError) as e:
            raise InputError(
                f"{p}: the TFLM host interpreter cannot run this model ({_first_line(e)})",
                hint="check the model with `nanoml inspect` (unsupported or custom ops?)") from None
        self.inputs = [_details(self._ip.get_input_details(i))
                       for i in range(len(self.model.main.inputs))]
        self.outputs = [_details(self._ip.get_output_details(i))
                        for i in range(len(self.model.main.outputs))]
        self.arena_used = self._measure_arena() if measure_arena else None

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
        for i, (t, data) in enumerate(zip(self.inputs, inputs)):
            arr = np.frombuffer(data, dtype=np.dtype(t.dtype).newbyteorder("<"))
            self._ip.set_input(arr.astype(t.dtype).reshape(t.shape), i)
        t0 = time.perf_counter_ns()
        try:
            self._ip.invoke()
        except RuntimeError as e:
            raise NanomlError(f"invoke failed in the TFLM host interpreter ({_first_line(e)})") from None
        us = (time.perf_counter_ns() - t0) // 1000
        raw = [np.array(self._ip.get_output(i)) for i in range(len(self.outputs))]
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

    # -- arena -------------------------------------------------------------
    def _measure_arena(self) -> int | None:
        """Arena bytes the host interpreter allocated, read from TFLM's
        RecordingMicroAllocator report (it prints to the C stderr)."""
        try:
            with tempfile.TemporaryFile() as tmp:
                saved = os.dup(2)
                try:
                    os.dup2(tmp.fileno(), 2)
                    self._ip.print_allocations()
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)
                tmp.seek(0)
                text = tmp.read().decode("utf-8", "replace")
        except OSError:
            return None
        m = re.search(r"Arena allocation total (\d+) bytes", text)
        return int(m.group(1)) if m else None


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
