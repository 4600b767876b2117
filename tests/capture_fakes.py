"""Fake boards for the capture tests, on a real pseudo-terminal.

They are FAKES, honestly: the virtual sensor board (nanoml/sim/sensor_board.py,
the protocol from nanoml's own Python encoder) with one fault added, and a
made-up hello like a firmware's (model 000000000000, no tensors) so that
`open_link(port=...)` treats them as a board on a port:

    fake = start_fake_board("drop", source="a.wav", after_takes=1, lines=(3, 7))
    fake.port          # open_link(port=fake.port)
    fake.stop()

kind:
  ok       no fault
  drop     `smp` frames number `lines` of every take after the first `after_takes`
           are not sent (the host must see gaps by frame number / sample index)
  corrupt  those frames are sent with one data character changed and the old
           checksum (the host must see a CRC failure, then a gap)
  vanish   after frame lines[0] of take after_takes + 1 the pty is closed, as an
           unplugged board (the host must raise BoardGone)
"""

from __future__ import annotations

import time

from nanoml.serial.protocol import PROTOCOL_VERSION, encode_line
from nanoml.sim.sensor_board import SensorBoard

KINDS = ("ok", "drop", "corrupt", "vanish")


class FakeBoard(SensorBoard):
    def __init__(self, kind: str, source=None, *, sensor: str | None = None,
                 board: str = "nano33ble_sense", after_takes: int = 1, lines=(3, 7),
                 realtime: bool = False):
        assert kind in KINDS, kind
        super().__init__(source, sensor=sensor, board=board, realtime=realtime)
        self.kind, self.after_takes, self.lines = kind, after_takes, tuple(lines)
        self.faults = 0                    # frames dropped / corrupted (what the host must find)
        self.vanished = False
        self._next_hello = 0.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._host_opened() or time.monotonic() >= self._next_hello:
                self._hello()
            super()._loop_once()

    def _hello(self) -> None:
        self._next_hello = time.monotonic() + 2.0
        self._send("hello", {"proto": PROTOCOL_VERSION, "fw": "fake-board", "model": "0" * 12,
                             "board": self.board, "runtime": "none", "arena": 0, "used": 0,
                             "ops": [], "in": [], "out": [],
                             "input": next(iter(self.samples))})

    def _send(self, msg_type: str, fields: dict) -> None:
        if self.vanished:
            return
        line = encode_line(msg_type, fields)
        hit = (msg_type == "smp" and fields["take"] > self.after_takes
               and fields["seq"] in self.lines)
        if hit and self.kind == "vanish" and fields["take"] == self.after_takes + 1 \
                and fields["seq"] == self.lines[0]:
            self._write(line)
            self._drain(2.0)               # what was sent arrives, then the board is gone
            self.faults += 1
            self.vanished = True
            self._stop.set()
            self._close()                  # the host's next read fails: the port is gone
            return
        if hit and self.kind == "drop":
            self.faults += 1
            return
        if hit and self.kind == "corrupt":
            self.faults += 1
            k = line.index(b" d=") + 4
            line = line[:k] + (b"B" if line[k:k + 1] == b"A" else b"A") + line[k + 1:]
        self._write(line)

    def _write(self, line: bytes) -> None:
        if self._master >= 0:
            super()._write(line)


def start_fake_board(kind: str = "ok", source=None, **kw) -> FakeBoard:
    """A FakeBoard running on its pty (see the module doc)."""
    return FakeBoard(kind, source, **kw).start()

