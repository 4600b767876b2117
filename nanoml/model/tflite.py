"""Read a `.tflite` flatbuffer into plain Python data (no TensorFlow).

This module is the only code in nanoml that knows the TFLite schema: field
indices, enums and the builtin-op table (`nanoml/data/builtin_ops.json`) are
checked against TFLM's generated schema module in tests/test_schema_tables.py.
Every subgraph is read. Weight buffers are not copied: `Tensor.data` is a
memoryview into the file (or None when the tensor has no constant data).

`load()` refuses, with a one-line `ModelError`, every file that TFLM's
interpreter would refuse or crash on for reasons of the file itself (see
`_check_*` below and docs/inspect.md "What the reader refuses"); whether the
board's library supports the ops and dtypes is the verdict's business, not the
reader's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .flatbuf import Buf, FlatbufferError, Table

# Largest file load() reads. A model for the board must fit its 983,040 B of
# flash; 64 MiB leaves room for the large models inspect must still report as
# "does not fit" (mobilenet_v2 is 3.98 MB) and keeps hostile files bounded.
MAX_MODEL_BYTES = 64 * 1024 * 1024

TENSOR_TYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
    6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
    11: "complex128", 12: "uint64", 13: "resource", 14: "variant", 15: "uint32",
    16: "uint16", 17: "int4", 18: "bfloat16", 19: "int2", 20: "uint4",
    21: "float8_e4m3fn", 22: "float8_e5m2",
}
# Bytes per element as TFLM sizes a tensor (TfLiteTypeSizeOf; int4 is one byte
# per element in the arena, packed two per byte in a constant buffer). None: TFLM
# has no size for the type and refuses every model that has such a tensor.
TFLM_TYPE_BYTES: dict[str, int | None] = {
    "float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "string": None,
    "bool": 1, "int16": 2, "complex64": 8, "int8": 1, "float64": 8,
    "complex128": 16, "uint64": 8, "resource": 4, "variant": None, "uint32": 4,
    "uint16": 2, "int4": 1, "bfloat16": 2, "int2": None, "uint4": None,
    "float8_e4m3fn": 1, "float8_e5m2": 1,
}
DTYPE_BYTES = {k: v or 0 for k, v in TFLM_TYPE_BYTES.items()}

PADDING = {0: "SAME", 1: "VALID"}
ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
FC_WEIGHTS_FORMATS = {0: "DEFAULT", 1: "SHUFFLED4x16INT8"}

# TFLM's sizes are 32-bit (int element counts, int planner offsets): a tensor
# whose element count or byte size does not fit overflows on the board.
INT32_MAX = 2 ** 31 - 1
# Most tensors (and, separately, operators, buffers) read from one model: the
# board's 256 KB of RAM holds at most ~21,000 tensors (a 12-byte TfLiteEvalTensor
# each, before any data), and the bound keeps a hostile file from making the
# reader build millions of objects (a 64 MiB vector of offsets to one table).
MAX_ENTRIES = 100_000
OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"

# Field indices of the schema's tables (schema.fbs order).
F_MODEL = {"version": 0, "operator_codes": 1, "subgraphs": 2, "description": 3,
           "buffers": 4, "metadata": 6}
F_OPERATOR_CODE = {"deprecated_builtin_code": 0, "custom_code": 1, "version": 2,
                   "builtin_code": 3}
F_SUB_GRAPH = {"tensors": 0, "inputs": 1, "outputs": 2, "operators": 3, "name": 4}
F_TENSOR = {"shape": 0, "type": 1, "buffer": 2, "name": 3, "quantization": 4,
            "is_variable": 5, "shape_signature": 7}
F_QUANTIZATION_PARAMETERS = {"scale": 2, "zero_point": 3, "quantized_dimension": 6}
F_OPERATOR = {"opcode_index": 0, "inputs": 1, "outputs": 2, "builtin_options_type": 3,
              "builtin_options": 4, "custom_options": 5, "intermediates": 8}
F_BUFFER = {"data": 0, "offset": 1, "size": 2}
F_METADATA = {"name": 0, "buffer": 1}

# Builtin options we decode: op name -> (options table, its BuiltinOptions union
# code, [(field name, field index, struct fmt)]). Enough for MACs, the arena
# predictor and the latency model; other ops keep their raw table in
# Operator.options_table. Absent fields take the schema's defaults.
_OPTION_FIELDS: dict[str, tuple[str, int, list[tuple[str, int, str]]]] = {
    "CONV_2D": ("Conv2DOptions", 1, [
        ("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"), ("activation", 3, "b"),
        ("dilation_w", 4, "i"), ("dilation_h", 5, "i"), ("quantized_bias_type", 6, "b")]),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", 2, [
        ("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"),
        ("depth_multiplier", 3, "i"), ("activation", 4, "b"),
        ("dilation_w", 5, "i"), ("dilation_h", 6, "i")]),
    "TRANSPOSE_CONV": ("TransposeConvOptions", 49, [
        ("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"), ("activation", 3, "b"),
        ("quantized_bias_type", 4, "b")]),
    "AVERAGE_POOL_2D": ("Pool2DOptions", 5, [
        ("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"),
        ("filter_w", 3, "i"), ("filter_h", 4, "i"), ("activation", 5, "b")]),
    "FULLY_CONNECTED": ("FullyConnectedOptions", 8, [
        ("activation", 0, "b"), ("weights_format", 1, "b"), ("keep_num_dims", 2, "?"),
        ("asymmetric_quantize_inputs", 3, "?"), ("quantized_bias_type", 4, "b")]),
    "SOFTMAX": ("SoftmaxOptions", 9, [("beta", 0, "f")]),
    "SVDF": ("SVDFOptions", 6, [("rank", 0, "i"), ("activation", 1, "b"),
                                ("asymmetric_quantize_inputs", 2, "?")]),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("UnidirectionalSequenceLSTMOptions", 71, [
        ("activation", 0, "b"), ("cell_clip", 1, "f"), ("proj_clip", 2, "f"),
        ("time_major", 3, "?"), ("asymmetric_quantize_inputs", 4, "?"),
        ("diagonal_recurrent_tensors", 5, "?")]),
    "ADD": ("AddOptions", 11, [("activation", 0, "b"), ("pot_scale_int16", 1, "?")]),
    "SUB": ("SubOptions", 28, [("activation", 0, "b"), ("pot_scale_int16", 1, "?")]),
    "MUL": ("MulOptions", 21, [("activation", 0, "b")]),
    "CONCATENATION": ("ConcatenationOptions", 10, [("axis", 0, "i"), ("activation", 1, "b")]),
    "RESHAPE": ("ReshapeOptions", 17, [("new_shape", 0, "[i")]),
    "MEAN": ("ReducerOptions", 27, [("keep_dims", 0, "?")]),
    "SUM": ("ReducerOptions", 27, [("keep_dims", 0, "?")]),
    "REDUCE_MAX": ("ReducerOptions", 27, [("keep_dims", 0, "?")]),
    "SPLIT": ("SplitOptions", 35, [("num_splits", 0, "i")]),
    "PACK": ("PackOptions", 59, [("values_count", 0, "i"), ("axis", 1, "i")]),
    "UNPACK": ("UnpackOptions", 64, [("num", 0, "i"), ("axis", 1, "i")]),
    "STRIDED_SLICE": ("StridedSliceOptions", 32, [
        ("begin_mask", 0, "i"), ("end_mask", 1, "i"), ("ellipsis_mask", 2, "i"),
        ("new_axis_mask", 3, "i"), ("shrink_axis_mask", 4, "i"), ("offset", 5, "?")]),
    "LEAKY_RELU": ("LeakyReluOptions", 75, [("alpha", 0, "f")]),
    "SQUEEZE": ("SqueezeOptions", 30, [("squeeze_dims", 0, "[i")]),
    "GATHER": ("GatherOptions", 23, [("axis", 0, "i"), ("batch_dims", 1, "i")]),
    "RESIZE_NEAREST_NEIGHBOR": ("ResizeNearestNeighborOptions", 74, [
        ("align_corners", 0, "?"), ("half_pixel_centers", 1, "?")]),
    "RESIZE_BILINEAR": ("ResizeBilinearOptions", 15, [
        ("align_corners", 2, "?"), ("half_pixel_centers", 3, "?")]),
}
_OPTION_FIELDS["MAX_POOL_2D"] = _OPTION_FIELDS["AVERAGE_POOL_2D"]
_OPTION_FIELDS["L2_POOL_2D"] = _OPTION_FIELDS["AVERAGE_POOL_2D"]
# Schema defaults of the decoded fields that are not 0 / false.
_OPTION_DEFAULTS = {"dilation_w": 1, "dilation_h": 1, "pot_scale_int16": True}


class ModelError(ValueError):
    """The file cannot be used as a TensorFlow Lite model."""


@lru_cache(maxsize=1)
def builtin_op_names() -> dict[int, str]:
    raw = json.loads(resources.files("nanoml.data").joinpath("builtin_ops.json").read_text())
    return {int(k): v for k, v in raw.items()}


@dataclass
class Quantization:
    """Affine quantization as TFLM copies it: only when the file has both a
    scale and a zero_point vector; when their counts differ TFLM uses the first
    zero point for every channel, and so does this."""
    scale: list[float]
    zero_point: list[int]
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    @property
    def channels(self) -> int:
        return len(self.scale)

    def to_json(self) -> dict:
        return {"scale": self.scale if self.per_channel else self.scale[0],
                "zero_point": self.zero_point if self.per_channel else self.zero_point[0],
                "per_channel": self.per_channel, "axis": self.axis}


@dataclass
class Tensor:
    index: int
    name: str
    shape: list[int]
    dtype: str
    buffer: int
    quant: Quantization | None
    is_variable: bool
    data: memoryview | None          # constant data, None for activations
    shape_signature: list[int] | None = None

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(d, 0)
        return n

    @property
    def nbytes(self) -> int:
        if self.dtype == "int4":
            return (self.elements + 1) // 2
        return self.elements * DTYPE_BYTES.get(self.dtype, 0)

    @property
    def arena_bytes(self) -> int:
        """Bytes TFLM gives the tensor in the arena (int4 unpacked)."""
        return self.elements * DTYPE_BYTES.get(self.dtype, 0)

    @property
    def is_const(self) -> bool:
        return self.data is not None and len(self.data) > 0

    def brief(self) -> dict:
        d = {"index": self.index, "name": self.name, "shape": self.shape, "dtype": self.dtype}
        if self.quant:
            d.update(self.quant.to_json())
        else:
            d.update({"scale": None, "zero_point": None, "per_channel": False})
        return d


@dataclass
class Operator:
    index: int
    opcode_index: int
    op: str                  # builtin name, or "CUSTOM"
    custom_code: str | None
    version: int
    inputs: list[int]        # tensor indices, -1 = optional input absent
    outputs: list[int]
    intermediates: list[int]
    options: dict
    options_table: Table | None = field(default=None, repr=False)

    @property
    def display_name(self) -> str:
        return f"CUSTOM:{self.custom_code}" if self.op == "CUSTOM" else self.op


@dataclass
class Subgraph:
    index: int
    name: str
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    operators: list[Operator]


@dataclass
class OpCode:
    name: str
    custom_code: str | None
    version: int
    code: int = 0


@dataclass
class Model:
    path: str
    size: int
    sha256: str
    version: int
    description: str
    opcodes: list[OpCode]
    subgraphs: list[Subgraph]
    raw: bytes = field(repr=False)
    # name -> bytes of the metadata entries whose buffer exists (last one wins)
    metadata: dict[str, bytes] = field(default_factory=dict, repr=False)
    # "OfflineMemoryAllocation": one arena offset per tensor of every subgraph
    # in order (-1 = planned online), checked as TFLM reads it; None if absent
    offline_plan: list[int] | None = None
    # inconsistencies TFLM accepts (one line each, for the report)
    warnings: list[str] = field(default_factory=list)

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    @property
    def operators(self) -> list[Operator]:
        return [op for sg in self.subgraphs for op in sg.operators]

    def tensor(self, i: int, subgraph: int = 0) -> Tensor:
        return self.subgraphs[subgraph].tensors[i]

    @property
    def input_tensors(self) -> list[Tensor]:
        return [self.main.tensors[i] for i in self.main.inputs]

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.main.tensors[i] for i in self.main.outputs]


# ----------------------------------------------------------------- reading

class _Refuse(Exception):
    """One inconsistency: where (subgraph/operator/tensor) and what."""


def _label(text: str, limit: int = 60) -> str:
    """A name from the file, safe on one line."""
    s = "".join(c if c.isprintable() else "?" for c in text)
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _display_string(t: Table, index: int, default: str) -> str:
    """A name TFLM never reads (tensor, subgraph, description): a corrupt one is
    shown as such instead of refusing a model the library would run."""
    try:
        return t.string(index) or default
    except FlatbufferError:
        return "<unreadable>"


def _read_options(op_name: str, t: Table | None, union_type: int) -> dict:
    spec = _OPTION_FIELDS.get(op_name)
    # TFLM reads the options only through builtin_options_as_<Table>(), which is
    # null when the union's type is another table: then nothing is decoded.
    if t is None or spec is None or union_type != spec[1]:
        return {}
    out = {}
    for name, idx, fmt in spec[2]:
        if fmt.startswith("["):
            out[name] = t.scalars(idx, fmt[1:])
            continue
        default = _OPTION_DEFAULTS.get(name, {"?": False, "f": 0.0}.get(fmt, 0))
        v = t.scalar(idx, fmt, default)
        if name == "padding":
            v = PADDING.get(v, str(v))
        elif name == "activation":
            v = ACTIVATION.get(v, str(v))
        out[name] = v
    return out


def _read_buffers(root: Table, buf: Buf) -> tuple[list[memoryview | None], list[int]]:
    """Each buffer's data (None when empty), and the bytes from its start to the
    end of the file."""
    out: list[memoryview | None] = []
    room: list[int] = []
    for i, b in enumerate(root.tables(F_MODEL["buffers"])):
        view = b.bytes_view(F_BUFFER["data"])
        room.append(buf.size - b.vector_info(F_BUFFER["data"])[0])
        if not len(view) and b.scalar(F_BUFFER["offset"], "Q", 0) > 1 \
                and b.scalar(F_BUFFER["size"], "Q", 0):
            # TFLM reads only Buffer.data: weights stored after the flatbuffer
            # (offset/size, the >2 GB format) would silently be missing.
            raise _Refuse(f"buffer {i} keeps its data outside the flatbuffer "
                          "(offset/size): TFLM does not read such buffers")
        out.append(view if len(view) else None)
    return out, room


def _read_opcodes(root: Table) -> list[OpCode]:
    names = builtin_op_names()
    opcodes = []
    for i, oc in enumerate(root.tables(F_MODEL["operator_codes"])):
        dep = oc.scalar(F_OPERATOR_CODE["deprecated_builtin_code"], "b", 0)
        code = oc.scalar(F_OPERATOR_CODE["builtin_code"], "i", 0)
        code = max(code, dep)  # schema: builtin_code wins unless it is the placeholder
        # an unknown code is refused when an operator uses it (as TFLM does)
        name = names.get(code, f"BUILTIN_{code}")
        custom = oc.string(F_OPERATOR_CODE["custom_code"])
        opcodes.append(OpCode(name=name, custom_code=custom if name == "CUSTOM" else None,
                              version=oc.scalar(F_OPERATOR_CODE["version"], "i", 1), code=code))
    return opcodes


def _read_quant(t: Table) -> Quantization | None:
    q = t.table(F_TENSOR["quantization"])
    if q is None:
        return None
    scale = q.scalars(F_QUANTIZATION_PARAMETERS["scale"], "f")
    zp = q.scalars(F_QUANTIZATION_PARAMETERS["zero_point"], "q")
    if not scale or not zp:
        return None          # TFLM: not quantized
    if len(zp) != len(scale):
        zp = [zp[0]] * len(scale)
    return Quantization(scale=[float(s) for s in scale], zero_point=[int(z) for z in zp],
                        axis=q.scalar(F_QUANTIZATION_PARAMETERS["quantized_dimension"], "i", 0))


def _read_tensor(ti: int, t: Table, buffers: list[memoryview | None], room: list[int],
                 warnings: list[str]) -> Tensor:
    name = _display_string(t, F_TENSOR["name"], f"tensor_{ti}")
    code = t.scalar(F_TENSOR["type"], "b", 0)
    dtype = TENSOR_TYPES.get(code)
    where = f"tensor {ti} {_label(name)}"
    if dtype is None:
        raise _Refuse(f"{where}: unknown tensor type {code} (not in the TFLite schema)")
    if TFLM_TYPE_BYTES[dtype] is None:
        raise _Refuse(f"{where}: TFLM cannot hold a tensor of type {dtype} "
                      "(no element size: the interpreter refuses any model with one)")
    b = t.scalar(F_TENSOR["buffer"], "I", 0)
    if b >= len(buffers):
        raise _Refuse(f"{where}: buffer {b} does not exist (the model has {len(buffers)})")
    tensor = Tensor(index=ti, name=name, shape=t.scalars(F_TENSOR["shape"], "i"), dtype=dtype,
                    buffer=b, quant=_read_quant(t),
                    is_variable=bool(t.scalar(F_TENSOR["is_variable"], "?", False)),
                    data=buffers[b], shape_signature=_signature(t))
    _check_tensor(tensor, where, warnings, room[b])
    return tensor


def _signature(t: Table) -> list[int] | None:
    try:
        return t.scalars(F_TENSOR["shape_signature"], "i") or None
    except FlatbufferError:     # TFLM never reads it
        return None


def _check_tensor(t: Tensor, where: str, warnings: list[str], room: int) -> None:
    if any(d < 0 for d in t.shape):
        # TFLM sizes and plans every non-constant tensor from its shape (a -1 in
        # shape_signature is fine: TFLM never reads it). A constant's shape is
        # only read by its kernel, which TFLM does not check: reported.
        if not t.is_const:
            raise _Refuse(f"{where}: shape {t.shape} has a negative dimension; TFLM needs "
                          "static shapes (convert with a fixed batch size)")
        warnings.append(f"{where}: constant with a negative dimension in shape {t.shape}")
    n = math.prod(t.shape)
    size = TFLM_TYPE_BYTES[t.dtype] or 0
    if n > INT32_MAX or n * size > INT32_MAX:
        raise _Refuse(f"{where}: shape {t.shape} of {t.dtype} is {n * size:,} bytes, more than "
                      "TFLM's 32-bit sizes can hold")
    if t.data is not None and t.dtype != "resource" and len(t.data) < t.nbytes:
        # TFLM does not check this: its kernels read shape x dtype bytes from
        # the buffer's start. Within the file they read the model's next bytes
        # (the host interpreter runs; reported); past its end they read memory
        # that is not the model (the host interpreter crashes): refused.
        msg = (f"{where}: constant data is {len(t.data):,} bytes but shape {t.shape} "
               f"of {t.dtype} needs {t.nbytes:,}")
        if t.nbytes > room:
            raise _Refuse(f"{msg}, past the end of the file")
        warnings.append(msg)
    q = t.quant
    # TFLM's allocator copies per-channel scales and quantized_dimension
    # unchecked (only some kernels compare them with the shape, e.g. CONV_2D's
    # filter), and real converters write out-of-range dimensions (person_detect's
    # 1-D biases say 3): a mismatch is reported, not refused.
    if q is not None and q.per_channel and 0 <= q.axis < len(t.shape) \
            and t.shape[q.axis] != q.channels:
        warnings.append(f"{where}: {q.channels} quantization scales for dimension {q.axis} "
                        f"of size {t.shape[q.axis]}")


def _check_indices(what: str, indices: list[int], n: int, optional: bool = False) -> None:
    for i in indices:
        if i >= n or i < (-1 if optional else 0):
            raise _Refuse(f"{what} refer to tensor {i}, which does not exist "
                          f"(the subgraph has {n} tensors)")


def _read_operator(oi: int, o: Table, opcodes: list[OpCode], tensors: list[Tensor]) -> Operator:
    ci = o.scalar(F_OPERATOR["opcode_index"], "I", 0)
    if ci >= len(opcodes):
        raise _Refuse(f"operator {oi}: operator code {ci} does not exist "
                      f"(the model has {len(opcodes)})")
    oc = opcodes[ci]
    where = f"operator {oi} ({oc.name})"
    if oc.code not in builtin_op_names():
        raise _Refuse(f"operator {oi}: builtin code {oc.code} (operator code {ci}) is outside "
                      f"the schema's 0..{max(builtin_op_names())}")
    if oc.name == "CUSTOM" and oc.custom_code is None:
        raise _Refuse(f"{where}: a CUSTOM operator code without a custom name")
    if oc.name != "CUSTOM" and o.has(F_OPERATOR["custom_options"]):
        raise _Refuse(f"{where}: a builtin operator with custom options (TFLM refuses it)")
    ins = o.scalars(F_OPERATOR["inputs"], "i")
    outs = o.scalars(F_OPERATOR["outputs"], "i")
    inter = o.scalars(F_OPERATOR["intermediates"], "i")
    n = len(tensors)
    _check_indices(f"{where}: inputs", ins, n, optional=True)
    _check_indices(f"{where}: outputs", outs, n)
    _check_indices(f"{where}: intermediates", inter, n)
    for i in inter:
        if tensors[i].arena_bytes:
            raise _Refuse(f"{where}: intermediate tensor {i} has {tensors[i].arena_bytes} bytes; "
                          "TFLM supports only empty intermediates")
    opt = o.table(F_OPERATOR["builtin_options"])
    options = _read_options(oc.name, opt, o.scalar(F_OPERATOR["builtin_options_type"], "B", 0))
    _check_options(where, oc.name, options, tensors[ins[0]] if ins and ins[0] >= 0 else None)
    return Operator(index=oi, opcode_index=ci, op=oc.name, custom_code=oc.custom_code,
                    version=oc.version, inputs=ins, outputs=outs, intermediates=inter,
                    options=options, options_table=opt)


def _check_options(where: str, op: str, options: dict, first_input: Tensor | None) -> None:
    """Option values TFLM's parser refuses, and the few its kernels crash on
    (checked on the host interpreter: SIGFPE, SIGABRT). Absent options are
    zeros in TFLM."""
    if op == "SVDF" and options.get("rank", 0) < 1:
        raise _Refuse(f"{where}: rank {options.get('rank', 0)} (TFLM divides by it; "
                      "it must be at least 1)")
    beta = options.get("beta", 0.0)
    if op == "SOFTMAX" and first_input is not None and first_input.dtype in ("int8", "int16") \
            and not beta > 0:
        raise _Refuse(f"{where}: beta {beta} on a quantized input (TFLM aborts; it must be > 0)")
    bias = options.get("quantized_bias_type", 0)
    if bias not in TENSOR_TYPES:
        raise _Refuse(f"{where}: quantized_bias_type {bias} is not a tensor type")
    wf = options.get("weights_format", 0)
    if wf not in FC_WEIGHTS_FORMATS:
        raise _Refuse(f"{where}: weights_format {wf} is not in the schema")


def _read_subgraph(si: int, sg: Table, opcodes: list[OpCode], buffers: list[memoryview | None],
                   room: list[int], warnings: list[str]) -> Subgraph:
    if not sg.has(F_SUB_GRAPH["tensors"]):
        raise _Refuse("has no tensor list")
    mine: list[str] = []
    tensors = [_read_tensor(ti, t, buffers, room, mine)
               for ti, t in enumerate(sg.tables(F_SUB_GRAPH["tensors"]))]
    warnings.extend(f"subgraph {si}: {w}" for w in mine)
    inputs = sg.scalars(F_SUB_GRAPH["inputs"], "i")
    outputs = sg.scalars(F_SUB_GRAPH["outputs"], "i")
    _check_indices("inputs", inputs, len(tensors))
    _check_indices("outputs", outputs, len(tensors))
    operators = [_read_operator(oi, o, opcodes, tensors)
                 for oi, o in enumerate(sg.tables(F_SUB_GRAPH["operators"]))]
    _check_zero_dims(tensors, inputs, outputs, operators)
    _check_written(tensors, inputs, operators)
    return Subgraph(index=si, name=_display_string(sg, F_SUB_GRAPH["name"], ""), tensors=tensors,
                    inputs=inputs, outputs=outputs, operators=operators)


def _check_zero_dims(tensors: list[Tensor], inputs: list[int], outputs: list[int],
                     operators: list[Operator]) -> None:
    """A non-constant tensor that the graph uses with a 0 in its shape: TFLM
    refuses it as a dynamic tensor after Prepare, or its kernel crashes on it.
    Shape [0] alone is TFLM's legacy scalar and is accepted (LSTM intermediates)."""
    used = set(inputs) | set(outputs)
    for op in operators:
        used.update(op.inputs)
        used.update(op.outputs)
    for i in sorted(used):
        t = tensors[i] if i >= 0 else None
        if t is not None and not t.is_const and 0 in t.shape and t.shape != [0]:
            raise _Refuse(f"tensor {i} {_label(t.name)}: shape {t.shape} has a zero dimension "
                          "(TFLM treats it as a dynamic tensor, which it does not support)")


def _check_written(tensors: list[Tensor], inputs: list[int], operators: list[Operator]) -> None:
    """Tensors TFLM writes (subgraph inputs, operator outputs) must not be
    constants: TFLM would write into the model (flash, on the board)."""
    for what, indices in [("subgraph input", inputs)] + [
            (f"operator {op.index} ({op.display_name}) output", op.outputs) for op in operators]:
        for i in indices:
            t = tensors[i]
            if t.is_const and not t.is_variable:
                raise _Refuse(f"{what} tensor {i} {_label(t.name)} has constant data "
                              f"(buffer {t.buffer}): TFLM would write into the model")


def _check_counts(root: Table) -> None:
    sgs = root.tables(F_MODEL["subgraphs"]) if root.vector_info(F_MODEL["subgraphs"])[1] \
        <= MAX_ENTRIES else None
    counts = {
        "subgraphs": root.vector_info(F_MODEL["subgraphs"])[1],
        "buffers": root.vector_info(F_MODEL["buffers"])[1],
        "operator codes": root.vector_info(F_MODEL["operator_codes"])[1],
        "tensors": sum(sg.vector_info(F_SUB_GRAPH["tensors"])[1] for sg in sgs or []),
        "operators": sum(sg.vector_info(F_SUB_GRAPH["operators"])[1] for sg in sgs or []),
    }
    for what, n in counts.items():
        if n > MAX_ENTRIES:
            raise _Refuse(f"{n:,} {what}, more than the {MAX_ENTRIES:,} nanoml reads "
                          "(the board's RAM holds about 21,000 tensors at most)")


def _read_metadata(root: Table, buffers: list[memoryview | None],
                   n_tensors: int) -> tuple[dict[str, bytes], list[int] | None]:
    """Metadata entries, and the offline plan checked as TFLM reads it (every
    "OfflineMemoryAllocation" entry: [version, subgraph, count, offsets...],
    count = tensors of all subgraphs; TFLM does not check the buffer, so a short
    or missing one would be read past its end)."""
    meta: dict[str, bytes] = {}
    plan = None
    for i, m in enumerate(root.tables(F_MODEL["metadata"])):
        try:
            name = m.string(F_METADATA["name"])
        except FlatbufferError:
            # TFLM compares a name only when its length is the plan's (23): a
            # corrupt length is another entry to it, and is skipped here
            continue
        b = m.scalar(F_METADATA["buffer"], "I", 0)
        if name is None:
            continue
        if name != OFFLINE_PLAN_METADATA:
            if b < len(buffers):
                meta[name] = bytes(buffers[b] or b"")
            continue
        where = f"metadata {i} ({OFFLINE_PLAN_METADATA})"
        if b >= len(buffers):
            raise _Refuse(f"{where}: buffer {b} does not exist (the model has {len(buffers)})")
        raw = bytes(buffers[b] or b"")
        if len(raw) < 12:
            raise _Refuse(f"{where}: {len(raw)} bytes, shorter than its 12-byte header")
        count = int.from_bytes(raw[8:12], "little")
        if count != n_tensors:
            raise _Refuse(f"{where}: {count} tensor offsets for the model's {n_tensors} tensors")
        if len(raw) < 12 + 4 * count:
            raise _Refuse(f"{where}: {len(raw)} bytes, too short for {count} offsets")
        plan = [int.from_bytes(raw[12 + 4 * k:16 + 4 * k], "little", signed=True)
                for k in range(count)]
        bad = next((k for k, v in enumerate(plan) if v < -1), None)
        if bad is not None:
            raise _Refuse(f"{where}: negative offset {plan[bad]} for tensor {bad}")
        meta[name] = raw
    return meta, plan


# TFLite's standard metadata (the "TFLITE_METADATA" entry: a ModelMetadata
# flatbuffer of tensorflow_lite_support's metadata_schema.fbs, identifier "M001").
STANDARD_METADATA = "TFLITE_METADATA"
F_MODEL_METADATA = {"subgraph_metadata": 3, "associated_files": 6}
F_SUBGRAPH_METADATA = {"output_tensor_metadata": 3, "associated_files": 4}
F_TENSOR_METADATA = {"associated_files": 6}
F_ASSOCIATED_FILE = {"name": 0, "type": 2}
TENSOR_AXIS_LABELS = 2


def standard_label_files(meta: bytes) -> list[str]:
    """Names of the label files (AssociatedFile of type TENSOR_AXIS_LABELS) that a
    TFLITE_METADATA entry attaches to the first subgraph's output tensors (in
    output order), then to the subgraph and the model; [] when there are none or
    the entry cannot be read (nanoml never depends on it)."""
    try:
        if len(meta) < 8 or bytes(meta[4:8]) != b"M001":
            return []
        root = Buf(bytes(meta)).root()
        files: list[Table] = []
        sgs = root.tables(F_MODEL_METADATA["subgraph_metadata"])[:1]
        for sg in sgs:
            for tm in sg.tables(F_SUBGRAPH_METADATA["output_tensor_metadata"])[:64]:
                files += tm.tables(F_TENSOR_METADATA["associated_files"])[:64]
            files += sg.tables(F_SUBGRAPH_METADATA["associated_files"])[:64]
        files += root.tables(F_MODEL_METADATA["associated_files"])[:64]
        return [name for f in files
                if f.scalar(F_ASSOCIATED_FILE["type"], "b", 0) == TENSOR_AXIS_LABELS
                and (name := f.string(F_ASSOCIATED_FILE["name"]))]
    except (FlatbufferError, UnicodeDecodeError, OverflowError):
        return []


def _parse(data: bytes, path: str) -> Model:
    if len(data) < 8:
        raise ModelError(f"{path}: file is too short ({len(data)} bytes) to be a .tflite model")
    if bytes(data[4:8]) != b"TFL3":
        raise ModelError(f"{path}: not a TensorFlow Lite flatbuffer (missing 'TFL3' identifier)")
    buf = Buf(data)
    root = buf.root()
    version = root.scalar(F_MODEL["version"], "I", 0)
    if version != 3:
        raise ModelError(f"{path}: unsupported TFLite schema version {version} (expected 3)")
    try:
        _check_counts(root)
        opcodes = _read_opcodes(root)
        buffers, room = _read_buffers(root, buf)
        subgraphs = []
        warnings: list[str] = []
        for si, sg in enumerate(root.tables(F_MODEL["subgraphs"])):
            try:
                subgraphs.append(_read_subgraph(si, sg, opcodes, buffers, room, warnings))
            except _Refuse as e:
                raise _Refuse(f"subgraph {si}: {e}") from None
        if not subgraphs:
            raise _Refuse("model has no subgraphs")
        metadata, plan = _read_metadata(root, buffers, sum(len(s.tensors) for s in subgraphs))
    except _Refuse as e:
        raise ModelError(f"{path}: {e}") from None
    return Model(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                 version=version, description=_display_string(root, F_MODEL["description"], ""),
                 opcodes=opcodes, subgraphs=subgraphs, raw=data, metadata=metadata,
                 offline_plan=plan, warnings=warnings)


def constant_offset(model: Model, t: Tensor) -> int | None:
    """Byte offset of constant tensor `t`'s data in `model.raw` (None for an
    activation): where a test or tool may patch that tensor's bytes in a copy."""
    if t.data is None or not len(t.data):
        return None
    raw = memoryview(model.raw)
    start = _address(t.data) - _address(raw)
    if not 0 <= start <= len(raw) - len(t.data):
        return None
    return start


def _address(view: memoryview) -> int:
    import numpy as np
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


def load_bytes(data: bytes, path: str = "<bytes>") -> Model:
    try:
        return _parse(data, path)
    except FlatbufferError as e:
        raise ModelError(f"{path}: truncated or corrupt .tflite file ({e})") from None
    except (UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise ModelError(f"{path}: corrupt .tflite file ({e})") from None


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def read_model_file(path: str | Path, limit: int = MAX_MODEL_BYTES) -> bytes:
    """The bytes of a model file, after checking that it is a regular file of
    at most `limit` bytes. The file is opened non-blocking (a FIFO swapped in
    after the check cannot block) and checked again through the open handle."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ModelError(f"{p}: no such file") from None
    except OSError as e:
        raise ModelError(f"{p}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"{p}: {_file_kind(st.st_mode)}, expected a .tflite file")
    if st.st_size > limit:
        raise ModelError(f"{p}: {st.st_size:,} bytes, larger than the {limit // 2 ** 20} MiB "
                         "nanoml reads as a model (the board has 983,040 B of flash)")
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise ModelError(f"{p}: cannot read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise ModelError(f"{p}: changed while it was being opened; expected a regular file")
        try:
            # read what the file holds (+1 to see growth): read(limit) would allocate the limit
            data = f.read(min(st.st_size, limit) + 1)
        except OSError as e:
            raise ModelError(f"{p}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:
        raise ModelError(f"{p}: grew past {limit // 2 ** 20} MiB while it was being read")
    return data


def load(path: str | Path) -> Model:
    p = Path(path)
    return load_bytes(read_model_file(p), str(p))
