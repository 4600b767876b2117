"""The reader's schema tables against TFLM's generated schema module (the
tflite-micro package): tensor types, enums, builtin codes, the field index of
every table field the reader reads, and the options it decodes (index, union
code and default)."""

from __future__ import annotations

import inspect
import re

import pytest

from nanoml.model import tflite
from nanoml.model.flatbuf import Buf, Table

s = pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated",
                        reason="TFLM's generated schema module (tflite-micro package) is not installed")


def enum(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_")}


def camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def vtable_offset(cls, accessor: str) -> int:
    src = inspect.getsource(getattr(cls, accessor))
    offsets = set(re.findall(r"self\._tab\.Offset\((\d+)\)", src))
    assert len(offsets) == 1, (cls.__name__, accessor, offsets)
    return int(offsets.pop())


def test_tensor_types():
    assert tflite.TENSOR_TYPES == {k: v.lower() for k, v in enum(s.TensorType).items()}
    assert set(tflite.TFLM_TYPE_BYTES) == set(tflite.TENSOR_TYPES.values())


def test_activation_padding_and_weights_format_codes():
    assert tflite.ACTIVATION == enum(s.ActivationFunctionType)
    assert tflite.PADDING == enum(s.Padding)
    assert tflite.FC_WEIGHTS_FORMATS == enum(s.FullyConnectedOptionsWeightsFormat)


def test_builtin_codes():
    assert tflite.builtin_op_names() == enum(s.BuiltinOperator)


TABLES = {"Model": tflite.F_MODEL, "OperatorCode": tflite.F_OPERATOR_CODE,
          "SubGraph": tflite.F_SUB_GRAPH, "Tensor": tflite.F_TENSOR,
          "QuantizationParameters": tflite.F_QUANTIZATION_PARAMETERS,
          "Operator": tflite.F_OPERATOR, "Buffer": tflite.F_BUFFER, "Metadata": tflite.F_METADATA}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_table_field_indices(table):
    cls = getattr(s, table)
    for name, index in TABLES[table].items():
        assert vtable_offset(cls, camel(name)) == 4 + 2 * index, (table, name)


# nanoml's option names that are not the schema's field names
OPTION_ALIASES = {"activation": "fused_activation_function", "dilation_w": "dilation_w_factor",
                  "dilation_h": "dilation_h_factor", "filter_w": "filter_width",
                  "filter_h": "filter_height"}


def empty_options(cls_name: str) -> bytes:
    """An options table with no field set (every field takes its default)."""
    import flatbuffers
    b = flatbuffers.Builder(64)
    getattr(s, f"{cls_name}Start")(b)
    b.Finish(getattr(s, f"{cls_name}End")(b))
    return bytes(b.Output())


def table(data: bytes) -> Table:
    return Buf(data).root()


@pytest.mark.parametrize("op", sorted(tflite._OPTION_FIELDS))
def test_decoded_options(op):
    cls_name, union_code, fields = tflite._OPTION_FIELDS[op]
    assert getattr(s.BuiltinOptions, cls_name) == union_code
    cls = getattr(s, cls_name)
    data = empty_options(cls_name)
    decoded = tflite._read_options(op, table(data), union_code)
    obj = cls.GetRootAs(data, 0)         # the generated reader on the same empty table
    for name, index, fmt in fields:
        accessor = camel(OPTION_ALIASES.get(name, name))
        if fmt.startswith("["):
            accessor += "Length" if hasattr(cls, accessor + "Length") else ""
        assert vtable_offset(cls, accessor) == 4 + 2 * index, (op, name)
        if fmt.startswith("["):
            assert decoded[name] == []
            continue
        default = getattr(obj, camel(OPTION_ALIASES.get(name, name)))()
        if name == "padding":
            default = tflite.PADDING[default]
        elif name == "activation":
            default = tflite.ACTIVATION[default]
        assert decoded[name] == default, (op, name, decoded[name], default)


def test_options_of_another_union_type_are_not_decoded():
    """TFLM reads options only as the op's own table (builtin_options_as_X)."""
    t = table(empty_options("Conv2DOptions"))
    assert tflite._read_options("CONV_2D", t, 1) != {}
    assert tflite._read_options("CONV_2D", t, 2) == {}
