"""Test helper: a copy of a model with the weights of ONE operator changed.

The constant buffer is found with nanoml's own reader (nanoml.model.tflite:
`constant_offset`), never a second schema parser; every byte of the chosen
operator's largest constant input is XOR-ed with 0x55, so its output differs
while every earlier operator's stays the same.
"""

from __future__ import annotations

from pathlib import Path


def weight_tensor(model, op):
    """The operator's largest constant input (its weights), or None."""
    consts = [model.main.tensors[i] for i in op.inputs
              if i >= 0 and model.main.tensors[i].is_const and model.main.tensors[i].data]
    consts = [t for t in consts if len(t.data) >= 16]
    return max(consts, key=lambda t: len(t.data), default=None)


def middle_weighted_op(model) -> int:
    """The operator with weights closest to the middle of the model."""
    ops = model.main.operators
    cands = [op.index for op in ops if weight_tensor(model, op) is not None]
    assert cands, f"{model.path}: no operator with weights"
    mid = (len(ops) - 1) / 2
    return min(cands, key=lambda i: (abs(i - mid), i))


def tamper_weights(src: Path, dst: Path, op_index: int | None = None) -> int:
    """Write `dst`: `src` with operator `op_index`'s weights changed (default: the
    middle operator with weights). Returns the operator's index."""
    from nanoml.model import tflite
    model = tflite.load(src)
    k = middle_weighted_op(model) if op_index is None else op_index
    t = weight_tensor(model, model.main.operators[k])
    off = tflite.constant_offset(model, t)
    assert off is not None
    data = bytearray(model.raw)
    data[off:off + len(t.data)] = bytes(b ^ 0x55 for b in data[off:off + len(t.data)])
    dst.write_bytes(bytes(data))
    copy = tflite.load(dst)                      # still a valid model, one tensor changed
    assert bytes(copy.main.tensors[t.index].data) != bytes(t.data)
    assert copy.main.tensors[t.index].shape == t.shape
    return k


def shift_bias(src: Path, dst: Path, op_index: int, lsb: float = 0.5) -> None:
    """Write `dst`: `src` with operator `op_index`'s int32 bias moved by `lsb` of
    its output's quantization step (per channel, in the bias's own scale), so the
    operator's outputs round up to one LSB apart: what a kernel that rounds
    differently (CMSIS-NN against the reference kernels) looks like."""
    import numpy as np
    from nanoml.model import tflite
    model = tflite.load(src)
    op = model.main.operators[op_index]
    bias = model.main.tensors[op.inputs[2]]
    out = model.main.tensors[op.outputs[0]]
    assert bias.dtype == "int32" and bias.quant and out.quant
    off = tflite.constant_offset(model, bias)
    b = np.frombuffer(bytes(bias.data), "<i4").astype(np.int64)
    b += np.round(lsb * out.quant.scale[0] / np.asarray(bias.quant.scale)).astype(np.int64)
    data = bytearray(model.raw)
    data[off:off + len(bias.data)] = b.astype("<i4").tobytes()
    dst.write_bytes(bytes(data))
