"""The virtual board in profiling mode: what `nanoml profile --sim` talks to.

It is nanoml's virtual board (nanoml.sim: TFLM's host interpreter behind a
pseudo-terminal, real inference on every input) plus what the profiling firmware
adds, in the firmware's order: an `arena` line with every `hello`, and after each
`res` one `op` line per operator. Like the firmware, it finds the smallest arena by
bisection, re-creating the interpreter over arenas of decreasing size (on the host
interpreter, whose 64-bit build needs more than the board). Per-operator cycles
are the latency model's (`--estimate`), since the host cannot time a Cortex-M4;
every line carries sim=1.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..sim.board import VirtualBoard
from ..sim.model import SimModel
from .estimate import estimate_layers

ARENA_STEP = 16


@contextlib.contextmanager
def _quiet_fds():
    """Silence the C library's prints (TFLM reports failed allocations on stderr)."""
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _probe_in_child(data: bytes, size: int, timeout: float) -> bool:
    """Allocate and invoke in a forked child: with some models (LSTM, SVDF) the host
    interpreter crashes or hangs on a too-small arena instead of failing cleanly (as
    Chirale does on the board), and a probe must not take the caller down with it."""
    import signal
    import time
    pid = os.fork()
    if pid == 0:                                   # child
        code = 1
        try:
            from tflite_micro.python.tflite_micro import runtime
            ip = runtime.Interpreter.from_bytes(data, arena_size=size)
            ip.invoke()
            code = 0
        except BaseException:  # noqa: BLE001 - any failure means "does not fit"
            code = 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.005)


def host_arena_bisect(data: bytes, hi: int, step: int = ARENA_STEP,
                      probe_timeout: float = 60.0) -> int | None:
    """Smallest multiple of `step` in (0, hi] with which the host interpreter
    allocates and invokes the model; None if `hi` itself fails. Each probe runs in a
    child process (see _probe_in_child)."""

    def ok(size: int) -> bool:
        return _probe_in_child(data, size, probe_timeout)

    with _quiet_fds():
        if not ok(hi):
            return None
        lo, best = 0, hi          # invariant: best works, lo fails (or is 0)
        while best - lo > step:
            mid = (lo + best) // 2 // step * step
            if mid <= lo:
                break
            if ok(mid):
                best = mid
            else:
                lo = mid
    return best


class ProfilingVirtualBoard(VirtualBoard):
    def __init__(self, model_path: str | Path, runtime_id: str, clock_hz: int, **kwargs):
        sim_model = SimModel(model_path)
        super().__init__(sim_model, input="synthetic", runtime=runtime_id, **kwargs)
        layers, _, _, _ = estimate_layers(sim_model.model, runtime_id, clock_hz)
        self.op_names = [layer.op for layer in layers]
        self.op_cycles = [int(round(layer.cycles)) for layer in layers]
        self.clock_hz = clock_hz
        self.arena_min = host_arena_bisect(bytes(sim_model.model.raw), sim_model.arena_size)
        self.arena_used = sim_model.arena_used

    def _send_hello(self) -> None:
        super()._send_hello()
        if self.arena_min is not None:
            self._send("arena", {"min": self.arena_min, "used": self.arena_used or 0})

    def _infer(self, inputs: list[bytes], frame: int | None) -> None:
        r = self.model.run(inputs)
        total_cycles = sum(self.op_cycles)
        us = int(round(total_cycles * 1e6 / self.clock_hz))
        seq = self._seq
        self._send("res", {"seq": seq, "us": us, "out": r.outputs, "top": r.top, "q": r.q,
                           "frame": frame, "sim": True})
        for i, (name, cyc) in enumerate(zip(self.op_names, self.op_cycles)):
            self._send("op", {"seq": seq, "i": i, "op": name, "cyc": cyc,
                              "us": int(round(cyc * 1e6 / self.clock_hz)), "sim": True})
        self._seq = (seq + 1) & 0xFFFFFFFF
        self.stats.results += 1
