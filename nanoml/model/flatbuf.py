"""Minimal, bounds-checked FlatBuffers table access.

Just enough of the FlatBuffers binary format to read `.tflite` files without
TensorFlow and without trusting the file: every offset is checked against the
buffer, and any violation raises :class:`FlatbufferError` (which the model
reader turns into a one-line "not a valid .tflite" message).
"""

from __future__ import annotations

import struct
from functools import lru_cache


class FlatbufferError(ValueError):
    """The buffer is not a well-formed flatbuffer (truncated, bad offset, ...)."""


_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")


@lru_cache(maxsize=None)
def _struct(fmt: str) -> struct.Struct:
    return struct.Struct("<" + fmt)


class Buf:
    __slots__ = ("data", "size")

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.size = len(data)

    def check(self, pos: int, n: int) -> None:
        if pos < 0 or n < 0 or pos + n > self.size:
            raise FlatbufferError(f"offset {pos}+{n} outside the {self.size}-byte file")

    def unpack(self, st: struct.Struct, pos: int):
        self.check(pos, st.size)
        return st.unpack_from(self.data, pos)[0]

    def u32(self, pos: int) -> int:
        return self.unpack(_U32, pos)

    def root(self) -> "Table":
        return Table(self, self.u32(0))


class Table:
    """A flatbuffer table; fields are addressed by their index in the schema."""

    __slots__ = ("buf", "pos", "_vt", "_vtlen")

    def __init__(self, buf: Buf, pos: int):
        self.buf = buf
        self.pos = pos
        vt = pos - buf.unpack(_I32, pos)
        # As FlatBuffers' C++ reader (and so TFLM) reads a vtable: a field is
        # present when its entry lies below the vtable's size and is non-zero;
        # only the entries actually read must lie inside the file.
        self._vt = vt
        self._vtlen = buf.unpack(_U16, vt)

    def _field(self, index: int) -> int:
        """Absolute position of field `index`, or 0 if absent."""
        off = 4 + 2 * index
        if off >= self._vtlen:
            return 0
        rel = self.buf.unpack(_U16, self._vt + off)
        return self.pos + rel if rel else 0

    def has(self, index: int) -> bool:
        return self._field(index) != 0

    def scalar(self, index: int, fmt: str, default=0):
        p = self._field(index)
        if not p:
            return default
        return self.buf.unpack(_struct(fmt), p)

    def _ref(self, index: int) -> int:
        p = self._field(index)
        if not p:
            return 0
        return p + self.buf.u32(p)

    def table(self, index: int) -> "Table | None":
        p = self._ref(index)
        return Table(self.buf, p) if p else None

    def string(self, index: int) -> str | None:
        p = self._ref(index)
        if not p:
            return None
        n = self.buf.u32(p)
        self.buf.check(p + 4, n)
        return bytes(self.buf.data[p + 4 : p + 4 + n]).decode("utf-8", "replace")

    def vector_info(self, index: int) -> tuple[int, int]:
        """(position of first element, length); (0, 0) if absent."""
        p = self._ref(index)
        if not p:
            return 0, 0
        n = self.buf.u32(p)
        return p + 4, n

    def scalars(self, index: int, fmt: str) -> list:
        start, n = self.vector_info(index)
        if not n:
            return []
        size = _struct(fmt).size * n
        self.buf.check(start, size)
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf.data, start))

    def bytes_view(self, index: int) -> memoryview:
        start, n = self.vector_info(index)
        if not n:
            return memoryview(b"")
        self.buf.check(start, n)
        return self.buf.data[start : start + n]

    def tables(self, index: int) -> list["Table"]:
        start, n = self.vector_info(index)
        if not n:
            return []
        self.buf.check(start, 4 * n)
        out = []
        for i in range(n):
            p = start + 4 * i
            out.append(Table(self.buf, p + self.buf.u32(p)))
        return out
