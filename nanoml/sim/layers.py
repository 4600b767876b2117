"""The virtual board's layer dump (`nanoml sim --layers`): the `lay` / `lch`
/ `lend` lines a layer-dump firmware sends for one input frame, from TFLM's
host interpreter with every tensor preserved (kPreserveAllTensors: no arena
reuse, so after Invoke() each operator's output still holds what that
operator wrote).

What cannot be read is said, as the firmware says it: an output whose type
holds no values (resource, variant, string) gets `why=dtype`; operators of
other subgraphs (WHILE / IF bodies) are not dumped (their outputs change on
every iteration) and are counted in `lend nested=` (the sim counts those
operators, the firmware their runs); the control-flow operator's own output
is dumped.
"""

from __future__ import annotations

from typing import Iterator

from ..serial.layers import NO_VALUE_DTYPES
from ..serial.protocol import LAYER_CHUNK_BYTES, crc32


def layer_plan(model) -> list[tuple[int, int, str, int]]:
    """(operator index, output position, op name, tensor index) of subgraph
    0's operator outputs, in execution order. `model`: nanoml.model.tflite.Model."""
    return [(op.index, o, op.display_name, t)
            for op in model.main.operators for o, t in enumerate(op.outputs)]


def nested_operators(model) -> int:
    return sum(len(sg.operators) for sg in model.subgraphs[1:])


def _quant(tensor) -> dict:
    q = tensor.quant
    if q is None or q.per_channel or tensor.dtype in ("float32", "float16", "float64"):
        return {}
    return {"scale": q.scale[0], "zp": q.zero_point[0]}


def dump_lines(sim_model, frame: int, plan=None) -> Iterator[tuple[str, dict]]:
    """(message type, fields) of the dump of the last run() of `sim_model`
    (a SimModel with preserve=True), ending with `lend`."""
    model = sim_model.model
    plan = layer_plan(model) if plan is None else plan
    readable = [t for _, _, _, t in plan
                if t >= 0 and model.main.tensors[t].dtype not in NO_VALUE_DTYPES]
    values = dict(zip(readable, sim_model.tensors(readable))) if readable else {}
    sent = 0
    for i, o, name, t in plan:
        tensor = model.main.tensors[t] if t >= 0 else None
        head = {"frame": frame, "i": i, "o": o, "op": name, "t": t,
                "dtype": tensor.dtype if tensor else "none",
                "shape": list(tensor.shape) if tensor else []}
        sent += 1
        if t not in values:
            yield "lay", {**head, "bytes": 0, "chunks": 0, "crc": 0,
                          "why": "dtype" if tensor is not None else "nodata"}
            continue
        arr = values[t]
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        head["shape"] = list(arr.shape)
        n = -(-len(raw) // LAYER_CHUNK_BYTES)
        yield "lay", {**head, "bytes": len(raw), "chunks": n, "crc": crc32(raw),
                      **_quant(tensor)}
        for k in range(n):
            yield "lch", {"frame": frame, "i": i, "o": o, "k": k,
                          "hex": raw[k * LAYER_CHUNK_BYTES:(k + 1) * LAYER_CHUNK_BYTES]}
    yield "lend", {"frame": frame, "ops": len(model.main.operators), "sent": sent,
                   "nested": nested_operators(model), "sim": True}
