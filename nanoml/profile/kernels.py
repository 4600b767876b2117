"""Which kernel each operator runs on a Cortex-M4 build of the runtime, and how much
work that kernel does, counted in the units its loops iterate over.

This is the structural half of the latency model (docs/profile.md). For every
operator it picks the code path the runtime takes for the op's dtype and shapes
(CMSIS-NN for int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED / pooling /
ADD / MUL / SOFTMAX, TFLM reference kernels for float and for the rest) and
returns a `Work`: the path name and the iteration counts of that path's loops
(e.g. 16-column chunks of the 2x2 SMLAD block in arm_nn_mat_mult_nt_t_s8,
im2col taps copied with arm_q7_to_q15_with_offset, requantized outputs,
filter taps inside the image for reference float convolution).

The other half, instructions per iteration of each loop, is data: a per-runtime
coefficient table (coefficients/*.json) measured on a Cortex-M4 build.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model.tflite import Model, Operator, Subgraph, Tensor


@dataclass
class Work:
    path: str                                   # kernel path, e.g. "conv_s8_1x1"
    counts: dict[str, float] = field(default_factory=dict)
    note: str = ""
    dtype: str = ""                             # dtype path, e.g. "int8", "int16xint8"

    def to_json(self) -> dict:
        return {"path": self.path, "dtype": self.dtype, "counts": self.counts, "note": self.note}


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= max(int(x), 1)
    return n


def _t(sg: Subgraph, op: Operator, i: int, outputs: bool = False) -> Tensor | None:
    idx = op.outputs if outputs else op.inputs
    if i >= len(idx) or not 0 <= idx[i] < len(sg.tensors):
        return None
    return sg.tensors[idx[i]]


def _nhwc(shape: list[int]) -> tuple[int, int, int, int]:
    """(batch, height, width, channels); shorter shapes get 1s after the batch."""
    s = [max(int(d), 1) for d in shape] or [1]
    if len(s) == 1:
        s = [1] + s
    while len(s) < 4:
        s.insert(1, 1)
    return s[0], s[1], s[2], s[3]


def _pad(padding: str, in_size: int, k: int, stride: int, dil: int, out_size: int) -> int:
    """Leading padding as TFLM computes it (ComputePaddingHeightWidth)."""
    if padding != "SAME":
        return 0
    eff = (k - 1) * dil + 1
    total = max((out_size - 1) * stride + eff - in_size, 0)
    return total // 2


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """sum_{i=0}^{n-1} floor((a*i + b) / m) for n, a, b >= 0 and m > 0, in O(log) steps."""
    total = 0
    while True:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y = a * n + b
        if y < m:
            return total
        n, b = y // m, y % m
        m, a = a, m


def _pairs_upto(n: int, stride: int, k: int, dil: int, x: int) -> int:
    """#{(o, i): 0 <= o < n, 0 <= i < k, o*stride + i*dil <= x}, in closed form."""
    if x < 0 or n <= 0 or k <= 0:
        return 0
    o_max = min(n - 1, x // stride)                  # outputs with at least one tap
    full = x - (k - 1) * dil
    o_full = min(o_max, full // stride) if full >= 0 else -1   # outputs with all k taps
    count = k * (o_full + 1)
    rest = o_max - o_full                            # outputs with 1..k-1 taps
    if rest > 0:
        # sum over o in (o_full, o_max] of (x - o*stride) // dil + 1, with j = o_max - o
        count += _floor_sum(rest, dil, stride, x - o_max * stride) + rest
    return count


def _taps_inside(in_size: int, out_size: int, k: int, stride: int, dil: int, pad: int) -> int:
    """Sum over the output positions along one axis of the filter taps that fall
    inside the input (0 <= o*stride - pad + i*dil < in_size): closed form, so the
    work does not grow with the shapes."""
    return (_pairs_upto(out_size, stride, k, dil, pad + in_size - 1)
            - _pairs_upto(out_size, stride, k, dil, pad - 1))


@dataclass
class Window:
    """Sliding-window geometry of a conv/pool op (one batch)."""
    ih: int
    iw: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    ph: int
    pw: int

    @property
    def pixels(self) -> int:
        return self.oh * self.ow

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    def valid(self) -> tuple[int, int]:
        """(sum over output pixels of taps inside the input, of rows inside)."""
        sy = _taps_inside(self.ih, self.oh, self.kh, self.sh, self.dh, self.ph)
        sx = _taps_inside(self.iw, self.ow, self.kw, self.sw, self.dw, self.pw)
        return sy * sx, sy * self.ow


def _positive(*xs: int) -> None:
    """Filter sizes, strides and dilations must be >= 1 (TFLM rejects others)."""
    if any(int(x) < 1 for x in xs):
        raise ValueError(f"filter/stride/dilation {list(xs)} not all >= 1")


def _window(op: Operator, inp: Tensor, out: Tensor, kh: int, kw: int) -> Window:
    o = op.options
    _, ih, iw, _ = _nhwc(inp.shape)
    _, oh, ow, _ = _nhwc(out.shape)
    sh, sw = int(o.get("stride_h", 1) or 1), int(o.get("stride_w", 1) or 1)
    dh, dw = int(o.get("dilation_h", 1) or 1), int(o.get("dilation_w", 1) or 1)
    pad = o.get("padding", "VALID")
    _positive(kh, kw, sh, sw, dh, dw)
    return Window(ih, iw, oh, ow, kh, kw, sh, sw, dh, dw,
                  _pad(pad, ih, kh, sh, dh, oh), _pad(pad, iw, kw, sw, dw, ow))


def _is_int8(t: Tensor | None) -> bool:
    return t is not None and t.dtype == "int8"


def _is_float(t: Tensor | None) -> bool:
    return t is not None and t.dtype == "float32"


# --------------------------------------------------------------------------- ops

def _conv(sg, op) -> Work:
    inp, w, out = _t(sg, op, 0), _t(sg, op, 1), _t(sg, op, 0, True)
    n, _, _, cin = _nhwc(inp.shape)
    cout, kh, kw, wcin = w.shape
    win = _window(op, inp, out, kh, kw)
    p = n * win.pixels
    tv, _ = win.valid()
    tv *= n
    if _is_float(inp):
        # reference_ops::Conv: per output (pixel, channel) every tap is visited and
        # checked; taps inside the image run the input-channel MAC loop.
        return Work("conv_f32", {"out": p * cout, "tap_visits": p * cout * win.taps,
                                 "taps_valid": tv * cout, "macs": tv * cout * wcin})
    if not _is_int8(inp):
        return Work(f"conv_{inp.dtype}", {"elements": out.elements}, "no kernel model")
    k = win.taps * cin
    if (win.ph == 0 and win.pw == 0 and win.sh == 1 and win.sw == 1 and kh == 1 and kw == 1
            and win.dh == 1 and win.dw == 1):
        return _mat_nt_t(rows=p, cols=cin, units=cout, path="conv_s8_1x1")
    # arm_convolve_s8 (DSP): im2col of two output pixels as q15, then
    # arm_nn_mat_mult_kernel_s8_s16 (2 channels x 2 columns per SMLAD block).
    tp = p * win.taps - tv
    pairs = p // 2
    odd = p % 2
    even = cout - cout % 2
    return Work("conv_s8", {
        "taps": p * win.taps, "cvt4": tv * (cin // 4), "cvt1": tv * (cin % 4),
        "pad_taps": tp, "pad_bytes": tp * cin,
        "blocks": pairs * ((cout + 1) // 2), "mac4": pairs * 2 * even * (k // 4),
        "mac1": pairs * 2 * even * (k % 4),
        "oddch_mac4": pairs * 2 * (cout % 2) * (k // 4),
        "oddch_mac1": pairs * 2 * (cout % 2) * (k % 4), "out": p * cout,
        "odd_mac4": odd * cout * (k // 4), "odd_mac1": odd * cout * (k % 4),
        "pixels": p})


def _mat_nt_t(rows: int, cols: int, units: int, path: str) -> Work:
    """arm_nn_mat_mult_nt_t_s8: 2 rhs rows (units) x 2 lhs rows per block, 16 columns
    per inner iteration and a scalar tail; a left-over lhs row runs 1x2, an odd unit
    runs its own 1x1 loop over every lhs row; offset contribution summed per unit pair."""
    c16, c1 = cols // 16, cols % 16
    b = (rows // 2) * (units // 2)
    lo = (rows % 2) * (units // 2)
    ro = (units % 2) * rows
    return Work(path, {
        "col_sums": ((units + 1) // 2) * cols, "blocks": b, "mac16": b * 4 * c16,
        "mac1": b * 4 * c1, "lo_rows": lo, "lo_mac16": lo * 2 * c16, "lo_mac1": lo * 2 * c1,
        "odd_unit_rows": ro, "odd_unit_macs": ro * cols,
        "out": rows * units})


def _dwconv(sg, op) -> Work:
    inp, w, out = _t(sg, op, 0), _t(sg, op, 1), _t(sg, op, 0, True)
    n, _, _, cin = _nhwc(inp.shape)
    _, kh, kw, cout = w.shape
    mult = max(cout // max(cin, 1), 1)
    win = _window(op, inp, out, kh, kw)
    p = n * win.pixels
    tv, rows = win.valid()
    tv *= n
    rows *= n
    if _is_float(inp):
        return Work("dw_f32", {"out": p * cout, "tap_visits": p * cout * win.taps,
                               "row_visits": p * cout * kh, "pixels": p, "macs": tv * cout})
    if not _is_int8(inp):
        return Work(f"dw_{inp.dtype}", {"elements": out.elements}, "no kernel model")
    dil1 = win.dh == 1 and win.dw == 1
    if mult == 1 and n == 1 and dil1:
        if kh == 3 and kw == 3 and win.ph <= 1 and win.pw <= 1:
            g4, g1 = cin // 4, cin % 4
            return Work("dw_s8_3x3", {"pixels": p, "g4": p * g4, "g4_rows": rows * g4,
                                      "g4_taps": tv * g4, "g1": p * g1, "g1_rows": rows * g1,
                                      "g1_taps": tv * g1})
        t = win.taps
        tp = p * t - tv
        return Work("dw_s8_opt", {
            "pixels": p, "taps": p * t, "cvt4": tv * (cin // 4), "cvt1": tv * (cin % 4),
            "pad_bytes": tp * cin, "g4": p * (cin // 4), "g4_k2": p * (cin // 4) * (t // 2),
            "g4_k1": p * (cin // 4) * (t % 2), "c1": p * (cin % 4), "c1_k": p * (cin % 4) * t})
    if mult % 4 == 0 and n == 1 and dil1:
        tiles = cin * (mult // 4)
        return Work("dw_s8_mult4", {"pixels": p, "tiles": p * tiles, "tile_rows": rows * tiles,
                                    "tile_taps": tv * tiles})
    return Work("dw_s8_generic", {"pixels": p, "ch": p * cout, "ch_rows": rows * cout,
                                  "ch_taps": tv * cout})


def _fc(sg, op) -> Work:
    inp, w, out = _t(sg, op, 0), _t(sg, op, 1), _t(sg, op, 0, True)
    units, depth = w.shape[0], w.shape[-1]
    batches = max(inp.elements // max(depth, 1), 1)
    if _is_float(inp):
        return Work("fc_f32", {"out": batches * units, "macs": batches * units * depth})
    if not _is_int8(inp):
        return Work(f"fc_{inp.dtype}", {"elements": out.elements}, "no kernel model")
    if len(out.shape) > 2 and depth % 4 == 0:
        return _mat_nt_t(rows=batches, cols=depth, units=units, path="conv_s8_1x1")
    # arm_fully_connected_s8 -> arm_nn_vec_mat_mult_t_s8 per batch: 2 rows x 4 cols.
    even = units - units % 2
    return Work("fc_s8", {"batches": batches, "rows": batches * units,
                          "mac4": batches * even * (depth // 4),
                          "mac1": batches * even * (depth % 4),
                          "odd_mac4": batches * (units % 2) * (depth // 4),
                          "odd_mac1": batches * (units % 2) * (depth % 4)})


def _pool(sg, op, kind: str) -> Work:
    inp, out = _t(sg, op, 0), _t(sg, op, 0, True)
    n, _, _, c = _nhwc(inp.shape)
    o = op.options
    win = _window(op, inp, out, int(o.get("filter_h", 1) or 1), int(o.get("filter_w", 1) or 1))
    p = n * win.pixels
    tv, _ = win.valid()
    tv *= n
    if _is_float(inp):
        return Work(f"{kind}_f32", {"pixels": p, "out": p * c, "taps_c": tv * c})
    if not _is_int8(inp):
        return Work(f"{kind}_{inp.dtype}", {"elements": out.elements}, "no kernel model")
    if kind == "avgpool":
        return Work("avgpool_s8", {"pixels": p, "taps": tv, "taps_c": tv * c, "out": p * c})
    return Work("maxpool_s8", {"pixels": p, "taps": tv, "taps_c4": tv * (c // 4),
                               "taps_c1": tv * (c % 4), "out": p * c})


def _broadcast(sg, op) -> bool:
    a, b = _t(sg, op, 0), _t(sg, op, 1)
    return a is not None and b is not None and list(a.shape) != list(b.shape)


def _elementwise(sg, op, name: str) -> Work:
    a, out = _t(sg, op, 0), _t(sg, op, 0, True)
    n = out.elements
    if _is_float(a):
        return Work(f"{name}_f32{'_bcast' if _broadcast(sg, op) else ''}", {"elements": n})
    if _broadcast(sg, op):
        return Work(f"{name}_bcast", {"elements": n})
    if _is_int8(a):
        return Work(f"{name}_s8", {"n4": n // 4, "n1": n % 4})
    return Work(f"{name}_{a.dtype}", {"elements": n}, "no kernel model")


def _softmax(sg, op) -> Work:
    inp = _t(sg, op, 0)
    depth = max(int(inp.shape[-1]) if inp.shape else 1, 1)
    rows = max(inp.elements // depth, 1)
    kind = "f32" if _is_float(inp) else ("s8" if _is_int8(inp) else "other")
    return Work(f"softmax_{kind}", {"rows": rows, "elements": rows * depth})


def _unary(sg, op, name: str) -> Work:
    inp, out = _t(sg, op, 0), _t(sg, op, 0, True)
    kind = "f32" if _is_float(inp) else ("s8" if _is_int8(inp) else inp.dtype)
    return Work(f"{name}_{kind}", {"elements": out.elements})


def _const_ints(t: Tensor | None) -> list[int] | None:
    if t is None or t.data is None or t.dtype not in ("int32", "int64"):
        return None
    import struct
    size = 4 if t.dtype == "int32" else 8
    n = len(t.data) // size
    return list(struct.unpack("<%d%s" % (n, "i" if size == 4 else "q"), bytes(t.data[:n * size])))


def _hard_swish(sg, op) -> Work:
    inp, out = _t(sg, op, 0), _t(sg, op, 0, True)
    if not _is_int8(inp) or inp.quant is None:
        return _unary(sg, op, "hard_swish")
    import math
    # hard_swish.cpp Prepare: reluish multiplier = (input scale / 128) / (3 / 32768);
    # the reference kernel shifts left when its exponent is > 0, divides by a power
    # of two when < 0, and does neither when it is 0: three per-element costs.
    _, exp = math.frexp(inp.quant.scale[0] / 128.0 / (3.0 / 32768.0))
    key = "el_exp_pos" if exp > 0 else ("el_exp_neg" if exp < 0 else "el_exp_zero")
    return Work("hard_swish_s8", {key: out.elements})


def _mean(sg, op) -> Work:
    inp, out = _t(sg, op, 0), _t(sg, op, 0, True)
    kind = "f32" if _is_float(inp) else ("s8" if _is_int8(inp) else inp.dtype)
    rank = len(inp.shape)
    axes = _const_ints(_t(sg, op, 1))
    if axes is not None:
        axes = sorted({a + rank if a < 0 else a for a in axes})
    if (kind == "f32" and op.op == "MEAN" and op.options.get("keep_dims") and rank == 4
            and axes == [1, 2]):
        # reduce_common.cpp: the special 4-D mean over height and width (keep_dims)
        return Work("mean_f32_hw", {"in": inp.elements, "out": out.elements})
    # reference Mean / QuantizedMeanOrSum: an index walk over every input element
    return Work(f"mean_{kind}", {"in": inp.elements, "in_rank": inp.elements * rank,
                                 "out": out.elements})


def _copy_like(sg, op, name: str) -> Work:
    out = _t(sg, op, 0, True)
    return Work(name, {"bytes": out.nbytes})


def _concat(sg, op) -> Work:
    out = _t(sg, op, 0, True)
    axis = int(op.options.get("axis", -1))
    nd = max(len(out.shape), 1)
    if axis < 0:
        axis += nd
    outer = _prod(out.shape[:axis]) if axis > 0 else 1
    ins = sum(1 for i in op.inputs if i >= 0)
    return Work("concat", {"bytes": out.nbytes, "copies": outer * ins})


def _pad_op(sg, op) -> Work:
    """Reference Pad: a walk over every output element, copying the input inside
    and writing the pad value at the borders (costs differ; per dtype)."""
    inp, out = _t(sg, op, 0), _t(sg, op, 0, True)
    kind = "f32" if _is_float(inp) else ("s8" if _is_int8(inp) else inp.dtype)
    return Work(f"pad_{kind}", {"interior": inp.elements,
                                "border": max(out.elements - inp.elements, 0)})


def _transpose_conv(sg, op) -> Work:
    """Reference TransposeConv (int8 and float): for every input pixel, input channel
    and filter tap, a bounds check of the output position, then an accumulation over
    the output channels into a scratch buffer; then one pass over the outputs."""
    w, inp, out = _t(sg, op, 1), _t(sg, op, 2), _t(sg, op, 0, True)
    n, ih, iw, cin = _nhwc(inp.shape)
    cout, kh, kw, _ = w.shape
    _, oh, ow, _ = _nhwc(out.shape)
    o = op.options
    sh, sw = int(o.get("stride_h", 1) or 1), int(o.get("stride_w", 1) or 1)
    pad = o.get("padding", "VALID")

    _positive(sh, sw, kh, kw)

    def valid(in_size, out_size, k, stride):
        # (input position, tap) pairs that land inside the output; padding as for
        # the forward conv
        return _taps_inside(out_size, in_size, k, stride, 1,
                            _pad(pad, out_size, k, stride, 1, in_size))

    vy, vx = valid(ih, oh, kh, sh), valid(iw, ow, kw, sw)
    kind = "f32" if _is_float(inp) else ("s8" if _is_int8(inp) else inp.dtype)
    return Work(f"transpose_conv_{kind}", {
        "taps": n * ih * iw * cin * kh * kw, "macs": n * vy * vx * cin * cout,
        "out": out.elements})


def _lstm(sg, op) -> Work:
    inp, out = _t(sg, op, 0), _t(sg, op, 0, True)
    time_major = bool(op.options.get("time_major", False))
    shp = inp.shape
    steps, batch = (shp[0], shp[1]) if time_major else (shp[1], shp[0])
    if len(shp) == 2:
        steps, batch = 1, shp[0]
    n_in = shp[-1]
    w_i2c, w_r2c = _t(sg, op, 3), _t(sg, op, 7)
    cells, n_out = w_i2c.shape[0], w_r2c.shape[1]
    sb = steps * batch
    kind = "f32" if _is_float(inp) else ("s8" if _is_int8(inp) else inp.dtype)
    # per step: 4 gates x (input matmul + recurrent matmul), scalar int8 MACs in the
    # reference kernels, then element-wise gate activations, cell update and output.
    return Work(f"lstm_{kind}", {"steps": sb, "macs": sb * 4 * cells * (n_in + n_out),
                                 "cells": sb * cells})


def _svdf(sg, op) -> Work:
    inp, wf, wt, state = _t(sg, op, 0), _t(sg, op, 1), _t(sg, op, 2), _t(sg, op, 4)
    batch = inp.shape[0] if len(inp.shape) > 1 else 1
    n_in = inp.shape[-1]
    filters, memory = wf.shape[0], wt.shape[1]
    if _is_float(inp):
        kind = "f32"
    else:
        kind = "s8_state16" if state is not None and state.dtype == "int16" else "s8_state8"
    return Work(f"svdf_{kind}", {"feat_macs": batch * filters * n_in,
                                 "time_macs": batch * filters * memory,
                                 "filters": batch * filters})


# Where an op's activation input and weights are (other ops: input 0, no weights).
_ACTIVATION_INPUT = {"TRANSPOSE_CONV": 2}
_WEIGHTS_INPUT = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1,
                  "TRANSPOSE_CONV": 1, "SVDF": 1, "UNIDIRECTIONAL_SEQUENCE_LSTM": 2}


def dtype_path(sg: Subgraph, op: Operator) -> str:
    """The dtypes an op runs on, which select the runtime's kernel variant: the
    activation input's dtype, then "x<weights>" when the weights differ (int16
    activations with int8 weights: "int16xint8"; a hybrid op: "float32xint8"), then
    "-><output>" when the output differs (QUANTIZE float32 to int8: "float32->int8")."""
    def dt(t: Tensor | None) -> str:
        return t.dtype if t is not None else "none"
    act = dt(_t(sg, op, _ACTIVATION_INPUT.get(op.op, 0)))
    sig = act
    wi = _WEIGHTS_INPUT.get(op.op)
    if wi is not None and dt(_t(sg, op, wi)) != act:
        sig += "x" + dt(_t(sg, op, wi))
    out = dt(_t(sg, op, 0, True))
    if out != act:
        sig += "->" + out
    return sig


def operator_work(sg: Subgraph, op: Operator) -> Work:
    """The kernel path, dtype path and loop work of one operator."""
    work = _work(sg, op)
    work.dtype = dtype_path(sg, op)
    return work


def _work(sg: Subgraph, op: Operator) -> Work:
    name = op.op
    try:
        if name == "CONV_2D":
            return _conv(sg, op)
        if name == "DEPTHWISE_CONV_2D":
            return _dwconv(sg, op)
        if name == "TRANSPOSE_CONV":
            return _transpose_conv(sg, op)
        if name == "FULLY_CONNECTED":
            return _fc(sg, op)
        if name == "AVERAGE_POOL_2D":
            return _pool(sg, op, "avgpool")
        if name == "MAX_POOL_2D":
            return _pool(sg, op, "maxpool")
        if name in ("ADD", "SUB", "MUL"):
            return _elementwise(sg, op, name.lower())
        if name == "SOFTMAX":
            return _softmax(sg, op)
        if name == "HARD_SWISH":
            return _hard_swish(sg, op)
        if name in ("LOGISTIC", "TANH", "RELU", "RELU6", "LEAKY_RELU",
                    "QUANTIZE", "DEQUANTIZE"):
            return _unary(sg, op, name.lower())
        if name in ("MEAN", "SUM"):
            return _mean(sg, op)
        if name in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
            return _copy_like(sg, op, "reshape")
        if name == "CONCATENATION":
            return _concat(sg, op)
        if name in ("PAD", "PADV2"):
            return _pad_op(sg, op)
        if name in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
            return _unary(sg, op, name.lower())
        if name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            return _lstm(sg, op)
        if name == "SVDF":
            return _svdf(sg, op)
    except (AttributeError, IndexError, TypeError, ValueError, ZeroDivisionError,
            OverflowError) as e:
        out = _t(sg, op, 0, True)
        return Work("generic", {"elements": out.elements if out is not None else 0},
                    f"shape not understood ({e})")
    out, inp = _t(sg, op, 0, True), _t(sg, op, 0)
    dtype = inp.dtype if inp is not None else "none"
    return Work(f"other:{name}:{dtype}", {"elements": out.elements if out is not None else 0})


def model_work(model: Model) -> list[Work]:
    return [operator_work(model.main, op) for op in model.main.operators]
