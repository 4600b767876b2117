"""Capture commands and take lines: the firmware's C++ (CommandParser in
nanoml_protocol.h, CaptureSession in nanoml_capture.h) built for the host
(ASan/UBSan when available) against the Python side (nanoml/serial/commands.py,
the virtual board's CaptureEngine, nanoml.capture.link.TakeAssembler), and
compiled for the Cortex-M4."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import numpy as np
import pytest

from firmware_helpers import ARM_FLAGS, ARM_GXX, host_build
from nanoml.capture.link import Block, Gap, TakeAssembler, TakeEnd, TakeStart
from nanoml.serial import protocol as P
from nanoml.serial.commands import CommandParser, parse_command
from nanoml.serial.stream import StreamDecoder
from nanoml.sim.capture import CaptureEngine

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nanoml_capture.h"

static void sink(const char* l, size_t n, void*) { fwrite(l, 1, n, stdout); }

static uint32_t g_lcg = 7;
static int16_t next_pcm() { g_lcg = g_lcg * 1664525u + 1013904223u; return (int16_t)(g_lcg >> 16); }
static float next_f() { g_lcg = g_lcg * 1664525u + 1013904223u; return (float)(int32_t)g_lcg / 65536.0f; }

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "parse";
  static unsigned char in[1 << 25];   // 32 MiB: a long fuzz campaign in one go
  const size_t n = fread(in, 1, sizeof(in), stdin);
  nanoml::CommandParser p;
  if (strcmp(mode, "parse") == 0) {
    for (size_t i = 0; i < n; ++i) {
      const nanoml::CommandStatus st = p.feed(in[i]);
      if (st == nanoml::CommandStatus::kCommand) {
        const nanoml::Command& c = p.command();
        printf("C %d %u %d %u %u %u %d\n", c.type, c.seq, c.sensor, c.rate, c.ch, c.n, c.on ? 1 : 0);
      } else if (st == nanoml::CommandStatus::kRejected) {
        printf("R %s %u\n", p.reject_reason(), p.seq());
      } else if (st == nanoml::CommandStatus::kOther) {
        printf("O\n");
      }
    }
    return 0;
  }
  // session <mic|imu> <max_rate>: stdin is commands and driver lines "push K" / "lost K"
  const int sensor = strcmp(argv[2], "mic") == 0 ? nanoml::kSensorMic : nanoml::kSensorImu;
  const nanoml::CaptureConfig cfg = {sensor, (uint32_t)atoi(argv[3]), "nano33ble_sense", "rev1", "fw-test", false};
  static char line[nanoml::kCaptureLineBytes];
  nanoml::CaptureSession s(cfg, line, sizeof(line), sink, nullptr);
  uint32_t t = 0;
  size_t start = 0;
  for (size_t i = 0; i < n; ++i) {
    const nanoml::CommandStatus st = p.feed(in[i]);
    if (st == nanoml::CommandStatus::kCommand) s.command(p.command());
    if (st == nanoml::CommandStatus::kRejected) s.reject(p.seq(), p.reject_reason());
    if (in[i] != '\n') continue;
    unsigned k = 0;
    if (sscanf((const char*)in + start, "push %u", &k) == 1) {
      for (unsigned j = 0; j < k; ++j) {
        if (sensor == nanoml::kSensorMic) {
          const int16_t v = next_pcm();
          s.push_pcm16(&v, 1, t);
        } else {
          float v[9];
          for (unsigned c = 0; c < s.channels(); ++c) v[c] = next_f();
          s.push_imu(v, t);
        }
        t += 1000;
      }
    } else if (sscanf((const char*)in + start, "lost %u", &k) == 1) {
      s.lost(k);
    }
    start = i + 1;
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def tool(tmp_path_factory):
    return host_build(tmp_path_factory, "capture", ("nanoml_capture.h",), DRIVER)


def _run(tool, *args, stdin: bytes) -> str:
    r = subprocess.run([str(tool), *args], input=stdin, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode()


def _py_events(data: bytes) -> list[str]:
    types = {"cap": 1, "stop": 2, "dwin": 3}
    sensors = {"mic": 1, "imu": 2}
    out = []
    for ev in CommandParser().feed(data):
        if ev.kind == "command":
            f = ev.fields
            out.append(f"C {types[ev.type]} {f['seq']} {sensors.get(f.get('sensor'), 0)} "
                       f"{f.get('rate', 0)} {f.get('ch', 0)} {f.get('n', 0)} {int(f.get('on', 0))}")
        elif ev.kind == "rejected":
            out.append(f"R {ev.why} {ev.seq}")
        else:
            out.append("O")
    return out


def _cmd(t, **f):
    return P.encode_line(t, f)


def _raw(body: bytes) -> bytes:
    """A line with a correct checksum whatever its fields."""
    return b"%s*%04X\r\n" % (body, P.crc16(body))


CAP = dict(seq=9, sensor="mic", rate=16000, ch=1, n=48000)


@pytest.mark.parametrize("line,want", [
    (_cmd("cap", **CAP), ("command", "")),
    (_cmd("stop", seq=4), ("command", "")),
    (_cmd("dwin", seq=5, on=True), ("command", "")),
    (_cmd("cap", **CAP).replace(b"48000", b"48001"), ("rejected", "crc")),
    (_cmd("cap", **{**CAP, "sensor": "baro"}), ("rejected", "sensor")),
    (_raw(b"~nm cap seq=1 sensor=mic rate=16000 ch=1"), ("rejected", "syntax")),    # n missing
    (_raw(b"~nm cap seq=1 seq=1 sensor=mic rate=16000 ch=1"), ("rejected", "syntax")),
    (_raw(b"~nm stop  seq=1"), ("rejected", "syntax")),
    (_cmd("cap", **CAP, extra=1), ("rejected", "syntax")),                           # unknown key
    (_cmd("cap", **{**CAP, "n": 2 ** 32}), ("rejected", "syntax")),                  # above uint32
    (_raw(b"~nm dwin seq=5 on=2"), ("rejected", "syntax")),
    (b"~nm cap seq=1" + b" n=1" * 30 + b"*0000\r\n", ("rejected", "syntax")),         # too long
    (_cmd("ack", seq=1, ok=True), ("other", "")),
])
def test_python_parser_verdicts(line, want):
    evs = CommandParser().feed(b"noise\n" + line)
    assert [(e.kind, e.why) for e in evs] == [want]


def test_an_input_frame_is_left_to_the_frame_parser():
    assert CommandParser().feed(P.encode_frame(1, b"\x00" * 500)) == []
    assert parse_command(b"~nm in seq=1") is None


@pytest.mark.parametrize("seed", range(3))
def test_every_type_rejection_of_the_frame_parser_ends_as_one_command_event(seed):
    """The serial firmware holds back a FrameParser "why=type" until the command
    parser reports that line's end (kOther: the ack goes out; a command: a cack
    instead). That needs the two to agree line by line: one command-parser
    event for every type rejection, in order, and none for an input frame."""
    from nanoml.serial.frames import FrameParser
    rng = random.Random(seed)
    data = _mutants(rng, 2000) + b"\n~nm in*1234\r\n~nm in\r\n~nm \n~nm in seq=1\n"
    fp, cp = FrameParser(64), CommandParser()
    pending, unmatched, events = 0, 0, 0
    for k in range(len(data)):
        byte = data[k:k + 1]                 # the firmware's order: frame parser first
        for ev in fp.feed(byte):
            if not ev.ok and ev.reason == "type":
                pending += 1
        assert pending <= 1
        for ev in cp.feed(byte):
            events += 1
            if pending:
                pending -= 1
            else:
                unmatched += 1
    assert unmatched == 0 and pending == 0 and events > 500


def _mutants(rng: random.Random, n: int) -> bytes:
    good = [_cmd("cap", **CAP), _cmd("cap", seq=2, sensor="imu", rate=100, ch=9, n=0),
            _cmd("stop", seq=3), _cmd("dwin", seq=4, on=False), P.encode_frame(5, b"\x01\x02"),
            _cmd("res", seq=1, us=2, out=[0.5], top=0), b"hello world\r\n"]
    out = bytearray()
    for _ in range(n):
        line = bytearray(rng.choice(good))
        for _ in range(rng.choice([0, 0, 1, 2, 5])):
            op = rng.random()
            k = rng.randrange(len(line))
            if op < 0.4:
                line[k] = rng.choice(b" =*~\r\nmcapsto019Zn" + bytes([rng.getrandbits(8)]))
            elif op < 0.7:
                del line[k]
            elif op < 0.9:
                line.insert(k, rng.getrandbits(8))
            else:
                line[k:k] = line[:rng.randrange(1, 100)]
        out += line
    return bytes(out)


# mutated lines per seed (NANOML_FUZZ_CAPTURE_LINES: a longer campaign)
FUZZ_LINES = int(os.environ.get("NANOML_FUZZ_CAPTURE_LINES", "3000"))


@pytest.mark.parametrize("seed", range(6))
def test_cpp_and_python_parsers_agree_on_mutated_streams(tool, seed):
    data = _mutants(random.Random(seed), FUZZ_LINES)
    assert len(data) < 1 << 25                       # the driver's input buffer
    got = _run(tool, "parse", stdin=data).splitlines()
    want = _py_events(data)
    assert got == want
    kinds = {w.split()[0] for w in want}
    assert kinds == {"C", "R", "O"}                  # the stream exercised every verdict


def test_cpp_parser_survives_random_bytes(tool):
    rng = random.Random(99)
    data = bytes(rng.getrandbits(8) for _ in range(300_000)) + b"\n~nm " + bytes(5000) + b"\n"
    assert _run(tool, "parse", stdin=data).splitlines() == _py_events(data)


def _lcg_pcm(n: int, state: int = 7):
    out = []
    for _ in range(n):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append(state >> 16)
    return np.array(out, np.uint16).view(np.int16), state


def _events(text: str) -> list:
    a, out = TakeAssembler(), []
    for p in StreamDecoder().feed(text.encode()):
        assert not isinstance(p, P.Corrupt), p
        out.append(p)
    return out, [ev for p in out for ev in a.feed(p)]


def test_cpp_session_takes_parse_on_the_host_with_every_sample_in_place(tool):
    script = b"".join([
        _cmd("cap", seq=1, sensor="mic", rate=16000, ch=1, n=1000), b"push 400\n", b"lost 50\n",
        b"push 1000\n",                                              # the take ends at 1000
        _cmd("stop", seq=2),                                         # idle: refused
        _cmd("cap", seq=3, sensor="mic", rate=16000, ch=1, n=0), b"push 250\n",
        _cmd("cap", seq=4, sensor="mic", rate=16000, ch=1, n=10),    # busy
        _cmd("stop", seq=5),
        _cmd("cap", seq=6, sensor="imu", rate=100, ch=9, n=5),       # a mic firmware
        _cmd("cap", seq=7, sensor="mic", rate=8000, ch=1, n=5),
    ])
    lines, evs = _events(_run(tool, "session", "mic", "16000", stdin=script))
    acks = [(m.fields["seq"], m.fields["ok"], m.fields.get("why")) for m in lines
            if m.type == "cack"]
    assert acks == [(1, True, None), (2, False, "idle"), (3, True, None), (4, False, "busy"),
                    (5, True, None), (6, False, "sensor"), (7, False, "rate")]
    starts = [e for e in evs if isinstance(e, TakeStart)]
    ends = [e for e in evs if isinstance(e, TakeEnd)]
    assert [(s.take, s.samples, s.spf, s.firmware) for s in starts] == \
        [(1, 1000, 120, "fw-test"), (2, 0, 120, "fw-test")]
    assert [(e.samples, e.dropped, e.why, e.received) for e in ends] == \
        [(1000, 50, "done", 950), (250, 0, "stop", 250)]
    # take 1: 400 samples, 50 lost (the index jumps), then 550 of the next 1000 the
    # driver makes; take 2: 250 samples after those 1400
    pcm, _ = _lcg_pcm(1400 + 250)
    blocks1 = [e for e in evs[:evs.index(ends[0])] if isinstance(e, Block)]
    gaps1 = [e for e in evs[:evs.index(ends[0])] if isinstance(e, Gap)]
    assert [(g.first, g.missing, g.frames) for g in gaps1] == [(400, 50, 0)]
    got = np.concatenate([b.data for b in blocks1])
    assert np.array_equal(got, pcm[:950])
    assert all(b.index >= 450 for b in blocks1 if b.index >= 400)
    blocks2 = [e for e in evs[evs.index(ends[0]):] if isinstance(e, Block)]
    assert np.array_equal(np.concatenate([b.data for b in blocks2]), pcm[1400:1650])
    assert max(len(m.raw) for m in lines) + 2 <= 400    # kCaptureLineBytes


def test_cpp_session_refuses_what_the_virtual_board_refuses(tool):
    """Same cap commands to the C++ session (an IMU firmware at 119 Hz) and to
    the sim's engine: the same cack tokens."""
    cmds = [dict(seq=i + 1, sensor=s, rate=r, ch=c, n=3) for i, (s, r, c) in enumerate(
        [("imu", 119, 9), ("imu", 120, 9), ("imu", 0, 3), ("imu", 50, 4), ("mic", 16000, 1),
         ("imu", 1, 3), ("imu", 100, 6)])]
    script = b"".join(_cmd("cap", **c) + b"push 3\n" for c in cmds)
    lines, _ = _events(_run(tool, "session", "imu", "119", stdin=script))
    got = [m.fields.get("why") for m in lines if m.type == "cack"]
    sent = []
    eng = CaptureEngine(lambda t, f: sent.append((t, f)), {"imu": None},
                        board="nano33ble_sense", firmware="x", sensors=("imu",), imu_rate=119)
    want = [eng._refusal("cap", c) or None for c in cmds]
    assert got == want == [None, "rate", "rate", "ch", "sensor", None, None]


def test_cpp_imu_frames_carry_float32_bit_exact(tool):
    script = _cmd("cap", seq=1, sensor="imu", rate=100, ch=6, n=13) + b"push 20\n"
    lines, evs = _events(_run(tool, "session", "imu", "119", stdin=script))
    blocks = [e for e in evs if isinstance(e, Block)]
    assert [b.n for b in blocks] == [6, 6, 1]
    assert [b.t_us for b in blocks] == [0, 6000, 12000]
    state, want = 7, []
    for _ in range(13 * 6):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        want.append(np.float32(np.int32(np.uint32(state).view(np.int32))) / np.float32(65536))
    got = np.concatenate([b.data for b in blocks]).reshape(-1)
    assert got.tobytes() == np.array(want, np.float32).tobytes()


def test_capture_code_compiles_for_the_board(tmp_path):
    cxx = shutil.which(ARM_GXX)
    if not cxx:
        pytest.skip("arm-none-eabi-g++ not installed (scripts/install.sh installs it)")
    from nanoml.resources import data_dir
    sk = data_dir("sketches")
    src = tmp_path / "cap.cpp"
    src.write_text('#include "nanoml_capture.h"\n'
                   'extern "C" void nanoml_sink(const char*, unsigned);\n'
                   'static void s(const char* l, size_t n, void*) { nanoml_sink(l, n); }\n'
                   'static char g_line[nanoml::kCaptureLineBytes];\n'
                   'static const nanoml::CaptureConfig kCfg = {nanoml::kSensorMic, 16000, "b", '
                   '"rev1", "fw", false};\n'
                   'static nanoml::CaptureSession g_s(kCfg, g_line, sizeof(g_line), s, nullptr);\n'
                   'static nanoml::CommandParser g_p;\n'
                   'extern "C" void feed(unsigned char c, const short* pcm, unsigned n) {\n'
                   '  if (g_p.feed(c) == nanoml::CommandStatus::kCommand) g_s.command(g_p.command());\n'
                   '  g_s.push_pcm16(pcm, n, 0);\n}\n')
    r = subprocess.run([cxx, *ARM_FLAGS, "-Wshadow", "-Wconversion", "-Wsign-conversion",
                        f"-I{sk / 'firmware'}", f"-I{sk / 'common'}", "-c", str(src),
                        "-o", str(tmp_path / "cap.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind,board,shape", [
    ("mic", "nano33ble_sense", (1, 1600, 1)), ("imu", "nano33ble_sense", (1, 32, 9)),
    ("imu", "nano33ble_sense_rev2", (1, 32, 3))])
def test_plain_sensor_inputs_with_capture_compile_for_the_board(tmp_path, kind, board, shape):
    """nanoml_input.cpp of a sensor build without a pipeline (the capture poll
    included) compiles with the board's flags against the stub headers
    (tests/cpp/stubs; the real core was checked by hand: docs/protocol.md)."""
    from pathlib import Path
    from firmware_helpers import make_model
    from nanoml.firmware.build import BuildOptions, generate
    if not shutil.which(ARM_GXX):
        pytest.skip("arm-none-eabi-g++ not installed")
    model = make_model(tmp_path / "m.tflite", shape, 3)
    res = generate(BuildOptions(model=model, out=tmp_path / "p", input=kind, board=board,
                                arena=4096))
    src = res.project_dir / "src"
    cfg = (src / "nanoml_config.h").read_text()
    rate = {"mic": 16000, "nano33ble_sense": 119, "nano33ble_sense_rev2": 100}
    want = rate["mic"] if kind == "mic" else rate[board]
    assert f"kCaptureMaxRate = {want};" in cfg
    assert f'kBoardRevision[] = "{"rev2" if board.endswith("rev2") else "rev1"}"' in cfg
    assert (src / "nanoml_capture.h").is_file()
    stubs = Path(__file__).resolve().parent / "cpp" / "stubs"
    r = subprocess.run([ARM_GXX, *ARM_FLAGS, f"-I{stubs}", "-c", "nanoml_input.cpp", "-o",
                        str(tmp_path / "in.o")], capture_output=True, text=True, cwd=src)
    assert r.returncode == 0, r.stderr
