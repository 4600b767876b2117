"""`nanoml validate --layers`: send each input to a layer-dump firmware (or the
virtual board) over the protocol, take every operator's output back
(nanoml.serial.layers), run the same input in the preserving reference
(nanoml.validate.reference) and compare layer by layer (nanoml.validate.layers).
Never prints.
"""

from __future__ import annotations

from pathlib import Path

from .. import progress
from ..errors import NanomlError, UsageError
from .layers import (LayersResult, SampleLayers, TensorDiff, Tolerance, compare_tensor,
                     first_divergent, new_rows)
from .reference import LayerReference, LayerTensor


class _Specs:
    """What the input loaders need of a model: its input tensors' descriptions."""

    def __init__(self, model):
        from ..sim.model import TensorInfo
        from .reference import tensor_quant
        self.model = model
        self.inputs = []
        for i in model.main.inputs:
            t = model.main.tensors[i]
            scale, zp = tensor_quant(t)
            self.inputs.append(TensorInfo(t.dtype, tuple(t.shape), t.nbytes, scale, zp))


def load_samples(model, inputs: Path | None, limit: int | None,
                 labels: list[str] | None = None) -> tuple[list[list[bytes]], str]:
    """(raw tensor bytes per input, a description): a .npy/.npz file, a folder of
    labelled clips, or without `inputs` the protocol's synthetic pattern for
    frames 0..limit-1 (the one the firmware's --input synthetic builds)."""
    specs = _Specs(model)
    if inputs is None:
        from ..serial.synthetic import synthetic_inputs
        n = limit or 1
        pattern = [(t.nbytes, t.dtype_code) for t in specs.inputs]
        return [synthetic_inputs(seq, pattern) for seq in range(n)], "synthetic"
    if Path(inputs).is_dir():
        from .audio import load_labelled_clips
        samples = load_labelled_clips(Path(inputs), specs, labels).samples
    else:
        from .inputs import load_inputs
        samples = load_inputs(inputs, specs)
    return (samples[:limit] if limit else samples), str(inputs)


def _dev_tensor(d) -> LayerTensor | None:
    if d is None or not d.readable:
        return None
    return LayerTensor(d.op, d.tensor, d.dtype, tuple(d.shape), d.scale, d.zero_point, d.data)


def _worst(diffs: list[TensorDiff]) -> TensorDiff:
    """An operator with several outputs: its worst one."""
    return max(diffs, key=lambda d: (not d.within, d.max_abs))


def compare_run(ref_layers: list[LayerTensor], run, layers, tolerance: Tolerance) -> SampleLayers:
    """One input: the reference's tensors against the board's LayerRun."""
    by_key = {(d.op, d.tensor): d for d in run}
    unreadable = [d for d in run if not d.readable and d.why]
    if unreadable:
        d = unreadable[0]
        raise UsageError(f"operator {d.op} ({d.name}): the board could not read its output "
                         f"tensor {d.tensor} ({d.why})",
                         "validate the final outputs instead: leave out --layers")
    per_op: dict[int, list[TensorDiff]] = {}
    for ref in ref_layers:
        dev = by_key.get((ref.op, ref.tensor))
        per_op.setdefault(ref.op, []).append(compare_tensor(ref, _dev_tensor(dev), tolerance))
    return SampleLayers(0, [_worst(per_op[layer.index]) for layer in layers])


def compare_local(ref: LayerReference, run, sample: list[bytes], s: SampleLayers,
                  tolerance: Tolerance) -> None:
    """Each operator alone on the board's own input tensors (its dumps of the
    tensors that feed it, the model's input as sent, constants from the model)
    against the board's output: `s.local` (None where it cannot run alone, the
    reason in `s.notes`). So a layer is not blamed for differences in its inputs."""
    import numpy as np
    from ..sim.isolated import HostInterpreterError
    main = ref.model.main
    board = {d.tensor: d for d in run if d.readable}
    by_key = {(d.op, d.tensor): d for d in run}
    given = {t: arr for t, arr in zip(main.inputs, ref.input_arrays(sample))}
    s.local, s.notes = [], []
    for layer in ref.layers:
        reads, refusal = ref.alone(layer)
        arrays, why = [], refusal
        for t in reads:
            if why:
                break
            spec = main.tensors[t]
            if t in given:
                arrays.append(given[t])
            elif t in board and board[t].dtype == spec.dtype and \
                    tuple(board[t].shape) == tuple(spec.shape):
                arrays.append(np.asarray(board[t].data).reshape(spec.shape))
            else:
                why = f"the board sent no usable dump of its input tensor {t}"
        if why:
            s.local.append(None)
            s.notes.append(why)
            continue
        try:
            outs = ref.run_alone(layer, arrays)
        except HostInterpreterError as e:
            if e.status != "refused":        # the worker died: the reference with it
                raise
            s.local.append(None)
            s.notes.append(f"the interpreter refused the operator alone ({e.message})")
            continue
        s.local.append(_worst([compare_tensor(o, _dev_tensor(by_key.get((o.op, o.tensor))),
                                              tolerance) for o in outs]))
        s.notes.append(None)


def validate_layers_stream(link, ref: LayerReference, samples: list[list[bytes]], source: str,
                           inputs: str, tolerance: Tolerance, frame_timeout: float = 30.0,
                           hello_timeout: float = 7.0, retries: int = 2,
                           deadline=None) -> LayersResult:
    """Every sample through `link` (a BoardLink to a layer-dump firmware or the
    virtual board) and through `ref`; per-layer comparison and the first divergence."""
    from ..serial.layers import request_layers
    from ..sim.deadline import Deadline
    deadline = Deadline.of(deadline)
    model = ref.model
    progress.report("waiting for the board's hello")
    hello = link.wait_hello(deadline.left(hello_timeout))
    if hello.get("input") and hello["input"] != "serial":
        raise NanomlError(f"the board's input source is {hello['input']}, not serial",
                          hint="flash the layer-dump firmware: nanoml flash MODEL --input serial "
                               "--layers")
    res = LayersResult(source=source, reference=ref.reference, model=model.path, inputs=inputs,
                       tolerance=tolerance, rows=new_rows(model, ref.layers),
                       board_model=hello.get("model") or None)
    if res.board_model and not model.sha256.startswith(res.board_model):
        res.notes.append(f"the board runs another model (hello model={res.board_model}, this "
                         f"model is {model.sha256[:12]}): layers are compared all the same")
    per_sample = []
    where = "virtual board" if source == "sim" else "board"
    progress.report(f"dumping every layer of {len(samples)} input(s) on the {where}")
    for i, sample in enumerate(samples):
        progress.detail(f"{i + 1} of {len(samples)}")
        try:
            run = request_layers(link, b"".join(sample), timeout=deadline.left(frame_timeout),
                                 retries=retries)
        except NanomlError:
            deadline.check(f"dumping the layers of input {i + 1} of {len(samples)}")
            raise
        ref_layers, _ = ref.run(sample)
        s = compare_run(ref_layers, run, ref.layers, tolerance)
        compare_local(ref, run, sample, s, tolerance)
        s.index = i
        per_sample.append(s)
        for row, d, loc, why in zip(res.rows, s.diffs, s.local, s.notes):
            row.add(d, i, loc, why)
        if run.result.get("sim") and source == "device":
            res.source = "sim"              # the port is a virtual board (its res says so)
        res.retries += run.retries
        res.corrupt_lines += run.corrupt_lines
        res.link_bytes += run.link_bytes
        if run.nested:
            res.notes.append(f"input {i}: {run.nested} operator run(s) inside control-flow "
                             "subgraphs were not dumped (only subgraph 0 is compared)")
    res.samples = len(per_sample)
    for row in res.rows:
        if row.local_note:
            res.notes.append(f"operator {row.index} ({row.op}): compared end to end only, not "
                             f"alone ({row.local_note})")
        if row.undetermined:
            res.notes.append(
                f"operator {row.index} ({row.op}): {row.undetermined} of its "
                f"{_elements(row.shape)} output values are undetermined (never written, or "
                "computed from such: two reference runs with differently filled memory "
                "disagree there); they are not compared")
    context = {"board_model": res.board_model, "model_sha": model.sha256,
               "reference": ref.reference, "source": source, "tolerance": tolerance,
               "model_inputs": tuple(model.main.inputs)}
    res.first = first_divergent(ref.layers, res.rows, per_sample, context)
    return res


def _elements(shape) -> int:
    import math
    return math.prod(shape)


def validate_layers(model_path: Path, inputs: Path | None = None, port: str | None = None,
                    sim: bool = False, limit: int | None = None, board_id: str | None = None,
                    reference: str = "tflm", tolerance: Tolerance | None = None,
                    frame_timeout: float = 30.0, retries: int = 2, deadline=None,
                    labels: list[str] | None = None) -> LayersResult:
    from ..boards import get_board
    from ..model import tflite
    from ..serial.link import BoardLink
    from ..sim.deadline import Deadline
    board = get_board(board_id)
    deadline = Deadline.of(deadline)
    tolerance = tolerance or Tolerance()
    model = tflite.load(model_path)
    samples, described = load_samples(model, inputs, limit, labels)
    progress.report("starting the reference interpreter (every tensor kept)")
    with LayerReference(model, reference, deadline=deadline) as ref:
        if sim:
            return _sim(model_path, ref, samples, described, board, tolerance, frame_timeout,
                        retries, deadline)
        if not port:
            from ..serial.ports import find_board_port
            port = find_board_port(board).device
        with BoardLink.open(port) as link:
            return validate_layers_stream(link, ref, samples, "device", described, tolerance,
                                          frame_timeout, retries=retries, deadline=deadline)


def _sim(model_path, ref, samples, described, board, tolerance, frame_timeout, retries,
         deadline) -> LayersResult:
    from .run import on_virtual_board
    return on_virtual_board(
        model_path, board, deadline,
        lambda link: validate_layers_stream(link, ref, samples, "sim", described, tolerance,
                                            frame_timeout, retries=retries, deadline=deadline),
        layers=True)


def check_tolerance(lsb: int | None, rel: float | None) -> Tolerance:
    import math
    t = Tolerance()
    if lsb is not None:
        if lsb < 0:
            raise UsageError(f"--tolerance-lsb must be >= 0, got {lsb}",
                             "e.g. --tolerance-lsb 0 (identical) or 1 (CMSIS-NN rounding)")
        t = Tolerance(lsb, t.rel)
    if rel is not None:
        if not (math.isfinite(rel) and rel >= 0):
            raise UsageError(f"--tolerance-rel must be a finite number >= 0, got {rel}")
        t = Tolerance(t.lsb, rel)
    return t
