"""What `nanoml validate` returns: per-sample comparison of the board's outputs
with the host reference interpreter's, and the verdict. Plain data with
`to_json()` (schema in docs/validate.md); no printing here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..serial.protocol import format_float


@dataclass
class SampleResult:
    index: int
    top_device: int
    top_reference: int
    max_abs_error: float
    rmse: float
    max_lsb: int | None           # worst raw quantized difference, when outputs are integer
    compared: str = "q"           # "q": quantized values; "text": the 6-digit `out` text

    def to_json(self) -> dict:
        return {"index": self.index, "top_device": self.top_device,
                "top_reference": self.top_reference,
                "max_abs_error": _finite(self.max_abs_error), "rmse": _finite(self.rmse),
                "max_lsb": self.max_lsb, "compared": self.compared}


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
    classes: dict | None = None          # labelled clips: nanoml.validate.audio.class_report
    min_accuracy: float | None = None

    @property
    def accuracy(self) -> float | None:
        return self.classes["accuracy"] if self.classes else None

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
    def compared(self) -> str | None:
        """How the outputs were compared: "q" (the quantized values, every sample)
        or "text" (the 6-digit `out` text, for at least one sample)."""
        kinds = {s.compared for s in self.samples}
        return ("text" if "text" in kinds else "q") if kinds else None

    @property
    def passed(self) -> bool:
        ok = self.max_abs_error <= self.atol and self.top1_agreement >= self.min_top1
        if self.min_accuracy is not None and self.accuracy is not None:
            ok = ok and self.accuracy >= self.min_accuracy
        return ok

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_json(self) -> dict:
        return {"source": self.source, "model": self.model, "samples": len(self.samples),
                "max_abs_error": _finite(self.max_abs_error), "rmse": _finite(self.rmse),
                "compared": self.compared,
                "top1_agreement": self.top1_agreement, "max_lsb": self.max_lsb,
                "tolerances": {"atol": self.atol, "min_top1": self.min_top1},
                "output_scale": self.output_scale, "passed": self.passed,
                "per_sample": [s.to_json() for s in self.samples], "notes": self.notes,
                "exit_code": self.exit_code, **self._classes_json()}

    def _classes_json(self) -> dict:
        """Labelled clips: accuracy, confusion (rows: true label, columns: predicted),
        labels and the per-file list; nothing for .npy/.npz inputs."""
        if not self.classes:
            return {}
        c = self.classes
        return {"accuracy": c["accuracy"], "confusion": c["confusion"], "labels": c["labels"],
                "files": c["files"], "min_accuracy": self.min_accuracy}


def default_atol(sim_model) -> tuple[float, float | None]:
    """(atol, output scale): one quantization step of the outputs (kernels may
    round differently on the board), 1e-4 for float outputs."""
    scales = [t.scale for t in sim_model.outputs if t.quantized]
    if scales and len(scales) == len(sim_model.outputs):
        s = max(scales)
        return s * 1.001, s
    return 1e-4, None


def output_scales(sim_model) -> list[float] | None:
    """The scale of every output value (output tensors concatenated, as in a `res`
    line), when every output is quantized; None otherwise."""
    outs = sim_model.outputs
    if not outs or not all(t.quantized for t in outs):
        return None
    return [t.scale for t in outs for _ in range(math.prod(t.shape))]


def compare(index: int, dev_out: list[float], dev_q: list[int] | None, dev_top: int,
            ref, scales: list[float] | None = None) -> SampleResult:
    """One sample. With quantized outputs (`scales`, and the board's raw values `q`)
    the quantized values are compared: the error of each output is its difference
    in LSB times its scale, so identical outputs differ by exactly 0. Otherwise the
    board's `out` text (6 significant digits) is compared with the reference
    rounded to the same text, so identical outputs differ by 0 there too."""
    lsb = None
    if dev_q is not None and ref.q is not None and len(dev_q) == len(ref.q):
        lsb_diffs = [abs(int(a) - int(b)) for a, b in zip(dev_q, ref.q)]
        lsb = max(lsb_diffs, default=0)
    if lsb is not None and scales is not None and len(scales) == len(dev_q):
        diffs = [d * s for d, s in zip(lsb_diffs, scales)]
        basis = "q"
    else:
        n = min(len(dev_out), len(ref.outputs))
        diffs = [_text_diff(float(dev_out[i]), float(format_float(ref.outputs[i])))
                 for i in range(n)]
        if len(dev_out) != len(ref.outputs):
            diffs.append(math.inf)
        basis = "text"
    max_abs = max(diffs, default=0.0)
    rmse = math.sqrt(sum(d * d for d in diffs) / len(diffs)) if diffs else 0.0
    return SampleResult(index, int(dev_top), int(ref.top), max_abs, rmse, lsb, basis)


def _text_diff(a: float, b: float) -> float:
    """|a - b|; 0 when both are the same value (nan and inf included), inf when
    only one is a number."""
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    d = abs(a - b)
    return math.inf if math.isnan(d) else d


def _finite(x: float) -> float | None:
    """JSON has no NaN/Infinity: a difference that is not a number is null."""
    return x if math.isfinite(x) else None
