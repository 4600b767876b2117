"""Layer dumps: every operator's output tensor of one inference, from a
layer-dump firmware (`nanoml build --layers`) or `nanoml sim --layers`.

For an input frame, such a device sends, right after each operator of
subgraph 0 ran, one `lay` header (operator, tensor, dtype, shape,
quantization, byte count, chunk count, CRC-32 of the whole tensor) and its
bytes in `lch` chunks of at most LAYER_CHUNK_BYTES each; then `lend`, then
the frame's usual `res` (docs/protocol.md "Layer dumps").

    with BoardLink.open(port) as link:
        run = request_layers(link, payload)      # LayerRun: list[LayerDump]
        run[3].data                              # np.ndarray of operator 3's output

A chunk whose line checksum fails, a missing chunk, a tensor whose CRC-32 does
not match its header, a lost header or trailer: the frame is sent again (the
device resets the interpreter before every dumped inference, so the same
payload gives the same tensors, stateful models too) and the good tensors of
every attempt are kept. What is still missing after `retries` re-sends is a
one-line LayerDumpError; a tensor whose checksum failed is never returned.
This module never prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import InputError, NanomlError, UsageError
from .protocol import (INT_MIN, LAYER_CHUNK_BYTES, MAX_LINE_LENGTH, UINT_MAX, Corrupt,
                       Message, crc32, encode_line)

LAYER_TYPES = ("lay", "lch", "lend")
# `lay why=` tokens: the output exists but has no values the device can send
WHY_UNREADABLE = {
    "dtype": "its type holds no values (resource, variant or string tensor)",
    "nodata": "the tensor has no data pointer on the device",
}
# dtypes whose tensors carry no comparable values
NO_VALUE_DTYPES = ("resource", "variant", "string")
LAYERS_HINT = ("build and flash the layer-dump firmware: `nanoml flash MODEL --input serial "
               "--layers` (or run `nanoml sim MODEL --input serial --layers`)")


class LayersNotSupported(UsageError):
    """The firmware on the port does not dump layers (its hello has no layers=1)."""


class LayerDumpError(InputError):
    """Layers lost or corrupted beyond the retries, or a device that contradicts itself."""


@dataclass(frozen=True)
class LayerDump:
    op: int                      # operator index in subgraph 0 (execution order)
    name: str                    # operator name, as the device says
    output: int                  # position among the operator's outputs
    tensor: int                  # tensor index in subgraph 0 (-1: optional output absent)
    dtype: str                   # numpy name
    shape: tuple[int, ...]
    scale: float | None          # per-tensor scale as sent (6 significant digits)
    zero_point: int | None
    raw: bytes | None            # little-endian tensor bytes (CRC-32 checked); None: unreadable
    why: str | None = None       # WHY_UNREADABLE token when raw is None

    @property
    def readable(self) -> bool:
        return self.raw is not None

    @property
    def data(self):
        """The tensor as an array of its dtype and shape (None when unreadable)."""
        if self.raw is None:
            return None
        import numpy as np
        dt = np.dtype(self.dtype).newbyteorder("<")
        return np.frombuffer(self.raw, dtype=dt).astype(self.dtype).reshape(self.shape)

    def to_json(self) -> dict:
        return {"op": self.op, "name": self.name, "output": self.output, "tensor": self.tensor,
                "dtype": self.dtype, "shape": list(self.shape), "scale": self.scale,
                "zero_point": self.zero_point,
                "bytes": len(self.raw) if self.raw is not None else 0, "why": self.why}


class LayerRun(list):
    """The dumps of one inference, in (operator, output) order, with what it took."""

    def __init__(self, dumps=(), *, frame: int = 0, result: dict | None = None,
                 ops: int = 0, nested: int = 0, retries: int = 0, corrupt_lines: int = 0,
                 link_bytes: int = 0):
        super().__init__(dumps)
        self.frame = frame            # seq of the input frame that produced them (last attempt)
        self.result = result or {}    # that frame's `res` fields
        self.ops = ops                # operators of subgraph 0 that ran
        self.nested = nested          # operator runs inside control-flow subgraphs (not dumped)
        self.retries = retries        # re-sends needed
        self.corrupt_lines = corrupt_lines     # lines failing their checksum + orphan chunks, all attempts
        self.link_bytes = link_bytes  # bytes of lay/lch/lend lines received, all attempts

    def to_json(self) -> dict:
        return {"frame": self.frame, "ops": self.ops, "nested": self.nested,
                "retries": self.retries, "corrupt_lines": self.corrupt_lines,
                "link_bytes": self.link_bytes, "layers": [d.to_json() for d in self]}


def supports_layers(hello: dict | None) -> bool:
    """True when the firmware that sent `hello` is a layer-dump build."""
    return bool(hello and hello.get("layers"))


def chunk_count(nbytes: int) -> int:
    return -(-nbytes // LAYER_CHUNK_BYTES)


def header_line_bytes(name: str, dtype: str, shape) -> int:
    """Line buffer (bytes, NUL included) a device needs for the longest `lay`
    header of an output: the largest numbers in every numeric field."""
    line = encode_line("lay", {"frame": UINT_MAX, "i": UINT_MAX, "o": UINT_MAX, "op": name,
                               "t": INT_MIN, "dtype": dtype, "shape": list(shape),
                               "bytes": UINT_MAX, "chunks": UINT_MAX, "crc": UINT_MAX,
                               "scale": -1.23457e-30, "zp": INT_MIN})
    return len(line) + 1


def layer_line_bytes(model) -> int:
    """Line buffer a layer-dump firmware needs for `model`: its longest `lay`
    header, and never less than MAX_LINE_LENGTH (an `lch` chunk line fits that)."""
    main = model.main
    need = [header_line_bytes(op.display_name, main.tensors[t].dtype, main.tensors[t].shape)
            for op in main.operators for t in op.outputs if t >= 0]
    return max([MAX_LINE_LENGTH, *need])


def unreadable_outputs(model) -> list[tuple[int, str, int, str]]:
    """(operator index, op name, tensor index, why) of subgraph 0's operator
    outputs that a dump cannot carry values of, from the model alone."""
    out = []
    main = model.main
    for op in main.operators:
        for t in op.outputs:
            if t >= 0 and main.tensors[t].dtype in NO_VALUE_DTYPES:
                out.append((op.index, op.display_name, t, "dtype"))
    return out


# ------------------------------------------------------------------ assembly

@dataclass
class _Pending:
    header: dict
    chunks: dict = field(default_factory=dict)     # k -> bytes


class LayerAssembler:
    """Collects the `lay`/`lch`/`lend` lines of one frame (other frames'
    lines are ignored). `feed(parsed)` for every parsed line; `done` once
    `lend` arrived; `dumps()` -> (good LayerDumps by (op, output), problems)."""

    def __init__(self, frame: int):
        self.frame = frame
        self.pending: dict[tuple[int, int], _Pending] = {}
        self.end: dict | None = None
        self.corrupt = 0              # lines that failed their checksum or bounds
        self.orphans = 0              # chunks without a header (its header was lost)
        self.link_bytes = 0

    @property
    def done(self) -> bool:
        return self.end is not None

    def feed(self, p) -> bool:
        """Take one parsed line; True when it belonged to this dump."""
        if isinstance(p, Corrupt):
            self.corrupt += 1         # its type cannot be trusted: count it against the dump
            self.link_bytes += len(p.text) + 2
            return True
        if not isinstance(p, Message) or p.type not in LAYER_TYPES:
            return False
        f = p.fields
        if f.get("frame") != self.frame:
            return False
        self.link_bytes += len(p.raw) + 2
        key = (f.get("i"), f.get("o"))
        if p.type == "lay":
            self.pending[key] = _Pending(f)
        elif p.type == "lch":
            entry = self.pending.get(key)
            if entry is None:
                self.orphans += 1
            else:
                entry.chunks[f["k"]] = f["hex"]
        else:
            self.end = f
        return True

    def dumps(self) -> tuple[dict, list[str]]:
        """(good dumps by (op, output), one problem text per bad or missing one)."""
        good, problems = {}, []
        for key in sorted(self.pending):
            d, why = _assemble(self.pending[key])
            if d is None:
                problems.append(f"operator {key[0]} output {key[1]}: {why}")
            else:
                good[key] = d
        if self.end is None:
            problems.append("the dump's end (lend) did not arrive")
        elif len(self.pending) != self.end["sent"]:
            problems.append(f"{self.end['sent'] - len(self.pending)} layer header(s) lost")
        return good, problems


def _assemble(entry: _Pending) -> tuple[LayerDump | None, str]:
    h = entry.header
    why = h.get("why") or None
    n, nbytes = h["chunks"], h["bytes"]
    raw = None
    if why is None:
        if n != chunk_count(nbytes):
            return None, f"{n} chunks announced for {nbytes} bytes"
        missing = [k for k in range(n) if k not in entry.chunks]
        if missing:
            return None, f"chunk {missing[0]} of {n} missing or corrupt"
        raw = b"".join(entry.chunks[k] for k in range(n))
        if len(raw) != nbytes:
            return None, f"{len(raw)} bytes received, {nbytes} announced"
        if crc32(raw) != h["crc"]:
            return None, "CRC-32 of the tensor does not match its header"
    d = LayerDump(op=h["i"], name=h["op"], output=h["o"], tensor=h["t"], dtype=h["dtype"],
                  shape=tuple(h["shape"]), scale=h.get("scale"), zero_point=h.get("zp"),
                  raw=raw, why=why)
    if raw is not None:
        try:
            d.data                          # dtype/shape agree with the byte count
        except (TypeError, ValueError):
            return None, f"{nbytes} bytes do not make a {h['dtype']} tensor of shape {h['shape']}"
    return d, ""


# ------------------------------------------------------------------ the link

def request_layers(link, payload: bytes, timeout: float = 30.0, retries: int = 2,
                   seq: int | None = None) -> LayerRun:
    """Run `payload` (one input frame) on a layer-dump device; every operator's
    output, reassembled and checked. `timeout`: seconds without a line from the
    device before an attempt counts as lost. `seq`: the first frame's seq
    (default: the link's next). Raises LayersNotSupported, FrameRejected,
    LayerDumpError (one line each)."""
    from .link import FrameRejected
    hello = link.hello or link.wait_hello()
    if not supports_layers(hello):
        raise LayersNotSupported(
            f"the firmware on this port ({hello.get('fw', '?')}) does not dump layers "
            "(its hello has no layers=1)", hint=LAYERS_HINT)
    if seq is not None:
        link.seq = (seq - 1) & 0xFFFFFFFF
    good: dict = {}
    headers: set = set()             # (op, output) of every header seen, all attempts
    sent = result = None
    run = LayerRun()
    problems: list[str] = []
    for attempt in range(retries + 1):
        frame = link.send(payload)
        asm = LayerAssembler(frame)
        result = _collect(link, asm, frame, timeout, FrameRejected)
        run.link_bytes += asm.link_bytes
        got, problems = asm.dumps()
        run.corrupt_lines += asm.corrupt + asm.orphans
        headers.update(asm.pending)
        for key, d in got.items():
            if key in good and good[key] != d:
                raise LayerDumpError(
                    f"operator {key[0]} gave different bytes for the same input frame on a "
                    "re-send: the device does not reset its state before a dumped inference",
                    hint="rebuild the layer-dump firmware with this nanoml version")
            good[key] = d
        if asm.end is not None:
            run.ops, run.nested, sent = asm.end["ops"], asm.end["nested"], asm.end["sent"]
        if result is None and not problems:
            problems = ["the frame's result (res) did not arrive"]
        if result is not None and sent is not None and len(headers) == sent and \
                headers <= set(good):
            run.extend(good[k] for k in sorted(good))
            run.frame, run.result, run.retries = frame, result, attempt
            return run
        if not problems:
            problems = [f"{len(headers - set(good))} layer(s) still missing"]
    raise LayerDumpError(
        f"layer dump of frame {frame} incomplete after {retries + 1} attempt(s): {problems[0]}",
        hint="check the cable/port (every chunk carries a checksum); raise --retries, or "
             "rebuild the firmware if this repeats")


def _collect(link, asm: LayerAssembler, frame: int, timeout: float, rejected) -> dict | None:
    """Read lines until the frame's res (after lend) or `timeout` s of silence."""
    last = time.monotonic()
    while time.monotonic() - last < timeout:
        for p in link.messages(min(0.5, timeout)):
            last = time.monotonic()
            if asm.feed(p):
                continue
            if not isinstance(p, Message):
                continue
            f = p.fields
            if p.type == "ack" and f.get("seq") == frame and not f["ok"]:
                raise rejected(frame, f.get("why", "?"))
            if p.type == "res" and f.get("frame") == frame:
                return f
            if p.type == "err":
                raise NanomlError(f"the board reported an error during the dump: "
                                  f"{f.get('code')}: {f.get('msg')}",
                                  hint="see `nanoml monitor` for the board's messages")
    return None
