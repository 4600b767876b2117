"""Bytes from a port -> parsed lines, with a bounded line buffer.

`StreamDecoder.feed(chunk)` returns the lines completed by `chunk`, each
parsed (Message, Foreign or Corrupt). A line longer than HOST_MAX_LINE is cut:
its first HOST_MAX_LINE bytes are reported as Corrupt("overflow") (or Foreign
when it is not a nanoml line) and the rest, up to the next newline, dropped.
"""

from __future__ import annotations

from .protocol import HOST_MAX_LINE, PREFIX, Corrupt, Foreign, Parsed, parse_lines


class StreamDecoder:
    def __init__(self, max_line: int = HOST_MAX_LINE):
        self.max_line = max_line
        self._rest = b""
        self._dropping = False       # inside an over-long line: drop to its newline
        self.bytes_in = 0
        self.lines_in = 0

    def feed(self, chunk: bytes) -> list[Parsed]:
        self.bytes_in += len(chunk)
        out: list[Parsed] = []
        if self._dropping:
            j = chunk.find(b"\n")
            if j < 0:
                return out
            chunk = chunk[j + 1:]
            self._dropping = False
        data = self._rest + chunk if self._rest else chunk
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            if len(line) > self.max_line:
                out.append(self._overflow(line[:self.max_line]))
            else:
                out.extend(parse_lines(line))
            self.lines_in += 1
        if len(self._rest) > self.max_line:
            out.append(self._overflow(self._rest[:self.max_line]))
            self.lines_in += 1
            self._rest = b""
            self._dropping = True
        return out

    def flush(self) -> list[Parsed]:
        """The unterminated tail (e.g. when the port closes)."""
        rest, self._rest, self._dropping = self._rest, b"", False
        if not rest.strip(b"\r"):
            return []
        self.lines_in += 1
        return parse_lines(rest)

    @staticmethod
    def _overflow(head: bytes) -> Parsed:
        text = head.decode("utf-8", "replace")
        if head.startswith(PREFIX):
            return Corrupt("overflow", text, "line longer than the host keeps")
        return Foreign(text)
