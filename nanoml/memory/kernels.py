"""What each kernel allocates while the interpreter prepares and runs it.

For every builtin op the library's kernel (CMSIS-NN variant where the library
uses one) does, in AllocateTensors():
- Init: one persistent allocation of its op-data struct (size: profiles.json,
  measured on the 32-bit Cortex-M4 build);
- Prepare: temporary TfLiteTensor views of some of its inputs/outputs (each a
  TfLiteTensor struct, plus, for a quantized tensor, a TfLiteAffineQuantization
  struct and a zero-point int array), persistent per-channel buffers, and
  scratch-buffer requests (CMSIS-NN working memory, planned with the
  activations).
The functions here emit those steps as allocator events, in the library's
order. They were written from reading how each kernel works and checked
event-by-event against an instrumented Cortex-M4 build (docs/arena.md).
"""

from __future__ import annotations

from typing import Callable

from .allocator import Ev


class Unmodelled(Exception):
    """The op (or this use of it) has no allocation model."""


class OpCtx:
    """Event emitter for one operator, with the tensor facts kernels look at."""

    def __init__(self, g, sg, op, events: list[Ev], prof: dict):
        self.g = g               # graph facts (events.GraphFacts)
        self.sg = sg
        self.op = op
        self.ev = events
        self.prof = prof
        self._next_obj = g.next_obj

    # -- tensor facts -------------------------------------------------------
    def tin(self, i: int) -> int:
        """Tensor index of input i, or -1 when absent/optional-omitted."""
        ins = self.op.inputs
        return ins[i] if i < len(ins) and ins[i] >= 0 else -1

    def tout(self, i: int) -> int:
        outs = self.op.outputs
        return outs[i] if i < len(outs) and outs[i] >= 0 else -1

    def tinter(self, i: int) -> int:
        it = self.op.intermediates
        return it[i] if i < len(it) and it[i] >= 0 else -1

    def t(self, idx: int):
        return self.sg.tensors[idx]

    def shape(self, idx: int) -> list[int]:
        return list(self.sg.tensors[idx].shape)

    def dtype(self, idx: int) -> str:
        return self.sg.tensors[idx].dtype

    def elements(self, idx: int) -> int:
        n = 1
        for d in self.shape(idx):
            n *= d
        return n

    # -- events -------------------------------------------------------------
    def temp(self, idx: int) -> int | None:
        """AllocateTempTfLiteTensor for tensor idx (no-op for idx < 0)."""
        if idx < 0:
            return None
        obj = self.g.new_obj()
        self.ev.append(Ev("T", self.prof["TfLiteTensor"], 4, "struct", obj))
        nq = self.g.quant_channels(self.sg.index, idx)
        if nq:
            self.ev.append(Ev("T", self.prof["TfLiteAffineQuantization"], 4, "quant", obj))
            self.ev.append(Ev("T", 4 + 4 * nq, 4, "zp", obj))
        return obj

    def tin_temp(self, i: int):
        return self.temp(self.tin(i))

    def tout_temp(self, i: int):
        return self.temp(self.tout(i))

    def release(self, *objs):
        for o in objs:
            if o is not None:
                self.ev.append(Ev("D", obj=o))

    def persistent(self, nbytes: int, tag: str = "kernel buffers"):
        self.ev.append(Ev("P", nbytes, 16, tag))

    def scratch(self, nbytes: int):
        self.ev.append(Ev("S", nbytes))
        self.g.scratch_requests.append(nbytes)


# ---------------------------------------------------------------------------
# helpers shared by several kernels

def _temps(c: OpCtx, ins=(), outs=()):
    objs = [c.tin_temp(i) for i in ins] + [c.tout_temp(i) for i in outs]
    return objs


def _simple(ins=(0,), outs=(0,)):
    """Prepare that views the given inputs/outputs and releases them."""
    def prep(c: OpCtx):
        c.release(*_temps(c, ins, outs))
    return prep


def _all_io(c: OpCtx):
    c.release(*_temps(c, range(len(c.op.inputs)), range(len(c.op.outputs))))


def _padding(in_size: int, filt: int, stride: int, dil: int, padding: str) -> int:
    """TFLM ComputePaddingHeightWidth for one dimension (the padding before)."""
    eff = (filt - 1) * dil + 1
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size + stride - eff) // stride
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2


def _is_q(dt: str) -> bool:
    return dt in ("int8", "int16")


# ---------------------------------------------------------------------------
# CMSIS-NN kernels (both libraries ship the same CMSIS-NN; Cortex-M4 = DSP, no MVE)

def _conv_scratch_s8(c: OpCtx, in_c: int, in_h: int, fw: int, fh: int, out_w: int,
                     pad_w: int, pad_h: int, sw: int, sh: int, dw: int, dh: int) -> int:
    if pad_w == 0 and pad_h == 0 and sw == 1 and sh == 1 and fw == 1 and fh == 1 \
            and dw == 1 and dh == 1:
        return 0                                   # 1x1 fast path needs none
    if in_h == 1 and out_w % 4 == 0 and dw == 1 and fh == 1:
        return 2 * in_c * fw * fh * 2              # 1xN path (same im2col buffer)
    return 2 * in_c * fw * fh * 2                  # im2col: 2 columns of int16


def _conv_scratch_s16(c: OpCtx, in_c: int, fw: int, fh: int, dw: int, dh: int) -> int:
    # arm_convolve_wrapper_s16 (DSP): fast variant when the filter is small
    if in_c * fw * fh < 512 and dw == 1 and dh == 1:
        return 2 * in_c * fw * fh * 2
    return 0


def prep_conv(c: OpCtx):
    o = c.op.options
    i, f, out = c.tin(0), c.tin(1), c.tout(0)
    ti, tf, to = c.temp(i), c.temp(f), c.temp(out)
    fshape, ishape, oshape = c.shape(f), c.shape(i), c.shape(out)
    in_dt = c.dtype(i)
    if c.dtype(f) == "int4":
        c.scratch(c.elements(f))
    if _is_q(in_dt):
        nch = fshape[0]
        c.persistent(4 * nch)
        c.persistent(4 * nch)
    # CalculateOpDataConv: its own views of input, filter, bias, output
    c.release(*_temps(c, (0, 1, 2), (0,)))
    if _is_q(in_dt):
        sw, sh = o.get("stride_w", 1), o.get("stride_h", 1)
        dw, dh = o.get("dilation_w", 1), o.get("dilation_h", 1)
        pad = o.get("padding", "SAME")
        pw = _padding(ishape[2], fshape[2], sw, dw, pad)
        ph = _padding(ishape[1], fshape[1], sh, dh, pad)
        if in_dt == "int8":
            n = _conv_scratch_s8(c, ishape[3], ishape[1], fshape[2], fshape[1], oshape[2],
                                 pw, ph, sw, sh, dw, dh)
        else:
            n = _conv_scratch_s16(c, ishape[3], fshape[2], fshape[1], dw, dh)
        if n > 0:
            c.scratch(n)
    c.release(to, ti, tf)


def prep_depthwise(c: OpCtx):
    o = c.op.options
    i, f, out = c.tin(0), c.tin(1), c.tout(0)
    ti, tf, to = c.temp(i), c.temp(f), c.temp(out)
    in_dt = c.dtype(i)
    fshape, ishape, oshape = c.shape(f), c.shape(i), c.shape(out)
    if _is_q(in_dt):
        nch = fshape[3]
        c.persistent(4 * nch)
        c.persistent(4 * nch)
    if c.dtype(f) == "int4":
        c.scratch(c.elements(f))
    c.release(*_temps(c, (0, 1, 2), (0,)))
    if in_dt == "int8":
        dw, dh = o.get("dilation_w", 1), o.get("dilation_h", 1)
        n = 0
        if ishape[3] == oshape[3] and ishape[0] == 1 and dw == 1 and dh == 1:
            n = ishape[3] * fshape[2] * fshape[1] * 2
        if n > 0:
            c.scratch(n)
    c.release(to, ti, tf)


def prep_fully_connected(c: OpCtx):
    i, f, b, out = c.tin(0), c.tin(1), c.tin(2), c.tout(0)
    ti, tf, tb, to = c.temp(i), c.temp(f), c.temp(b), c.temp(out)
    oshape, fshape = c.shape(out), c.shape(f)
    in_dt = c.dtype(i)
    if in_dt == "int8":
        accum = fshape[-1]
        if len(oshape) > 2 and accum % 4 == 0:
            c.persistent(4 * oshape[-1])
            c.persistent(4 * oshape[-1])
    if c.dtype(f) == "int4":
        c.scratch(c.elements(f))
    c.release(to, ti, tf, tb)


def prep_pool(c: OpCtx, average: bool):
    c.release(*_temps(c, (0,), (0,)))            # PoolingPrepare
    if not average:
        return
    ti, to = c.tin_temp(0), c.tout_temp(0)
    dt = c.dtype(c.tin(0))
    if dt == "int8" or (dt == "int16" and c.prof.get("avgpool_s16_scratch", False)):
        depth = c.shape(c.tout(0))[3]
        c.scratch(4 * depth)
    c.release(to, ti)


def prep_softmax(c: OpCtx):
    ti, to = c.tin_temp(0), c.tout_temp(0)
    if c.dtype(c.tin(0)) == "int16":
        c.persistent(2 * 513)
        c.persistent(2 * 513)
    c.release(ti, to)


def prep_svdf(c: OpCtx):
    objs = [c.tin_temp(0), c.tin_temp(1), c.tin_temp(2), c.tin_temp(3), c.tin_temp(4)]
    objs.append(c.tout_temp(0))
    ishape = c.shape(c.tin(0))
    batch = ishape[0]
    nfilt = c.shape(c.tin(1))[0]
    rank = max(c.op.options.get("rank", 1), 1)
    c.scratch(batch * nfilt * 4)
    if c.dtype(c.tin(0)) == "int8":
        c.scratch(batch * (nfilt // rank) * 4)
    c.release(*objs)


def prep_concatenation(c: OpCtx):
    c.release(c.tin_temp(0), c.tout_temp(0))
    for k in range(len(c.op.inputs)):
        c.release(c.tin_temp(k))
    to = c.tout_temp(0)
    if c.dtype(c.tout(0)) == "int8":
        n = len(c.op.inputs)
        c.persistent(4 * n)
        c.persistent(4 * n)
        for k in range(n):
            c.release(c.tin_temp(k))
    c.release(to)


def prep_mean_sum(c: OpCtx):
    ti, to, ta = c.tin_temp(0), c.tout_temp(0), c.tin_temp(1)
    dt = c.dtype(c.tin(0))
    if dt in ("int8", "int16"):
        c.scratch(c.elements(c.tout(0)) * 4)
    # PrepareSimple
    t2, a2 = c.tin_temp(0), c.tin_temp(1)
    if dt == "int8":
        c.release(c.tout_temp(0))
    c.release(a2, t2)
    c.release(ti, to, ta)


def prep_reduce_max(c: OpCtx):
    t2, a2 = c.tin_temp(0), c.tin_temp(1)
    if c.dtype(c.tin(0)) == "int8":
        c.release(c.tout_temp(0))
    c.release(a2, t2)
    ti, to, ta = c.tin_temp(0), c.tout_temp(0), c.tin_temp(1)
    c.scratch(4 * len(c.shape(c.tin(0))))
    c.scratch(4 * c.elements(c.tin(1)))
    c.release(ti, to, ta)


def prep_pad(c: OpCtx):
    objs = [c.tin_temp(0), c.tin_temp(1)]
    if len(c.op.inputs) == 3:
        objs.append(c.tin_temp(2))
    objs.append(c.tout_temp(0))
    c.release(*objs)


# -- LSTM (Chirale 2.0.0's kernel: integer 8x8->16 with precomputed biases) ---

_LSTM_IN, _I2I, _I2F, _I2C, _I2O = 0, 1, 2, 3, 4
_R2I, _R2F, _R2C, _R2O = 5, 6, 7, 8
_C2I, _C2F, _C2O = 9, 10, 11
_IGB, _FGB, _CGB, _OGB = 12, 13, 14, 15
_PROJ_W, _PROJ_B = 16, 17
_OUT_STATE, _CELL_STATE = 18, 19
_LN = (20, 21, 22, 23)


def prep_lstm_2022(c: OpCtx):
    use_ln = False
    if len(c.op.inputs) == 24:
        o = c.tin_temp(21)
        use_ln = o is not None
        c.release(o)
    elif len(c.op.inputs) != 20:
        raise Unmodelled("UNIDIRECTIONAL_SEQUENCE_LSTM with an unexpected input count")
    keep = [c.tin_temp(_LSTM_IN), c.tin_temp(_I2O), c.tin_temp(_R2O)]
    integer = c.dtype(c.tin(_LSTM_IN)) == "int8"
    # CheckInputTensorDimensions
    objs = [c.tin_temp(k) for k in (_I2I, _I2F, _I2C, _R2I, _R2F, _R2C, _C2I, _C2F, _C2O,
                                    _IGB, _FGB, _CGB, _OGB, _PROJ_W, _PROJ_B)]
    if use_ln:
        objs += [c.tin_temp(k) for k in _LN]
    c.release(*objs)
    keep += [c.tout_temp(0), c.tin_temp(_OUT_STATE), c.tin_temp(_CELL_STATE), c.tin_temp(_I2I)]
    ishape = c.shape(c.tin(_LSTM_IN))
    time_major = c.op.options.get("time_major", False)
    n_batch = ishape[1] if time_major else ishape[0]
    n_cell = c.shape(c.tin(_I2O))[0]
    if not integer:
        gates = 4 if c.tin(_I2I) >= 0 else 3
        size = {"float32": 4, "int16": 2, "int8": 1}.get(c.dtype(c.tin(_LSTM_IN)), 4)
        c.scratch(n_batch * n_cell * gates * size)
    else:
        # PopulateQuantizedLstmParams8x8_16
        objs = [c.tin_temp(_CELL_STATE), c.tout_temp(0), c.tin_temp(_LSTM_IN)]
        objs += [c.tin_temp(k) for k in range(1, 12)]
        objs += [c.tin_temp(k) for k in _LN]
        objs += [c.tin_temp(_PROJ_W), c.tin_temp(_OUT_STATE)]
        for k in range(4):
            if use_ln:
                c.release(c.temp(c.tinter(k)))
        c.release(c.temp(c.tinter(4)))
        c.release(*objs)
        for k in range(5):
            c.scratch(n_batch * n_cell * (1 if k == 4 else 2))
        # PopulatePrecomputedZPTimesWeightsWithBias
        objs = [c.tin_temp(_LSTM_IN), c.tin_temp(_OUT_STATE)]
        objs += [c.tin_temp(k) for k in (_I2I, _I2F, _I2C, _I2O, _R2I, _R2F, _R2C, _R2O,
                                         _PROJ_W, _PROJ_B)]
        objs.append(c.temp(c.tinter(4)))

        def zp_bias(w):
            if c.tin(w) >= 0:
                c.persistent(4 * c.shape(c.tin(w))[0])
        for bias, (wi, wr) in ((_FGB, (_I2F, _R2F)), (_CGB, (_I2C, _R2C)),
                               (_OGB, (_I2O, _R2O)), (_IGB, (_I2I, _R2I))):
            if not use_ln:
                objs.append(c.tin_temp(bias))
            zp_bias(wi)
            zp_bias(wr)
        zp_bias(_PROJ_W)
        c.release(*objs)
    c.release(*keep)


def prep_lstm_2023(c: OpCtx):
    """The archived library's kernel (TFLM 2023 rewrite: per-gate parameters
    computed on the stack, no persistent buffers in Prepare)."""
    if len(c.op.inputs) != 24:
        raise Unmodelled("UNIDIRECTIONAL_SEQUENCE_LSTM needs 24 inputs in this library")
    objs = [c.tin_temp(k) for k in range(24)]
    objs.append(c.tout_temp(0))
    ishape = c.shape(c.tin(_LSTM_IN))
    time_major = c.op.options.get("time_major", False)
    batch = ishape[1] if time_major else ishape[0]
    state = c.shape(c.tin(_OUT_STATE))[1]
    cell = {"float32": 4, "int16": 2}.get(c.dtype(c.tin(_CELL_STATE)))
    if cell is None:
        raise Unmodelled("UNIDIRECTIONAL_SEQUENCE_LSTM cell state type not supported")
    for _ in range(4):
        c.scratch(batch * state * cell)
    c.release(*objs)


def prep_tanh(c: OpCtx):
    ti = c.tin_temp(0)
    c.release(*_temps(c, (0,), (0,)))          # CalculateArithmeticOpData
    c.release(ti)


def prep_transpose_conv(c: OpCtx):
    to, ti, tf = c.tout_temp(0), c.tin_temp(1 + 1), c.tin_temp(1)
    # (input is input 2, filter input 1; output-shape input 0 is not viewed)
    nch = c.shape(c.tin(1))[0]
    c.persistent(4 * nch)
    c.persistent(4 * nch)
    in_dt = c.dtype(c.tin(2))
    if in_dt == "int8":
        c.scratch(c.elements(c.tout(0)) * 4)
    elif in_dt == "int16":
        c.scratch(c.elements(c.tout(0)) * 8)
    if in_dt != "float32":                      # CalculateOpData
        objs = [c.tin_temp(2), c.tin_temp(1), c.tin_temp(3), c.tout_temp(0)]
        if in_dt == "int16" and c.tin(3) >= 0 and c.dtype(c.tin(3)) == "int16":
            c.scratch(c.shape(c.tin(3))[0] * 8 if c.shape(c.tin(3)) else 8)
        c.release(*objs)
    c.release(to, ti, tf)


def prep_out_dims_copy(ins=(0,), outs=(0,), out_first=False):
    """Views, then a persistent copy of the output's dims (TfLiteIntArray)."""
    def prep(c: OpCtx):
        objs = (_temps(c, (), outs) + _temps(c, ins, ())) if out_first else _temps(c, ins, outs)
        c.persistent(4 + 4 * len(c.shape(c.tout(0))))
        c.release(*objs)
    return prep


def prep_log_softmax(c: OpCtx):
    objs = _temps(c, (0,), (0,))
    if c.dtype(c.tin(0)) == "int8":
        c.persistent(c.prof["LogSoftmaxOpData"])
    c.release(*objs)


def prep_mirror_pad(c: OpCtx):
    objs = _temps(c, (0, 1), (0,))
    rank = len(c.shape(c.tin(0)))
    c.scratch(4 * rank)
    c.scratch(4 * rank)
    c.release(*objs)


def prep_add_n(c: OpCtx):
    first, out = c.tin_temp(0), c.tout_temp(0)
    n = len(c.op.inputs)
    for k in range(1, n):
        c.release(c.tin_temp(k))
    dt = c.dtype(c.tout(0))
    if dt == "float32":
        c.scratch(4 * n)
    elif dt == "int8":
        c.persistent(c.prof["AddNOpData"])
        c.scratch(4 * n)
    c.release(first, out)


def prep_cumsum(c: OpCtx):
    objs = _temps(c, (0, 1), (0,))
    if c.dtype(c.tout(0)) == "int8":
        c.persistent(c.prof["CumsumOpData"])
    c.release(*objs)


def prep_select(c: OpCtx):
    c.release(*_temps(c, (0, 1, 2), (0,)))


def _none(c: OpCtx):
    return None


# Allowances for an op with no model (safe upper bound, not a measurement):
UNMODELLED_PERSISTENT = 4096      # op data / tables allocated by an unknown kernel
UNMODELLED_VIEWS = 2              # each input/output viewed this many times at once


def prep_unmodelled(c: OpCtx):
    """Pessimistic stand-in for a kernel with no model: every input, output and
    intermediate viewed twice at once, a persistent allowance plus 8 bytes per
    output channel, and a scratch buffer as large as all its tensors together."""
    objs = []
    for _ in range(UNMODELLED_VIEWS):
        objs += [c.temp(t) for t in c.op.inputs] + [c.temp(t) for t in c.op.outputs]
        objs += [c.temp(t) for t in c.op.intermediates]
    chans = max([c.shape(t)[-1] for t in c.op.outputs if t >= 0 and c.shape(t)] or [1])
    c.persistent(UNMODELLED_PERSISTENT + 8 * chans, tag="unmodelled allowance")
    total = sum(c.elements(t) * 8 for t in list(c.op.inputs) + list(c.op.outputs) if t >= 0)
    c.scratch(max(total, 16))
    c.release(*objs)


# ---------------------------------------------------------------------------
# op -> prepare function. Ops with no Prepare allocations use _none.

PREPARE: dict[str, Callable | None] = {
    "CONV_2D": prep_conv,
    "DEPTHWISE_CONV_2D": prep_depthwise,
    "FULLY_CONNECTED": prep_fully_connected,
    "AVERAGE_POOL_2D": lambda c: prep_pool(c, True),
    "MAX_POOL_2D": lambda c: prep_pool(c, False),
    "L2_POOL_2D": prep_out_dims_copy(out_first=True),
    "SOFTMAX": prep_softmax,
    "LOG_SOFTMAX": prep_log_softmax,
    "SVDF": prep_svdf,
    "TRANSPOSE_CONV": prep_transpose_conv,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": prep_lstm_2022,
    # one input, one output, viewed once
    **{op: _simple((0,), (0,)) for op in (
        "RESHAPE", "QUANTIZE", "DEQUANTIZE", "LOGISTIC", "RELU", "LEAKY_RELU", "HARD_SWISH",
        "SQUEEZE", "ABS", "SQRT", "RSQRT", "SQUARE", "SIN", "COS", "LOG", "EXP", "ELU",
        "CAST", "L2_NORMALIZATION", "ROUND", "CEIL", "ZEROS_LIKE", "BATCH_TO_SPACE_ND",
        "SPACE_TO_BATCH_ND", "LOGICAL_NOT")},
    "RELU6": _simple((0,), ()),
    "TANH": prep_tanh,
    # two inputs, one output
    **{op: _simple((0, 1), (0,)) for op in (
        "ADD", "MUL", "SUB", "DIV", "SQUARED_DIFFERENCE", "FLOOR_DIV", "FLOOR_MOD",
        "PRELU", "GATHER_ND", "EXPAND_DIMS", "TRANSPOSE", "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR", "FILL", "BROADCAST_TO", "BROADCAST_ARGS")},
    **{op: _simple((0, 1), ()) for op in (
        "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL")},
    "SLICE": _simple((0, 1, 2), (0,)),
    "STRIDED_SLICE": _simple((0, 1, 2, 3), (0,)),
    "SPLIT": _simple((0,), ()),
    "SPLIT_V": _simple((2,), ()),
    "DEPTH_TO_SPACE": prep_out_dims_copy(),
    "SPACE_TO_DEPTH": prep_out_dims_copy(),
    "GATHER": prep_out_dims_copy(ins=(0, 1)),
    "PAD": prep_pad,
    "PADV2": prep_pad,
    "MIRROR_PAD": prep_mirror_pad,
    "MEAN": prep_mean_sum,
    "SUM": prep_mean_sum,
    "REDUCE_MAX": prep_reduce_max,
    "CONCATENATION": prep_concatenation,
    "ADD_N": prep_add_n,
    "CUMSUM": prep_cumsum,
    "SELECT_V2": prep_select,
    # no allocations in Prepare
    **{op: _none for op in (
        "FLOOR", "MAXIMUM", "MINIMUM", "NEG", "PACK", "UNPACK", "ARG_MAX", "ARG_MIN",
        "SHAPE", "LOGICAL_AND", "LOGICAL_OR")},
}

# Kernels that view tensors while running (Invoke): the temporaries go after
# the plan at the head and are reset after each operator.
EVAL: dict[str, Callable] = {
    "SELECT_V2": lambda c: c.release(*_temps(c, (0, 1, 2), (0,))),
}

def prep_reshape_2023(c: OpCtx):
    """The archived library's RESHAPE: copies the output dims to the arena when
    the output shape has a -1 to resolve."""
    objs = _temps(c, (0,), (0,))
    if -1 in c.shape(c.tout(0)):
        c.persistent(4 + 4 * len(c.shape(c.tout(0))))
    c.release(*objs)


# Kernels that differ between runtime libraries, selected by name from the
# runtime profile (profiles.json "kernels": {op: variant}).
VARIANTS: dict[str, Callable] = {
    "lstm_2022": prep_lstm_2022,
    "lstm_2023": prep_lstm_2023,
    "gather_nd_dims_copy": prep_out_dims_copy(ins=(0, 1)),
    "reshape_2023": prep_reshape_2023,
}
