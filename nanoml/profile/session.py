"""Host side of a profiling run: read what the profiling firmware (or the virtual
board) prints on the serial line and gather N complete inferences.

The profiling firmware prints `hello` and `arena` at boot (and again with every
periodic hello), then for every inference one `res` followed by one `op` record
per operator (docs/protocol.md). `collect()` reads lines from any byte source with
a `read(n)` method (a pyserial port, or a pty opened as a file) until it has `runs`
inferences whose every operator was reported, and the arena line; it never prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import NanomlError
from ..serial.protocol import Corrupt, Foreign, Message
from ..serial.stream import StreamDecoder


@dataclass
class OpRecord:
    index: int
    op: str
    cycles: int
    us: int


@dataclass
class Inference:
    seq: int
    us: int | None = None                  # the res line's Invoke() time
    ops: dict[int, OpRecord] = field(default_factory=dict)

    def complete(self, n_ops: int) -> bool:
        return self.us is not None and len(self.ops) >= n_ops


@dataclass
class DeviceRun:
    hello: dict | None = None
    arena_min: int | None = None
    arena_used: int | None = None
    inferences: list[Inference] = field(default_factory=list)
    sim: bool = False
    foreign: int = 0
    corrupt: int = 0
    incomplete: int = 0                    # inferences with missing op records, dropped
    restarts: int = 0                      # seq went back: the board restarted

    def to_json(self) -> dict:
        return {"hello": self.hello, "arena_min": self.arena_min, "arena_used": self.arena_used,
                "runs": len(self.inferences), "sim": self.sim, "foreign": self.foreign,
                "corrupt": self.corrupt, "incomplete": self.incomplete,
                "restarts": self.restarts}


class RunTimeout(NanomlError):
    exit_code = 1


def collect(source, n_ops: int, runs: int, timeout: float = 60.0, model_sha: str | None = None,
            skip: int = 1, clock=time.monotonic, deadline=None) -> DeviceRun:
    """Read `source` until `runs` complete inferences (after skipping the first
    `skip` complete ones: warm-up) and an `arena` line have arrived.

    Raises NanomlError when the device reports `err`, runs another model
    (`model_sha`: first 12 hex digits of the model's SHA-256), or when `timeout`
    seconds pass first (RunTimeout, with what was seen so far), or the command's
    `deadline` (a nanoml.sim.deadline.Deadline: --timeout) passes (TimedOut)."""
    dec = StreamDecoder()
    run = DeviceRun()
    current: dict[int, Inference] = {}
    last_seq: int | None = None
    skipped = 0
    end = clock() + timeout

    def finish(inf: Inference) -> None:
        nonlocal skipped
        current.pop(inf.seq, None)
        if not inf.complete(n_ops):
            run.incomplete += 1
        elif skipped < skip:
            skipped += 1
        else:
            run.inferences.append(inf)

    while True:
        if len(run.inferences) >= runs and run.arena_min is not None:
            return run
        if deadline is not None and deadline.expired:
            raise deadline.error(f"reading the profiling runs ({len(run.inferences)} of {runs})")
        if clock() > end:
            raise RunTimeout(
                f"profiling run timed out after {timeout:g} s: {len(run.inferences)} of {runs} "
                f"inferences, arena line {'seen' if run.arena_min is not None else 'not seen'}, "
                f"hello {'seen' if run.hello else 'not seen'}",
                hint="check that the board runs the profiling firmware (nanoml profile builds and "
                     "flashes it unless --no-flash) and that no other program holds the port")
        chunk = source.read(4096)
        if not chunk:
            continue
        for p in dec.feed(chunk):
            if isinstance(p, Foreign):
                run.foreign += 1
                continue
            if isinstance(p, Corrupt) or not isinstance(p, Message):
                run.corrupt += 1
                continue
            f = p.fields
            if p.type == "hello":
                run.hello = dict(f)
                run.sim = run.sim or bool(f.get("sim"))
                if model_sha and f.get("model") and f["model"] != model_sha[:12]:
                    raise NanomlError(
                        f"the board runs another model (hello model={f['model']}, this model "
                        f"is {model_sha[:12]})",
                        hint="let nanoml profile build and flash the profiling firmware "
                             "(drop --no-flash)")
            elif p.type == "arena":
                run.arena_min, run.arena_used = int(f["min"]), int(f["used"])
            elif p.type == "err":
                raise NanomlError(f"the board reported an error: {f.get('code')}: {f.get('msg')}",
                                  hint="see `nanoml monitor` for the board's output")
            elif p.type == "res":
                seq = int(f["seq"])
                run.sim = run.sim or bool(f.get("sim"))
                if last_seq is not None and seq < last_seq:
                    run.restarts += 1
                    for inf in list(current.values()):
                        finish(inf)
                # a new result closes every earlier inference still open
                for s in [s for s in current if s != seq]:
                    finish(current[s])
                last_seq = seq
                inf = current.setdefault(seq, Inference(seq))
                inf.us = int(f["us"])
            elif p.type == "op":
                seq = int(f["seq"])
                inf = current.setdefault(seq, Inference(seq))
                i = int(f["i"])
                inf.ops[i] = OpRecord(i, str(f["op"]), int(f["cyc"]), int(f["us"]))
                if inf.complete(n_ops) and i >= n_ops - 1:
                    finish(inf)
            if len(run.inferences) >= runs and run.arena_min is not None:
                return run


class FdReader:
    """`read(n)` over a file descriptor (e.g. a pty) that returns b"" after
    `poll` seconds without data instead of blocking."""

    def __init__(self, fd: int, poll: float = 0.1):
        self.fd = fd
        self.poll = poll

    def read(self, n: int) -> bytes:
        import os
        import select
        r, _, _ = select.select([self.fd], [], [], self.poll)
        if not r:
            return b""
        try:
            return os.read(self.fd, n)
        except OSError:
            return b""
