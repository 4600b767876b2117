"""The generated C++ compiles for the Cortex-M4 (Debian's arm-none-eabi-g++ with
the mbed core's flags), the model lands in flash as it should, and the
Arduino/TFLM-free helpers behave (compiled for the host and run).

main.cpp, nanoml_ops.cpp and nanoml_input.cpp need Arduino.h and the TFLM
headers, which CI does not have: they are kept thin and were compiled by hand
against ArduinoCore-mbed 4.5.0 and Chirale_TensorFlowLite 2.0.0 (docs/build.md).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_model_names, SHARED
from firmware_helpers import ARM_FLAGS, ARM_GXX, have_arm, host_build, make_model

needs_arm = pytest.mark.skipif(not have_arm(), reason="arm-none-eabi-g++ not installed "
                               "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")

# Files that need neither Arduino.h nor TFLM: all of them must compile.
PLAIN_SOURCES = ("model_data.cpp", "nanoml_buffers.cpp", "nanoml_app.cpp")
PLAIN_HEADERS = ("model_data.h", "nanoml_buffers.h", "nanoml_app.h", "nanoml_config.h",
                 "nanoml_cycles.h", "nanoml_ops.h", "nanoml_protocol.h", "nanoml_input.h")


def _project(tmp_path: Path, model: Path, **kw) -> Path:
    from nanoml.firmware.build import BuildOptions, generate
    kw.setdefault("arena", 4096)
    res = generate(BuildOptions(model=model, out=tmp_path / "proj", **kw))
    return res.project_dir / "src"


def _arm_compile(src: Path, out: Path, *extra: str) -> None:
    r = subprocess.run([ARM_GXX, *ARM_FLAGS, *extra, "-c", str(src), "-o", str(out)],
                       capture_output=True, text=True, cwd=src.parent)
    assert r.returncode == 0, f"{src.name} does not compile for Cortex-M4:\n{r.stderr}"


def _sections(obj: Path) -> dict[str, tuple[int, int]]:
    """section name -> (size, alignment) from readelf."""
    out = subprocess.run(["arm-none-eabi-readelf", "-S", "-W", str(obj)], capture_output=True,
                         text=True, check=True).stdout
    secs = {}
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+"
                     r"\S*\s+\d+\s+\d+\s+(\d+)\s*$", line)
        if m:
            secs[m.group(1)] = (int(m.group(2), 16), int(m.group(3)))
    return secs


def _symbols(obj: Path) -> dict[str, tuple[str, int]]:
    """symbol -> (nm type letter, size)."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            syms[parts[3]] = (parts[2], int(parts[1], 16))
    return syms


def _check_model_object(src: Path, tmp_path: Path, model_size: int) -> None:
    obj = tmp_path / "model_data.o"
    _arm_compile(src / "model_data.cpp", obj)
    secs = _sections(obj)
    assert ".rodata.g_model" in secs, f"g_model is not in its own .rodata section: {sorted(secs)}"
    size, align = secs[".rodata.g_model"]
    assert size == model_size
    assert align == 16
    syms = _symbols(obj)
    # 'R': global, read-only data (flash); the length variable too.
    assert syms["g_model"] == ("R", model_size)
    assert syms["g_model_len"][0] == "R"
    assert ".data.g_model" not in secs and ".bss.g_model" not in secs


@needs_arm
def test_plain_sources_compile_for_cortex_m4(tmp_path):
    src = _project(tmp_path, make_model(tmp_path / "m.tflite", (1, 16, 6), 4), input="imu")
    for name in PLAIN_SOURCES:
        _arm_compile(src / name, tmp_path / f"{name}.o")
    for name in PLAIN_HEADERS:
        probe = src / f"probe_{name}.cpp"
        probe.write_text(f'#include "{name}"\n')
        _arm_compile(probe, tmp_path / f"probe_{name}.o")
    _check_model_object(src, tmp_path, (tmp_path / "m.tflite").stat().st_size)


@needs_arm
def test_buffers_object_has_the_arena(tmp_path):
    src = _project(tmp_path, make_model(tmp_path / "m.tflite"), arena=5000)
    obj = tmp_path / "b.o"
    _arm_compile(src / "nanoml_buffers.cpp", obj)
    secs = _sections(obj)
    size, align = secs[".bss.g_tensor_arena"]
    assert size == 5008        # 5000 rounded up to 16
    assert align == 16
    assert _symbols(obj)["g_tensor_arena"][0] in ("B", "b")


@needs_arm
@pytest.mark.parametrize("name", shared_model_names())
def test_shared_model_objects(tmp_path, name):
    """Every ../shared model that the runtime supports: the model TU in .rodata,
    16-byte aligned, exactly the file's size."""
    from nanoml.errors import UsageError
    model = SHARED / "models" / name
    try:
        src = _project(tmp_path, model, input="synthetic")
    except UsageError as e:   # unsupported ops / too big for flash: reported, not built
        assert "cannot" in e.message
        return
    _check_model_object(src, tmp_path, model.stat().st_size)


# ---------------------------------------------------------------------------
# host run of nanoml_app.cpp

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nanoml_app.h"

using namespace nanoml;

static char line[4096];

static bool probe_threshold(uint32_t size, void* ctx) {
  int* calls = static_cast<int*>(ctx);
  ++*calls;
  return size >= 1000;
}

int main() {
  char cmd[32];
  while (scanf("%31s", cmd) == 1) {
    if (!strcmp(cmd, "q")) {            // q <type> <scale> <zp> <x>: store then load
      int type; float scale; int zp; float x;
      if (scanf("%d %f %d %f", &type, &scale, &zp, &x) != 4) return 2;
      uint8_t buf[8] = {0};
      int dims[1] = {1};
      TensorInfo t = {type, dims, 1, scale, zp, buf, type_size(type)};
      store_value(t, 0, x);
      printf("%ld %.9g\n", (long)load_raw(t, 0), (double)load_value(t, 0));
    } else if (!strcmp(cmd, "hello")) {
      int8_t in[12]; int8_t out[3] = {-128, 5, 127};
      int din[4] = {1, 4, 3, 1}; int dout[2] = {1, 3};
      TensorInfo ti = {kTypeInt8, din, 4, 0.5f, -3, (uint8_t*)in, sizeof(in)};
      TensorInfo to = {kTypeInt8, dout, 2, 0.25f, 1, (uint8_t*)out, sizeof(out)};
      const char* ops[] = {"RESHAPE", "FULLY_CONNECTED", "SOFTMAX"};
      DeviceInfo d = {"nanoml-test", "0123456789ab", "nano33ble_sense", "chirale_2.0.0",
                      "imu", 4096, 1234, ops, 3, &ti, 1, &to, 1};
      LineWriter w(line, sizeof(line));
      size_t n = write_hello(w, d);
      fwrite(w.data(), 1, n, stdout);
      float values[3]; int32_t raw[3];
      n = write_result(w, 7, 1500, &to, 1, values, raw, 3, -1);
      fwrite(w.data(), 1, n, stdout);
      n = write_result(w, 8, 99, &to, 1, values, raw, 3, 42);
      fwrite(w.data(), 1, n, stdout);
      n = write_error(w, "alloc", "AllocateTensors() failed");
      fwrite(w.data(), 1, n, stdout);
      n = write_ack(w, 3, false, "len");
      fwrite(w.data(), 1, n, stdout);
      n = write_op(w, 7, 2, "SOFTMAX", 12345, 193);
      fwrite(w.data(), 1, n, stdout);
      n = write_arena(w, 2032, 1900);
      fwrite(w.data(), 1, n, stdout);
      LineWriter small(line, 64);   // too small: nothing to send
      printf("small=%zu\n", write_hello(small, d));
    } else if (!strcmp(cmd, "window")) {   // [1,4,3,1] int8, scale 0.5 zp 0
      int8_t buf[12];
      int dims[4] = {1, 4, 3, 1};
      TensorInfo t = {kTypeInt8, dims, 4, 0.5f, 0, (uint8_t*)buf, sizeof(buf)};
      printf("channels=%d elements=%zu\n", channel_dim(t), element_count(t));
      WindowFiller f;
      f.attach(&t);
      float v[5] = {1, 2, 3, 4, 5};
      size_t took = 0;
      for (int i = 0; i < 3; ++i) took += f.push(v, 5);
      printf("took=%zu full=%d\n", took, (int)f.full());
      for (int i = 0; i < 12; ++i) printf("%d ", buf[i]);
      printf("\n");
      f.restart();
      int16_t pcm[2] = {16384, -32768};
      f.push_pcm16(pcm, 2);
      printf("pcm=%d,%d pos=%zu\n", buf[0], buf[1], f.position());
      char text[32];
      format_tensor(t, text, sizeof(text));
      printf("tensor=%s\n", text);
      printf("fit=%zu\n", format_tensor(t, text, 8));
    } else if (!strcmp(cmd, "ring")) {
      int16_t store[5]; SampleRing r(store, 5);     // holds 4
      int16_t a[6] = {1, 2, 3, 4, 5, 6}, b[6];
      size_t w1 = r.write(a, 3);
      size_t r1 = r.read(b, 2);
      size_t w2 = r.write(a + 3, 3);                // wraps; 4 fit in total
      size_t r2 = r.read(b + 2, 6);
      printf("%zu %zu %zu %zu dropped=%u avail=%zu:", w1, r1, w2, r2, r.dropped(), r.available());
      for (size_t i = 0; i < r1 + r2; ++i) printf(" %d", b[i]);
      printf("\n");
    } else if (!strcmp(cmd, "bisect")) {
      int calls = 0;
      uint32_t m = bisect_min_size(0, 4096, 16, probe_threshold, &calls);
      printf("min=%u calls=%d\n", m, calls);
    } else if (!strcmp(cmd, "events")) {
      OpEvent ev[2]; OpEventLog log(ev, 2);
      uint32_t h0 = log.begin("CONV_2D", 0xFFFFFF00u, 10);
      log.end(h0, 0x100u, 30);                      // counter wrapped
      uint32_t h1 = log.begin("SOFTMAX", 5, 40);
      log.end(h1, 25, 41);
      uint32_t h2 = log.begin("X", 0, 0);
      log.end(h2, 1, 1);
      printf("n=%zu dropped=%u %s %u %u %s %u %u\n", log.count(), log.dropped(),
             log.at(0).tag, log.at(0).cycles, log.at(0).micros,
             log.at(1).tag, log.at(1).cycles, log.at(1).micros);
    }
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def app_driver(tmp_path_factory):
    return host_build(tmp_path_factory, "app", (), DRIVER)


def _run(exe: Path, stdin: str) -> str:
    """Run the driver; stdout as text with its \r\n line ends kept."""
    r = subprocess.run([str(exe)], input=stdin.encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode()


def _tflite_quantize(x: float, scale: float, zp: int, lo: int, hi: int) -> int:
    """TFLite's reference: round half away from zero, add zero point, saturate."""
    v = np.float32(x) / np.float32(scale)
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    return int(np.clip(r + zp, lo, hi))


QUANT_CASES = [
    # type, scale, zp, x
    (9, 0.5, 0, 0.25), (9, 0.5, 0, -0.25), (9, 0.5, 0, 0.75), (9, 0.5, 1, -0.25),
    (9, 0.1, -3, 100.0), (9, 0.1, -3, -100.0), (9, 0.024480115, -128, 1.57),
    (3, 0.0078125, 128, -0.3), (3, 0.0078125, 128, 2.0),
    (7, 0.000625, 0, 12.5), (7, 0.000625, 0, -30.0), (7, 0.0, 0, 1234.5),
]
TYPE_RANGE = {9: (-128, 127), 3: (0, 255), 7: (-32768, 32767)}


def test_quantization_matches_tflite(app_driver):
    stdin = "".join(f"q {t} {s!r} {z} {x!r}\n" for t, s, z, x in QUANT_CASES)
    stdin += "q 1 0 0 -2.5\n"
    out = _run(app_driver, stdin).splitlines()
    for (t, s, z, x), line in zip(QUANT_CASES, out):
        raw, val = line.split()
        lo, hi = TYPE_RANGE[t]
        if s == 0.0:   # unquantized integer tensor: the value itself, rounded
            want = int(np.clip(np.sign(x) * np.floor(abs(x) + 0.5), lo, hi))
        else:
            want = _tflite_quantize(x, s, z, lo, hi)
        assert int(raw) == want, (t, s, z, x)
        deq = (want - z) * np.float32(s) if s else want
        assert float(val) == pytest.approx(float(deq), rel=1e-6, abs=1e-9)
    assert float(out[-1].split()[1]) == -2.5   # float32 stored as is


def test_lines_parse_with_the_host_protocol(app_driver):
    from nanoml.serial.protocol import Message, parse_line
    out = _run(app_driver, "hello\n")
    lines = out.split("\r\n")
    msgs = [parse_line(line.encode()) for line in lines[:7]]
    assert all(isinstance(m, Message) for m in msgs), msgs
    hello, res, res_frame, err, ack, op, arena = msgs
    assert hello.type == "hello"
    f = hello.fields
    assert f["proto"] == 1 and f["model"] == "0123456789ab" and f["board"] == "nano33ble_sense"
    assert f["arena"] == 4096 and f["used"] == 1234 and f["input"] == "imu"
    assert f["ops"] == ["RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    assert f["in"] == [{"dtype": "int8", "shape": [1, 4, 3, 1]}]
    assert f["out"] == [{"dtype": "int8", "shape": [1, 3]}]
    r = res.fields
    assert r["seq"] == 7 and r["us"] == 1500
    assert r["out"] == pytest.approx([(-128 - 1) * 0.25, (5 - 1) * 0.25, (127 - 1) * 0.25])
    assert r["top"] == 2 and r["q"] == [-128, 5, 127]
    assert "frame" not in r and res_frame.fields["frame"] == 42
    assert err.fields == {"code": "alloc", "msg": "AllocateTensors() failed"}
    assert ack.fields == {"seq": 3, "ok": False, "why": "len"}
    assert op.fields == {"seq": 7, "i": 2, "op": "SOFTMAX", "cyc": 12345, "us": 193}
    assert arena.fields == {"min": 2032, "used": 1900}
    assert lines[7].strip() == "small=0"


def test_window_filler_and_tensor_text(app_driver):
    out = _run(app_driver, "window\n").splitlines()
    assert out[0] == "channels=3 elements=12"
    assert out[1] == "took=12 full=1"                # 15 offered, the window holds 12
    assert [int(v) for v in out[2].split()] == [2, 4, 6, 8, 10, 2, 4, 6, 8, 10, 2, 4]
    assert out[3] == "pcm=1,-2 pos=2"                # 16384/32768/0.5 = 1; -32768/32768/0.5 = -2
    assert out[4] == "tensor=int8:1x4x3x1"
    assert out[5] == "fit=0"


def test_sample_ring_wraps_and_counts_drops(app_driver):
    out = _run(app_driver, "ring\n").strip()
    assert out == "3 2 3 4 dropped=0 avail=0: 1 2 3 4 5 6"


def test_arena_bisection_finds_the_threshold(app_driver):
    out = _run(app_driver, "bisect\n").strip()
    m = re.match(r"min=(\d+) calls=(\d+)", out)
    assert int(m.group(1)) == 1008                   # smallest multiple of 16 >= 1000
    assert int(m.group(2)) <= 9                      # log2(4096 / 16) + 1


def test_op_event_log(app_driver):
    out = _run(app_driver, "events\n").strip()
    assert out == "n=2 dropped=1 CONV_2D 512 20 SOFTMAX 20 1"

