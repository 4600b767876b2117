"""A fake layer-dump board: replays a recorded frame stream (tests/data/layers/)
over a pseudo-terminal, the way a board would send it, optionally with
faults (a corrupted chunk line, a chunk that passes its line checksum but
breaks the tensor's CRC-32, a dropped chunk or header) on given attempts.

    with ReplayBoard(recording, payload, faults=[corrupt_chunk(0, 5)]) as fake:
        BoardLink.open(fake.port) ...

It answers only the recorded payload (another one gets an `err`): it is a
recording, not a model. Each input frame replays the recorded lines after the
`ack`, with `frame=` (and the ack's `seq=`) rewritten to the host's seq and
the line checksums recomputed.
"""

from __future__ import annotations

import os
import re
import select
import threading
import time
import tty
from pathlib import Path

from nanoml.serial.frames import FrameParser
from nanoml.serial.protocol import crc16, encode_line

DATA = Path(__file__).resolve().parent / "data" / "layers"


def load_recording(name: str = "gesture_frame1") -> tuple[bytes, dict]:
    import json
    return (DATA / f"{name}.nmlog").read_bytes(), json.loads((DATA / f"{name}.json").read_text())


def checksum(body: bytes) -> bytes:
    """A line body (from "~nm " up to "*") with its checksum and line end."""
    return b"%s*%04X\r\n" % (body, crc16(body))


def body_of(line: bytes) -> bytes:
    return line.rstrip(b"\r\n").rsplit(b"*", 1)[0]


def split_recording(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """(lines before the ack: the hello, lines after it up to the res)."""
    lines = [ln + b"\n" for ln in data.split(b"\n") if ln.strip()]
    ack = next(i for i, ln in enumerate(lines) if ln.startswith(b"~nm ack "))
    return lines[:ack], lines[ack + 1:]


def _is(line: bytes, mtype: str, i: int, k: int | None = None) -> bool:
    b = body_of(line)
    if not b.startswith(b"~nm %s " % mtype.encode()) or b" i=%d " % i not in b:
        return False
    return k is None or b" k=%d " % k in b


# ------------------------------------------------------------------ faults
# each takes the replayed lines of one attempt and returns them changed

def corrupt_chunk(i: int, k: int):
    """One hex digit of chunk k of operator i changed; the line checksum no longer matches."""
    def fault(lines):
        return [_flip(ln, fix_crc=False) if _is(ln, "lch", i, k) else ln for ln in lines]
    return fault


def tensor_crc_mismatch(i: int, k: int):
    """Chunk k of operator i changed and its line checksum recomputed: only the
    tensor's CRC-32 in the `lay` header can tell."""
    def fault(lines):
        return [_flip(ln, fix_crc=True) if _is(ln, "lch", i, k) else ln for ln in lines]
    return fault


def drop_chunk(i: int, k: int):
    def fault(lines):
        return [ln for ln in lines if not _is(ln, "lch", i, k)]
    return fault


def drop_header(i: int):
    def fault(lines):
        return [ln for ln in lines if not _is(ln, "lay", i)]
    return fault


def _flip(line: bytes, fix_crc: bool) -> bytes:
    body = body_of(line)
    j = body.index(b"hex=") + 4
    digit = b"0" if body[j:j + 1] != b"0" else b"1"
    new = body[:j] + digit + body[j + 1:]
    if fix_crc:
        return checksum(new)
    return new + line.rstrip(b"\r\n")[len(body):] + b"\r\n"


# ------------------------------------------------------------------ the board

class ReplayBoard:
    def __init__(self, recording: bytes, payload: bytes, faults=None, hello: bytes | None = None):
        self.hello_lines, self.replay = split_recording(recording)
        if hello is not None:
            self.hello_lines = [hello]
        self.payload = payload
        self.faults = list(faults or [])
        self.attempts = 0
        self.bytes_sent = 0
        self._stop = threading.Event()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._parser = FrameParser(len(payload))
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ReplayBoard":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        for fd in (self._master, self._slave):
            os.close(fd)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            _, w, _ = select.select([], [self._master], [], 0.1)
            if w:
                n = os.write(self._master, view)
                view = view[n:]
                self.bytes_sent += n

    def _run(self) -> None:
        next_hello = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_hello:
                self._write(b"".join(self.hello_lines))
                next_hello = time.monotonic() + 1.0
            r, _, _ = select.select([self._master], [], [], 0.05)
            if not r:
                continue
            for ev in self._parser.feed(os.read(self._master, 65536)):
                if not ev.ok:
                    self._write(encode_line("ack", {"seq": ev.seq, "ok": False, "why": ev.reason}))
                elif ev.payload != self.payload:
                    self._write(encode_line("err", {"code": "replay",
                                                    "msg": "not the recorded input frame"}))
                else:
                    self._answer(ev.seq)

    def _answer(self, seq: int) -> None:
        lines = [_renumber(ln, seq) for ln in self.replay]
        if self.attempts < len(self.faults) and self.faults[self.attempts] is not None:
            lines = self.faults[self.attempts](lines)
        self.attempts += 1
        self._write(encode_line("ack", {"seq": seq, "ok": True}) + b"".join(lines))


def _renumber(line: bytes, seq: int) -> bytes:
    body = re.sub(rb" frame=\d+", b" frame=%d" % seq, body_of(line))
    return checksum(body)
