"""`nanoml validate`: run inputs on the board (serial `in` frames), compare its
outputs with the reference host interpreter (the `tflite-micro` package) on the
same inputs: max abs error, RMSE, top-1 agreement, worst quantized difference.

Works on any line that speaks the protocol: a board running the serial-input
firmware for this model, or the virtual board (`--sim`). Never prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, NanomlError, UsageError
from ..serial.protocol import Message


# --------------------------------------------------------------------- inputs

def load_inputs(path: Path, sim_model) -> list[list[bytes]]:
    """Samples from a .npy (one input tensor: shape (N, *input) or the input
    shape itself) or .npz (one array per input, in the model's input order), as
    raw tensor bytes per input. Float data for a quantized input is quantized with
    the input's scale and zero point; integer data must match the input dtype."""
    import numpy as np
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file", "pass a .npy (or .npz) file of inputs")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                arrays = [z[k] for k in z.files]
        else:
            arrays = [np.load(p, allow_pickle=False)]
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{p}: not a readable NumPy file ({e})",
                         "save the inputs with numpy.save (or numpy.savez for several inputs)") from None
    specs = sim_model.inputs
    if len(arrays) != len(specs):
        raise InputError(f"{p}: {len(arrays)} array(s) for a model with {len(specs)} input(s)",
                         "give one array per model input (.npz in input order)")
    per_input = []
    n = None
    for arr, t in zip(arrays, specs):
        shape = tuple(t.shape)
        if tuple(arr.shape) == shape:
            arr = arr[None, ...]
        elif arr.ndim == len(shape) and shape and shape[0] == 1 and tuple(arr.shape[1:]) == shape[1:]:
            arr = arr[:, None, ...].reshape((arr.shape[0],) + shape)   # (N, ...) batch of samples
        elif tuple(arr.shape[1:]) == shape:
            pass
        elif arr.ndim >= 1 and int(np.prod(arr.shape[1:])) == int(np.prod(shape)):
            arr = arr.reshape((arr.shape[0],) + shape)
        else:
            raise InputError(f"{p}: array of shape {tuple(arr.shape)} does not fit the input "
                             f"{t.dtype}{list(shape)}", "shape it (N, *input_shape)")
        per_input.append(_to_dtype(arr, t, p))
        n = arr.shape[0] if n is None else min(n, arr.shape[0])
    if not n:
        raise InputError(f"{p}: no samples", "the file holds an empty array")
    return [[per_input[j][i].tobytes() for j in range(len(specs))] for i in range(n)]


def _to_dtype(arr, t, p):
    import numpy as np
    dt = np.dtype(t.dtype)
    if arr.dtype == dt:
        return np.ascontiguousarray(arr).astype(dt.newbyteorder("<"))
    if arr.dtype.kind == "f" and dt.kind in "iu":
        if not t.quantized:
            raise InputError(f"{p}: float data for a non-quantized {t.dtype} input")
        from ..model.quant import quantize
        return quantize(arr, dt, t.scale, t.zero_point).astype(dt.newbyteorder("<"))
    if dt.kind == "f":
        return arr.astype(dt.newbyteorder("<"))
    raise InputError(f"{p}: {arr.dtype} data for a {t.dtype} input",
                     f"save the inputs as float32 (nanoml quantizes them) or as {t.dtype}")


# --------------------------------------------------------------------- result

@dataclass
class SampleResult:
    index: int
    top_device: int
    top_reference: int
    max_abs_error: float
    rmse: float
    max_lsb: int | None           # worst raw quantized difference, when outputs are integer

    def to_json(self) -> dict:
        return {"index": self.index, "top_device": self.top_device,
                "top_reference": self.top_reference, "max_abs_error": self.max_abs_error,
                "rmse": self.rmse, "max_lsb": self.max_lsb}


@dataclass
class ValidateResult:
    source: str                   # "device" | "sim"
    model: str
    samples: list[SampleResult]
    atol: float
    min_top1: float
    output_scale: float | None
    device_us: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def max_abs_error(self) -> float:
        return max((s.max_abs_error for s in self.samples), default=0.0)

    @property
    def rmse(self) -> float:
        if not self.samples:
            return 0.0
        return math.sqrt(sum(s.rmse ** 2 for s in self.samples) / len(self.samples))

    @property
    def top1_agreement(self) -> float:
        if not self.samples:
            return 0.0
        return sum(s.top_device == s.top_reference for s in self.samples) / len(self.samples)

    @property
    def max_lsb(self) -> int | None:
        vals = [s.max_lsb for s in self.samples if s.max_lsb is not None]
        return max(vals) if vals else None

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.atol and self.top1_agreement >= self.min_top1

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_json(self) -> dict:
        return {"source": self.source, "model": self.model, "samples": len(self.samples),
                "max_abs_error": self.max_abs_error, "rmse": self.rmse,
                "top1_agreement": self.top1_agreement, "max_lsb": self.max_lsb,
                "tolerances": {"atol": self.atol, "min_top1": self.min_top1},
                "output_scale": self.output_scale, "passed": self.passed,
                "device_latency_us": ({"mean": sum(self.device_us) / len(self.device_us),
                                       "max": max(self.device_us)} if self.device_us else None),
                "per_sample": [s.to_json() for s in self.samples], "notes": self.notes,
                "exit_code": self.exit_code}


def default_atol(sim_model) -> tuple[float, float | None]:
    """(atol, output scale): one quantization step of the outputs (kernels may
    round differently on the board), 1e-4 for float outputs."""
    scales = [t.scale for t in sim_model.outputs if t.quantized]
    if scales and len(scales) == len(sim_model.outputs):
        s = max(scales)
        return s * 1.001, s
    return 1e-4, None


def compare(index: int, dev_out: list[float], dev_q: list[int] | None, dev_top: int,
            ref) -> SampleResult:
    n = min(len(dev_out), len(ref.outputs))
    diffs = [abs(float(dev_out[i]) - float(ref.outputs[i])) for i in range(n)]
    if len(dev_out) != len(ref.outputs):
        diffs.append(float("inf"))
    max_abs = max(diffs, default=0.0)
    rmse = math.sqrt(sum(d * d for d in diffs) / len(diffs)) if diffs else 0.0
    lsb = None
    if dev_q is not None and ref.q is not None and len(dev_q) == len(ref.q):
        lsb = max((abs(int(a) - int(b)) for a, b in zip(dev_q, ref.q)), default=0)
    return SampleResult(index, int(dev_top), int(ref.top), max_abs, rmse, lsb)


# --------------------------------------------------------------------- the run

def validate_stream(link, sim_model, samples: list[list[bytes]], source: str,
                    atol: float | None = None, min_top1: float = 1.0,
                    frame_timeout: float = 30.0, hello_timeout: float = 7.0) -> ValidateResult:
    """Run `samples` through `link` (a nanoml.serial.link.BoardLink) and compare each
    result with `sim_model` (the host reference interpreter) on the same bytes."""
    hello = link.wait_hello(hello_timeout)
    if hello.get("model") and hello["model"] != sim_model.sha256[:12]:
        raise NanomlError(f"the board runs another model (hello model={hello['model']}, "
                          f"this model is {sim_model.sha256[:12]})",
                          hint="flash this model: nanoml flash MODEL --input serial")
    if hello.get("input") and hello["input"] != "serial":
        raise NanomlError(f"the board's input source is {hello['input']}, not serial",
                          hint="flash the serial-input firmware: nanoml flash MODEL --input serial")
    a, scale = default_atol(sim_model)
    res = ValidateResult(source=source, model=sim_model.path, samples=[],
                         atol=a if atol is None else atol, min_top1=min_top1, output_scale=scale)
    for i, inputs in enumerate(samples):
        f = link.infer(b"".join(inputs), timeout=frame_timeout)
        ref = sim_model.run(inputs)
        res.samples.append(compare(i, list(f.get("out") or []), f.get("q"), int(f.get("top", -1)),
                                   ref))
        if f.get("us") is not None:
            res.device_us.append(int(f["us"]))
        if f.get("sim") and source == "device":
            res.source = "sim"
    errors = [p for p in link.other if isinstance(p, Message) and p.type == "err"]
    if errors:
        res.notes.append(f"the board reported {len(errors)} error line(s): "
                         + "; ".join(f"{e.fields.get('code')}: {e.fields.get('msg')}"
                                     for e in errors[:3]))
    return res


def validate(model: Path, inputs: Path, port: str | None = None, sim: bool = False,
             atol: float | None = None, min_top1: float = 1.0, limit: int | None = None,
             board_id: str | None = None, frame_timeout: float = 30.0) -> ValidateResult:
    from ..serial.link import BoardLink
    from ..sim.model import SimModel
    ref_model = SimModel(model)
    samples = load_inputs(inputs, ref_model)
    if limit:
        samples = samples[:limit]
    if sim:
        from ..sim.board import VirtualBoard
        # the virtual board runs its own host interpreter (a second instance)
        vb = VirtualBoard(model, input="serial", rate_hz=0, board=board_id or "nano33ble_sense")
        with vb:
            with BoardLink.open(vb.port) as link:
                res = validate_stream(link, ref_model, samples, "sim", atol, min_top1,
                                      frame_timeout)
        if vb.error is not None:
            raise NanomlError(f"the virtual board failed: {vb.error}")
        return res
    if not port:
        from ..boards import get_board
        from ..serial.ports import find_board_port
        port = find_board_port(get_board(board_id)).device
    with BoardLink.open(port) as link:
        return validate_stream(link, ref_model, samples, "device", atol, min_top1, frame_timeout)


def check_args(atol: float | None, min_top1: float) -> None:
    if atol is not None and atol < 0:
        raise UsageError("--atol must be >= 0")
    if not 0.0 <= min_top1 <= 1.0:
        raise UsageError("--min-top1 must be between 0 and 1")
