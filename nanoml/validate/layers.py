"""`nanoml validate --layers`: each operator's output on the board against the
reference's, the first layer beyond tolerance and its likely cause.

    d = compare_tensor(ref, dev, tolerance)      # one operator output, one input
    rows = aggregate(per_input)                  # per layer: worst over the inputs
    first = first_divergent(...)                 # the earliest layer beyond tolerance
    cause = likely_cause(...)                    # a heuristic, always labelled "likely"

Units: a quantized (or integer) tensor is compared in output steps (LSB: the
difference of the raw integer values) and in real units (LSB x scale); a float
tensor in real units and relative to the largest reference value of that tensor.
Plain data with `to_json()` (schema in docs/validate.md); never prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Default tolerances: one output step (CMSIS-NN's kernels round some values one
# LSB apart from TFLM's reference kernels) and, for float tensors, 1e-4 of the
# largest reference value (the board's float kernels may contract to FMA).
DEFAULT_TOLERANCE_LSB = 1
DEFAULT_TOLERANCE_REL = 1e-4
# A difference this many LSB beyond tolerance (or 1% of the float range) while the
# layer's inputs matched is "huge": weights or kernel, not rounding.
HUGE_LSB = 8
HUGE_REL = 1e-2


@dataclass(frozen=True)
class Tolerance:
    lsb: int = DEFAULT_TOLERANCE_LSB
    rel: float = DEFAULT_TOLERANCE_REL

    def to_json(self) -> dict:
        return {"lsb": self.lsb, "rel": self.rel}


@dataclass
class TensorDiff:
    """One operator output on one input."""
    max_lsb: int | None            # integer tensors: largest |q_board - q_ref|
    max_abs: float                 # real units (inf: not comparable)
    max_rel: float | None          # float tensors: max_abs / largest |reference|
    within: bool
    mismatch: str | None = None    # "missing", "dtype", "shape", "quantization"
    detail: str = ""               # what differs, for the cause
    constant: bool = False         # the board's tensor holds one value throughout
    changed: bool = False          # any difference at all
    undetermined: int = 0          # elements the operator never writes (not compared)


def _same_quant(a, b) -> bool:
    if (a.scale is None) != (b.scale is None):
        return False
    if a.scale is None:
        return True
    return math.isclose(a.scale, b.scale, rel_tol=1e-5) and a.zero_point == b.zero_point


def _real(t, np):
    x = np.asarray(t.data).astype(np.float64)
    return (x - t.zero_point) * t.scale if t.scale is not None else x


def compare_tensor(ref, dev, tol: Tolerance) -> TensorDiff:
    """`ref`, `dev`: LayerTensor-like (dtype, shape, scale, zero_point, data)."""
    import numpy as np
    if dev is None or dev.data is None:
        return TensorDiff(None, math.inf, None, False, "missing", "the board sent no values")
    a, b = np.asarray(ref.data), np.asarray(dev.data)
    if ref.dtype != dev.dtype:
        return TensorDiff(None, math.inf, None, False, "dtype",
                          f"the board's tensor is {dev.dtype}, the model's {ref.dtype}")
    if a.size != b.size or tuple(ref.shape) != tuple(dev.shape):
        return TensorDiff(None, math.inf, None, False, "shape",
                          f"the board's tensor is {list(dev.shape)}, the model's "
                          f"{list(ref.shape)}")
    b = b.reshape(a.shape)
    skipped = 0
    mask = getattr(ref, "determined", None)
    if mask is not None:                  # elements the op never wrote: not compared
        skipped = int(a.size - mask.sum())
        a, b = a[mask], b[mask]
    d = _compare_values(ref, dev, a, b, tol)
    d.undetermined = skipped
    return d


def _compare_values(ref, dev, a, b, tol: Tolerance) -> TensorDiff:
    import numpy as np
    constant = b.size > 1 and bool((b == b.reshape(-1)[0]).all()) and not \
        bool((a == a.reshape(-1)[0]).all())
    if a.dtype.kind in "iub":
        q = np.abs(a.astype(np.int64) - b.astype(np.int64))
        lsb = int(q.max()) if q.size else 0
        if not _same_quant(ref, dev):
            real = float(np.abs(_real(ref, np) - _real(dev, np)).max()) if a.size else 0.0
            return TensorDiff(lsb, real, None, False, "quantization",
                              f"the board's scale/zero point {dev.scale:.6g}/{dev.zero_point} "
                              f"differ from the model's {ref.scale:.6g}/{ref.zero_point}"
                              if dev.scale is not None and ref.scale is not None else
                              "the board's quantization differs from the model's",
                              constant, True)
        real = lsb * ref.scale if ref.scale is not None else float(lsb)
        return TensorDiff(lsb, real, None, lsb <= tol.lsb, constant=constant, changed=lsb > 0)
    x, y = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(x) & np.isnan(y)
    d = np.where(both_nan | (x == y), 0.0, np.abs(x - y))
    d = np.where(np.isnan(d), math.inf, d)
    real = float(d.max()) if d.size else 0.0
    top = float(np.abs(x[np.isfinite(x)]).max()) if np.isfinite(x).any() else 0.0
    rel = real / top if top > 0 else (0.0 if real == 0 else math.inf)
    return TensorDiff(None, real, rel, real <= tol.rel * top, constant=constant,
                      changed=real > 0)


# ------------------------------------------------------------------ per layer

@dataclass
class LayerRow:
    """One operator over all inputs: its worst difference and where."""
    index: int
    op: str
    version: int
    tensor: int
    dtype: str
    shape: tuple[int, ...]
    scale: float | None
    zero_point: int | None
    max_lsb: int | None = None
    max_abs: float = 0.0
    max_rel: float | None = None
    within: bool = True
    input: int | None = None         # the input (sample index) of the worst difference
    mismatch: str | None = None
    undetermined: int = 0            # most elements never written by the op, on one input
    # local: the op alone on the board's own input tensors (None: not run alone)
    local_max_lsb: int | None = None
    local_max_abs: float | None = None
    local_within: bool | None = None
    local_note: str | None = None    # why there is no local comparison
    propagated_within: bool = True

    def add(self, d: TensorDiff, sample: int, local: TensorDiff | None = None,
            note: str | None = None) -> None:
        """One input: `d` end to end (propagated), `local` the op alone (or None,
        `note` why). `within` is the local verdict where there is one."""
        self.propagated_within = self.propagated_within and d.within
        if local is None:
            self.local_note = self.local_note or note
        elif self.local_note is None:
            self.local_max_abs = max(self.local_max_abs or 0.0, local.max_abs)
            if local.max_lsb is not None:
                self.local_max_lsb = max(self.local_max_lsb or 0, local.max_lsb)
            self.local_within = (self.local_within is not False) and local.within
        if self.local_note is not None:      # one input without it: none for the layer
            self.local_max_lsb = self.local_max_abs = self.local_within = None
        self._add(d, sample)

    def _add(self, d: TensorDiff, sample: int) -> None:
        worse = (d.max_abs > self.max_abs or (self.input is None)
                 or (not d.within and self.within))
        if d.max_lsb is not None:
            self.max_lsb = max(self.max_lsb or 0, d.max_lsb)
        if d.max_rel is not None:
            self.max_rel = max(self.max_rel or 0.0, d.max_rel)
        if worse:
            self.input = sample
        self.max_abs = max(self.max_abs, d.max_abs)
        self.within = (self.propagated_within if self.local_within is None
                       else self.local_within)
        self.mismatch = self.mismatch or d.mismatch
        self.undetermined = max(self.undetermined, d.undetermined)

    def to_json(self) -> dict:
        return {"index": self.index, "op": self.op, "version": self.version,
                "tensor": self.tensor, "dtype": self.dtype, "shape": list(self.shape),
                "scale": self.scale, "zero_point": self.zero_point,
                "max_lsb": self.max_lsb, "max_abs_error": _finite(self.max_abs),
                "max_rel_error": _finite(self.max_rel), "within": self.within,
                "input": self.input, "mismatch": self.mismatch,
                "undetermined": self.undetermined,
                "local_max_lsb": self.local_max_lsb,
                "local_max_real": _finite(self.local_max_abs),
                "local_within": self.local_within, "local_note": self.local_note,
                "propagated_within": self.propagated_within}


@dataclass
class Divergence:
    index: int
    op: str
    input: int
    cause: str                 # a token: input, quantization, layout, arena, rounding, model,
    #                            weights, kernel, reference
    likely: str                # one sentence, "likely ..."

    def to_json(self) -> dict:
        return {"index": self.index, "op": self.op, "input": self.input, "cause": self.cause,
                "likely": self.likely}


@dataclass
class SampleLayers:
    """One input: every operator output's difference (in model order)."""
    index: int
    diffs: list[TensorDiff]            # one per LayerRow (operator, first output)
    input_diff: TensorDiff | None = None   # the board's copy of the model input, when sent
    local: list[TensorDiff | None] | None = None   # the op alone on the board's inputs
    notes: list[str | None] | None = None          # why local[k] is None

    def judged(self, k: int) -> TensorDiff:
        """What decides layer k: its local difference where it ran alone."""
        loc = self.local[k] if self.local else None
        return loc if loc is not None else self.diffs[k]


def likely_cause(layers, rows: list[LayerRow], sample: SampleLayers, k: int, context: dict
                 ) -> tuple[str, str]:
    """(token, sentence) for the first divergent layer `k` on `sample`. Heuristics:
    `context` has `board_model` / `model_sha` (hello vs the file), `reference`, `source`,
    `model_inputs` (tensor indices)."""
    d = sample.judged(k)
    layer = layers[k]
    name = f"operator {layer.index} ({layer.op} v{layer.version})"
    takes_input = any(t in context.get("model_inputs", ()) for t in layer.inputs)
    earlier = [x for x in sample.diffs[:k] if x.changed]
    board_model, sha = context.get("board_model"), context.get("model_sha", "")
    other_model = bool(board_model) and not sha.startswith(board_model)
    if d.mismatch in ("missing", "dtype", "shape"):
        return "layout", (f"likely another model or op version on the board: {d.detail} at "
                          f"{name}")
    if d.mismatch == "quantization":
        if takes_input:
            return "input", (f"likely the input quantization: {d.detail} (the first layer "
                             "reading the model's input)")
        return "quantization", f"likely a differently converted model: {d.detail} at {name}"
    if sample.input_diff is not None and sample.input_diff.changed:
        return "input", ("likely the input: the board's input tensor already differs from the "
                         "bytes sent (input quantization or framing differs from the model's)")
    if d.constant and all(not x.within for x in sample.diffs[k:]) and len(sample.diffs) - k > 1:
        return "arena", (f"likely the arena: from {name} on every output differs and the "
                         "board's holds one value throughout (garbage after an allocation "
                         "failure or overlapping tensors: a too-small arena)")
    huge = ((d.max_lsb is not None and d.max_lsb > context["tolerance"].lsb + HUGE_LSB)
            or (d.max_rel is not None and d.max_rel > HUGE_REL))
    if huge:
        also = (" (or the board's model reads its input with another scale/zero point: the "
                "input quantization)" if takes_input else "")
        if other_model:
            return "model", (f"likely the weights of {name}: the board's model "
                             f"(hello model={board_model}) is not this file "
                             f"({sha[:12]}) and this is the first layer that differs while "
                             f"its inputs matched (a different or corrupted model array){also}")
        if context.get("reference") == "tflite":
            return "reference", (f"likely {name} computes differently in TFLM than in "
                                 "TensorFlow Lite (its inputs matched)")
        return "weights", (f"likely the weights or the kernel of {name}: its inputs matched "
                           f"but its output differs by {_amount(d)} (a corrupted model array, "
                           f"or this op version computes differently on the board){also}")
    if d.max_lsb is not None and d.max_lsb <= context["tolerance"].lsb + 2:
        if context.get("reference") == "tflite":
            return "rounding", (f"likely rounding: {name} differs by {d.max_lsb} LSB between "
                                "TFLM's and TensorFlow Lite's kernels")
        grown = " (earlier layers already differed within tolerance)" if earlier else ""
        if other_model:
            grown += f"; note that the board's model (hello model={board_model}) is not this file"
        return "rounding", (f"likely rounding: {d.max_lsb} LSB at {name}, typical of CMSIS-NN's "
                            f"optimised kernels against TFLM's reference kernels{grown}")
    return "kernel", (f"likely the kernel of {name} (op version {layer.version}) computes "
                      f"differently: {_amount(d)} while its inputs matched")


def _amount(d: TensorDiff) -> str:
    if d.max_lsb is not None:
        return f"{d.max_lsb} LSB"
    return f"{d.max_abs:.3g} ({100 * (d.max_rel or 0):.2g}% of its range)"


def _finite(x):
    return x if x is None or math.isfinite(x) else None


# ------------------------------------------------------------------ the result

@dataclass
class LayersResult:
    source: str                      # "device" | "sim"
    reference: str                   # "tflm" | "tflite"
    model: str
    inputs: str                      # a path, or "synthetic"
    tolerance: Tolerance
    rows: list[LayerRow]
    samples: int = 0
    first: Divergence | None = None
    board_model: str | None = None
    retries: int = 0
    corrupt_lines: int = 0
    link_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.first is None and all(r.within for r in self.rows)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_json(self) -> dict:
        return {"source": self.source, "reference": self.reference, "inputs": self.inputs,
                "samples": self.samples, "tolerances": self.tolerance.to_json(),
                "board_model": self.board_model,
                "layers": [r.to_json() for r in self.rows],
                "first_divergent": self.first.to_json() if self.first else None,
                "link": {"retries": self.retries, "corrupt_lines": self.corrupt_lines,
                         "bytes": self.link_bytes},
                "passed": self.passed, "notes": self.notes}


def new_rows(model, layers) -> list[LayerRow]:
    """One row per operator (its first output tensor), from the model."""
    from .reference import tensor_quant
    rows = []
    for layer in layers:
        t = model.main.tensors[layer.outputs[0]]
        scale, zp = tensor_quant(t)
        rows.append(LayerRow(layer.index, layer.op, layer.version, t.index, t.dtype,
                             tuple(t.shape), scale, zp))
    return rows


def first_divergent(layers, rows: list[LayerRow], samples: list[SampleLayers],
                    context: dict) -> Divergence | None:
    """The earliest operator beyond tolerance on any input (and the first input
    where it is), with its likely cause."""
    best = None
    for s in samples:
        for k in range(len(s.diffs)):
            if not s.judged(k).within:
                if best is None or k < best[0]:
                    best = (k, s)
                break
    if best is None:
        return None
    k, s = best
    cause, text = likely_cause(layers, rows, s, k, context)
    return Divergence(rows[k].index, rows[k].op, s.index, cause, text)
