"""One verdict for "can it run" (nanoml/model/verdict.py), shared by inspect, convert
and build, and the footprint they count (nanoml/footprint.py).

The models are built here with TFLM's generated schema object API (no TensorFlow),
and every "cannot run" the verdict gives on them is checked against TFLM's host
interpreter in a child process (tests/mutants.py `reference`), so the tests hold the
verdict to what the library does, not to what nanoml believes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from firmware_helpers import make_model
from mutants import reference, run_cli


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    return s


def _edit(src, dst, fn):
    """dst = src with fn(ModelT) applied (TFLM's schema object API)."""
    import flatbuffers
    s = _schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(src.read_bytes()), 0)
    fn(m, s)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    dst.write_bytes(bytes(b.Output()))
    return dst


def _quantize_weights(m, s, tensor_index, sg=0):
    """Make one float32 constant tensor int8 (symmetric, per tensor): a hybrid weight."""
    t = m.subgraphs[sg].tensors[tensor_index]
    buf = m.buffers[t.buffer]
    w = np.frombuffer(bytes(bytearray(buf.data)), dtype="<f4")
    scale = float(np.abs(w).max() / 127) or 1.0
    buf.data = list(np.clip(np.round(w / scale), -127, 127).astype(np.int8).tobytes())
    t.type = s.TensorType.INT8
    q = s.QuantizationParametersT()
    q.scale, q.zeroPoint = [scale], [0]
    t.quantization = q


def hybrid_fc(tmp_path, version=1):
    """A float FULLY_CONNECTED model whose weights are int8 (dynamic-range quantization)."""
    src = make_model(tmp_path / "float_fc.tflite", input_shape=(1, 8), outputs=4,
                     dtype="float32", softmax=False)

    def fn(m, s):
        op = m.subgraphs[0].operators[0]
        _quantize_weights(m, s, op.inputs[1])
        m.operatorCodes[op.opcodeIndex].version = version
    return _edit(src, tmp_path / f"hybrid_fc_v{version}.tflite", fn)


def hybrid_conv(tmp_path):
    """float input [1,6,6,1] -> CONV_2D (int8 weights [2,3,3,1], float bias) -> FULLY_CONNECTED."""
    import flatbuffers
    s = _schema()
    rng = np.random.default_rng(1)
    buffers = [s.BufferT()]
    tensors = []

    def tensor(name, shape, tt, data=None, scale=None):
        b = s.BufferT()
        if data is not None:
            b.data = list(data)
        buffers.append(b)
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), tt, len(buffers) - 1
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint = [scale], [0]
            t.quantization = q
        tensors.append(t)
        return len(tensors) - 1

    F, I8 = s.TensorType.FLOAT32, s.TensorType.INT8
    x = tensor("input", [1, 6, 6, 1], F)
    w = tensor("conv_w", [2, 3, 3, 1], I8, rng.integers(-127, 128, 18, dtype=np.int8).tobytes(), 0.01)
    b = tensor("conv_b", [2], F, np.zeros(2, "<f4").tobytes())
    y = tensor("conv_out", [1, 4, 4, 2], F)
    fw = tensor("fc_w", [3, 32], F, rng.normal(size=96).astype("<f4").tobytes())
    fb = tensor("fc_b", [3], F, np.zeros(3, "<f4").tobytes())
    z = tensor("out", [1, 3], F)
    codes = []
    for code in (s.BuiltinOperator.CONV_2D, s.BuiltinOperator.FULLY_CONNECTED):
        oc = s.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, code, 1
        codes.append(oc)
    co = s.Conv2DOptionsT()
    co.padding, co.strideW, co.strideH = s.Padding.VALID, 1, 1
    conv = s.OperatorT()
    conv.opcodeIndex, conv.inputs, conv.outputs = 0, [x, w, b], [y]
    conv.builtinOptionsType, conv.builtinOptions = s.BuiltinOptions.Conv2DOptions, co
    fc = s.OperatorT()
    fc.opcodeIndex, fc.inputs, fc.outputs = 1, [y, fw, fb], [z]
    fc.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    fc.builtinOptions = s.FullyConnectedOptionsT()
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [x], [z], [conv, fc]
    m = s.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, codes, [sg], buffers
    bld = flatbuffers.Builder(1024)
    bld.Finish(m.Pack(bld), file_identifier=b"TFL3")
    p = tmp_path / "hybrid_conv.tflite"
    p.write_bytes(bytes(bld.Output()))
    return p


def inspect_json(path, *extra):
    r = run_cli(["inspect", str(path), "--json", *extra], timeout=120)
    assert not r.traceback and r.signal is None and not r.timed_out, r.stderr[-2000:]
    return r.exit_code, json.loads(r.stdout)


# ------------------------------------------------------------------ hybrid operators

def test_hybrid_fully_connected_cannot_run(tmp_path):
    p = hybrid_fc(tmp_path)
    assert reference(p.read_bytes()).status != "ok"          # TFLM refuses it
    rc, d = inspect_json(p)
    assert rc == 1 and d["can_run"] is False
    first = d["problems"][0]
    assert first["code"] == "hybrid_op" and first["level"] == "error"
    assert first["op"] == 0 and "FULLY_CONNECTED" in first["message"]


def test_hybrid_is_reported_before_the_op_version(tmp_path):
    """kws_ref_model_float32's case: a hybrid FULLY_CONNECTED v3 (an excluded version):
    the hybrid operator is the reason, named first, not the version."""
    p = hybrid_fc(tmp_path, version=3)
    rc, d = inspect_json(p)
    assert rc == 1
    codes = [x["code"] for x in d["problems"] if x["level"] == "error"]
    assert codes[0] == "hybrid_op" and "unsupported_op_version" in codes


def test_hybrid_conv_names_the_first_hybrid_operator(tmp_path):
    p = hybrid_conv(tmp_path)
    ref = reference(p.read_bytes())
    assert ref.status != "ok", ref
    rc, d = inspect_json(p)
    assert rc == 1
    first = d["problems"][0]
    assert first["code"] == "hybrid_op" and first["op"] == 0 and "CONV_2D" in first["message"]
    assert "float32 input with int8 weights" in first["message"]


def test_float_model_is_not_hybrid(tmp_path):
    p = make_model(tmp_path / "f.tflite", input_shape=(1, 8), outputs=4, dtype="float32",
                   softmax=False)
    assert reference(p.read_bytes()).status == "ok"
    rc, d = inspect_json(p)
    assert rc == 0 and d["can_run"] and all(x["code"] != "hybrid_op" for x in d["problems"])


# ------------------------------------------------------------------ dtypes, library

def test_float16_tensor_means_cannot_run(tmp_path):
    """float16 tensors were listed as an error while `can_run` said true."""
    src = make_model(tmp_path / "f.tflite", input_shape=(1, 8), outputs=4, dtype="float32",
                     softmax=False)

    def fn(m, s):
        t = m.subgraphs[0].tensors[m.subgraphs[0].operators[0].inputs[2]]   # the bias
        buf = m.buffers[t.buffer]
        buf.data = list(np.frombuffer(bytes(bytearray(buf.data)), "<f4").astype("<f2").tobytes())
        t.type = s.TensorType.FLOAT16
    p = _edit(src, tmp_path / "f16.tflite", fn)
    # (TFLM's float kernel does not check the bias type: it would read the 2-byte
    # values as floats, past the buffer; no TFLM kernel computes in float16)
    rc, d = inspect_json(p)
    assert rc == 1 and d["can_run"] is False
    assert any(x["code"] == "unsupported_dtype" and "float16" in x["message"]
               for x in d["problems"])


def test_what_tflm_refuses_in_prepare_cannot_run(tmp_path):
    """An int8 SOFTMAX whose output zero point is not -128: no table says so, TFLM's
    kernel does in Prepare ("output->params.zero_point != -128")."""
    src = make_model(tmp_path / "f.tflite", input_shape=(1, 8), outputs=4, dtype="int8")

    def fn(m, s):
        sg = m.subgraphs[0]
        sg.tensors[sg.operators[-1].outputs[0]].quantization.zeroPoint = [5]
    p = _edit(src, tmp_path / "zp.tflite", fn)
    assert reference(p.read_bytes()).status == "refused"
    rc, d = inspect_json(p)
    assert rc == 1 and d["can_run"] is False
    assert d["problems"][0]["code"] == "library_refused"


def test_verdict_refuses_negative_dimensions_and_macs(tmp_path):
    from nanoml.model import tflite
    from nanoml.model.verdict import judge
    from nanoml.runtimes import get_runtime
    m = tflite.load(make_model(tmp_path / "m.tflite", input_shape=(1, 8), outputs=4))
    fc = m.main.operators[0]
    m.main.tensors[fc.inputs[1]].shape = [4, -8]            # weights [units, features]
    v = judge(m, get_runtime(None), check_library=False)
    codes = [p.code for p in v.errors]
    assert "bad_dimension" in codes and "bad_macs" in codes and not v.can_run


def test_absurd_figures_are_refused_and_kept_out_of_json(tmp_path, capsys):
    from nanoml.boards import get_board
    from nanoml.model import tflite
    from nanoml.model.inspect import InspectReport
    from nanoml.model.verdict import assess
    from nanoml.runtimes import get_runtime
    m = tflite.load(make_model(tmp_path / "m.tflite", input_shape=(1, 8), outputs=4))
    board, runtime = get_board(None), get_runtime(None)
    huge = {"min_bytes": 6 * 10 ** 37, "used_bytes": 6 * 10 ** 37, "exact": True, "notes": []}
    a = assess(m, board, runtime, arena=huge, check_library=False)
    assert [p.code for p in a.verdict.errors] == ["absurd_size"]
    rep = InspectReport(m, board, runtime, a.stats, a.ops, a.unsupported, a.arena,
                        a.footprint, a.verdict, a.arena_bytes)
    d = rep.to_json()
    text = json.dumps(d, allow_nan=False)
    assert str(6 * 10 ** 37)[:10] not in text
    assert d["arena_bytes"] is None and d["ram_bytes"] is None and d["can_run"] is False
    from nanoml.commands.inspect import render
    render(rep)                                       # the table too: no figure, no crash
    out = capsys.readouterr().out
    assert "n/a" in out and "cannot run" in out and "6,000,000,000" not in out


# ------------------------------------------------------------------ footprint

def test_footprint_counts_input_kind_and_profiling_build(tmp_path):
    p = make_model(tmp_path / "m.tflite", input_shape=(1, 64, 3), outputs=4)
    base = inspect_json(p)[1]
    mic = inspect_json(p, "--input", "mic")[1]
    imu = inspect_json(p, "--input", "imu", "--board", "nano33ble_sense_rev2")[1]
    prof = inspect_json(p, "--profile")[1]
    assert mic["ram_bytes"] - base["ram_bytes"] == 8_704
    assert mic["flash_bytes"] == base["flash_bytes"]
    assert imu["flash_bytes"] - base["flash_bytes"] == 17_900
    assert prof["flash_bytes"] - base["flash_bytes"] == 15_000
    assert prof["ram_bytes"] - base["ram_bytes"] == 3_400
    assert base["footprint"]["ram"]["runtime_objects"] > 0          # Wire/Wire1
    assert run_cli(["inspect", str(p), "--input", "nope"]).exit_code == 2


def test_ram_counts_the_arena_build_gives_and_nanoml_buffers(tmp_path):
    """The RAM estimate was 2.4-3.0 KB under an approximate link: the arena's margin,
    Wire/Wire1 and nanoml's ~1.5 KB of buffers were missing."""
    p = make_model(tmp_path / "m.tflite", input_shape=(1, 64, 3), outputs=4)
    d = inspect_json(p)[1]
    ram = d["footprint"]["ram"]
    assert ram["arena"] >= d["arena_bytes"] + 1024 and ram["arena"] % 16 == 0
    # + 880 B since issue 12: the raw sample capture's line, frame and parser (measured)
    assert 1_400 + 880 <= ram["nanoml"] <= 2_000 + 880
    gap = d["ram_bytes"] - (44_552 + d["arena_bytes"] + 1_024)     # the old formula
    assert 2_400 + 880 <= gap <= 3_000 + 880


@pytest.mark.parametrize("extra", [[], ["--input", "mic"], ["--input", "synthetic", "--profile"]])
def test_build_and_inspect_count_the_same_footprint(tmp_path, extra):
    p = make_model(tmp_path / "m.tflite", input_shape=(1, 64, 3), outputs=4)
    d = inspect_json(p, *extra)[1]
    r = run_cli(["build", str(p), "--no-compile", "--json", "--out", str(tmp_path / "fw"),
                 *extra], timeout=120)
    assert r.exit_code == 0, r.stdout[-1500:] + r.stderr[-1500:]
    b = json.loads(r.stdout)
    fp = b["spec"]["footprint"] if "spec" in b else b["footprint"]
    assert (fp["flash_bytes"], fp["ram_bytes"]) == (d["flash_bytes"], d["ram_bytes"])


def test_convert_and_inspect_agree_on_fit(tmp_path):
    """An ~866 KB FULLY_CONNECTED model: convert's own formula said it fits, inspect
    said it does not. Both now use the verdict."""
    from nanoml.boards import get_board
    from nanoml.model import tflite
    from nanoml.model.convert import check_converted
    from nanoml.runtimes import get_runtime
    p = make_model(tmp_path / "big.tflite", input_shape=(1, 1024), outputs=845, softmax=False)
    m = tflite.load(p)
    assert 860_000 < m.size < 870_000
    _, _, problems = check_converted(m, "int8", get_runtime(None), get_board(None))
    convert_says = any(x["level"] == "error" and "flash" in x["message"] for x in problems)
    rc, d = inspect_json(p)
    inspect_says = not d["fits"]["flash"]
    assert convert_says == inspect_says and inspect_says and rc == 1


def test_build_refuses_what_the_verdict_refuses(tmp_path):
    """build wrote firmware for a hybrid model, which fails on the board at its first
    hybrid kernel; it now stops with the verdict's reason (fit stays a warning there)."""
    p = hybrid_fc(tmp_path)
    r = run_cli(["build", str(p), "--no-compile", "--out", str(tmp_path / "fw")], timeout=120)
    assert r.exit_code == 2 and "hybrid" in r.stderr and not r.traceback
    assert not (tmp_path / "fw").exists()


@pytest.mark.parametrize("path", ["examples/gesture/gesture_int8.tflite",
                                  "tests/data/arena/models/op_tconv_int8.tflite"])
def test_hybrid_detection_reads_the_activation_and_weight_positions(path):
    """Per op, the activation input and the weights sit at different positions
    (TRANSPOSE_CONV: output shape, weights, input): making the activation float32 over
    int8 weights is hybrid; making the weights float32 too is not."""
    from conftest import ROOT
    from nanoml.model import tflite
    from nanoml.model.verdict import HYBRID_OPS, hybrid_operators
    m = tflite.load(ROOT / path)
    weighted = [op for op in m.main.operators if op.op in HYBRID_OPS]
    assert weighted and hybrid_operators(m) == []
    for op in weighted:
        act, weights = HYBRID_OPS[op.op]
        m.main.tensors[op.inputs[act]].dtype = "float32"
    found = {(i, name) for _, i, name, _, _ in hybrid_operators(m)}
    assert found == {(op.index, op.op) for op in weighted}
    for op in weighted:
        m.main.tensors[op.inputs[HYBRID_OPS[op.op][1][0]]].dtype = "float32"
    assert hybrid_operators(m) == []


def test_inspect_checks_the_input_kind_as_build_does(tmp_path):
    """`inspect --input imu` on a model with 4 channels said it runs; build refuses it."""
    p = make_model(tmp_path / "m.tflite", input_shape=(1, 32, 4), outputs=4)
    rc, d = inspect_json(p, "--input", "imu")
    assert rc == 1 and d["problems"][0]["code"] == "input_mismatch"
    assert "3, 6 or 9 channels" in d["problems"][0]["message"]
    r = run_cli(["build", str(p), "--no-compile", "--input", "imu", "--out", str(tmp_path / "fw")])
    assert r.exit_code == 2 and "3, 6 or 9 channels" in r.stderr
    assert inspect_json(p)[0] == 0                       # not asked: not judged
    assert inspect_json(p, "--input", "synthetic")[0] == 0
    rc, d = inspect_json(p, "--input", "mic", "--board", "nano33ble")
    assert rc == 1 and d["problems"][0]["code"] == "input_mismatch"
