"""`nanoml validate`: run inputs on the board (serial `in` frames), compare its
outputs with the reference host interpreter (the `tflite-micro` package) on the
same inputs.

Works on any line that speaks the protocol: a board running the serial-input
firmware for this model, or the virtual board (`--sim`). Never prints.
"""

from __future__ import annotations

import math
from pathlib import Path

from .. import progress
from ..errors import NanomlError, UsageError
from ..serial.protocol import Message
from .inputs import load_inputs
from .result import ValidateResult, compare, default_atol, output_scales


def validate_stream(link, sim_model, samples: list[list[bytes]], source: str,
                    atol: float | None = None, min_top1: float = 1.0,
                    frame_timeout: float = 30.0, hello_timeout: float = 7.0,
                    deadline=None) -> ValidateResult:
    """Run `samples` through `link` (a nanoml.serial.link.BoardLink) and compare each
    result with `sim_model` (the host reference interpreter) on the same bytes.
    `deadline` (nanoml.sim.deadline.Deadline, the command's --timeout) bounds it all."""
    from ..sim.deadline import Deadline
    deadline = Deadline.of(deadline)
    progress.report("waiting for the board's hello")
    hello = link.wait_hello(deadline.left(hello_timeout))
    if hello.get("model") and hello["model"] != sim_model.sha256[:12]:
        raise NanomlError(f"the board runs another model (hello model={hello['model']}, "
                          f"this model is {sim_model.sha256[:12]})",
                          hint="flash this model: nanoml flash MODEL --input serial")
    if hello.get("input") and hello["input"] != "serial":
        raise NanomlError(f"the board's input source is {hello['input']}, not serial",
                          hint="flash the serial-input firmware: nanoml flash MODEL --input serial")
    a, scale = default_atol(sim_model)
    scales = output_scales(sim_model)
    res = ValidateResult(source=source, model=sim_model.path, samples=[],
                         atol=a if atol is None else atol, min_top1=min_top1, output_scale=scale)
    progress.report(f"running {len(samples)} input(s) on the {'virtual ' if source == 'sim' else ''}board")
    for i, inputs in enumerate(samples):
        progress.detail(f"{i + 1} of {len(samples)}")
        try:
            f = link.infer(b"".join(inputs), timeout=deadline.left(frame_timeout))
        except NanomlError:
            deadline.check(f"validating sample {i + 1} of {len(samples)}")
            raise
        ref = sim_model.run(inputs)
        res.samples.append(compare(i, list(f.get("out") or []), f.get("q"), int(f.get("top", -1)),
                                   ref, scales))
        if f.get("us") is not None:
            res.device_us.append(int(f["us"]))
        if f.get("sim") and source == "device":
            res.source = "sim"
    errors = [p for p in link.other if isinstance(p, Message) and p.type == "err"]
    if errors:
        res.notes.append(f"the board reported {len(errors)} error line(s): "
                         + "; ".join(f"{e.fields.get('code')}: {e.fields.get('msg')}"
                                     for e in errors[:3]))
    return res


def validate(model: Path, inputs: Path, port: str | None = None, sim: bool = False,
             atol: float | None = None, min_top1: float = 1.0, limit: int | None = None,
             board_id: str | None = None, frame_timeout: float = 30.0,
             deadline=None, labels: list[str] | None = None,
             min_accuracy: float | None = None) -> ValidateResult:
    """`inputs`: a .npy/.npz file, or a folder of labelled clips (DIR/<label>/*.wav,
    nanoml.validate.audio): then the result also has the labelled accuracy."""
    from ..boards import get_board
    from ..serial.link import BoardLink
    from ..sim.deadline import Deadline
    from ..sim.model import SimModel
    board = get_board(board_id)               # an unknown id is a usage error, --sim or not
    deadline = Deadline.of(deadline)
    progress.report("starting the reference interpreter")
    ref_model = SimModel(model, deadline=deadline)   # the host interpreter, in a worker process
    try:
        clips = None
        if Path(inputs).is_dir():
            from .audio import load_labelled_clips
            clips = load_labelled_clips(Path(inputs), ref_model, labels)
            samples = clips.samples
        else:
            if labels is not None:
                raise UsageError("--labels goes with --inputs DIR (a folder of label subfolders)")
            samples = load_inputs(inputs, ref_model)
        if limit:
            samples = samples[:limit]
        if sim:
            res = _validate_sim(model, ref_model, samples, board, atol, min_top1,
                                frame_timeout, deadline)
        else:
            if not port:
                from ..serial.ports import find_board_port
                port = find_board_port(board).device
            with BoardLink.open(port) as link:
                res = validate_stream(link, ref_model, samples, "device", atol, min_top1,
                                      frame_timeout, deadline=deadline)
        if clips is not None:
            from .audio import class_report
            res.classes = class_report(clips, [s.top_device for s in res.samples])
            res.min_accuracy = min_accuracy
        elif min_accuracy is not None:
            raise UsageError("--min-accuracy goes with --inputs DIR (labelled clips)")
        return res
    finally:
        ref_model.close()


def _validate_sim(model, ref_model, samples, board, atol, min_top1, frame_timeout, deadline):
    return on_virtual_board(
        model, board, deadline,
        lambda link: validate_stream(link, ref_model, samples, "sim", atol, min_top1,
                                     frame_timeout, deadline=deadline))


def on_virtual_board(model, board, deadline, talk, **options):
    """`talk(link)` with a virtual board (serial input; `options`: more VirtualBoard
    arguments) running `model`; the board's own error wins over the link's."""
    from ..serial.link import BoardLink
    from ..sim.board import VirtualBoard
    # the virtual board runs its own host interpreter (a second worker)
    vb = VirtualBoard(model, input="serial", rate_hz=0, board=board.id, deadline=deadline,
                      **options)
    with vb:
        try:
            with BoardLink.open(vb.port) as link:
                res = talk(link)
        except NanomlError:
            if isinstance(vb.error, NanomlError):  # the board stopped on its own error
                raise vb.error from None
            raise
    if vb.error is not None:
        if isinstance(vb.error, NanomlError):
            raise vb.error
        raise NanomlError(f"the virtual board failed: {vb.error}")
    return res


def check_args(atol: float | None, min_top1: float) -> None:
    if atol is not None and not (math.isfinite(atol) and atol >= 0):
        raise UsageError(f"--atol must be a finite number >= 0, got {atol}",
                         "e.g. --atol 0 (identical outputs) or --atol 0.01")
    if not 0.0 <= min_top1 <= 1.0:
        raise UsageError(f"--min-top1 must be between 0 and 1, got {min_top1}")
