"""One operator of a model as a model of its own (for `validate --layers`' local
comparison: that operator run alone on the board's own input tensors).

    why = alone_refusal(model, op)          # None, or why op cannot run alone
    data = single_op_model(model, op)       # .tflite bytes: op, its constants,
                                            # its variable inputs as graph inputs

nanoml.model.tflite stays the only reader that decides anything about a model
(what is constant, variable, which op); this module only writes, through the
flatbuffers object API of TFLM's generated schema module (`ModelT`:
InitFromPackedBuf, then Pack), so every field of the operator (options, custom
options, intermediates) is carried over as the schema defines it. Never prints.
"""

from __future__ import annotations

from . import tflite

# Ops that run other subgraphs or keep state across the graph (resource
# variables): their output depends on more than their input tensors.
_NOT_ALONE = {"IF", "WHILE", "CALL_ONCE", "CALL", "VAR_HANDLE", "READ_VARIABLE",
              "ASSIGN_VARIABLE", "STABLEHLO_WHILE", "STABLEHLO_CASE", "STABLEHLO_COMPOSITE"}


def alone_refusal(model: tflite.Model, op: tflite.Operator) -> str | None:
    """Why `op` (of subgraph 0) cannot be run alone, or None."""
    tensors = model.main.tensors
    if op.op in _NOT_ALONE or op.op.startswith("STABLEHLO_WHILE"):
        return "it runs other subgraphs or resource variables"
    if any(tensors[t].is_variable for t in op.inputs if t >= 0):
        return "stateful: it keeps state in variable tensors"
    return None


def variable_inputs(model: tflite.Model, op: tflite.Operator) -> list[int]:
    """The original model's tensor indices that become the single-op model's inputs,
    in order: `op`'s non-constant inputs (each once)."""
    tensors = model.main.tensors
    out: list[int] = []
    for t in op.inputs:
        if t >= 0 and not tensors[t].is_const and t not in out:
            out.append(t)
    return out


def tensor_order(op: tflite.Operator) -> list[int]:
    """The original tensor indices in the single-op model's order (its tensor i is
    the original's tensor_order(op)[i]): the op's inputs, outputs, intermediates."""
    return list(dict.fromkeys(t for t in op.inputs + op.outputs + op.intermediates if t >= 0))


def single_op_model(model: tflite.Model, op: tflite.Operator) -> bytes:
    """A .tflite with subgraph 0 = `op` alone: its constant inputs with their
    buffers, its variable inputs (variable_inputs()) as graph inputs, its outputs as
    graph outputs. Check alone_refusal() first."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    m = s.ModelT.InitFromPackedBuf(bytearray(model.raw), 0)
    sub = m.subgraphs[0]
    o = sub.operators[op.index]
    ins, outs, mids = _ints(o.inputs), _ints(o.outputs), _ints(o.intermediates)
    order = list(dict.fromkeys(t for t in ins + outs + mids if t >= 0))
    if order != tensor_order(op):
        raise tflite.ModelError(f"{model.path}: operator {op.index} reads differently in the "
                                "schema's object API than in nanoml's reader")
    remap = {t: i for i, t in enumerate(order)}
    buffers = [s.BufferT()]                      # buffer 0: the empty one
    tensors = []
    for t in order:
        tt = sub.tensors[t]
        b = m.buffers[tt.buffer] if 0 < tt.buffer < len(m.buffers or []) else None
        if b is not None and (b.data is not None and len(b.data)):
            buffers.append(b)
            tt.buffer = len(buffers) - 1
        else:
            tt.buffer = 0
        tensors.append(tt)
    o.inputs = [remap[t] if t >= 0 else -1 for t in ins]
    o.outputs = [remap[t] if t >= 0 else -1 for t in outs]
    if o.intermediates is not None:
        o.intermediates = [remap[t] if t >= 0 else -1 for t in mids]
    sub.tensors = tensors
    sub.operators = [o]
    sub.inputs = [remap[t] for t in variable_inputs(model, op)]
    sub.outputs = [remap[t] for t in op.outputs if t >= 0]
    m.subgraphs = [sub]
    m.buffers = buffers
    m.metadata, m.metadataBuffer, m.signatureDefs = None, None, None
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _ints(xs) -> list[int]:
    """A vector of the object API (a list, a numpy array or None) as ints."""
    return [] if xs is None else [int(x) for x in xs]
