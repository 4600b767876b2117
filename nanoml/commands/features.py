"""`nanoml features INPUTS... --model MODEL -o FILE.npy`: WAV clips through the
model's audio pipeline into its input tensors (or, with --raw, the front end's
own output), one per clip, for training on exactly the board's features."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (JSON_OPTION, console, emit_json, esc, frontend_option, handle_errors,
                      model_ref, show_progress)


def register(app: typer.Typer) -> None:
    @app.command("features")
    def features_cmd(
        inputs: list[Path] = typer.Argument(..., help="WAV files, folders searched "
                                                      "recursively for *.wav (sorted), or "
                                                      "capture datasets (a folder with "
                                                      "manifest.jsonl: its clean takes, "
                                                      "labelled)."),
        model: Path = typer.Option(..., "--model", "-m",
                                   help="The .tflite model whose input the features fill."),
        out: Path = typer.Option(..., "--out", "-o", help="The .npy file to write."),
        raw: bool = typer.Option(False, "--raw",
                                 help="Write the front end's output [N, frames, channels] "
                                      "(uint16) instead of the model's input tensors."),
        frontend: str = frontend_option("Front-end preset instead of the model's stored one "
                                        "(default: micro_speech when it has none)."),
        labels_out: Path = typer.Option(None, "--labels-out",
                                        help="Write the clips' labels here (JSON: classes, "
                                             "y, files), for training."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Compute features of WAV clips: array [N, *input shape] in the model's dtype.

        Each clip gives one tensor: its first samples (as many as the model's frames
        need), zero-padded at the end when shorter (TFLM's speech-commands training
        does the same). Exit 0 when written; 2 on a bad WAV, folder or model."""
        with handle_errors(json_out):
            from ..atomic import check_output_file
            from ..capture.dataset import labelled_inputs
            from ..model.tflite import load
            from ..pipeline.features import clip_features, model_pipeline
            check_output_file(out, "features")
            if labels_out is not None:
                check_output_file(labels_out, "labels")
            m = load(model)
            pipe = model_pipeline(m, frontend)
            paths, labels = labelled_inputs(inputs)
            with show_progress(not json_out, "reading the clips"):
                res = clip_features(paths, pipe, m.input_tensors[0].shape, raw=raw)
            _save(out, res.array)
            classes = _save_labels(labels_out, paths, labels)
            if json_out:
                emit_json({**_json(res, pipe, model, out, labels), "classes": classes,
                           "labels_out": None if labels_out is None else str(labels_out)},
                          "features/1", 0)
            else:
                _render(res, pipe, out)
                if labels_out is not None:
                    console().print(f"wrote {esc(labels_out)}: {len(classes)} label(s): "
                                    f"{esc(', '.join(classes))}", soft_wrap=True)
            raise typer.Exit(0)


def _save(path: Path, array) -> None:
    import io

    import numpy as np

    from ..atomic import write_atomic
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_atomic(path, buf.getvalue(), "features")


def _save_labels(path: Path | None, paths: list[Path], labels: list) -> list[str]:
    """The sorted label names; written as {classes, y, files} to `path` when given
    (y: each clip's index into classes, -1 for a clip without a label)."""
    import json

    from ..atomic import write_atomic
    classes = sorted({x for x in labels if x is not None})
    if path is not None:
        index = {c: i for i, c in enumerate(classes)}
        doc = {"classes": classes, "y": [index.get(x, -1) for x in labels],
               "files": [str(p) for p in paths]}
        write_atomic(path, json.dumps(doc) + "\n", "labels")
    return classes


def _json(res, pipe, model: Path, out: Path, labels: list) -> dict:
    from dataclasses import asdict
    a = res.array
    return {"model": model_ref(model), "out": str(out), "raw": res.raw,
            "clips": len(res.clips), "shape": list(a.shape), "dtype": str(a.dtype),
            "frontend": {"kind": pipe.frontend.kind, "params": pipe.frontend.params},
            "frames": pipe.frames, "channels": pipe.channels,
            "clip_samples": _clip_samples(pipe), "sample_rate": pipe.frontend.params["sample_rate"],
            "tensor": None if res.raw else asdict(pipe.tensor),
            "files": [{**c.to_json(), "label": x} for c, x in zip(res.clips, labels)]}


def _clip_samples(pipe) -> int:
    from ..pipeline.features import clip_samples
    return clip_samples(pipe)


def _render(res, pipe, out: Path) -> None:
    c = console()
    fits = {}
    for clip in res.clips:
        fits[clip.fit] = fits.get(clip.fit, 0) + 1
    a = res.array
    what = "front-end output" if res.raw else f"{pipe.tensor.dtype} input tensors"
    c.print(f"wrote {esc(out)}: {len(res.clips)} clip(s), {what}, shape "
            f"{list(a.shape)} {a.dtype}", soft_wrap=True)
    c.print(f"{pipe.frontend.kind}: {pipe.frames} frames x {pipe.channels} channels from "
            f"{_clip_samples(pipe)} samples at {pipe.frontend.params['sample_rate']} Hz "
            "per clip")
    if fits.get("padded") or fits.get("cut"):
        c.print(f"[dim]{fits.get('padded', 0)} clip(s) zero-padded at the end, "
                f"{fits.get('cut', 0)} longer than that (the rest ignored)[/]")
