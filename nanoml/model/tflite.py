"""Read a `.tflite` flatbuffer into plain Python data (no TensorFlow).

Field indices follow TensorFlow Lite's `schema.fbs`. Every subgraph is read.
Weight buffers are not copied: `Tensor.data` is a memoryview into the file
(or None when the tensor has no constant data).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .flatbuf import Buf, FlatbufferError, Table

TENSOR_TYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
    6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
    11: "complex128", 12: "uint64", 13: "resource", 14: "variant", 15: "uint32",
    16: "uint16", 17: "int4", 18: "bfloat16",
}
# bytes per element; int4 is packed two per byte (handled in Tensor.nbytes)
DTYPE_BYTES = {
    "float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "string": 1,
    "bool": 1, "int16": 2, "complex64": 8, "int8": 1, "float64": 8,
    "complex128": 16, "uint64": 8, "resource": 0, "variant": 0, "uint32": 4,
    "uint16": 2, "int4": 1, "bfloat16": 2,
}

PADDING = {0: "SAME", 1: "VALID"}
ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH",
              5: "SIGN_BIT", 6: "SIGMOID"}

# Builtin options we decode: op name -> [(field name, field index, struct fmt)].
# Enough for MACs, the arena predictor and the latency model; other ops keep
# their raw table in Operator.options_table.
_OPTION_FIELDS: dict[str, list[tuple[str, int, str]]] = {
    "CONV_2D": [("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"),
                ("activation", 3, "b"), ("dilation_w", 4, "i"), ("dilation_h", 5, "i")],
    "DEPTHWISE_CONV_2D": [("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"),
                          ("depth_multiplier", 3, "i"), ("activation", 4, "b"),
                          ("dilation_w", 5, "i"), ("dilation_h", 6, "i")],
    "TRANSPOSE_CONV": [("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"),
                       ("activation", 3, "b")],
    "AVERAGE_POOL_2D": [("padding", 0, "b"), ("stride_w", 1, "i"), ("stride_h", 2, "i"),
                        ("filter_w", 3, "i"), ("filter_h", 4, "i"), ("activation", 5, "b")],
    "FULLY_CONNECTED": [("activation", 0, "b"), ("weights_format", 1, "b"),
                        ("keep_num_dims", 2, "?"), ("asymmetric_quantize_inputs", 3, "?")],
    "SOFTMAX": [("beta", 0, "f")],
    "SVDF": [("rank", 0, "i"), ("activation", 1, "b"), ("asymmetric_quantize_inputs", 2, "?")],
    "UNIDIRECTIONAL_SEQUENCE_LSTM": [("activation", 0, "b"), ("cell_clip", 1, "f"),
                                     ("proj_clip", 2, "f"), ("time_major", 3, "?"),
                                     ("asymmetric_quantize_inputs", 4, "?"),
                                     ("diagonal_recurrent_tensors", 5, "?")],
    "ADD": [("activation", 0, "b"), ("pot_scale_int16", 1, "?")],
    "SUB": [("activation", 0, "b"), ("pot_scale_int16", 1, "?")],
    "MUL": [("activation", 0, "b")],
    "CONCATENATION": [("axis", 0, "i"), ("activation", 1, "b")],
    "RESHAPE": [("new_shape", 0, "[i")],
    "MEAN": [("keep_dims", 0, "?")],
    "SUM": [("keep_dims", 0, "?")],
    "REDUCE_MAX": [("keep_dims", 0, "?")],
    "SPLIT": [("num_splits", 0, "i")],
    "PACK": [("values_count", 0, "i"), ("axis", 1, "i")],
    "UNPACK": [("num", 0, "i"), ("axis", 1, "i")],
    "STRIDED_SLICE": [("begin_mask", 0, "i"), ("end_mask", 1, "i"), ("ellipsis_mask", 2, "i"),
                      ("new_axis_mask", 3, "i"), ("shrink_axis_mask", 4, "i"), ("offset", 5, "?")],
    "LEAKY_RELU": [("alpha", 0, "f")],
    "SQUEEZE": [("squeeze_dims", 0, "[i")],
    "GATHER": [("axis", 0, "i"), ("batch_dims", 1, "i")],
    "RESIZE_NEAREST_NEIGHBOR": [("align_corners", 0, "?"), ("half_pixel_centers", 1, "?")],
    "RESIZE_BILINEAR": [("align_corners", 2, "?"), ("half_pixel_centers", 3, "?")],
}
_OPTION_FIELDS["MAX_POOL_2D"] = _OPTION_FIELDS["AVERAGE_POOL_2D"]
_OPTION_FIELDS["L2_POOL_2D"] = _OPTION_FIELDS["AVERAGE_POOL_2D"]


class ModelError(ValueError):
    """The file cannot be used as a TensorFlow Lite model."""


@lru_cache(maxsize=1)
def builtin_op_names() -> dict[int, str]:
    raw = json.loads(resources.files("nanoml.data").joinpath("builtin_ops.json").read_text())
    return {int(k): v for k, v in raw.items()}


@dataclass
class Quantization:
    scale: list[float]
    zero_point: list[int]
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

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


def _read_options(op_name: str, t: Table | None) -> dict:
    if t is None:
        return {}
    out = {}
    for name, idx, fmt in _OPTION_FIELDS.get(op_name, []):
        if fmt.startswith("["):
            out[name] = t.scalars(idx, fmt[1:])
            continue
        default = {"?": False, "f": 0.0}.get(fmt, 0)
        if name.startswith(("stride", "dilation", "filter", "depth_multiplier")):
            default = 1 if name != "filter_w" and name != "filter_h" else 0
        v = t.scalar(idx, fmt, default)
        if name == "padding":
            v = PADDING.get(v, str(v))
        elif name == "activation":
            v = ACTIVATION.get(v, str(v))
        out[name] = v
    return out


def _parse(data: bytes, path: str) -> Model:
    if len(data) < 8:
        raise ModelError(f"{path}: file is too short ({len(data)} bytes) to be a .tflite model")
    if bytes(data[4:8]) != b"TFL3":
        raise ModelError(f"{path}: not a TensorFlow Lite flatbuffer (missing 'TFL3' identifier)")
    buf = Buf(data)
    names = builtin_op_names()
    root = buf.root()
    version = root.scalar(0, "I", 0)
    if version != 3:
        raise ModelError(f"{path}: unsupported TFLite schema version {version} (expected 3)")

    opcodes = []
    for oc in root.tables(1):
        dep = oc.scalar(0, "b", 0)
        code = oc.scalar(3, "i", 0)
        code = max(code, dep)  # schema: builtin_code wins unless it is the placeholder
        custom = oc.string(1)
        name = names.get(code, f"BUILTIN_{code}")
        opcodes.append(OpCode(name=name, custom_code=custom if name == "CUSTOM" else None,
                              version=oc.scalar(2, "i", 1)))

    buffers = root.tables(4)
    buffer_data: list[memoryview | None] = []
    for b in buffers:
        view = b.bytes_view(0)
        if not len(view):
            off, size = b.scalar(1, "Q", 0), b.scalar(2, "Q", 0)
            if off > 1 and size:
                buf.check(off, size)
                view = buf.data[off:off + size]
        buffer_data.append(view if len(view) else None)

    subgraphs = []
    for si, sg in enumerate(root.tables(2)):
        tensors = []
        for ti, t in enumerate(sg.tables(0)):
            q = t.table(4)
            quant = None
            if q is not None:
                scale = q.scalars(2, "f")
                zp = q.scalars(3, "q")
                if scale:
                    quant = Quantization(scale=[float(s) for s in scale],
                                         zero_point=[int(z) for z in zp] or [0] * len(scale),
                                         axis=q.scalar(6, "i", 0))
            b = t.scalar(2, "I", 0)
            dtype_code = t.scalar(1, "b", 0)
            tensors.append(Tensor(
                index=ti, name=t.string(3) or f"tensor_{ti}", shape=t.scalars(0, "i"),
                dtype=TENSOR_TYPES.get(dtype_code, f"type{dtype_code}"), buffer=b, quant=quant,
                is_variable=bool(t.scalar(5, "?", False)),
                data=buffer_data[b] if 0 < b < len(buffer_data) else None,
                shape_signature=t.scalars(7, "i") or None))
        operators = []
        for oi, o in enumerate(sg.tables(3)):
            ci = o.scalar(0, "I", 0)
            if ci >= len(opcodes):
                raise ModelError(f"{path}: operator {oi} refers to missing opcode {ci}")
            oc = opcodes[ci]
            opt = o.table(4)
            ins = o.scalars(1, "i")
            outs = o.scalars(2, "i")
            for ti in ins + outs:
                if ti >= len(tensors) or ti < -1:
                    raise ModelError(f"{path}: operator {oi} refers to missing tensor {ti}")
            operators.append(Operator(
                index=oi, opcode_index=ci, op=oc.name, custom_code=oc.custom_code,
                version=oc.version, inputs=ins, outputs=outs, intermediates=o.scalars(8, "i"),
                options=_read_options(oc.name, opt), options_table=opt))
        subgraphs.append(Subgraph(index=si, name=sg.string(4) or "", tensors=tensors,
                                  inputs=sg.scalars(1, "i"), outputs=sg.scalars(2, "i"),
                                  operators=operators))
    if not subgraphs:
        raise ModelError(f"{path}: model has no subgraphs")
    return Model(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                 version=version, description=root.string(3) or "", opcodes=opcodes,
                 subgraphs=subgraphs, raw=data)


def load_bytes(data: bytes, path: str = "<bytes>") -> Model:
    try:
        return _parse(data, path)
    except FlatbufferError as e:
        raise ModelError(f"{path}: truncated or corrupt .tflite file ({e})") from None
    except (UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise ModelError(f"{path}: corrupt .tflite file ({e})") from None


def load(path: str | Path) -> Model:
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such file")
    if p.is_dir():
        raise ModelError(f"{p}: is a directory, expected a .tflite file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelError(f"{p}: cannot read ({e.strerror})") from None
    return load_bytes(data, str(p))
