"""Bytes from a port -> parsed lines, with a bounded line buffer.

`StreamDecoder.feed(chunk)` returns the lines completed by `chunk`, each
parsed (Message, Foreign or Corrupt). A line longer than HOST_MAX_LINE is cut:
its first HOST_MAX_LINE bytes are reported as Corrupt("overflow") (or Foreign
when it is not a nanoml line) and the rest is dropped up to the next newline
or the next "~nm " (a nanoml line printed right after over-long text without
a newline is kept). Memory stays bounded by HOST_MAX_LINE whatever arrives.
"""

from __future__ import annotations

from .protocol import HOST_MAX_LINE, PREFIX, Corrupt, Foreign, Parsed, parse_lines

_KEEP = len(PREFIX) - 1         # dropped bytes kept: a "~nm " split over two reads


class StreamDecoder:
    def __init__(self, max_line: int = HOST_MAX_LINE):
        self.max_line = max_line
        self._rest = bytearray()     # the line being received (appended in place: no copy per read)
        self._dropping = False       # inside an over-long line: drop to its newline or a "~nm "
        self._tail = b""             # the last bytes dropped (while dropping)
        self.bytes_in = 0
        self.lines_in = 0

    def feed(self, chunk: bytes) -> list[Parsed]:
        self.bytes_in += len(chunk)
        out: list[Parsed] = []
        if self._dropping:
            buf = self._tail + chunk
            nl, start = buf.find(b"\n"), buf.find(PREFIX)
            if start >= 0 and (nl < 0 or start < nl):
                chunk = buf[start:]              # a nanoml line starts inside the dropped text
            elif nl >= 0:
                chunk = buf[nl + 1:]
            else:
                self._tail = buf[-_KEEP:]
                return out
            self._dropping, self._tail = False, b""
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            data = bytes(self._rest) + chunk[:nl] if self._rest else chunk[:nl]
            self._rest = bytearray(chunk[nl + 1:])
            for line in data.split(b"\n"):
                out.extend(self._complete(line))
        else:
            self._rest += chunk
        if len(self._rest) > self.max_line:
            out.extend(self._cut_rest())
        return out

    def flush(self) -> list[Parsed]:
        """The unterminated tail (e.g. when the port closes)."""
        rest, self._rest, self._dropping, self._tail = bytes(self._rest), bytearray(), False, b""
        if not rest.strip(b"\r"):
            return []
        self.lines_in += 1
        return parse_lines(rest)

    def _start_in_tail(self, line: bytes) -> int:
        """Where a "~nm " starts within the last max_line bytes of an over-long
        line (not at its very start), or -1."""
        return line.find(PREFIX, max(1, len(line) - self.max_line))

    def _head(self, head: bytes) -> list[Parsed]:
        self.lines_in += 1
        if len(head) > self.max_line:
            return [self._overflow(head[:self.max_line])]
        return parse_lines(head)

    def _complete(self, line: bytes) -> list[Parsed]:
        if len(line) <= self.max_line:
            self.lines_in += 1
            return parse_lines(line)
        k = self._start_in_tail(line)
        if k < 0:
            self.lines_in += 1
            return [self._overflow(line[:self.max_line])]
        return self._head(line[:k]) + self._complete(line[k:])

    def _cut_rest(self) -> list[Parsed]:
        rest = self._rest
        k = self._start_in_tail(rest)
        if k >= 0:                               # keep the nanoml line being received
            self._rest = rest[k:]
            return self._head(bytes(rest[:k]))
        self.lines_in += 1
        self._rest, self._dropping, self._tail = bytearray(), True, bytes(rest[-_KEEP:])
        return [self._overflow(bytes(rest[:self.max_line]))]

    @staticmethod
    def _overflow(head: bytes) -> Parsed:
        text = head.decode("utf-8", "replace")
        if head.startswith(PREFIX):
            return Corrupt("overflow", text, "line longer than the host keeps")
        return Foreign(text)
