"""The layer-dump firmware's own C++ (sketches/firmware/nanoml_layers.h:
CRC-32, `lay`/`lch`/`lend` framing, chunking, the profiler-event tracker),
built on the host (ASan/UBSan) and checked against the Python decoder
(nanoml.serial.layers), and compiled for the Cortex-M4 with the board's flags.
"""

from __future__ import annotations

import binascii
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_helpers import ARM_FLAGS, ARM_GXX, have_arm, host_build
from nanoml.serial import protocol as P
from nanoml.serial.layers import LayerAssembler
from nanoml.serial.stream import StreamDecoder

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "tests" / "cpp"
needs_arm = pytest.mark.skipif(not have_arm(), reason="arm-none-eabi-g++ not installed")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    return host_build(tmp_path_factory, "layers", ("nanoml_layers.h",),
                      (CPP / "layers_driver.cpp").read_text())


def _run(exe: Path, stdin: str) -> bytes:
    r = subprocess.run([str(exe)], input=stdin.encode(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def test_crc32_is_zlibs(driver):
    rng = random.Random(5)
    blobs = [b"", b"123456789", bytes(1), bytes(range(256)) * 3] + \
        [rng.randbytes(rng.randrange(1, 5000)) for _ in range(20)]
    out = _run(driver, "".join(f"crc {b.hex() or '-'}\n" for b in blobs)).decode().split("\n")
    for b, line in zip(blobs, out):
        whole, continued = map(int, line.split())
        assert whole == continued == binascii.crc32(b) == P.crc32(b)
    assert P.crc32(b"123456789") == 0xCBF43926


def _dump_cmd(data: bytes, *, frame=3, op=2, out=0, name="CONV_2D", tensor=17, dtype="int8",
              shape=(1, 4), quant=True, scale=0.0235294, zp=-128, why=None, cap=256) -> str:
    return (f"dump {cap} {frame} {op} {out} {name} {tensor} {dtype} {len(shape)} "
            f"{' '.join(map(str, shape))} {int(quant)} {scale!r} {zp} {why or '-'} "
            f"{data.hex() or '-'}\n")


def _assemble(stream: bytes, frame: int):
    asm = LayerAssembler(frame)
    for p in StreamDecoder().feed(stream):
        asm.feed(p)
    return asm


@pytest.mark.parametrize("dtype,shape", [
    ("int8", (1,)), ("int8", (1, 90)), ("int8", (1, 91)), ("int8", (1, 48, 48, 8)),
    ("int16", (1, 7, 13)), ("float32", (2, 3)), ("int32", (1, 1, 1, 1, 1, 1, 1, 45)),
])
def test_cpp_dump_reassembles_in_python(driver, dtype, shape):
    rng = np.random.default_rng(len(shape))
    arr = rng.integers(-2**15, 2**15, shape).astype(dtype) if dtype != "float32" else \
        rng.standard_normal(shape).astype(np.float32)
    data = arr.tobytes()
    quant = dtype != "float32"
    stdin = _dump_cmd(data, dtype=dtype, shape=shape, quant=quant) + "end 3 9 1 0\n"
    stream = _run(driver, stdin)
    lines = [ln for ln in stream.split(b"\n") if ln.startswith(b"~nm ")]
    chunks = -(-len(data) // P.LAYER_CHUNK_BYTES)
    assert stream.count(b"lines=%d" % (chunks + 1)) == 1
    assert len(lines) == chunks + 2 and max(len(ln) + 1 for ln in lines) <= P.MAX_LINE_LENGTH
    asm = _assemble(stream, 3)
    good, problems = asm.dumps()
    assert problems == [] and asm.corrupt == 0 and list(good) == [(2, 0)]
    d = good[(2, 0)]
    assert (d.name, d.tensor, d.dtype, d.shape) == ("CONV_2D", 17, dtype, shape)
    assert d.raw == data
    np.testing.assert_array_equal(d.data, arr)
    assert (d.scale, d.zero_point) == ((0.0235294, -128) if quant else (None, None))


def test_longest_chunk_fits_the_device_line_limit(driver):
    """Largest numbers in every chunk field, a 256-byte line buffer (the
    device's line limit): every chunk line is sent and parses."""
    data = bytes(range(200))
    stdin = _dump_cmd(data, frame=P.UINT_MAX, op=P.UINT_MAX, out=P.UINT_MAX,
                      name="DEPTHWISE_CONV_2D", tensor=P.INT_MAX, dtype="float32",
                      shape=(1, 48, 48, 8), scale=-1.17549e-38, zp=P.INT_MIN, quant=True,
                      cap=P.MAX_LINE_LENGTH)
    stream = _run(driver, stdin)
    assert b"lines=4" in stream
    lines = [ln for ln in stream.split(b"\n") if ln.startswith(b"~nm ")]
    assert len(lines) == 4 and all(len(ln) + 1 <= P.MAX_LINE_LENGTH for ln in lines)
    assert all(isinstance(P.parse_line(ln), P.Message) for ln in lines)


def test_header_line_bound_from_the_model_is_enough(driver, tmp_path):
    """A header longer than 256 bytes (8 huge dimensions) needs the bigger line
    buffer `layer_line_bytes` sizes for the model's headers: with it, sent."""
    from nanoml.serial.layers import header_line_bytes
    kw = dict(frame=P.UINT_MAX, op=P.UINT_MAX, out=P.UINT_MAX, name="UNIDIRECTIONAL_SEQUENCE_LSTM",
              tensor=P.INT_MIN, dtype="float32", shape=(P.INT_MAX,) * 8, scale=-1.17549e-38,
              zp=P.INT_MIN)
    need = header_line_bytes(kw["name"], kw["dtype"], kw["shape"])
    assert need > P.MAX_LINE_LENGTH
    stream = _run(driver, _dump_cmd(bytes(10), cap=need, **kw))
    assert b"lines=2" in stream
    header = stream.split(b"\n")[0] + b"\n"
    assert header.startswith(b"~nm lay ") and len(header) + 1 <= need
    assert _run(driver, _dump_cmd(bytes(10), cap=len(header), **kw)) == b"lines=0\n"


def test_a_line_buffer_too_small_sends_nothing(driver):
    stream = _run(driver, _dump_cmd(bytes(100), cap=64))
    assert stream == b"lines=0\n"


def test_an_output_without_values_is_named(driver):
    stream = _run(driver, _dump_cmd(b"", dtype="resource", shape=(1,), quant=False, why="dtype")
                  + "end 3 9 1 0\n")
    good, problems = _assemble(stream, 3).dumps()
    assert problems == []
    d = good[(2, 0)]
    assert not d.readable and d.why == "dtype" and d.data is None


def test_corrupted_chunk_from_the_cpp_dump_is_caught(driver):
    data = bytes(range(256)) * 2
    stream = _run(driver, _dump_cmd(data, shape=(1, 512)) + "end 3 9 1 0\n")
    i = stream.index(b"lch frame=3 i=2 o=0 k=3 hex=") + len(b"lch frame=3 i=2 o=0 k=3 hex=")
    bad = stream[:i] + (b"0" if stream[i:i + 1] != b"0" else b"1") + stream[i + 1:]
    asm = _assemble(bad, 3)
    good, problems = asm.dumps()
    assert good == {} and asm.corrupt == 1 and "chunk 3" in problems[0]


def test_tracker_counts_subgraph_0_operators_and_nested_runs(driver):
    # op0; WHILE (op1) running two body operators; op2
    out = _run(driver, "track b e b b e b e e b e .\n").decode().split()
    assert out == ["0", "-1", "-1", "1", "2", "ops=3", "nested=2"]


def test_hello_says_whether_the_firmware_dumps_layers(driver):
    from nanoml.serial.layers import supports_layers
    plain, layers = (P.parse_line(_run(driver, f"hello {x}\n")) for x in (0, 1))
    assert isinstance(plain, P.Message) and isinstance(layers, P.Message)
    assert not supports_layers(plain.fields) and "layers" not in plain.fields
    assert supports_layers(layers.fields)


def test_build_renders_the_layer_dump_firmware(tmp_path):
    from firmware_helpers import make_model
    from nanoml.firmware.build import BuildOptions, generate
    from nanoml.model.tflite import load
    from nanoml.serial.layers import layer_line_bytes
    model = make_model(tmp_path / "m.tflite", (1, 8), 4)
    res = generate(BuildOptions(model=model, out=tmp_path / "p", compile=False, layers=True))
    src = res.project_dir / "src"
    assert (src / "nanoml_layers.h").is_file() and (src / "nanoml_layer_hook.h").is_file()
    assert "#define NANOML_LAYERS 1" in (src / "nanoml_config.h").read_text()
    assert res.spec.layers and "-DTF_LITE_STRIP_ERROR_STRINGS" not in res.spec.build_flags
    assert res.spec.line_bytes >= layer_line_bytes(load(model)) >= P.MAX_LINE_LENGTH
    plain = generate(BuildOptions(model=model, out=tmp_path / "q", compile=False))
    assert not (plain.project_dir / "src" / "nanoml_layers.h").exists()
    assert "#define NANOML_LAYERS 0" in (plain.project_dir / "src" / "nanoml_config.h").read_text()
    assert "-DTF_LITE_STRIP_ERROR_STRINGS" in plain.spec.build_flags


@pytest.mark.parametrize("args,says", [
    (["--input", "synthetic"], "needs --input serial"),
    (["--profile"], "choose one"),
])
def test_layer_build_refuses_what_it_cannot_do(tmp_path, args, says):
    from firmware_helpers import make_model
    from mutants import run_cli
    model = make_model(tmp_path / "m.tflite", (1, 8), 4)
    r = run_cli(["build", str(model), "--layers", "--no-compile", "--out", str(tmp_path / "p"),
                 *args], timeout=120)
    assert r.exit_code == 2 and says in r.stderr and "Traceback" not in r.stderr


@needs_arm
def test_layer_dump_code_compiles_for_cortex_m4(tmp_path):
    sk = ROOT / "sketches"
    probe = tmp_path / "probe.cpp"
    probe.write_text('''#include "nanoml_layers.h"
extern "C" void sink_line(const char* line, size_t len);
static char g_line[256];
static void sink(const char* line, size_t len, void*) { sink_line(line, len); }
extern "C" size_t dump(const uint8_t* data, size_t n, uint32_t frame) {
  static const int dims[2] = {1, 64};
  nanoml::LayerTensor t = {0, 0, "CONV_2D", 12, "int8", dims, 2, true, 0.5f, -1, data, n, nullptr};
  nanoml::LineWriter w(g_line, sizeof(g_line));
  nanoml::LayerTracker tr;
  tr.start(frame);
  const uint32_t h = tr.begin();
  tr.end(h);
  return nanoml::write_layer(w, frame, t, sink, nullptr) +
         nanoml::write_layer_end(w, frame, tr.ops(), 1, tr.nested());
}
''')
    obj = tmp_path / "probe.o"
    r = subprocess.run([ARM_GXX, *ARM_FLAGS, f"-I{sk / 'firmware'}", f"-I{sk / 'common'}", "-c",
                        str(probe), "-o", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    undefined = subprocess.run(["arm-none-eabi-nm", "-u", "-C", str(obj)], capture_output=True,
                               text=True, check=True).stdout
    assert "sink_line" in undefined
    for bad in ("malloc", "printf", "__cxa", "operator new"):
        assert bad not in undefined, undefined
