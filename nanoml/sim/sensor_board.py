"""A virtual board without a model: only its sensors, for `nanoml capture
--sim` and `nanoml sim --capture`. Same pseudo-terminal and line handling as
the VirtualBoard (nanoml/sim/board.py); it answers the capture commands
(nanoml/sim/capture.py) and sends no hello and no results (there is no model).

    vb = SensorBoard("words.wav").start()   # the file's sensor; None: synthetic mic and imu
    vb.port     # open it like a serial port; send `~nm cap ...`
    vb.stop()
"""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path

from .. import __version__
from ..errors import UsageError
from ..serial.commands import CommandParser
from .board import SimStats, VirtualBoard, termios
from .capture import CaptureEngine, sample_sources


class SensorBoard(VirtualBoard):
    def __init__(self, source: str | Path | None, *, sensor: str | None = None, board: str = "nano33ble_sense",
                 link: str | Path | None = None, realtime: bool = False):
        if termios is None or not hasattr(os, "openpty"):
            raise UsageError("the virtual board needs a POSIX pseudo-terminal (Linux or macOS)",
                             hint="run `nanoml capture --sim` on Linux, macOS or WSL")
        from ..boards import get_board
        b = get_board(board)
        self.owns_model, self.model = False, None
        self.samples = sample_sources(source, sensor)
        self.board, self.runtime, self.input = b.id, "none", ",".join(self.samples)
        self.link = str(link) if link else None
        self.stats = SimStats()
        self.port = None
        self.error = None
        self._master = self._slave = -1
        self._stop = threading.Event()
        self._thread = None
        self.source = self.samples          # VirtualBoard._write: wait for the host, drop nothing
        self.fast = not realtime
        self.rate_hz = 0.0
        self._commands = CommandParser()
        self.engine = CaptureEngine(self._send, self.samples, board=b.id,
                                    firmware=f"nanoml-sim-{__version__}",
                                    sensors=tuple(b.sensors), realtime=realtime,
                                    imu_rate=int(b.sensors.get("imu", {}).get("odr_hz") or 119))

    def to_json(self) -> dict:
        return {"port": self.port, "link": self.link, "input": self.input,
                "source": next(iter(self.samples.values())).path, "board": self.board, "fast": self.fast,
                "stats": self.stats.to_json(), "samples_sent": self.engine.samples_sent}

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._host_opened()                       # keep the tty speed parked
            self._loop_once()

    def _loop_once(self) -> None:
        wait = min(0.2, self.engine.wait())
        r, _, _ = select.select([self._master], [], [], wait)
        if r:
            self._read_host()
        self.engine.step()

    def _read_host(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except (BlockingIOError, OSError):
            return
        for ev in self._commands.feed(data):
            self.engine.command(ev)

    def vanish(self) -> None:
        """Close the pty now, as an unplugged board (tests)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._close()

