"""The C++ header (sketches/common/nanoml_protocol.h) and the Python side agree.

A host build of tests/cpp/protocol_tool.cpp (with AddressSanitizer and UBSan)
emits lines the Python parser must accept, parses frame streams the Python
frame parser also parses (same verdicts, byte for byte), formats floats,
fills synthetic inputs and prints its constants. The header must also compile
for the board with arm-none-eabi-g++ and the board's flags, needing no heap,
no printf and no C++ runtime.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nanoml.serial import protocol as P
from nanoml.serial.frames import FrameParser
from nanoml.serial.synthetic import synthetic_fill, synthetic_seed

ROOT = Path(__file__).resolve().parent.parent
HEADER_DIR = ROOT / "sketches" / "common"
CPP = ROOT / "tests" / "cpp"
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16", "-Os",
             "-std=gnu++14", "-fno-rtti", "-fno-exceptions"]


def host_cxx() -> str:
    for c in ("g++", "clang++", "clang++-14"):
        if shutil.which(c):
            return c
    pytest.skip("no host C++ compiler (g++ or clang++)")


@pytest.fixture(scope="module")
def tool(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cpp") / "protocol_tool"
    subprocess.run([host_cxx(), "-std=gnu++14", "-O1", "-g", "-Wall", "-Wextra", "-Werror", *SAN,
                    f"-I{HEADER_DIR}", str(CPP / "protocol_tool.cpp"), "-o", str(out)],
                   check=True, capture_output=True, text=True)
    return out


def run(tool: Path, *args, stdin: bytes = b"") -> str:
    r = subprocess.run([str(tool), *map(str, args)], input=stdin, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_constants_agree(tool):
    c = dict(line.split("=", 1) for line in run(tool, "consts").splitlines())
    assert int(c["kProtocolVersion"]) == P.PROTOCOL_VERSION
    assert c["kLinePrefix"].encode() == P.PREFIX
    assert int(c["kMaxLineLength"]) == P.MAX_LINE_LENGTH
    assert int(c["kMaxDigits"]) == P.MAX_DIGITS
    whys = {v for k, v in c.items() if k.startswith("kWhy")}
    assert whys == set(P.WHY)
    assert {k[len("kDtype"):].lower(): int(v) for k, v in c.items() if k.startswith("kDtype")} \
        == P.DTYPE_CODES
    assert (int(c["kLcgMul"]), int(c["kLcgAdd"]), int(c["kSeedMul"])) == \
        (P.LCG_MUL, P.LCG_ADD, P.SEED_MUL)


def test_cpp_lines_parse_in_python(tool):
    lines = run(tool, "emit").encode().split(b"\r\n")
    assert lines[-1] == b""
    msgs = [P.parse_line(line) for line in lines[:-1]]
    assert all(isinstance(m, P.Message) and m.known for m in msgs), msgs
    hello, res, op, arena, err, ack, res2 = msgs
    assert hello.fields["proto"] == P.PROTOCOL_VERSION and hello.fields["fw"] == "0.1.0 test build"
    assert hello.fields["ops"] == ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"]
    assert hello.fields["in"] == [{"dtype": "int8", "shape": [1, 49, 40, 1]}]
    assert hello.fields["out"] == [{"dtype": "int8", "shape": [1, 4]},
                                   {"dtype": "float32", "shape": []}]
    assert hello.fields["sim"] is False
    assert res.fields["seq"] == 4294967295 and res.fields["top"] == 5
    want = [0.0, 0.5, -1.25e-7, 3.4028235e38, 1e-45, 123456.5, -0.0]
    assert res.fields["out"] == pytest.approx(want, rel=1e-5)
    assert res.fields["q"] == [-128, 0, 127, 2**31 - 1, -2**31]
    assert op.fields == {"seq": 3, "i": 0, "op": "CONV_2D", "cyc": 123456789, "us": 1929}
    assert arena.fields == {"min": 10240, "used": 9876}
    assert err.fields["msg"] == "AllocateTensors() failed: 100% of arena=2048, need*more,\ttab\x01\u00e9"
    assert ack.fields == {"seq": 42, "ok": False, "why": "crc"}
    assert res2.fields["out"] == [0.1] and res2.fields["top"] == -1
    # and Python encodes the same bytes for the same fields
    for line, m in zip(lines, msgs):
        if m.type in ("op", "arena", "ack"):
            assert P.encode_line(m.type, m.fields) == line + b"\r\n"


def test_cpp_det_and_real_time_fields_parse_and_match_python(tool):
    lines = run(tool, "stream").encode().split(b"\r\n")
    assert lines[-1] == b""
    msgs = [P.parse_line(line) for line in lines[:-1]]
    assert all(isinstance(m, P.Message) and m.known for m in msgs), msgs
    res, *dets = msgs
    assert res.type == "res" and (res.fields["t_ms"], res.fields["fus"], res.fields["drop"]) == \
        (2190, 1840, 4294967295)
    assert [d.type for d in dets] == ["det"] * 3
    assert [d.fields for d in dets] == [
        {"seq": 12 + i, "i": i, "label": name, "score": 200 + i, "t_ms": 4294967295 - i}
        for i, name in enumerate(["yes", "no go", "caf\u00e9=1,2"])]
    for line, m in zip(lines, msgs):             # Python writes the same bytes
        assert P.encode_line(m.type, m.fields) == line + b"\r\n"


def test_float_formatting_agrees(tool):
    rng = random.Random(2)
    bits = [rng.getrandbits(32) for _ in range(50000)]
    vals = [0.5, 1e-5, 1e-4, 9.99999e-5, 123456.5, 1234565.0, 0.001953125, 1e6, 999999.5,
            9999995.0, 3.4028235e38, 1.4e-45, 1.17549435e-38, 0.1, 100000.0, 99999.95]
    bits += [struct.unpack("<I", struct.pack("<f", v))[0] for v in vals]
    bits += [struct.unpack("<I", struct.pack("<f", rng.uniform(-3, 3)))[0] for _ in range(20000)]
    out = run(tool, "floats", stdin=" ".join(f"{b:x}" for b in bits).encode()).split()
    assert len(out) == len(bits)
    for b, s in zip(bits, out):
        f = struct.unpack("<f", struct.pack("<I", b))[0]
        assert s == P.format_float(f), (hex(b), f)


def _random_stream(rng: random.Random, n_lines: int, capacity: int) -> bytes:
    """Valid frames, damaged frames, foreign lines and garbage, concatenated."""
    parts = []
    for _ in range(n_lines):
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, capacity + 3)))
        line = bytearray(P.encode_frame(rng.choice([0, 1, 99, rng.getrandbits(32)]), payload))
        k = rng.randrange(10)
        if k < 3:
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(line))
                op = rng.randrange(3)
                if op == 0:
                    line[i] = rng.getrandbits(8)
                elif op == 1:
                    line.insert(i, rng.choice(b"0aF*= \r\n~"))
                else:
                    del line[i]
        elif k == 3:
            line = line[:rng.randrange(len(line))]
        elif k == 4:
            line = bytearray(b"sketch says %d\r\n" % rng.getrandbits(16))
        elif k == 5:
            line = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(60)))
        elif k == 6:
            line = bytearray(P.encode_line("res", {"seq": 1, "us": 2, "out": [1.0], "top": 0}))
        parts.append(bytes(line))
    return b"".join(parts)


def _py_verdicts(stream: bytes, capacity: int, rng: random.Random) -> list[str]:
    """The Python frame parser's verdicts, in protocol_tool's "frames" format."""
    py = []
    parser = FrameParser(capacity)
    i = 0
    while i < len(stream):                     # feed in random-size chunks
        n = rng.randint(1, 200)
        for e in parser.feed(stream[i:i + n]):
            py.append(f"frame {e.seq} {len(e.payload)} {e.payload.hex()}" if e.ok
                      else f"reject {e.seq} {e.reason}")
        i += n
    return py


@pytest.mark.parametrize("capacity", [1, 7, 64, 300])
def test_frame_parsers_agree_on_random_streams(tool, capacity):
    rng = random.Random(capacity)
    stream = _random_stream(rng, 3000, capacity)
    cpp = run(tool, "frames", capacity, stdin=stream).splitlines()
    py = _py_verdicts(stream, capacity, rng)
    assert cpp == py
    kinds = {line.split()[0] for line in cpp} | {line.split()[-1] for line in cpp
                                                 if line.startswith("reject")}
    assert {"frame", "reject", "crc", "len", "syntax"} <= kinds


def test_both_frame_parsers_bound_hostile_frames(tool):
    """Anything on the port: 5,000-digit numbers, endless hex, control bytes
    and invalid UTF-8 are rejected by both parsers alike, in bounded memory,
    and the valid frame after each is accepted."""
    huge = b"9" * 5000
    hostile = [
        b"~nm in seq=" + huge + b" len=1 hex=00*0000\r\n",
        b"~nm in seq=1 len=" + huge + b" hex=00*0000\r\n",
        b"~nm in seq=4294967296 len=1 hex=00*0000\r\n",
        b"~nm in seq=1 len=65 hex=" + b"00" * 65 + b"*0000\r\n",
        b"~nm in seq=1 len=64 hex=" + b"A" * 100_000 + b"\r\n",
        b"~nm in seq=1\x00 len=1 hex=00*0000\r\n",
        b"~nm in seq=1 len=1 hex=\xff\xfe*0000\r\n",
        b"~nm in " + bytes(range(256)) * 40 + b"\r\n",
        b"x" * 200_000 + b"\r\n",
    ]
    stream = b"".join(h + P.encode_frame(i, bytes([i])) for i, h in enumerate(hostile))
    cpp = run(tool, "frames", 64, stdin=stream).splitlines()
    assert cpp == _py_verdicts(stream, 64, random.Random(4))
    assert [v for v in cpp if v.startswith("frame")] == [
        f"frame {i} 1 {i:02x}" for i in range(len(hostile))]
    assert {v.split()[-1] for v in cpp if v.startswith("reject")} >= {"overflow", "len", "syntax"}


@pytest.mark.parametrize("dtype", [9, 3, 7, 0, 2])
def test_synthetic_fill_agrees(tool, dtype):
    for seed in (0, 1, synthetic_seed(12345), 0xFFFFFFFF):
        hex_data, state = run(tool, "synth", 64, seed, dtype).split()
        data, py_state = synthetic_fill(64, seed, dtype)
        assert bytes.fromhex(hex_data) == data and int(state) == py_state
    assert int(run(tool, "seed", 4000000000)) == synthetic_seed(4000000000)


def test_crc_agrees(tool):
    rng = random.Random(3)
    for n in (0, 1, 9, 1000):
        data = bytes(rng.getrandbits(8) for _ in range(n))
        assert int(run(tool, "crc", stdin=data), 16) == P.crc16(data)


def test_line_writer_refuses_lines_that_do_not_fit(tool):
    assert int(run(tool, "writer", 20)) == 0
    n = int(run(tool, "writer", 400))
    assert n > 20


def test_header_compiles_for_the_board(tmp_path):
    cxx = shutil.which("arm-none-eabi-g++")
    if not cxx:
        pytest.skip("arm-none-eabi-g++ not installed (scripts/install.sh installs it)")
    obj = tmp_path / "arm.o"
    r = subprocess.run([cxx, *ARM_FLAGS, "-Wall", "-Wextra", "-Wshadow", "-Wconversion",
                        "-Wsign-conversion", "-Werror", f"-I{HEADER_DIR}", "-c",
                        str(CPP / "arm_compile.cpp"), "-o", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    nm = shutil.which("arm-none-eabi-nm")
    if nm:
        undefined = {line.split()[-1] for line in subprocess.run(
            [nm, str(obj)], capture_output=True, text=True, check=True).stdout.splitlines()
            if " U " in line}
        forbidden = {"malloc", "free", "printf", "sprintf", "snprintf", "_Znwj", "_ZdlPv",
                     "__cxa_throw", "__gxx_personality_v0", "abort"}
        assert not undefined & forbidden, undefined & forbidden
        assert undefined <= {"memcpy", "memset", "strlen", "nanoml_sink"} | {
            u for u in undefined if u.startswith("__aeabi_")}, undefined


def test_python_and_cpp_synthetic_input_drive_the_same_float_values():
    # float32 elements are k/32768 - 1 for a 16-bit k: exact in float32
    data, _ = synthetic_fill(4 * 1000, 5, 0)
    arr = np.frombuffer(data, "<f4").astype(np.float64)
    assert np.all(((arr + 1) * 32768) == np.round((arr + 1) * 32768))
