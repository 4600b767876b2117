"""The virtual Nano 33 BLE Sense: a SimModel behind a pseudo-terminal that
speaks exactly the firmware's serial protocol.

    board = start_virtual_board("model.tflite", input="synthetic", rate_hz=10)
    board.port      # /dev/pts/N: open it like a serial port
    board.link      # stable symlink to it (survives a sim restart), or None
    ...
    board.stop()

The sim owns the master side of the pty and keeps the slave open itself, so it
never sees EIO when a monitor closes the port; lines written while nobody
reads pile up in the tty buffer (a few KB), then new lines are dropped, as a
board's USB CDC does when no host listens. The board runs in a thread; the
`nanoml sim` command runs one in its own process.
"""

from __future__ import annotations

import errno
import os
import select
import tempfile
import threading
import time

try:                       # POSIX only: the virtual board lives on a pseudo-terminal
    import termios
    import tty
except ImportError:        # pragma: no cover - Windows
    termios = tty = None
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import NanomlError, UsageError
from ..serial.frames import FrameParser
from ..serial.protocol import PROTOCOL_VERSION, encode_line
from .model import SimModel

INPUT_MODES = ("synthetic", "serial")
DEFAULT_RATE_HZ = 10.0
HELLO_INTERVAL_S = 5.0
# "Host opened the port" detection: the sim parks the tty's speed at B50; a
# host that opens it (pyserial, screen, ...) sets its own baud rate, which the
# sim sees, answers with a hello (after a short delay: pyserial flushes the
# input right after configuring) and parks the speed again. It stands in for
# the DTR line a sketch watches on USB CDC.
_PARKED_SPEED = termios.B50 if termios else 0
_HELLO_AFTER_OPEN_S = 0.15


def default_link_path() -> Path:
    """Where the sim's stable symlink goes unless --link says otherwise."""
    return Path(tempfile.gettempdir()) / f"nanoml-{getattr(os, 'getuid', lambda: 0)()}" / "nanoml-sim"


@dataclass
class SimStats:
    results: int = 0
    frames_ok: int = 0
    frames_rejected: int = 0
    lines_sent: int = 0
    lines_dropped: int = 0
    hellos: int = 0
    dets: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


class VirtualBoard:
    def __init__(self, model: SimModel | str | Path, *, input: str = "synthetic",
                 rate_hz: float = DEFAULT_RATE_HZ, board: str = "nano33ble_sense",
                 runtime: str = "tflm-host", link: str | Path | None = None,
                 hello_interval: float = HELLO_INTERVAL_S, count: int | None = None,
                 profile: bool = False, arena_size: int | None = None, deadline=None,
                 source: str | Path | None = None, fast: bool = False,
                 labels: list[str] | None = None, layers: bool = False):
        if termios is None or not hasattr(os, "openpty"):
            raise UsageError("the virtual board needs a POSIX pseudo-terminal (Linux or macOS)",
                             hint="run `nanoml sim` / `monitor --sim` on Linux, macOS or WSL")
        if input not in INPUT_MODES:
            raise UsageError(f"unknown input '{input}'; use one of: {', '.join(INPUT_MODES)}")
        if rate_hz < 0:
            raise UsageError("--rate must be >= 0 (0 = as fast as possible)")
        if profile:
            raise NanomlError(
                "per-operator profiling is not available in the sim yet: the tflite-micro host "
                "interpreter exposes no per-op timing",
                hint="profile on the board, or use `nanoml inspect` for the latency model")
        # --layers (layer-dump build): every operator's output for each input frame
        if layers and (input != "serial" or source is not None):
            raise UsageError("--layers dumps the layers of input frames: it needs --input serial",
                             hint="run `nanoml sim MODEL --input serial --layers`")
        if layers and isinstance(model, SimModel) and not model.preserve:
            raise UsageError("--layers needs a SimModel(preserve=True)")
        self.layers = layers
        # a model given by path is this board's own: its interpreter worker stops with it
        self.owns_model = not isinstance(model, SimModel)
        self.model = SimModel(model, arena_size, deadline=deadline, preserve=layers) \
            if self.owns_model else model
        self._layer_plan = None
        if layers:
            from .layers import layer_plan
            self._layer_plan = layer_plan(self.model.model)
        self.input = input
        self.rate_hz = rate_hz
        self.board = board
        self.runtime = runtime
        self.link: str | None = str(link) if link else None
        self.hello_interval = hello_interval
        self.count = count
        self.stats = SimStats()
        self.port: str | None = None
        self.error: BaseException | None = None
        self._master = self._slave = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._parser = FrameParser(self.model.input_bytes)
        self._seq = 0
        # capture commands (docs/protocol.md "Capture"): detection windows on request
        from collections import deque
        from ..serial.commands import CommandParser
        self._commands = CommandParser()
        self._type_pending: deque = deque()  # "why=type" acks held to their line's end
        self._det_windows = False
        self._takes = 0
        # --source FILE: the file plays into the board's sensor once a host opens the port
        self.source = None
        self.fast = fast
        if source is not None:
            from .sources import open_source
            try:
                self.source = open_source(source, self.model, labels)
            except BaseException:
                if self.owns_model:
                    self.model.close()
                raise
            self.input = self.source.kind
        self._host_seen = False
        self._stream = None          # the source's window iterator once it plays
        self._stream_t0 = 0.0
        self._pending = None         # the next window, not yet due (real time)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "VirtualBoard":
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)              # no echo, no CR/LF translation
        self._park_speed()
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        if self.link:
            _replace_symlink(self.port, Path(self.link))
        self._thread = threading.Thread(target=self._run, name="nanoml-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()
        if self.owns_model:
            self.model.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the board stops by itself (count reached); True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "VirtualBoard":
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _close(self) -> None:
        if self.link and self.port:
            try:
                if os.readlink(self.link) == self.port:
                    os.unlink(self.link)
            except OSError:
                pass
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1

    def to_json(self) -> dict:
        return {"port": self.port, "link": self.link, "input": self.input,
                "source": self.source.path if self.source else None, "fast": self.fast,
                "rate_hz": self.rate_hz, "board": self.board, "runtime": self.runtime,
                "layers": self.layers,
                "model": self.model.to_json(), "stats": self.stats.to_json()}

    # -- the board's main loop -------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - surfaced through .error
            self.error = e

    def _park_speed(self) -> None:
        attrs = termios.tcgetattr(self._slave)
        attrs[4] = attrs[5] = _PARKED_SPEED
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)

    def _host_opened(self) -> bool:
        try:
            attrs = termios.tcgetattr(self._slave)
        except termios.error:
            return False
        if attrs[4] == _PARKED_SPEED and attrs[5] == _PARKED_SPEED:
            return False
        self._park_speed()
        return True

    def _loop(self) -> None:
        period = 1.0 / self.rate_hz if self.rate_hz > 0 else 0.0
        next_t = time.monotonic()
        next_hello = time.monotonic()
        synthetic = self.input == "synthetic"
        while not self._stop.is_set():
            now = time.monotonic()
            if self._host_opened():
                next_hello = min(next_hello, now + _HELLO_AFTER_OPEN_S)
                self._host_seen = True
            if now >= next_hello:
                self._send_hello()
                next_hello = now + self.hello_interval
                if self.source is not None and self._host_seen and self._stream is None:
                    self._stream = self.source.windows()     # the file starts playing
                    self._stream_t0 = time.monotonic()
            wait = max(0.0, min(0.2, next_hello - now))
            if synthetic:
                wait = max(0.0, min(wait, next_t - now))
            if self._stream is not None:
                wait = min(wait, self._stream_wait())
            r, _, _ = select.select([self._master], [], [], wait)
            if r:
                self._read_host()
            if self._done():
                return
            if self._stream is not None and self._stream_step():
                return
            if synthetic and time.monotonic() >= next_t:
                self._infer(self.model.synthetic(self._seq), frame=None)
                next_t = (next_t + period) if period else time.monotonic()
                if time.monotonic() - next_t > 1.0:    # fell far behind: do not burst
                    next_t = time.monotonic()
                if self._done():
                    return

    def _done(self) -> bool:
        return self.count is not None and self.stats.results >= self.count

    # -- --source FILE: the sensor stream ------------------------------------
    def _stream_wait(self) -> float:
        """Seconds until the next window is due (0 with --fast)."""
        if self.fast or self._pending is None:
            return 0.0
        return max(0.0, self._stream_t0 + self._pending.t_ms / 1000.0 - time.monotonic())

    def _stream_step(self) -> bool:
        """Run the next window when it is due; True once the file has ended
        (the `end` line sent and read by the host, or nobody reading)."""
        if self._pending is None:
            self._pending = next(self._stream, None)
            if self._pending is None:
                src = self.source
                self._send("end", {"results": src.results, "dets": src.dets,
                                   "t_ms": src.duration_ms, "sim": True})
                self._drain()
                return True
        if self._stream_wait() > 0:
            return False
        w, self._pending = self._pending, None
        r = self.model.run([w.tensor.tobytes()])
        self._send("res", {"seq": self._seq, "us": r.us, "out": r.outputs, "top": r.top,
                           "q": r.q, "sim": True, "t_ms": w.t_ms, "fus": w.feature_us,
                           "drop": 0})
        self.source.results += 1
        self.stats.results += 1
        det = self.source.decide(r, w.t_ms)
        if det is not None:
            self._send("det", {"seq": self._seq, "i": det.index, "label": det.label,
                               "score": det.score, "t_ms": det.t_ms, "sim": True})
            self.source.dets += 1
            self.stats.dets += 1
            if self._det_windows:
                self._send_window(w.index)
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._done()

    def _send_window(self, index: int) -> None:
        """The raw samples behind the detection just sent, as a take (det=seq)."""
        from .capture import send_window, window_span
        start, end = window_span(self.source.pipe, index)
        self._takes = (self._takes + 1) & 0xFFFFFFFF
        send_window(self._send, self._takes, self.source.pipe, self.source.data[start:end],
                    self._seq, board=self.board, firmware=f"nanoml-sim-{__version__}")

    def _capture_command(self, ev) -> None:
        """cap/stop/dwin: this board's sensor plays into its model, so it takes no
        capture takes (`nanoml capture --sim` has a board of its own); it sends the
        window behind each detection when asked (dwin on=1) and it has detections."""
        why = ev.why if ev.kind == "rejected" else {"cap": "sensor", "stop": "idle"}.get(ev.type)
        if ev.kind == "command" and ev.type == "dwin":
            can = self.source is not None and self.source.recognizer is not None
            why = None if can or not ev.fields["on"] else "window"
            if why is None:
                self._det_windows = bool(ev.fields["on"])
        self._send("cack", {"seq": ev.seq, "ok": why is None, "why": why})

    def _drain(self, timeout: float = 5.0) -> None:
        """Wait until the host has read what the board wrote (the slave side's
        input queue is empty), at most `timeout` seconds."""
        import fcntl
        import struct
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self._stop.is_set():
            try:
                buf = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
            except OSError:
                return
            if struct.unpack("i", buf)[0] == 0:
                return
            time.sleep(0.02)

    def _read_host(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:       # no slave open: cannot happen, we hold it
                return
            raise
        commands = self._commands.feed(data)
        for ev in self._parser.feed(data):
            if not ev.ok and ev.reason == "type":     # a capture command, or answered below
                self._type_pending.append(ev.seq)
                continue
            if not ev.ok:
                self.stats.frames_rejected += 1
                self._send("ack", {"seq": ev.seq, "ok": False, "why": ev.reason})
                continue
            if len(ev.payload) != self.model.input_bytes:
                self.stats.frames_rejected += 1
                self._send("ack", {"seq": ev.seq, "ok": False, "why": "len"})
                continue
            self.stats.frames_ok += 1
            self._send("ack", {"seq": ev.seq, "ok": True})
            self._infer(self.model.split_payload(ev.payload), frame=ev.seq)
        for ev in commands:                  # one per "~nm " line that is not an input frame
            seq = self._type_pending.popleft() if self._type_pending else 0
            if ev.kind == "other":
                self.stats.frames_rejected += 1
                self._send("ack", {"seq": seq, "ok": False, "why": "type"})
            else:
                self._capture_command(ev)

    # -- lines -------------------------------------------------------------
    def _send_hello(self) -> None:
        m = self.model
        self.stats.hellos += 1
        self._send("hello", {
            "proto": PROTOCOL_VERSION, "fw": f"nanoml-sim-{__version__}",
            "model": m.sha256[:12], "board": self.board, "runtime": self.runtime,
            "arena": m.arena_size, "used": m.arena_used or 0, "ops": m.ops,
            "in": [t.spec() for t in m.inputs], "out": [t.spec() for t in m.outputs],
            "input": self.input, "sim": True, "layers": self.layers or None})

    def _infer(self, inputs: list[bytes], frame: int | None) -> None:
        if self.layers:              # as the layer-dump firmware: every frame from a reset state
            self.model.reset()
        r = self.model.run(inputs)
        if self.layers:
            from .layers import dump_lines
            for msg_type, fields in dump_lines(self.model, frame, self._layer_plan):
                self._send(msg_type, fields)
        self._send("res", {"seq": self._seq, "us": r.us, "out": r.outputs, "top": r.top,
                           "q": r.q, "frame": frame, "sim": True})
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self.stats.results += 1

    def _send(self, msg_type: str, fields: dict) -> None:
        self._write(encode_line(msg_type, fields))

    def _write(self, line: bytes) -> None:
        """Write a whole line or, when nobody drains the pty, drop it whole. A
        file source waits for the host (up to 10 s) instead: --fast is as fast
        as the host reads, and no result of the file is lost."""
        _, w, _ = select.select([], [self._master], [], 0)
        waited = time.monotonic() + (10.0 if self.source or self.layers else 0.0)
        while not w and time.monotonic() < waited and not self._stop.is_set():
            _, w, _ = select.select([], [self._master], [], 0.2)
        if not w:
            self.stats.lines_dropped += 1
            return
        view = memoryview(line)
        deadline = time.monotonic() + 1.0
        while view:
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:   # the line is cut: the host sees a bad line
                    self.stats.lines_dropped += 1
                    return
                select.select([], [self._master], [], 0.05)
        self.stats.lines_sent += 1


def _replace_symlink(target: str, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)


def start_virtual_board(model: SimModel | str | Path, **kwargs) -> VirtualBoard:
    """Start a virtual board on a new pty; returns it running. See VirtualBoard."""
    return VirtualBoard(model, **kwargs).start()
