"""Streaming parser for host->device capture commands (`cap`, `stop`, `dwin`),
the Python twin of `nanoml::CommandParser` in sketches/common/nanoml_protocol.h.

    ~nm cap seq=<u> sensor=<mic|imu> rate=<u> ch=<u> n=<u>*CCCC\\r\\n
    ~nm stop seq=<u>*CCCC\\r\\n
    ~nm dwin seq=<u> on=<0|1>*CCCC\\r\\n

A command line is short (MAX_COMMAND_LINE bytes with its line end); its
fields may come in any order, each once. At the end of every line that starts
with "~nm " the parser reports one event: a Command, a refusal (CAP_WHY
token), or "other" (a nanoml line of another type: an `in` frame is not
reported at all, the FrameParser reads it). Foreign lines are ignored. Same
verdicts byte for byte as the C++ parser (tests/test_capture_protocol.py feeds
both the same random streams). `nanoml sim` uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import MAX_COMMAND_LINE, crc16

COMMAND_TYPES = ("cap", "stop", "dwin")
SENSORS = ("mic", "imu")
_FIELDS = {"cap": ("seq", "sensor", "rate", "ch", "n"), "stop": ("seq",), "dwin": ("seq", "on")}
_HEX = frozenset(b"0123456789ABCDEFabcdef")


@dataclass
class CommandEvent:
    kind: str                 # "command" | "rejected" | "other"
    type: str = ""            # cap | stop | dwin (command)
    seq: int = 0              # the command's seq (0 when it could not be read)
    why: str = ""             # refusal token (rejected)
    fields: dict | None = None   # decoded fields (command): seq, sensor, rate, ch, n, on

    def to_json(self) -> dict:
        return {"kind": self.kind, "type": self.type, "seq": self.seq, "why": self.why,
                "fields": self.fields}


def _uint(v: bytes) -> int | None:
    if not 0 < len(v) <= 10 or not v.isdigit():
        return None
    n = int(v)
    return n if n <= 0xFFFFFFFF else None


def parse_command(line: bytes) -> CommandEvent | None:
    """One whole line (without "\\n"; at most MAX_COMMAND_LINE - 1 bytes kept,
    `overflow` when longer) -> the event, or None for an `in` frame."""
    return _parse(line, False)


def _parse(line: bytes, overflow: bool) -> CommandEvent | None:
    body = line[:-1] if line.endswith(b"\r") else line
    head = body[4:]
    end = len(head)
    for sep in (b" ", b"*"):
        k = head.find(sep)
        if 0 <= k < end:
            end = k
    mtype = head[:end].decode("latin-1")
    if mtype == "in" and head[end:end + 1] == b" ":
        return None                      # an input frame: the FrameParser's
    if mtype == "in":
        return CommandEvent("other", mtype)
    if mtype not in COMMAND_TYPES:
        return CommandEvent("other", mtype)
    if overflow:
        return CommandEvent("rejected", mtype, 0, "syntax")
    star = body.rfind(b"*")
    if star < 0 or len(body) - star != 5 or not all(c in _HEX for c in body[star + 1:]):
        return CommandEvent("rejected", mtype, 0, "syntax")
    if crc16(body[:star]) != int(body[star + 1:], 16):
        return CommandEvent("rejected", mtype, 0, "crc")
    rest = body[4 + end:star]
    if rest[:1] not in (b"", b" "):
        return CommandEvent("rejected", mtype, 0, "syntax")
    fields: dict = {}
    seq = 0
    for tok in rest[1:].split(b" ") if rest else []:
        key, eq, val = tok.partition(b"=")
        k = key.decode("latin-1")
        if not eq or k not in _FIELDS[mtype] or k in fields:
            return CommandEvent("rejected", mtype, seq, "syntax")
        if k == "sensor":
            v = val.decode("latin-1")
            if v not in SENSORS:
                return CommandEvent("rejected", mtype, seq, "sensor")
        elif k == "on":
            if val not in (b"0", b"1"):
                return CommandEvent("rejected", mtype, seq, "syntax")
            v = val == b"1"
        else:
            v = _uint(val)
            if v is None:
                return CommandEvent("rejected", mtype, seq, "syntax")
            if k == "seq":
                seq = v
        fields[k] = v
    if len(fields) != len(_FIELDS[mtype]):
        return CommandEvent("rejected", mtype, seq, "syntax")
    return CommandEvent("command", mtype, seq, "", fields)


class CommandParser:
    """Feed bytes; get one event per "~nm " line end (see the module doc)."""

    def __init__(self):
        self._buf = bytearray()
        self._active = False      # inside a "~nm " line
        self._skip = False        # inside a foreign line
        self._overflow = False

    def feed(self, data: bytes) -> list[CommandEvent]:
        out: list[CommandEvent] = []
        i, n = 0, len(data)
        while i < n:
            if self._skip or self._overflow:          # fast path: to the line's end
                j = data.find(b"\n", i)
                if j < 0:
                    return out
                i = j
            c = data[i]
            i += 1
            if c == 0x0A:
                if self._active:
                    ev = _parse(bytes(self._buf), self._overflow)
                    if ev is not None:
                        out.append(ev)
                self._buf.clear()
                self._active = self._skip = self._overflow = False
                continue
            if not self._active:
                self._buf.append(c)
                if b"~nm "[:len(self._buf)] != bytes(self._buf):
                    self._buf.clear()
                    self._skip = True
                elif len(self._buf) == 4:
                    self._active = True
                continue
            if len(self._buf) < MAX_COMMAND_LINE - 1:     # room for the "\n" of the limit
                self._buf.append(c)
            else:
                self._overflow = True
        return out
