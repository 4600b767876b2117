"""Streaming parser for host->device input frames, the Python twin of
`nanoml::FrameParser` in sketches/common/nanoml_protocol.h.

    ~nm in seq=<uint32> len=<bytes> hex=<2*len hex digits>*CCCC\\r\\n

Same states, same bounds, same verdicts byte for byte (tests/test_protocol_cpp.py
feeds identical random streams to both and compares). `nanoml sim` uses it, so
the virtual board accepts and rejects exactly what the firmware does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .protocol import MAX_DIGITS, crc16

_IN_PREFIX = b"~nm in "
_HEX_RUN = re.compile(rb"[0-9A-Fa-f]+")
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")

# states (names as in the C++ header)
_LINE_START, _PREFIX, _LITERAL, _SEQ, _LEN, _HEX, _CRC, _CR, _LF, _SKIP = range(10)


@dataclass
class FrameEvent:
    ok: bool                  # True: a verified frame; False: a rejected line
    seq: int                  # frame seq (0 when it was not read)
    payload: bytes | None     # the frame's bytes when ok
    reason: str = ""          # reject reason token when not ok

    def to_json(self) -> dict:
        return {"ok": self.ok, "seq": self.seq, "len": len(self.payload or b""),
                "reason": self.reason}


class FrameParser:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.reset()

    def reset(self) -> None:
        self._state = _LINE_START
        self._pos = 0
        self._crc = 0xFFFF
        self._number = 0
        self._digits = 0
        self._seq = 0
        self._len = 0
        self._hex = bytearray()
        self._rx_crc = 0
        self._literal = b""
        self._next = _SEQ

    def _reject(self, why: str, c: int, out: list) -> None:
        out.append(FrameEvent(False, self._seq, None, why))
        self._state = _LINE_START if c == 0x0A else _SKIP

    def _begin_literal(self, lit: bytes, nxt: int) -> None:
        self._literal = lit
        self._pos = 0
        self._next = nxt
        self._state = _LITERAL

    def feed(self, data: bytes) -> list[FrameEvent]:
        out: list[FrameEvent] = []
        i = 0
        n = len(data)
        while i < n:
            st = self._state
            if st == _SKIP:                         # fast path: jump to the newline
                j = data.find(b"\n", i)
                if j < 0:
                    return out
                self._state = _LINE_START
                i = j + 1
                continue
            if st == _HEX:                          # fast path: a run of hex digits
                m = _HEX_RUN.match(data, i)
                if m:
                    run = m.group()
                    room = 2 * self._len - len(self._hex)
                    if len(run) > room:
                        take = run[:room]
                        self._hex += take
                        self._crc = crc16(take, self._crc)
                        i += room
                        self._reject("len", data[i], out)
                        i += 1
                        continue
                    self._hex += run
                    self._crc = crc16(run, self._crc)
                    i = m.end()
                    continue
            c = data[i]
            i += 1
            if st == _LINE_START:
                self._crc = 0xFFFF
                self._pos = 0
                self._seq = 0
                self._len = 0
                self._hex = bytearray()
                self._state = st = _PREFIX
            if st == _PREFIX:
                if c == _IN_PREFIX[self._pos]:
                    self._crc = crc16(bytes((c,)), self._crc)
                    self._pos += 1
                    if self._pos == len(_IN_PREFIX):
                        self._begin_literal(b"seq=", _SEQ)
                elif self._pos >= 4:
                    self._reject("type", c, out)
                elif c == 0x0A:
                    self._state = _LINE_START
                else:
                    self._state = _SKIP
            elif st == _LITERAL:
                if c != self._literal[self._pos]:
                    self._reject("syntax", c, out)
                    continue
                self._crc = crc16(bytes((c,)), self._crc)
                self._pos += 1
                if self._pos == len(self._literal):
                    self._state = self._next
                    self._number = 0
                    self._digits = 0
            elif st == _SEQ or st == _LEN:
                if 0x30 <= c <= 0x39:
                    self._digits += 1
                    if self._digits > MAX_DIGITS:
                        self._reject("overflow", c, out)
                        continue
                    v = self._number * 10 + (c - 0x30)
                    if v > 0xFFFFFFFF:
                        self._reject("overflow", c, out)
                        continue
                    self._number = v
                    self._crc = crc16(bytes((c,)), self._crc)
                    if st == _LEN and v > self.capacity:
                        self._reject("len", c, out)
                    continue
                if c != 0x20 or self._digits == 0:
                    self._reject("syntax", c, out)
                    continue
                self._crc = crc16(b" ", self._crc)
                if st == _SEQ:
                    self._seq = self._number
                    self._begin_literal(b"len=", _LEN)
                else:
                    if self._number == 0:
                        self._reject("len", c, out)
                        continue
                    self._len = self._number
                    self._begin_literal(b"hex=", _HEX)
            elif st == _HEX:                        # a byte that is not a hex digit
                if c == 0x2A:  # '*'
                    if len(self._hex) != 2 * self._len:
                        self._reject("len", c, out)
                        continue
                    self._state = _CRC
                    self._digits = 0
                    self._rx_crc = 0
                else:
                    self._reject("syntax", c, out)
            elif st == _CRC:
                if c not in _HEXDIGITS:
                    self._reject("syntax", c, out)
                    continue
                self._rx_crc = (self._rx_crc << 4) | int(chr(c), 16)
                self._digits += 1
                if self._digits == 4:
                    self._state = _CR
            elif st == _CR or st == _LF:
                if st == _CR and c == 0x0D:
                    self._state = _LF
                    continue
                if c != 0x0A:
                    self._reject("syntax", c, out)
                    continue
                self._state = _LINE_START
                if self._rx_crc != self._crc:
                    out.append(FrameEvent(False, self._seq, None, "crc"))
                else:
                    out.append(FrameEvent(True, self._seq, bytes.fromhex(self._hex.decode())))
        return out
