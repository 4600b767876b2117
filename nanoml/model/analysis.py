"""Per-operator analysis of a parsed model: MACs and parameter bytes.

MAC conventions (documented in docs/inspect.md):
- CONV_2D: output elements x kernel h x kernel w x input channels per filter
- DEPTHWISE_CONV_2D: output elements x kernel h x kernel w
- FULLY_CONNECTED: output elements x input features
- TRANSPOSE_CONV: input elements x kernel h x kernel w x output channels
- BATCH_MATMUL: output elements x inner dimension
- SVDF: batch x (input features x filters  +  filters x memory size)
- UNIDIRECTIONAL_SEQUENCE_LSTM: time steps x batch x cells x 4 x (inputs + outputs)
  (+ projection outputs x cells when a projection is present)
- everything else (pooling, element-wise, reshapes, softmax): 0, because it
  performs no multiply-accumulate.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tflite import Model, Operator, Subgraph


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= max(int(x), 1)
    return n


def _t(sg: Subgraph, op: Operator, i: int, outputs: bool = False):
    idx = (op.outputs if outputs else op.inputs)
    if i >= len(idx) or idx[i] < 0:
        return None
    return sg.tensors[idx[i]]


def operator_macs(sg: Subgraph, op: Operator) -> int:
    out = _t(sg, op, 0, outputs=True)
    inp = _t(sg, op, 0)
    name = op.op
    try:
        if name == "CONV_2D":
            w = _t(sg, op, 1)                      # [out_c, kh, kw, in_c]
            return out.elements * w.shape[1] * w.shape[2] * w.shape[3]
        if name == "DEPTHWISE_CONV_2D":
            w = _t(sg, op, 1)                      # [1, kh, kw, out_c]
            return out.elements * w.shape[1] * w.shape[2]
        if name == "FULLY_CONNECTED":
            w = _t(sg, op, 1)                      # [units, features]
            return out.elements * w.shape[-1]
        if name == "TRANSPOSE_CONV":
            w = _t(sg, op, 1)                      # [out_c, kh, kw, in_c]
            x = _t(sg, op, 2)
            return x.elements * w.shape[0] * w.shape[1] * w.shape[2]
        if name == "BATCH_MATMUL":
            a = _t(sg, op, 0)
            return out.elements * a.shape[-1]
        if name == "SVDF":
            wf = _t(sg, op, 1)                     # [filters, input]
            wt = _t(sg, op, 2)                     # [filters, memory]
            batch = inp.shape[0] if inp.shape else 1
            return batch * (wf.shape[0] * wf.shape[1] + wt.shape[0] * wt.shape[1])
        if name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            time_major = op.options.get("time_major", False)
            shp = inp.shape
            steps, batch = (shp[0], shp[1]) if time_major else (shp[1], shp[0])
            n_in = shp[-1]
            w_i2c = _t(sg, op, 3)                  # input_to_cell [cells, inputs]
            w_r2c = _t(sg, op, 7)                  # recurrent_to_cell [cells, outputs]
            cells = w_i2c.shape[0]
            n_out = w_r2c.shape[1]
            macs = 4 * cells * (n_in + n_out)
            proj = _t(sg, op, 16)
            if proj is not None and proj.shape:
                macs += proj.shape[0] * proj.shape[1]
            return steps * batch * macs
    except (AttributeError, IndexError, TypeError):
        return 0
    return 0


def operator_param_bytes(sg: Subgraph, op: Operator) -> int:
    """Bytes of constant (weight/bias) tensors the operator reads."""
    return sum(sg.tensors[i].nbytes for i in op.inputs
               if i >= 0 and sg.tensors[i].is_const)


@dataclass
class OpStats:
    subgraph: int
    index: int
    op: Operator
    macs: int
    param_bytes: int


def analyse(model: Model) -> list[OpStats]:
    out = []
    for sg in model.subgraphs:
        for op in sg.operators:
            out.append(OpStats(sg.index, op.index, op, operator_macs(sg, op),
                               operator_param_bytes(sg, op)))
    return out


def parameter_count(model: Model) -> tuple[int, int]:
    """(number of constant elements, their bytes) over all constant tensors."""
    seen = set()
    n = b = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.is_const and t.buffer not in seen:
                seen.add(t.buffer)
                n += t.elements
                b += t.nbytes
    return n, b
