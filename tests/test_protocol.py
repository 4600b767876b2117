"""The serial protocol, Python side: line format, message table, frame parser,
synthetic pattern. (C++ agreement: test_protocol_cpp.py; fuzz: test_protocol_fuzz.py.)"""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from nanoml.serial import protocol as P
from nanoml.serial.frames import FrameParser
from nanoml.serial.synthetic import synthetic_fill, synthetic_inputs, synthetic_seed

SAMPLE = {
    "uint": 4294967295, "int": -7, "bool": True, "float": 0.25,
    "floats": [0.0, -1.5, 1e-07, 3.40282e+38], "ints": [-128, 0, 127],
    "text": "hello world 100%* = ,\t\u00e9", "list": ["CONV_2D", "a b", "x,y"],
    "hex12": "0123456789ab", "hexbytes": bytes(range(256)), "b64": bytes(range(256)) * 3,
    "tensors": [{"dtype": "int8", "shape": [1, 49, 40, 1]}, {"dtype": "float32", "shape": []}],
}


def test_crc16_is_ccitt_false():
    assert P.crc16(b"123456789") == 0x29B1
    assert P.crc16(b"") == 0xFFFF
    # continuing over chunks equals one pass
    assert P.crc16(b"56789", P.crc16(b"1234")) == 0x29B1


def _sample(f):
    """SAMPLE of the field's kind, cut to the field's own (shorter) limit."""
    v = SAMPLE[f.kind]
    if f.kind in ("text", "hexbytes", "b64") and f.limit is not None and len(v) > f.limit:
        return v[:f.limit]
    return v


@pytest.mark.parametrize("mtype", list(P.MESSAGES))
def test_every_message_type_round_trips(mtype):
    spec = P.MESSAGES[mtype]
    fields = {f.key: _sample(f) for f in spec.fields}
    line = P.encode_line(mtype, fields)
    assert line.startswith(b"~nm " + mtype.encode() + b" ") and line.endswith(b"\r\n")
    # every value is free of spaces and '*': the line splits into exactly type + fields
    assert len(line[4:-7].split(b" ")) == 1 + len(fields)
    msg = P.parse_line(line)
    assert isinstance(msg, P.Message) and msg.known and msg.type == mtype
    for f in spec.fields:
        want = fields[f.key]
        if f.kind == "floats":
            assert msg.fields[f.key] == pytest.approx(want, rel=1e-5)
        else:
            assert msg.fields[f.key] == want, f.key


def test_optional_fields_may_be_absent_required_may_not():
    line = P.encode_line("ack", {"seq": 3, "ok": True})
    assert P.parse_line(line).fields == {"seq": 3, "ok": True}
    with pytest.raises(P.ProtocolError):
        P.encode_line("ack", {"seq": 3})
    # a line with a valid checksum but without a required field is "invalid"
    body = b"~nm ack seq=3"
    bad = P.parse_line(b"%s*%04X\r\n" % (body, P.crc16(body)))
    assert isinstance(bad, P.Corrupt) and bad.reason == "invalid"


def test_foreign_lines_pass_through_untouched():
    for text in ["Hello from the sketch", "", "~nm", "~nmres", " ~nm res x=1", "temp=21.5*C"]:
        parsed = P.parse_line(text.encode() + b"\r\n")
        assert isinstance(parsed, P.Foreign) and parsed.text == text


def test_nanoml_line_glued_after_foreign_text_is_recovered():
    line = P.encode_line("arena", {"min": 1, "used": 2})
    parts = P.parse_lines(b"debug without newline" + line)
    assert isinstance(parts[0], P.Foreign) and parts[0].text == "debug without newline"
    assert isinstance(parts[1], P.Message) and parts[1].fields == {"min": 1, "used": 2}


def test_any_single_byte_damage_is_detected():
    line = P.encode_line("res", {"seq": 12, "us": 345, "out": [0.1, 0.9], "top": 1})
    rng = random.Random(5)
    for i in range(len(line) - 2):              # every byte before \r\n
        for _ in range(4):
            b = bytearray(line)
            b[i] = rng.choice([c for c in range(32, 127) if c != line[i]])
            parsed = P.parse_line(bytes(b))
            assert not isinstance(parsed, P.Message), bytes(b)


def test_corrupt_reasons():
    assert P.parse_line(b"~nm res seq=1").reason == "syntax"             # no checksum
    assert P.parse_line(b"~nm res seq=1*12G4").reason == "syntax"        # not hex
    assert P.parse_line(b"~nm res seq=1*0x12").reason == "syntax"
    assert P.parse_line(b"~nm res seq=1*1234").reason == "crc"
    body = b"~nm res seq=x us=1 out=1 top=0"
    assert P.parse_line(b"%s*%04X" % (body, P.crc16(body))).reason == "invalid"


def test_lower_case_checksum_and_bare_newline_accepted():
    line = P.encode_line("arena", {"min": 5, "used": 6})
    assert isinstance(P.parse_line(line[:-7] + line[-7:-2].lower() + b"\n"), P.Message)


def test_unknown_types_and_keys_are_kept_for_newer_firmware():
    line = P.encode_line("temp", {"c": "21.5"})
    m = P.parse_line(line)
    assert isinstance(m, P.Message) and not m.known and m.fields == {"c": "21.5"}
    body = b"~nm arena min=1 used=2 peak=3"
    m = P.parse_line(b"%s*%04X\r\n" % (body, P.crc16(body)))
    assert m.known and m.fields == {"min": 1, "used": 2} and m.extra == {"peak": "3"}


def test_percent_encoding_round_trips_random_text():
    rng = random.Random(1)
    for _ in range(500):
        s = "".join(chr(rng.choice([rng.randrange(0, 128), rng.randrange(128, 0x3000)]))
                    for _ in range(rng.randrange(0, 30)))
        enc = P.pct_encode(s)
        assert all(c not in enc for c in " *=,\r\n") and enc.isascii()
        assert P.pct_decode(enc) == s


def test_float_format_is_percent_6g():
    for v in [0.0, -0.0, 1.0, 0.1, 1e-5, 123456.5, 1234567.0, float("inf"), float("-inf")]:
        assert P.format_float(v) == "%.6g" % v
    assert P.format_float(float("nan")) == "nan"


def test_in_frame_encoding():
    f = P.encode_frame(7, b"\x00\xff\x10")
    assert f.startswith(b"~nm in seq=7 len=3 hex=00FF10*") and f.endswith(b"\r\n")
    m = P.parse_line(f)
    assert m.type == "in" and m.fields == {"seq": 7, "len": 3, "hex": b"\x00\xff\x10"}


# ---------------------------------------------------------------- frame parser

def events(parser, data, chunk=None):
    out = []
    if chunk is None:
        out += parser.feed(data)
    else:
        for i in range(0, len(data), chunk):
            out += parser.feed(data[i:i + chunk])
    return [(e.ok, e.seq, e.payload, e.reason) for e in out]


def test_frame_parser_accepts_valid_frames_split_anywhere():
    payload = bytes(range(40))
    stream = b"boot message\r\n" + P.encode_frame(1, payload) + P.encode_frame(2, b"\x01")
    want = [(True, 1, payload, ""), (True, 2, b"\x01", "")]
    for chunk in (None, 1, 2, 3, 7, 64):
        assert events(FrameParser(64), stream, chunk) == want


@pytest.mark.parametrize("line,why,seq", [
    (b"~nm in seq=5 len=65 hex=00*0000\r\n", "len", 5),          # above capacity
    (b"~nm in seq=5 len=0 hex=*0000\r\n", "len", 5),
    (b"~nm in seq=5 len=2 hex=00*0000\r\n", "len", 5),           # too few hex digits
    (b"~nm in seq=5 len=1 hex=0000*0000\r\n", "len", 5),         # too many
    (b"~nm in seq=12345678901 len=1\r\n", "overflow", 0),
    (b"~nm in seq=4294967296 len=1\r\n", "overflow", 0),
    (b"~nm in seq=5 len=1 hex=0G*0000\r\n", "syntax", 5),
    (b"~nm in len=1 seq=5 hex=00*0000\r\n", "syntax", 0),        # field order
    (b"~nm in seq=5  len=1 hex=00*0000\r\n", "syntax", 5),
    (b"~nm res seq=1*0000\r\n", "type", 0),
    (b"~nm in seq=5 len=1 hex=00*00\r\n", "syntax", 5),
    (b"~nm in seq=5 len=1 hex=00*0000 \r\n", "syntax", 5),
])
def test_frame_parser_rejects(line, why, seq):
    assert events(FrameParser(64), line) == [(False, seq, None, why)]


def test_frame_parser_crc_and_recovery():
    good = P.encode_frame(9, b"abc")
    bad = bytearray(good)
    bad[-4] = ord("0") if bad[-4] != ord("0") else ord("1")
    got = events(FrameParser(8), bytes(bad) + b"ignored foreign\n" + good)
    assert got == [(False, 9, None, "crc"), (True, 9, b"abc", "")]
    # a rejected line is skipped to its end, then the next frame parses
    got = events(FrameParser(2), P.encode_frame(1, b"abc") + good[:0] + P.encode_frame(2, b"ab"))
    assert got == [(False, 1, None, "len"), (True, 2, b"ab", "")]


def test_frame_parser_bounded_on_endless_input():
    p = FrameParser(4)
    assert events(p, b"~nm in seq=1 len=4 hex=" + b"A" * 100000) == [(False, 1, None, "len")]
    assert len(p._hex) <= 8
    assert events(p, b"x" * 100000) == []          # skipping, no memory growth


# ---------------------------------------------------------------- synthetic pattern

def test_synthetic_pattern_pinned_values():
    # s1 = 0 * 1664525 + 1013904223 = 0x3C6EF35F -> top byte 0x3C
    data, state = synthetic_fill(1, 0, P.DTYPE_CODES["int8"])
    assert data == b"\x3c" and state == 0x3C6EF35F
    data, _ = synthetic_fill(4, 0, P.DTYPE_CODES["float32"])
    assert struct.unpack("<f", data)[0] == 0x6EF3 / 32768 - 1
    data, _ = synthetic_fill(2, 0, P.DTYPE_CODES["int16"])
    assert data == struct.pack("<H", 0x3C6E)
    assert synthetic_seed(1) == 2654435761 and synthetic_seed(2) == (2 * 2654435761) % 2**32


def test_synthetic_pattern_ranges_and_chaining():
    f, _ = synthetic_fill(4 * 5000, 123, P.DTYPE_CODES["float32"])
    arr = np.frombuffer(f, "<f4")
    assert arr.min() >= -1.0 and arr.max() < 1.0 and arr.std() > 0.5
    i8, _ = synthetic_fill(5000, 123, P.DTYPE_CODES["int8"])
    a = np.frombuffer(i8, np.int8)
    assert a.min() == -128 and a.max() == 127
    a1, s1 = synthetic_fill(10, synthetic_seed(3), 9)
    a2, _ = synthetic_fill(6, s1, 7)
    assert synthetic_inputs(3, [(10, 9), (6, 7)]) == [a1, a2]
    # the jump-ahead table equals stepping the LCG one element at a time
    s, ref = 77, []
    for _ in range(100):
        s = (s * P.LCG_MUL + P.LCG_ADD) % 2**32
        ref.append(s >> 24)
    assert synthetic_fill(100, 77, 3)[0] == bytes(ref)
