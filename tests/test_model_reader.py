"""The model reader (nanoml/model/tflite.py) refuses, in one line, what TFLM's
interpreter refuses or crashes on for reasons of the file itself, accepts what
it accepts, and checks files before reading them (issue 9)."""

from __future__ import annotations

import copy
import os
import stat
import threading

import pytest

from conftest import EXAMPLES, SHARED
from mutants import reference, run_cli

from nanoml.model import tflite

SINE = EXAMPLES / "sine" / "sine_int8.tflite"          # 3 FULLY_CONNECTED, int8
GESTURE = EXAMPLES / "gesture" / "gesture_int8.tflite"  # CNN ending in an int8 SOFTMAX


def schema():
    return pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated",
                               reason="the tflite-micro package writes the mutated models")


def mutate(path, change) -> bytes:
    """`path` with `change(model_t, schema)` applied through TFLM's schema object API."""
    import flatbuffers
    s = schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    change(m, s)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def refused(data: bytes, *words: str) -> str:
    with pytest.raises(tflite.ModelError) as e:
        tflite.load_bytes(data, "m.tflite")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("m.tflite: ")
    for w in words:
        assert w in msg, msg
    return msg


def tensor(m, i):
    return m.subgraphs[0].tensors[i]


def set_attr(obj_of, attr, value):
    def change(m, s):
        setattr(obj_of(m), attr, value)
    return change


def add_offline_plan(words: list[int] | None, buffer: int | None = None, raw: bytes | None = None):
    def change(m, s):
        b = s.BufferT()
        b.data = list(raw if raw is not None else
                      b"".join(w.to_bytes(4, "little", signed=True) for w in words))
        m.buffers.append(b)
        md = s.MetadataT()
        md.name = "OfflineMemoryAllocation"
        md.buffer = len(m.buffers) - 1 if buffer is None else buffer
        m.metadata = list(m.metadata or []) + [md]
    return change


# ---------------------------------------------------------------- refusals
# (mutation, words the one-line message must contain, what TFLM's host interpreter does)

CASES = {
    "unknown tensor type": (set_attr(lambda m: tensor(m, 7), "type", 99),
                            ["tensor 7", "unknown tensor type 99"], {"refused"}),
    "tensor type TFLM cannot size": (set_attr(lambda m: tensor(m, 7), "type", 5),
                                     ["tensor 7", "string"], {"refused"}),
    "negative activation dimension": (set_attr(lambda m: tensor(m, 7), "shape", [1, -3]),
                                      ["tensor 7", "negative dimension"], None),
    "zero activation dimension": (set_attr(lambda m: tensor(m, 0), "shape", [0, 1]),
                                  ["tensor 0", "zero dimension"], {"crashed", "refused"}),
    "32-bit overflow": (set_attr(lambda m: tensor(m, 7), "shape", [65536, 65536]),
                        ["tensor 7", "32-bit"], None),
    "subgraph input -3": (set_attr(lambda m: m.subgraphs[0], "inputs", [-3]),
                          ["subgraph 0", "inputs", "-3"], {"crashed", "refused"}),
    "subgraph output out of range": (set_attr(lambda m: m.subgraphs[0], "outputs", [10]),
                                     ["subgraph 0", "outputs", "tensor 10"], None),
    "operator output -1": (set_attr(lambda m: m.subgraphs[0].operators[0], "outputs", [-1]),
                           ["operator 0 (FULLY_CONNECTED)", "outputs"], {"crashed", "refused"}),
    "operator intermediate out of range": (
        set_attr(lambda m: m.subgraphs[0].operators[1], "intermediates", [10]),
        ["operator 1", "intermediates", "tensor 10"], None),
    "intermediate with data": (
        set_attr(lambda m: m.subgraphs[0].operators[1], "intermediates", [7]),
        ["operator 1", "intermediate tensor 7"], {"refused"}),
    "buffer index out of range": (set_attr(lambda m: tensor(m, 4), "buffer", 65535),
                                  ["tensor 4", "buffer 65535"], None),
    "constant read past the end of the file": (
        set_attr(lambda m: tensor(m, 4), "shape", [16, 65536]),
        ["tensor 4", "256 bytes", "needs 1,048,576", "past the end of the file"], None),
    "operator output with constant data": (
        set_attr(lambda m: tensor(m, 7), "buffer", 3),
        ["operator 0 (FULLY_CONNECTED) output tensor 7", "constant data"], None),
    "opcode index out of range": (
        set_attr(lambda m: m.subgraphs[0].operators[2], "opcodeIndex", 7),
        ["operator 2", "operator code 7"], {"refused"}),
    "builtin code outside the schema": (
        lambda m, s: setattr(m.operatorCodes[0], "builtinCode", 999),
        ["builtin code 999"], {"refused"}),
    "CUSTOM without a name": (
        lambda m, s: (setattr(m.operatorCodes[0], "builtinCode", 32),
                      setattr(m.operatorCodes[0], "deprecatedBuiltinCode", 32)),
        ["CUSTOM", "custom name"], {"refused"}),
    "builtin with custom options": (
        set_attr(lambda m: m.subgraphs[0].operators[0], "customOptions", [1, 2, 3]),
        ["operator 0", "custom options"], {"refused"}),
    "unknown FC weights format": (
        set_attr(lambda m: m.subgraphs[0].operators[0].builtinOptions, "weightsFormat", 7),
        ["operator 0", "weights_format 7"], {"refused"}),
    "unknown quantized bias type": (
        set_attr(lambda m: m.subgraphs[0].operators[0].builtinOptions, "quantizedBiasType", 99),
        ["operator 0", "quantized_bias_type 99"], {"refused"}),
    "weights outside the flatbuffer": (
        lambda m, s: (setattr(m.buffers[tensor(m, 4).buffer], "data", None),
                      setattr(m.buffers[tensor(m, 4).buffer], "offset", 4096),
                      setattr(m.buffers[tensor(m, 4).buffer], "size", 256)),
        ["buffer", "outside the flatbuffer"], None),
    "offline plan: buffer out of range": (add_offline_plan([1, 0, 10], buffer=999),
                                          ["OfflineMemoryAllocation", "buffer 999"], {"crashed"}),
    "offline plan: no header": (add_offline_plan(None, raw=b""),
                                ["OfflineMemoryAllocation", "12-byte header"], None),
    "offline plan: count is not the tensor count": (
        add_offline_plan([1, 0, 9] + [-1] * 9), ["9 tensor offsets", "10 tensors"], {"refused"}),
    "offline plan: shorter than its count": (
        add_offline_plan([1, 0, 10] + [-1] * 3), ["too short for 10 offsets"], None),
    "offline plan: negative offset": (
        add_offline_plan([1, 0, 10] + [-1] * 7 + [-64, -1, -1]),
        ["negative offset -64 for tensor 7"], None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_inconsistency_refused_in_one_line(name):
    change, words, tflm = CASES[name]
    data = mutate(SINE, change)
    refused(data, *words)
    if tflm is not None:     # where TFLM's own answer is deterministic, it agrees
        assert reference(data).status in tflm


def test_quantized_softmax_beta_zero_refused():
    def change(m, s):
        op = m.subgraphs[0].operators[-1]
        op.builtinOptions.beta = 0.0
    data = mutate(GESTURE, change)
    refused(data, "SOFTMAX", "beta 0.0")
    assert reference(data).status == "crashed"


def test_svdf_without_options_refused():
    path = SHARED / "models" / "keyword_scrambled.tflite"
    if not path.exists():
        pytest.skip(f"{path} not present")

    def change(m, s):
        for op in m.subgraphs[0].operators:
            if isinstance(op.builtinOptions, s.SVDFOptionsT):
                op.builtinOptions, op.builtinOptionsType = None, 0
                return
    data = mutate(path, change)
    refused(data, "SVDF", "rank 0")
    assert reference(data).status == "crashed"


# ---------------------------------------------------------------- accepted as TFLM accepts

def test_accepted_as_tflm_accepts():
    """Inconsistencies TFLM runs without complaint are not refused."""
    def change(m, s):
        tensor(m, 0).shapeSignature = [-1, 1]               # dynamic batch, static shape
        m.buffers[tensor(m, 4).buffer].data = list(range(256)) + [0] * 16   # longer buffer
        oc = s.OperatorCodeT()
        oc.builtinCode = 999                                # a code no operator uses
        m.operatorCodes.append(oc)
        tensor(m, 3).quantization.quantizedDimension = 5    # out of range, as person_detect's
        m.buffers[tensor(m, 5).buffer].data = [0] * 60      # short, but inside the file
    data = mutate(SINE, change)
    assert reference(data).status == "ok"
    m = tflite.load_bytes(data)
    assert m.main.tensors[0].shape_signature == [-1, 1]
    assert any("tensor 5" in w and "60 bytes" in w for w in m.warnings), m.warnings


def test_quantization_as_tflm_copies_it():
    def change(m, s):
        q = tensor(m, 4).quantization
        q.zeroPoint = [0]                                   # one zero point for 16 scales
        tensor(m, 7).quantization.zeroPoint = []            # scale without zero point
    m = tflite.load_bytes(mutate(SINE, change))
    q = m.main.tensors[4].quant
    assert len(q.scale) == 16 and q.zero_point == [0] * 16
    assert m.main.tensors[7].quant is None                  # TFLM: not quantized


def test_metadata_and_offline_plan_read_by_the_reader():
    plan = [-1] * 7 + [0, 64, 0]
    m = tflite.load_bytes(mutate(SINE, add_offline_plan([1, 0, 10] + plan)))
    assert m.offline_plan == plan
    assert m.metadata["OfflineMemoryAllocation"][12:16] == b"\xff\xff\xff\xff"
    assert "min_runtime_version" in m.metadata
    from nanoml.memory.events import offline_offsets
    assert offline_offsets(m) == plan
    assert tflite.load(SINE).offline_plan is None


def test_memory_events_knows_no_field_index():
    """memory/events.py reads the model through the reader only."""
    src = (tflite.Path(tflite.__file__).parent.parent / "memory" / "events.py").read_text()
    assert "flatbuf" not in src and ".tables(" not in src and ".scalar(" not in src


# ---------------------------------------------------------------- files

def cli_inspect(path, timeout=20):
    r = run_cli(["inspect", str(path)], timeout=timeout, mem_mb=1024)
    assert not r.timed_out and r.signal is None, r
    return r


def assert_one_line_exit_2(r, words):
    assert r.exit_code == 2, (r.exit_code, r.stdout[-500:], r.stderr[-500:])
    err = r.stderr.strip().splitlines()
    assert err[0].startswith("error: ") and len(err) <= 2 and not r.traceback
    assert words in err[0], err[0]


def test_character_device_refused():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    assert_one_line_exit_2(cli_inspect("/dev/zero"), "character device")


def test_fifo_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    assert_one_line_exit_2(cli_inspect(fifo, timeout=10), "FIFO")


def test_sparse_10_gb_file_refused_unread(tmp_path):
    big = tmp_path / "big.tflite"
    with open(big, "wb") as f:
        f.truncate(10 * 2 ** 30)
    r = cli_inspect(big)
    assert_one_line_exit_2(r, "larger than the 64 MiB")


def test_directory_refused(tmp_path):
    assert_one_line_exit_2(cli_inspect(tmp_path), "directory")


def test_unreadable_file_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    f = tmp_path / "secret.tflite"
    f.write_bytes(SINE.read_bytes())
    f.chmod(0)
    assert_one_line_exit_2(cli_inspect(f), "cannot read")


def test_file_limit_is_above_the_models_inspect_reports_as_too_big():
    assert tflite.MAX_MODEL_BYTES >= 16 * 3_980_000


def test_corrupt_model_exit_2_through_the_cli(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(mutate(SINE, set_attr(lambda m: m.subgraphs[0], "inputs", [-3])))
    assert_one_line_exit_2(cli_inspect(f), "inputs refer to tensor -3")


def test_million_tensor_vector_refused_quickly():
    """One tensor table referenced 1,000,000 times (4 MB): refused before any
    tensor is built (the board holds ~21,000 tensors at most)."""
    import time
    import flatbuffers
    s = schema()
    b = flatbuffers.Builder(1 << 23)
    s.TensorStart(b)
    s.TensorAddType(b, 9)
    t = s.TensorEnd(b)
    s.SubGraphStartTensorsVector(b, 1_000_000)
    for _ in range(1_000_000):
        b.PrependUOffsetTRelative(t)
    tensors = b.EndVector()
    s.SubGraphStart(b)
    s.SubGraphAddTensors(b, tensors)
    sg = s.SubGraphEnd(b)
    s.ModelStartSubgraphsVector(b, 1)
    b.PrependUOffsetTRelative(sg)
    sgs = b.EndVector()
    s.ModelStart(b)
    s.ModelAddVersion(b, 3)
    s.ModelAddSubgraphs(b, sgs)
    b.Finish(s.ModelEnd(b), file_identifier=b"TFL3")
    t0 = time.monotonic()
    refused(bytes(b.Output()), "1,000,000 tensors", "100,000")
    assert time.monotonic() - t0 < 5
