"""`nanoml pipeline MODEL ... --out OUT.tflite`: write the sensor pipeline (front
end, window, tensor conversion, decisions, labels) into a copy of the model;
`--show` prints a model's pipeline, `--remove` takes it out."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (JSON_OPTION, console, decision_option, emit_json, esc, frontend_option,
                      handle_errors, labels_option, model_ref, names, rate_option,
                      stride_ms_option, stride_option, threshold_option)


def _number_list(ctx, param, value):
    """Comma-separated finite numbers (checked when the command line is read)."""
    if value is None:
        return None
    import math
    try:
        out = [float(x) for x in value.split(",")]
    except ValueError:
        raise typer.BadParameter(f"comma-separated numbers (got {value!r})") from None
    if not all(math.isfinite(x) for x in out):
        raise typer.BadParameter("every number must be finite")
    return value


def _numbers(value: str | None) -> list[float] | None:
    return None if value is None else [float(x) for x in value.split(",")]


def _channel_list(ctx, param, value):
    if value is not None and any(not x.strip() for x in value.split(",")):
        raise typer.BadParameter("a comma-separated list of channels, none empty (ax,ay,az)")
    return value


def _at_least(lo: int):
    def check(ctx, param, value):
        if value is not None and value < lo:
            raise typer.BadParameter(f"must be >= {lo} (got {value})")
        return value
    return check


def register(app: typer.Typer) -> None:
    @app.command("pipeline")
    def pipeline_cmd(
        model: Path = typer.Argument(..., help="A .tflite model."),
        out: Path = typer.Option(None, "--out", "-o",
                                 help="The model copy to write, with the pipeline in its metadata."),
        frontend: str = frontend_option("Audio front-end preset: micro_speech (mfcc: not "
                                        "available yet)."),
        labels: str = labels_option("Output labels, comma-separated, one per output value."),
        imu: str = typer.Option(None, "--imu", callback=_channel_list,
                                help="An IMU pipeline: the channels in tensor order, "
                                     "e.g. ax,ay,az,gx,gy,gz."),
        rate: float = rate_option(None, "Sample rate, Hz: the IMU's (default 119) or the "
                                        "audio front end's sample_rate."),
        stride_ms: int = stride_ms_option("Audio: ms between inferences (default 100)."),
        stride: int = stride_option("IMU: samples between inferences (default: the window, "
                                    "no overlap)."),
        offset: str = typer.Option(None, "--offset", callback=_number_list,
                                   help="IMU: per-channel offsets, comma-separated "
                                        "(value = (raw - offset) / scale)."),
        scale: str = typer.Option(None, "--scale", callback=_number_list,
                                  help="IMU: per-channel scales, comma-separated."),
        frontend_param: list[str] = typer.Option(None, "--frontend-param",
                                                 help="Override a front-end parameter: "
                                                      "name=value (repeatable)."),
        decision: bool = decision_option("Smooth scores into detections (default: on for "
                                         "audio, off for IMU)."),
        threshold: int = threshold_option("Decision: smoothed score (0..255) to detect."),
        average_window_ms: int = typer.Option(None, "--average-window-ms", callback=_at_least(1),
                                              help="Decision: averaging window, ms."),
        suppression_ms: int = typer.Option(None, "--suppression-ms", callback=_at_least(0),
                                           help="Decision: quiet time after a detection, ms."),
        minimum_count: int = typer.Option(None, "--minimum-count", callback=_at_least(1),
                                          help="Decision: results needed in the window."),
        show: bool = typer.Option(False, "--show", help="Print the model's pipeline (the "
                                                        "default without --out)."),
        remove: bool = typer.Option(False, "--remove",
                                    help="Write the copy without a pipeline."),
        force: bool = typer.Option(False, "--force", help="Allow --out to be the input model."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Write the sensor pipeline into a copy of the model (its metadata), or show it.

        Options change the model's stored pipeline (or make one: --frontend or --imu);
        frames per inference come from the model's input shape. Exit 0: written or
        shown; 2: bad option, model or pipeline (nothing written)."""
        with handle_errors(json_out):
            from ..errors import UsageError
            from ..model.tflite import load
            from ..pipeline import store
            changes = {
                "frontend": frontend, "labels": names(labels), "imu": names(imu), "rate": rate or None, "stride_ms": stride_ms,
                "stride": stride, "offset": _numbers(offset),
                "scale": _numbers(scale), "decision": decision,
                "threshold": threshold, "average_window_ms": average_window_ms,
                "suppression_ms": suppression_ms, "minimum_count": minimum_count}
            given = [k for k, v in changes.items() if v is not None] + \
                (["frontend_param"] if frontend_param else [])
            if out is None and (given or remove):
                raise UsageError("nothing is written without --out",
                                 hint="add --out OUT.tflite (or use --show to print the pipeline)")
            if out is not None and show:
                raise UsageError("--show prints, --out writes: give one of them",
                                 hint="nanoml pipeline MODEL --show")
            if remove and given:
                raise UsageError(f"--remove with --{given[0].replace('_', '-')}",
                                 hint="--remove writes the copy without any pipeline")
            if out is not None:
                _check_out(model, out, force)
            m = load(model)
            if out is None:
                pipe = store.resolve(m)
                _report("show", pipe, model, None, json_out)
                raise typer.Exit(0)
            if remove:
                data = store.remove_pipeline(m.raw)
                pipe = None
            else:
                stored = store.read_pipeline(m)
                kind = frontend or (stored.frontend.kind if stored and stored.frontend
                                    else "micro_speech")
                params = store.parse_params(kind, frontend_param) if frontend_param else None
                pipe = store.resolve(m, frontend_params=params, **changes)
                if pipe is None:
                    raise UsageError(f"{model} has no pipeline to change",
                                     hint="add --frontend micro_speech or --imu ax,ay,az,...")
                data = store.write_pipeline(m.raw, pipe)
            from ..atomic import write_atomic
            write_atomic(out, data, "model")
            _report("remove" if remove else "write", pipe, model, out, json_out)
            raise typer.Exit(0)


def _check_out(model: Path, out: Path, force: bool) -> None:
    from ..atomic import check_output_file
    from ..errors import UsageError
    try:
        same = out.resolve() == model.resolve() or (out.exists() and out.samefile(model))
    except OSError:
        same = False
    if same and not force:
        raise UsageError(f"--out {out} is the input model",
                         hint="write to another file, or add --force to replace the input")
    check_output_file(out, "model")


def _report(action: str, pipe, model: Path, out: Path | None, json_out: bool) -> None:
    if json_out:
        emit_json({"action": action, "model": model_ref(model),
                   "out": model_ref(out) if out is not None else None,
                   "pipeline": pipe.to_json() if pipe is not None else None},
                  "pipeline/1", 0)
        return
    c = console()
    if out is not None:
        c.print(f"wrote {esc(out)}" + (" (no pipeline)" if pipe is None else ""),
                soft_wrap=True)
    elif pipe is None:
        c.print(f"{esc(model)}: no pipeline (write one with `nanoml pipeline MODEL "
                "--frontend micro_speech --labels ... --out OUT.tflite`)", soft_wrap=True)
    for line in summary(pipe):
        c.print(esc(line), soft_wrap=True)


def summary(pipe) -> list[str]:
    """A pipeline in a few lines (shared with `inspect`)."""
    if pipe is None:
        return []
    if pipe.source == "mic":
        fe = pipe.frontend
        p = fe.params
        lines = [f"front end {fe.kind}: {p['sample_rate']} Hz, window {p['window_size_ms']} ms, "
                 f"step {p['window_step_ms']} ms",
                 f"window {pipe.frames} frames x {pipe.channels} channels, an inference every "
                 f"{pipe.window['stride_ms']} ms"]
    else:
        im = pipe.imu
        lines = [f"imu {','.join(im.channels)} at {im.rate_hz:g} Hz"
                 + (" (normalised: offset/scale)" if im.offset or im.scale else ""),
                 f"window {pipe.window['samples']} samples x {pipe.channels} channels, an "
                 f"inference every {pipe.window['stride']} samples"]
    t = pipe.tensor
    lines.append(f"tensor {t.dtype}" + (f" (zero point {t.zero_point}, scale "
                                        f"{t.input_scale:.6g})" if t.dtype != "float32" else ""))
    lines.append("labels " + (", ".join(pipe.labels) if pipe.labels else "none (output indices)"))
    d = pipe.decision
    lines.append("decision " + (f"average {d.average_window_ms} ms, threshold {d.threshold}, "
                                f"suppression {d.suppression_ms} ms, minimum count "
                                f"{d.minimum_count}" if d else "none (raw scores)"))
    return lines
