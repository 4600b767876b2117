"""The virtual board in profiling mode: what `nanoml profile --sim` talks to.

It is nanoml's virtual board (nanoml.sim: TFLM's host interpreter behind a
pseudo-terminal, real inference on every input) plus what the profiling firmware
adds, in the firmware's order: an `arena` line with every `hello`, and after each
`res` one `op` line per operator. Like the firmware, it finds the smallest arena by
bisection, re-creating the interpreter over arenas of decreasing size (on the host
interpreter, whose 64-bit build needs more than the board; every try in its own
worker process, nanoml.sim.isolated). Per-operator cycles
are the latency model's (`--estimate`), since the host cannot time a Cortex-M4;
every line carries sim=1.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NanomlError
from ..sim.board import VirtualBoard
from ..sim.deadline import Deadline
from ..sim.isolated import host_arena_bisect  # noqa: F401 - also this module's API
from ..sim.model import SimModel
from .estimate import estimate_layers
from .session import FdReader


class ProfilingVirtualBoard(VirtualBoard):
    def __init__(self, model_path: str | Path, runtime_id: str, clock_hz: int,
                 deadline: Deadline | float | None = None, optimize: str | None = None,
                 **kwargs):
        deadline = Deadline.of(deadline)
        sim_model = SimModel(model_path, deadline=deadline)
        try:
            super().__init__(sim_model, input="synthetic", runtime=runtime_id, **kwargs)
            self.owns_model = True
            layers, _, _, _ = estimate_layers(sim_model.model, runtime_id, clock_hz,
                                              optimize=optimize, per_kernel_abi=True)
            self.op_names = [layer.op for layer in layers]
            self.op_cycles = [int(round(layer.cycles)) for layer in layers]
            self.clock_hz = clock_hz
            main = sim_model.model.main
            self.arena_min = host_arena_bisect(
                bytes(sim_model.model.raw), sim_model.arena_size, deadline=deadline,
                n_inputs=len(main.inputs), n_outputs=len(main.outputs),
                hi_seconds=sim_model.start_seconds, hint=sim_model.arena_used)
            self.arena_used = sim_model.arena_used
        except BaseException:
            sim_model.close()
            raise

    def reader(self, fd: int) -> "FdReader":
        """A reader of the board's port (`fd`) that raises the board's error once it
        has stopped on one (a crashed or hung interpreter), instead of going quiet."""
        return _BoardReader(self, fd)

    def failure(self) -> NanomlError | None:
        e = self.error
        if e is None or isinstance(e, NanomlError):
            return e
        return NanomlError(f"the virtual board failed: {e}")

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


class _BoardReader(FdReader):
    def __init__(self, board: ProfilingVirtualBoard, fd: int):
        super().__init__(fd)
        self.board = board

    def read(self, n: int) -> bytes:
        data = super().read(n)
        if not data and not self.board.running and self.board.failure() is not None:
            raise self.board.failure()
        return data
