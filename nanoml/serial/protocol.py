"""The nanoml serial protocol: ONE definition of the line format.

Every nanoml line (both directions) is ASCII::

    ~nm <type> <key>=<value> <key>=<value> ...*<CCCC>\\r\\n

CCCC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no
xorout) of all bytes from ``~`` up to (not including) ``*``, 4 upper-case hex
digits. Lines that do not start with ``~nm `` are foreign (the sketch's own
prints) and pass through untouched.

`MESSAGES` below is the message table. docs/protocol.md embeds the table that
`markdown_tables()` renders (a test checks they agree), and the C++ header
sketches/common/nanoml_protocol.h carries the same constants (a test compiles
a host program with it and checks both directions).

This module only encodes and decodes; it never prints and never touches a port.
"""

from __future__ import annotations

import binascii
import math
import re
from dataclasses import dataclass, field

PROTOCOL_VERSION = 1
PREFIX = b"~nm "
# Longest line a device must accept, other than the hex payload of an "in" frame.
MAX_LINE_LENGTH = 256
# Longest decimal number field in an "in" frame (a uint32 fits in 10 digits).
MAX_DIGITS = 10
# Longest line the host keeps (a "res" with thousands of outputs still fits);
# longer lines are cut and counted as corrupt ("overflow").
HOST_MAX_LINE = 1 << 16

# Bounds of decoded values (anything on the port may send anything). A line
# whose checksum matches but whose value breaks its bound is "invalid":
# counted and skipped like any other bad line.
UINT_MAX = 0xFFFFFFFF                  # uint: 32-bit, as the firmware counts
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1   # int and each item of ints: int32
MAX_NUMBER_CHARS = 32                  # longest float text (`%.6g` needs at most 13)
MAX_ITEMS = 16384                      # items of a floats / ints field (a res with thousands)
MAX_TEXT = 256                         # characters of a text field (after decoding)
MAX_LIST_ITEMS = 256                   # items of a list field
MAX_LIST_ITEM = 64                     # characters of one list item
MAX_TENSORS = 64                       # tensors of a tensors field
MAX_DIMS = 8                           # dimensions of one tensor (each an int32)
MAX_DTYPE = 16                         # characters of a tensor's dtype name
MAX_PAYLOAD = HOST_MAX_LINE // 2       # bytes of a hexbytes field
# Layer dumps: tensor bytes per `lch` line (its longest line stays within
# MAX_LINE_LENGTH, so a device needs no bigger line buffer for a dump).
LAYER_CHUNK_BYTES = 90

# Reasons a device rejects an input frame: the `why=` token of "ack ok=0".
WHY = {
    "len": "len missing, 0 or above the device's input capacity, or hex digits != 2*len",
    "crc": "checksum mismatch",
    "overflow": "a number longer than 10 digits or above 2^32-1",
    "syntax": "anything else malformed (field order, characters, line end)",
    "type": "a nanoml line of a type the device does not accept",
    "busy": "the firmware is still working on the previous frame",
}

# Reasons a device refuses a capture command: the `why=` token of "cack ok=0".
CAP_WHY = {
    "sensor": "the board has no such sensor, or the firmware was built without it",
    "rate": "rate 0 or above what the sensor gives (mic: exactly its sample rate)",
    "ch": "channels not 1 (mic) or 3, 6, 9 (imu)",
    "busy": "a take is running (send `stop` first)",
    "idle": "`stop` with no take running",
    "window": "`dwin on=1` to a firmware that keeps no raw window behind its detections",
    "crc": "checksum mismatch",
    "syntax": "a field missing, unknown or malformed, or the line too long",
}

# Raw sample frames (`smp`): bytes of samples per full frame. A multiple of 3
# (base64 without padding) and of 2 and 4 (int16 and float32 values): 240 B =
# 120 mic samples, 4 .. 12 IMU samples of 9 .. 3 float32 channels (144 B).
SMP_MIC_BYTES = 240
SMP_IMU_BYTES = 144
MAX_SMP_BYTES = 768                    # bound of a `d` field the host decodes
# Longest host->device capture command line ("\r\n" included) a device accepts.
MAX_COMMAND_LINE = 96
CAPTURE_FORMATS = {"mic": "i16", "imu": "f32"}

# TFLite TensorType codes, as used by synthetic_fill (C++ and Python).
DTYPE_CODES = {"float32": 0, "uint8": 3, "int16": 7, "int8": 9}

# Synthetic test pattern: 32-bit LCG s = s * LCG_MUL + LCG_ADD (mod 2^32).
LCG_MUL = 1664525
LCG_ADD = 1013904223
# Inference number seq seeds the pattern with seq * SEED_MUL (mod 2^32).
SEED_MUL = 2654435761

INPUT_SOURCES = ("serial", "synthetic", "imu", "mic")


@dataclass(frozen=True)
class FieldSpec:
    key: str
    kind: str            # one of KINDS
    required: bool
    doc: str
    limit: int | None = None   # max characters (text) / items (lists); None: the kind's default


@dataclass(frozen=True)
class MessageSpec:
    type: str
    direction: str       # "device" (device -> host) or "host" (host -> device)
    doc: str
    fields: tuple[FieldSpec, ...]

    def field(self, key: str) -> FieldSpec | None:
        for f in self.fields:
            if f.key == key:
                return f
        return None


KINDS = {
    "uint": "decimal unsigned integer",
    "int": "decimal integer, optional leading '-'",
    "bool": "`0` or `1`",
    "float": "number, 6 significant digits like C `%.6g`, or `nan`, `inf`, `-inf`",
    "floats": "comma-separated `float`s",
    "ints": "comma-separated `int`s",
    "text": "percent-encoded text (space % * = , control and non-ASCII bytes as %XX)",
    "list": "comma-separated `text` items",
    "hex12": "12 lower-case hex digits",
    "hexbytes": "upper-case hex digits, 2 per byte (either case accepted)",
    "b64": "base64 of bytes (RFC 4648 alphabet A-Z a-z 0-9 + /, no `=` padding)",
    "tensors": "comma-separated `<dtype>:<dim>x<dim>...` (e.g. `int8:1x49x40x1`)",
}


def _f(key: str, kind: str, doc: str, required: bool = True, limit: int | None = None) -> FieldSpec:
    return FieldSpec(key, kind, required, doc, limit)


# default `limit` per kind (max characters or items); kinds not listed have fixed bounds
DEFAULT_LIMITS = {"floats": MAX_ITEMS, "ints": MAX_ITEMS, "text": MAX_TEXT,
                  "list": MAX_LIST_ITEMS, "hexbytes": MAX_PAYLOAD, "tensors": MAX_TENSORS,
                  "b64": MAX_SMP_BYTES}


def field_limit(f: FieldSpec) -> int | None:
    return f.limit if f.limit is not None else DEFAULT_LIMITS.get(f.kind)


def bounds_text(kind: str, limit: int | None = None) -> str:
    """The bound of a value of `kind`, for the docs' tables."""
    n = limit if limit is not None else DEFAULT_LIMITS.get(kind)
    return {
        "uint": f"0 .. {UINT_MAX}", "int": f"{INT_MIN} .. {INT_MAX}", "bool": "0 or 1",
        "float": "a decimal within double range, nan, inf or -inf",
        "floats": f"<= {n} items, each a float",
        "ints": f"<= {n} items, each {INT_MIN} .. {INT_MAX}", "text": f"<= {n} characters",
        "list": f"<= {n} items of <= {MAX_LIST_ITEM} characters", "hex12": "12 digits",
        "hexbytes": f"<= {n} bytes", "b64": f"<= {n} bytes",
        "tensors": f"<= {n} tensors of <= {MAX_DIMS} dims, each 0 .. {INT_MAX}",
    }[kind]


MESSAGES: dict[str, MessageSpec] = {m.type: m for m in (
    MessageSpec("hello", "device",
                "Sent once at boot and again every few seconds (a monitor that attaches "
                "late still learns what runs).", (
                    _f("proto", "uint", "protocol version, 1"),
                    _f("fw", "text", "firmware version", limit=64),
                    _f("model", "hex12", "first 12 hex digits of the model file's SHA-256"),
                    _f("board", "text", "board id (boards/*.toml)", limit=64),
                    _f("runtime", "text", "runtime id (runtimes/*.toml)", limit=64),
                    _f("arena", "uint", "tensor arena size, bytes"),
                    _f("used", "uint", "arena bytes used after AllocateTensors()"),
                    _f("ops", "list", "distinct operators of the model, in order of first use"),
                    _f("in", "tensors", "input tensors"),
                    _f("out", "tensors", "output tensors"),
                    _f("input", "text", "input source: serial, synthetic, imu or mic", limit=32),
                    _f("sim", "bool", "1 when sent by `nanoml sim` (host timings)", False),
                    _f("layers", "bool", "1 when the firmware dumps every operator's output for "
                                         "an input frame (layer-dump build: `lay`, `lch`, `lend`)",
                       False),
                )),
    MessageSpec("res", "device", "One inference result.", (
        _f("seq", "uint", "inference counter since boot"),
        _f("us", "uint", "Invoke() latency, microseconds"),
        _f("out", "floats", "all outputs, dequantized, tensors concatenated in order"),
        _f("top", "int", "index of the largest value of output 0"),
        _f("q", "ints", "raw quantized outputs (int8/uint8/int16 outputs)", False),
        _f("frame", "uint", "seq of the host's input frame this result answers "
                            "(absent for synthetic/sensor input)", False),
        _f("sim", "bool", "1 when the latency is host time from `nanoml sim`", False),
        _f("t_ms", "uint", "sensor stream time of the window's last sample, ms (mic/imu "
                           "pipelines)", False),
        _f("fus", "uint", "microseconds spent in the front end (features and tensor "
                          "conversion) since the previous result (mic pipelines)", False),
        _f("drop", "uint", "sensor samples dropped since boot because the firmware was "
                           "busy (mic/imu pipelines)", False),
    )),
    MessageSpec("det", "device", "A detection: the pipeline's recognizer (score averaging, "
                                 "threshold, suppression) decided a label.", (
        _f("seq", "uint", "seq of the result (`res`) that decided it"),
        _f("i", "uint", "label index (output position)"),
        _f("label", "text", "label name (the index when the model has no labels)",
           limit=MAX_LIST_ITEM),
        _f("score", "uint", "the label's average score, 0 .. 255"),
        _f("t_ms", "uint", "sensor stream time of that result, ms"),
        _f("sim", "bool", "1 when sent by `nanoml sim`", False),
    )),
    MessageSpec("end", "device", "The sensor stream ended (only `nanoml sim --source FILE`, at "
                                 "the end of the file; a board's sensors never end).", (
        _f("results", "uint", "results sent for the stream"),
        _f("dets", "uint", "detections sent for the stream"),
        _f("t_ms", "uint", "length of the stream, ms"),
        _f("sim", "bool", "1 when sent by `nanoml sim`", False),
    )),
    MessageSpec("op", "device", "Per-operator profile record (profiling firmware).", (
        _f("seq", "uint", "inference this record belongs to"),
        _f("i", "uint", "operator index in execution order"),
        _f("op", "text", "operator name, e.g. CONV_2D", limit=MAX_LIST_ITEM),
        _f("cyc", "uint", "CPU cycles (DWT cycle counter)"),
        _f("us", "uint", "microseconds"),
        _f("sim", "bool", "1 when measured on the host by `nanoml sim`", False),
    )),
    MessageSpec("arena", "device", "Arena bisection result (profiling firmware).", (
        _f("min", "uint", "smallest arena with which AllocateTensors() and Invoke() succeed"),
        _f("used", "uint", "arena_used_bytes() with the configured arena"),
    )),
    MessageSpec("err", "device", "An error the firmware reports.", (
        _f("code", "text", "error token, e.g. alloc, invoke, model, sensor", limit=32),
        _f("msg", "text", "human-readable message", limit=1024),
    )),
    MessageSpec("ack", "device", "Reply to an input frame.", (
        _f("seq", "uint", "seq of the frame (0 when it could not be read)"),
        _f("ok", "bool", "1 accepted (a `res` with frame=seq follows), 0 rejected"),
        _f("why", "text", "reject reason token (see the table below)", False, limit=32),
    )),
    # -- layer dumps (issue 13: layer-dump build, `nanoml sim --layers`) --------------
    MessageSpec("lay", "device", "Layer-dump build: header of one operator output, sent right "
                                 "after the operator ran for input frame `frame`; `chunks` `lch` "
                                 "lines with its bytes follow.", (
        _f("frame", "uint", "seq of the input frame being run"),
        _f("i", "uint", "operator index in subgraph 0 (execution order)"),
        _f("o", "uint", "position among the operator's outputs"),
        _f("op", "text", "operator name, e.g. CONV_2D", limit=MAX_LIST_ITEM),
        _f("t", "int", "tensor index in subgraph 0 (-1: optional output absent)"),
        _f("dtype", "text", "element type (numpy name: int8, int16, float32, ...)",
           limit=MAX_DTYPE),
        _f("shape", "ints", "dimensions (empty for a scalar)", limit=MAX_DIMS),
        _f("bytes", "uint", "tensor bytes (0 when `why` is set)"),
        _f("chunks", "uint", f"`lch` lines that follow (ceil(bytes / {LAYER_CHUNK_BYTES}))"),
        _f("crc", "uint", "CRC-32 (zlib/IEEE) of all the tensor's bytes"),
        _f("scale", "float", "quantization scale (absent: not quantized)", False),
        _f("zp", "int", "quantization zero point", False),
        _f("why", "text", "why the output was not sent: dtype (no values: resource, variant, "
                          "string) or nodata (no data pointer)", False, limit=32),
    )),
    MessageSpec("lch", "device", "Layer-dump build: one chunk of a `lay` tensor (its line "
                                 "checksum covers the chunk; `lay crc` the whole tensor).", (
        _f("frame", "uint", "seq of the input frame"),
        _f("i", "uint", "operator index"),
        _f("o", "uint", "output position"),
        _f("k", "uint", "chunk index, 0 .. chunks-1"),
        _f("hex", "hexbytes", f"chunk bytes: {LAYER_CHUNK_BYTES} except in the last chunk",
           limit=LAYER_CHUNK_BYTES),
    )),
    MessageSpec("lend", "device", "Layer-dump build: every operator of frame `frame` ran and "
                                  "was sent (the frame's `res` follows).", (
        _f("frame", "uint", "seq of the input frame"),
        _f("ops", "uint", "operators of subgraph 0 that ran"),
        _f("sent", "uint", "`lay` headers sent"),
        _f("nested", "uint", "operator runs inside control-flow subgraphs (not dumped)"),
        _f("sim", "bool", "1 when sent by `nanoml sim`", False),
    )),
    MessageSpec("in", "host", "Input frame: tensor bytes for one inference. Fields in "
                              "exactly this order.", (
        _f("seq", "uint", "host's frame counter"),
        _f("len", "uint", "payload bytes (1 .. device capacity)"),
        _f("hex", "hexbytes", "payload, 2*len hex digits, little-endian tensor bytes"),
    )),
    # -- raw sample capture (docs/protocol.md "Capture"; nanoml/capture/link.py) --
    MessageSpec("cap", "host", "Capture command: start a take of raw sensor samples. The "
                               "model stops running while the take lasts.", (
        _f("seq", "uint", "host's command counter (the `cack` answers it)"),
        _f("sensor", "text", "mic or imu", limit=8),
        _f("rate", "uint", "samples per second (mic: 16000; imu: 1 .. the sensor's rate)"),
        _f("ch", "uint", "channels: 1 (mic); 3, 6 or 9 (imu: acc, + gyro, + mag)"),
        _f("n", "uint", "samples in the take (0: until `stop`)"),
    )),
    MessageSpec("stop", "host", "Capture command: end the take now (a `cend` follows).", (
        _f("seq", "uint", "host's command counter"),
    )),
    MessageSpec("dwin", "host", "Capture command: send (on=1) or not (on=0) the raw window "
                                "behind every detection, as a take with `det=` after the "
                                "`det` line.", (
        _f("seq", "uint", "host's command counter"),
        _f("on", "bool", "1: send detection windows, 0: stop sending them"),
    )),
    MessageSpec("cack", "device", "Reply to a capture command.", (
        _f("seq", "uint", "seq of the command (0 when it could not be read)"),
        _f("ok", "bool", "1 accepted, 0 refused"),
        _f("why", "text", "refusal token (see the table below)", False, limit=32),
    )),
    MessageSpec("cst", "device", "Start of a take: what the `smp` frames that follow carry.", (
        _f("take", "uint", "take number since boot"),
        _f("sensor", "text", "mic or imu", limit=8),
        _f("rate", "uint", "samples per second"),
        _f("ch", "uint", "channels per sample"),
        _f("n", "uint", "samples the take will have (0: until `stop`)"),
        _f("fmt", "text", "sample encoding: i16 (int16 LE) or f32 (float32 LE)", limit=8),
        _f("names", "list", "channel names (mic; ax,ay,az,gx,gy,gz,mx,my,mz)"),
        _f("units", "list", "channel units (pcm16; g, dps, uT)"),
        _f("spf", "uint", "samples per full `smp` frame"),
        _f("board", "text", "board id (boards/*.toml)", limit=64),
        _f("rev", "text", "board revision (rev1, rev2)", limit=16),
        _f("fw", "text", "firmware version", limit=64),
        _f("det", "uint", "seq of the `det` whose raw window this take is", False),
        _f("sim", "bool", "1 when sent by `nanoml sim`", False),
    )),
    MessageSpec("smp", "device", "Raw samples of a take: one frame.", (
        _f("take", "uint", "take number (as in `cst`)"),
        _f("seq", "uint", "frame number within the take, from 0"),
        _f("i", "uint", "index of the frame's first sample within the take"),
        _f("n", "uint", "samples in the frame (1 .. spf)"),
        _f("d", "b64", "n * ch values, little-endian, interleaved by sample"),
        _f("t_us", "uint", "board clock (micros(), wraps) when the frame's first sample was "
                           "taken; `nanoml sim`: that sample's time in the take", False),
    )),
    MessageSpec("cend", "device", "End of a take.", (
        _f("take", "uint", "take number"),
        _f("samples", "uint", "samples sent"),
        _f("frames", "uint", "`smp` frames sent"),
        _f("drop", "uint", "samples the device lost during the take (ring overflow, a "
                           "line that did not fit the USB buffer)"),
        _f("why", "text", "done (n reached), stop (the host's `stop`), end (`nanoml sim`: the "
                          "file ended), error (the device ended it: the host closed the port)",
           limit=16),
        _f("sim", "bool", "1 when sent by `nanoml sim`", False),
    )),
)}


# ---------------------------------------------------------------------------
# CRC

def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (binascii.crc_hqx is exactly this polynomial, MSB first)."""
    return binascii.crc_hqx(data, crc)


def crc32(data: bytes) -> int:
    """CRC-32 (zlib/IEEE 802.3, reflected 0xEDB88320) of a whole tensor (`lay crc`)."""
    return binascii.crc32(data) & 0xFFFFFFFF


# ---------------------------------------------------------------------------
# value encoding

_ESCAPE = frozenset(b" %*=,\x7f") | frozenset(range(0x20)) | frozenset(range(0x80, 0x100))
_NEEDS_ESCAPE_RE = re.compile(r"[\x00-\x20%*=,\x7f-\U0010ffff]")


def pct_encode(text: str) -> str:
    if not _NEEDS_ESCAPE_RE.search(text):
        return text
    return "".join(f"%{b:02X}" if b in _ESCAPE else chr(b) for b in text.encode("utf-8"))


_PCT_RE = re.compile(rb"%([0-9A-Fa-f]{2})")


def pct_decode(value: str) -> str:
    if "%" not in value:
        return value
    raw = _PCT_RE.sub(lambda m: bytes([int(m.group(1), 16)]), value.encode("ascii", "replace"))
    return raw.decode("utf-8", "replace")


def format_float(v: float) -> str:
    """6 significant digits, C `%.6g` style (the C++ header writes the same)."""
    return f"{float(v):.6g}"


def format_tensors(tensors) -> str:
    """[(dtype, shape), ...] -> 'int8:1x49x40x1,float32:1x4'."""
    return ",".join(f"{dt}:{'x'.join(str(int(d)) for d in shape)}" for dt, shape in tensors)


def _encode_value(kind: str, v) -> str:
    if kind in ("uint", "int"):
        return str(int(v))
    if kind == "bool":
        return "1" if v else "0"
    if kind == "float":
        return format_float(v)
    if kind == "floats":
        return ",".join(format_float(x) for x in v)
    if kind == "ints":
        return ",".join(str(int(x)) for x in v)
    if kind == "text":
        return pct_encode(str(v))
    if kind == "list":
        return ",".join(pct_encode(str(x)) for x in v)
    if kind == "hex12":
        return str(v)[:12].lower()
    if kind == "hexbytes":
        return bytes(v).hex().upper()
    if kind == "b64":
        return b64_encode(bytes(v))
    if kind == "tensors":
        if isinstance(v, str):
            return v
        return format_tensors((t["dtype"], t["shape"]) if isinstance(t, dict) else t for t in v)
    raise ValueError(f"unknown field kind {kind!r}")


class ProtocolError(ValueError):
    """A value or line that does not follow the protocol."""


def encode_line(msg_type: str, fields: dict) -> bytes:
    """Build one line, "\\r\\n" included. Known types are checked against MESSAGES:
    required fields must be present, values are encoded by their kind and
    written in table order (unknown keys follow as percent-encoded text)."""
    spec = MESSAGES.get(msg_type)
    parts = [msg_type]
    if spec is not None:
        for f in spec.fields:
            if f.key in fields and fields[f.key] is not None:
                parts.append(f"{f.key}={_encode_value(f.kind, fields[f.key])}")
            elif f.required:
                raise ProtocolError(f"'{msg_type}' needs field '{f.key}'")
        extra = [k for k in fields if spec.field(k) is None]
    else:
        extra = list(fields)
    for k in extra:
        if fields[k] is not None:
            parts.append(f"{k}={pct_encode(str(fields[k]))}")
    body = b"~nm " + " ".join(parts).encode("ascii")
    return b"%s*%04X\r\n" % (body, crc16(body))


def encode_frame(seq: int, payload: bytes) -> bytes:
    """Host->device input frame: ~nm in seq=<n> len=<bytes> hex=<...>*CCCC\\r\\n"""
    body = b"~nm in seq=%d len=%d hex=%s" % (seq, len(payload), payload.hex().upper().encode())
    return b"%s*%04X\r\n" % (body, crc16(body))


# ---------------------------------------------------------------------------
# decoding

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
_HEX_RE = re.compile(r"[0-9A-Fa-f]*\Z")
_CRC_RE = re.compile(rb"[0-9A-Fa-f]{4}\Z")
# a number as C's %g prints it (a decimal, or nan / -nan / inf / -inf)
_NUMBER = r"(?:-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|-?nan|-?inf)"
_FLOAT_RE = re.compile(rf"{_NUMBER}\Z")
_FLOATS_RE = re.compile(rf"{_NUMBER}(?:,{_NUMBER})*\Z")
_INTS_RE = re.compile(r"-?[0-9]{1,10}(?:,-?[0-9]{1,10})*\Z")
_DTYPE_RE = re.compile(rf"[a-z][a-z0-9]{{0,{MAX_DTYPE - 1}}}\Z")
_DIMS_RE = re.compile(rf"[0-9]{{1,10}}(?:x[0-9]{{1,10}}){{0,{MAX_DIMS - 1}}}\Z")


def _count_items(v: str, limit: int, what: str) -> None:
    if v.count(",") >= limit:
        raise ProtocolError(f"more than {limit} {what}")


def parse_tensors(value: str, limit: int = MAX_TENSORS) -> list[dict]:
    """'int8:1x49x40x1,float32:1x4' -> [{"dtype", "shape"}, ...], bounded:
    at most `limit` tensors of at most MAX_DIMS int32 dimensions."""
    out = []
    if not value:
        return out
    _count_items(value, limit, "tensors")
    for item in value.split(","):
        dtype, sep, dims = item.partition(":")
        if not sep or not _DTYPE_RE.match(dtype) or not (dims == "" or _DIMS_RE.match(dims)):
            raise ProtocolError(f"bad tensor spec {item[:40]!r}")
        shape = [int(d) for d in dims.split("x")] if dims else []
        if any(d > INT_MAX for d in shape):
            raise ProtocolError(f"tensor dimension above {INT_MAX}")
        out.append({"dtype": dtype, "shape": shape})
    return out


def _uint(v: str, _limit=None) -> int:
    if not (0 < len(v) <= 10 and v.isdigit() and v.isascii()):
        raise ProtocolError(f"expected an unsigned 32-bit integer, got {v[:40]!r}")
    n = int(v)
    if n > UINT_MAX:
        raise ProtocolError(f"{n} is above {UINT_MAX}")
    return n


def _int(v: str, _limit=None) -> int:
    d = v[1:] if v[:1] == "-" else v
    if not (0 < len(d) <= 10 and d.isdigit() and d.isascii()):
        raise ProtocolError(f"expected a 32-bit integer, got {v[:40]!r}")
    n = int(v)
    if not INT_MIN <= n <= INT_MAX:
        raise ProtocolError(f"{n} is outside {INT_MIN} .. {INT_MAX}")
    return n


def _bool(v: str, _limit=None) -> bool:
    if v == "1":
        return True
    if v == "0":
        return False
    raise ProtocolError(f"expected 0 or 1, got {v[:40]!r}")


def _check_range(values: list[float], items: list[str]) -> None:
    """A decimal beyond double range (1e999) is not what a device prints for inf."""
    for x, t in zip(values, items):
        if math.isinf(x) and "inf" not in t:
            raise ProtocolError(f"{t[:40]} is beyond the float range")


def _float(v: str, _limit=None) -> float:
    if len(v) > MAX_NUMBER_CHARS or not _FLOAT_RE.match(v):
        raise ProtocolError(f"expected a number, got {v[:40]!r}")
    x = float(v)
    _check_range([x], [v])
    return x


def _floats(v: str, limit: int = MAX_ITEMS) -> list[float]:
    if not v:
        return []
    _count_items(v, limit, "numbers")
    if not _FLOATS_RE.match(v):
        raise ProtocolError(f"expected numbers, got {v[:40]!r}")
    items = v.split(",")
    if max(map(len, items)) > MAX_NUMBER_CHARS:
        raise ProtocolError(f"a number longer than {MAX_NUMBER_CHARS} characters")
    out = list(map(float, items))
    if not all(map(math.isfinite, out)):
        _check_range(out, items)
    return out


def _ints(v: str, limit: int = MAX_ITEMS) -> list[int]:
    if not v:
        return []
    _count_items(v, limit, "integers")
    if not _INTS_RE.match(v):
        raise ProtocolError(f"expected 32-bit integers, got {v[:40]!r}")
    out = list(map(int, v.split(",")))
    if min(out) < INT_MIN or max(out) > INT_MAX:
        raise ProtocolError(f"an integer outside {INT_MIN} .. {INT_MAX}")
    return out


def _textval(v: str, limit: int = MAX_TEXT) -> str:
    if len(v) > 3 * 4 * limit:                 # cheap reject before decoding
        raise ProtocolError(f"text longer than {limit} characters")
    t = pct_decode(v)
    if len(t) > limit:
        raise ProtocolError(f"text longer than {limit} characters")
    return t


def _list(v: str, limit: int = MAX_LIST_ITEMS) -> list[str]:
    if not v:
        return []
    _count_items(v, limit, "items")
    return [_textval(x, MAX_LIST_ITEM) for x in v.split(",")]


def _hex12(v: str, _limit=None) -> str:
    if len(v) != 12 or not _HEX_RE.match(v):
        raise ProtocolError(f"expected 12 hex digits, got {v[:40]!r}")
    return v.lower()


def _hexbytes(v: str, limit: int = MAX_PAYLOAD) -> bytes:
    if len(v) > 2 * limit:
        raise ProtocolError(f"payload above {limit} bytes")
    if not _HEX_RE.match(v):
        raise ProtocolError("bad hex payload")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise ProtocolError("bad hex payload") from None


def b64_encode(data: bytes) -> str:
    """Base64 without padding (the `b64` kind)."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").decode("ascii")


_B64_RE = re.compile(r"[A-Za-z0-9+/]*\Z")


def _b64(v: str, limit: int = MAX_SMP_BYTES) -> bytes:
    if len(v) > (4 * limit + 2) // 3:
        raise ProtocolError(f"data above {limit} bytes")
    if len(v) % 4 == 1 or not _B64_RE.match(v):
        raise ProtocolError("bad base64 data")
    try:
        return binascii.a2b_base64(v + "=" * (-len(v) % 4))
    except binascii.Error:
        raise ProtocolError("bad base64 data") from None


def _tensors(v: str, limit: int = MAX_TENSORS) -> list[dict]:
    return parse_tensors(v, limit)


_DECODERS = {"uint": _uint, "int": _int, "bool": _bool, "float": _float, "floats": _floats,
             "ints": _ints, "text": _textval, "list": _list, "hex12": _hex12,
             "hexbytes": _hexbytes, "tensors": _tensors, "b64": _b64}
assert set(_DECODERS) == set(KINDS)


def _field_decoder(f: FieldSpec):
    fn, limit = _DECODERS[f.kind], field_limit(f)
    return lambda v: fn(v, limit)


# per message type: key -> decoder (with the field's bound), and the required keys
_FIELD_DECODERS = {m.type: {f.key: _field_decoder(f) for f in m.fields} for m in MESSAGES.values()}
_REQUIRED = {m.type: tuple(f.key for f in m.fields if f.required) for m in MESSAGES.values()}


def decode_value(kind: str, v: str, limit: int | None = None):
    """Decode one value of `kind`, within its bound (`limit` or the kind's
    default). Raises ProtocolError."""
    try:
        fn = _DECODERS[kind]
    except KeyError:
        raise ProtocolError(f"unknown field kind {kind!r}") from None
    if limit is None:
        limit = DEFAULT_LIMITS.get(kind)
    return fn(v, limit) if limit is not None else fn(v)


@dataclass
class Message:
    """A nanoml line whose checksum matched."""
    type: str
    fields: dict                       # decoded values (raw strings for unknown types/keys)
    known: bool = True                 # type is in MESSAGES
    extra: dict = field(default_factory=dict)   # keys not in the table (newer firmware)
    raw: str = field(default="", repr=False)    # the line as received, without \r\n

    def to_json(self) -> dict:
        d = {"type": self.type}
        d.update(self.fields)
        if self.extra:
            d["extra"] = self.extra
        if not self.known:
            d["known"] = False
        return d


@dataclass
class Foreign:
    """A line that is not a nanoml line (the sketch's own print)."""
    text: str

    def to_json(self) -> dict:
        return {"type": "foreign", "text": self.text}


@dataclass
class Corrupt:
    """A nanoml line that failed its checksum or framing ("crc", "syntax",
    "overflow"), or passed it but breaks the table ("invalid")."""
    reason: str
    text: str
    detail: str = ""

    def to_json(self) -> dict:
        return {"type": "corrupt", "reason": self.reason, "text": self.text,
                "detail": self.detail}


Parsed = Message | Foreign | Corrupt


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace")


text_line = _text


def parse_line(line: bytes) -> Parsed:
    """Parse one line (without or with its "\\r\\n"). A nanoml line glued after
    foreign text on the same line is not split here: see `parse_lines`."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.startswith(PREFIX):
        return Foreign(_text(line))
    star = line.rfind(b"*")
    if star < 0 or len(line) - star != 5:
        return Corrupt("syntax", _text(line), "no *CCCC checksum at the end")
    if not _CRC_RE.match(line, star + 1):
        return Corrupt("syntax", _text(line), "checksum is not 4 hex digits")
    rx = int(line[star + 1:], 16)
    body = line[:star]
    if crc16(body) != rx:
        return Corrupt("crc", _text(line), f"checksum {line[star + 1:].decode('ascii', 'replace')} "
                                           f"!= {crc16(body):04X}")
    try:
        text = body[4:].decode("ascii")
    except UnicodeDecodeError:
        return Corrupt("invalid", _text(line), "non-ASCII bytes")
    parts = text.split(" ")
    mtype = parts[0]
    decoders = _FIELD_DECODERS.get(mtype)
    if decoders is None and not _NAME_RE.match(mtype):
        return Corrupt("invalid", _text(line), f"bad message type {mtype[:40]!r}")
    fields: dict = {}
    extra: dict = {}
    for p in parts[1:]:
        k, sep, v = p.partition("=")
        fn = decoders.get(k) if decoders is not None else None
        if fn is None:
            if not sep or not _NAME_RE.match(k):
                return Corrupt("invalid", _text(line), f"bad field {p[:40]!r}")
            (extra if decoders is not None else fields)[k] = v
            continue
        if not sep:
            return Corrupt("invalid", _text(line), f"bad field {p[:40]!r}")
        try:
            fields[k] = fn(v)
        except ProtocolError as e:
            return Corrupt("invalid", _text(line), f"{k}: {e}")
    raw = text_line(line)
    if decoders is None:
        return Message(mtype, fields, known=False, raw=raw)
    for key in _REQUIRED[mtype]:
        if key not in fields:
            return Corrupt("invalid", raw, f"'{mtype}' without '{key}'")
    return Message(mtype, fields, extra=extra, raw=raw)


# how many "~nm " starts in one line parse_lines tries (the first, then from the last back)
MAX_SPLIT_TRIES = 8


def _starts(line: bytes, first: int):
    """Where a nanoml line may start: the first "~nm ", then the others from
    the last one back (a valid line runs to the end of the line, so after text
    full of "~nm " it is most likely the last one)."""
    yield first
    j = len(line)
    while True:
        j = line.rfind(PREFIX, first + 1, j + len(PREFIX) - 1)
        if j < 0:
            return
        yield j


def parse_lines(line: bytes) -> list[Parsed]:
    """Like parse_line, but a nanoml line that starts after other text on the
    same line (a sketch print without newline, a line cut by a reset) is split
    off and parsed: of the "~nm " in the line (the first, then from the last
    back; at most MAX_SPLIT_TRIES), the first one from which a valid line
    parses wins; what comes before it is parsed on its own."""
    first_j = 0 if line.startswith(PREFIX) else line.find(PREFIX)
    if first_j < 0:
        return [parse_line(line)]
    first = None
    for _, j in zip(range(MAX_SPLIT_TRIES), _starts(line, first_j)):
        p = parse_line(line[j:])
        if first is None:
            first = p
        if isinstance(p, Message):
            return ([parse_line(line[:j])] if j else []) + [p]
    return ([Foreign(_text(line[:first_j]))] if first_j else []) + [first]


_CONTROL_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with control characters (all but tab; also DEL, C1 and the
    Unicode line/paragraph separators) written as \\xNN / \\uNNNN, so serial
    text cannot break a CSV row, a log line or a terminal."""
    if not _CONTROL_RE.search(text):
        return text
    return _CONTROL_RE.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                      else f"\\u{ord(m.group()):04x}"), text)


# ---------------------------------------------------------------------------
# documentation (docs/protocol.md embeds this; tests/test_protocol_docs.py checks it)

def markdown_tables() -> str:
    out = []
    for m in MESSAGES.values():
        arrow = "device → host" if m.direction == "device" else "host → device"
        out.append(f"### `{m.type}` ({arrow})\n\n{m.doc}\n")
        out.append("| key | kind | required | bounds | meaning |\n|---|---|---|---|---|")
        for f in m.fields:
            out.append(f"| `{f.key}` | {f.kind} | {'yes' if f.required else 'no'} | "
                       f"{bounds_text(f.kind, f.limit)} | {f.doc} |")
        out.append("")
    out.append("### Value kinds\n\n| kind | format |\n|---|---|")
    out.extend(f"| {k} | {v} |" for k, v in KINDS.items())
    out.append("\n### Reject reasons (`ack ok=0 why=`)\n\n| why | meaning |\n|---|---|")
    out.extend(f"| `{k}` | {v} |" for k, v in WHY.items())
    out.append("\n### Capture refusals (`cack ok=0 why=`)\n\n| why | meaning |\n|---|---|")
    out.extend(f"| `{k}` | {v} |" for k, v in CAP_WHY.items())
    out.append("\n### Constants\n\n| name | value |\n|---|---|")
    consts = {"protocol version": PROTOCOL_VERSION, "line prefix": "`~nm `",
              "max line length (device, excluding an `in` payload)": MAX_LINE_LENGTH,
              "max digits of an `in` number field": MAX_DIGITS,
              "max line length kept by the host": HOST_MAX_LINE,
              "max `~nm ` starts tried in one line (text glued before a nanoml line)":
                  MAX_SPLIT_TRIES,
              "tensor bytes per `lch` chunk (layer dumps)": LAYER_CHUNK_BYTES,
              "LCG multiplier": LCG_MUL, "LCG increment": LCG_ADD,
              "seed multiplier (seed = seq * it mod 2^32)": SEED_MUL,
              "max capture command line (device)": MAX_COMMAND_LINE,
              "`smp` bytes per full frame, mic": SMP_MIC_BYTES,
              "`smp` bytes per full frame, imu": SMP_IMU_BYTES,
              "max `smp` data bytes (host)": MAX_SMP_BYTES}
    consts.update({f"dtype code {k}": v for k, v in DTYPE_CODES.items()})
    out.extend(f"| {k} | {v} |" for k, v in consts.items())
    return "\n".join(out) + "\n"


DOC_BEGIN = "<!-- BEGIN generated: python -m nanoml.serial.protocol -->"
DOC_END = "<!-- END generated -->"


if __name__ == "__main__":  # pragma: no cover - doc generator
    import sys
    sys.stdout.write(markdown_tables())
