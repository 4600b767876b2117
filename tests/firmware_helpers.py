"""Helpers for the firmware/build/flash tests: tiny real .tflite models built
with the TFLite schema's object API (from the tflite-micro package, a nanoml
dependency, so no TensorFlow needed), and the Cortex-M4 compiler flags."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

# The mbed core's C++ flags for the Nano 33 BLE (ArduinoCore-mbed
# variants/ARDUINO_NANO33BLE/cxxflags.txt), as the issue names them, plus the
# section flags and -funsigned-char the core also uses.
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16", "-Os",
             "-std=gnu++14", "-fno-rtti", "-fno-exceptions", "-ffunction-sections",
             "-fdata-sections", "-funsigned-char", "-Wall", "-Wextra", "-Werror",
             "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
ARM_GXX = "arm-none-eabi-g++"


def have_arm() -> bool:
    return shutil.which(ARM_GXX) is not None and shutil.which("arm-none-eabi-readelf") is not None


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    return s


def make_model(path: Path, input_shape=(1, 8), outputs: int = 4, dtype: str = "int8",
               softmax: bool = True, reshape: bool = True, seed: int = 0) -> Path:
    """input -> [RESHAPE to (1, N)] -> FULLY_CONNECTED -> [SOFTMAX] -> output.

    dtype "int8" (quantized, int8 in/out) or "float32". Returns path."""
    import flatbuffers
    s = _schema()
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(input_shape))
    quant = dtype == "int8"
    ttype = s.TensorType.INT8 if quant else s.TensorType.FLOAT32

    buffers = [s.BufferT()]            # buffer 0: empty (schema convention)

    def buf(data: bytes | None) -> int:
        b = s.BufferT()
        if data is not None:
            b.data = list(data)
        buffers.append(b)
        return len(buffers) - 1

    tensors = []

    def tensor(name, shape, tt, data=None, scale=None, zp=0) -> int:
        t = s.TensorT()
        t.name = name
        t.shape = list(shape)
        t.type = tt
        t.buffer = buf(data)
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = [float(scale)]
            q.zeroPoint = [int(zp)]
            t.quantization = q
        tensors.append(t)
        return len(tensors) - 1

    opcodes, operators = [], []

    def opcode(code) -> int:
        for i, oc in enumerate(opcodes):
            if oc.builtinCode == code:
                return i
        oc = s.OperatorCodeT()
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)
        oc.version = 1
        opcodes.append(oc)
        return len(opcodes) - 1

    def op(code, ins, outs, opt_type=0, opts=None):
        o = s.OperatorT()
        o.opcodeIndex = opcode(code)
        o.inputs = list(ins)
        o.outputs = list(outs)
        if opts is not None:
            o.builtinOptionsType = opt_type
            o.builtinOptions = opts
        operators.append(o)

    in_scale = 0.02 if quant else None
    x = tensor("input", input_shape, ttype, scale=in_scale, zp=-3 if quant else 0)
    cur = x
    if reshape and len(input_shape) != 2:
        shape_t = tensor("shape", [2], s.TensorType.INT32,
                         np.array([1, n_in], dtype="<i4").tobytes())
        flat = tensor("flat", [1, n_in], ttype, scale=in_scale, zp=-3 if quant else 0)
        ro = s.ReshapeOptionsT()
        ro.newShape = [1, n_in]
        op(s.BuiltinOperator.RESHAPE, [cur, shape_t], [flat], s.BuiltinOptions.ReshapeOptions, ro)
        cur = flat
    if quant:
        w = rng.integers(-127, 128, size=(outputs, n_in), dtype=np.int8)
        b = rng.integers(-500, 500, size=(outputs,), dtype=np.int32)
        w_scale = 0.01
        wt = tensor("weights", [outputs, n_in], s.TensorType.INT8, w.tobytes(), w_scale, 0)
        bt = tensor("bias", [outputs], s.TensorType.INT32, b.astype("<i4").tobytes(),
                    in_scale * w_scale, 0)
        logits = tensor("logits", [1, outputs], ttype, scale=0.1, zp=0)
    else:
        w = rng.normal(0, 0.5, size=(outputs, n_in)).astype("<f4")
        b = rng.normal(0, 0.1, size=(outputs,)).astype("<f4")
        wt = tensor("weights", [outputs, n_in], ttype, w.tobytes())
        bt = tensor("bias", [outputs], ttype, b.tobytes())
        logits = tensor("logits", [1, outputs], ttype)
    fo = s.FullyConnectedOptionsT()
    op(s.BuiltinOperator.FULLY_CONNECTED, [cur, wt, bt], [logits],
       s.BuiltinOptions.FullyConnectedOptions, fo)
    out = logits
    if softmax:
        prob = tensor("probs", [1, outputs], ttype, scale=1.0 / 256 if quant else None,
                      zp=-128 if quant else 0)
        so = s.SoftmaxOptionsT()
        so.beta = 1.0
        op(s.BuiltinOperator.SOFTMAX, [logits], [prob], s.BuiltinOptions.SoftmaxOptions, so)
        out = prob

    sg = s.SubGraphT()
    sg.tensors = tensors
    sg.inputs = [x]
    sg.outputs = [out]
    sg.operators = operators
    sg.name = "main"
    m = s.ModelT()
    m.version = 3
    m.operatorCodes = opcodes
    m.subgraphs = [sg]
    m.buffers = buffers
    m.description = "nanoml test model"
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path = Path(path)
    path.write_bytes(bytes(b.Output()))
    return path


def run_host(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a model on the host TFLM interpreter (the tflite-micro package)."""
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(Path(path).read_bytes())
    interp.set_input(x, 0)
    interp.invoke()
    return interp.get_output(0)


def host_build(tmp_path_factory, name: str, headers: tuple[str, ...], driver: str,
               extra_flags: tuple[str, ...] = ()) -> Path:
    """Build a host test driver (C++ source text) against the firmware's own
    sources (nanoml_app.cpp, the given firmware headers, the protocol header) with
    the host compiler, under ASan/UBSan when its runtime is there; skips without a
    compiler. Returns the executable."""
    import subprocess
    import pytest
    gxx = shutil.which("g++") or shutil.which("clang++")
    if not gxx:
        pytest.skip("no host C++ compiler")
    from nanoml.resources import data_dir
    d = tmp_path_factory.mktemp(name)
    sk = data_dir("sketches")
    for f in ("nanoml_app.h", "nanoml_app.cpp", *headers):
        shutil.copy(sk / "firmware" / f, d / f)
    shutil.copy(sk / "common" / "nanoml_protocol.h", d / "nanoml_protocol.h")
    (d / "driver.cpp").write_text(driver)
    exe = d / "driver"
    base = [gxx, "-std=gnu++14", "-O1", "-Wall", "-Wextra", "-Werror", *extra_flags]
    srcs = ["-o", str(exe), "driver.cpp", "nanoml_app.cpp"]
    r = subprocess.run(base + ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"] + srcs,
                       capture_output=True, text=True, cwd=d)
    if r.returncode != 0 and "sanitize" in r.stderr:   # no sanitizer runtime: plain build
        r = subprocess.run(base + srcs, capture_output=True, text=True, cwd=d)
    assert r.returncode == 0, r.stderr
    return exe
