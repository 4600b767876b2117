"""`nanoml convert SRC -o OUT.tflite`: Keras / SavedModel -> TFLite Micro model."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (JSON_OPTION, RUNTIME_OPTION, STATE, Quantize, board_option, console, either,
                      emit_json, esc, handle_errors, hidden_alias, limit_option, model_ref,
                      show_progress, value_of)


def register(app: typer.Typer) -> None:
    @app.command("convert")
    def convert_cmd(
        src: Path = typer.Argument(..., help="Keras model (.keras, .h5) or SavedModel directory."),
        output: Path = typer.Option(None, "--output", "-o",
                                    help="The .tflite to write (default: SRC with .tflite)."),
        quantize: Quantize = typer.Option("int8", "--quantize", "-q",
                                     help="int8 (full integer, int8 in/out; needs --calib), "
                                          "float16 or none."),
        calib: Path = typer.Option(None, "--calib", "-c",
                                   help="Calibration samples: .npy [N, ...input shape], .npz "
                                        "(one array per input name) or a directory of .npy."),
        limit: int = limit_option(None, "Use the first N calibration samples only (default 100)."),
        samples: int = hidden_alias("--samples", "-n"),
        board: str = board_option("Board id: also check the flash fit (see `nanoml boards`)."),
        runtime: str = RUNTIME_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Convert a trained model to a .tflite the board's TFLite Micro can run.

        Reports size before/after, ops and their support, and the quantization error
        on the calibration samples. Exit 0: written; 1: written but will not run on
        the board; 2: bad input; 4: TensorFlow missing or its converter failed/crashed.
        """
        with handle_errors(json_out):
            from ..model.convert import convert_model
            samples = either(limit, samples, 100)
            with show_progress(not json_out and not STATE.debug, "checking the inputs"):
                report = convert_model(src, output, quantize=value_of(quantize), calib=calib,
                                       samples=samples, runtime_id=runtime, board_id=board,
                                       debug=STATE.debug)
            if json_out:
                emit_json(to_json(report), "convert/1", report.exit_code)
            else:
                render(report)
            raise typer.Exit(report.exit_code)


def to_json(report) -> dict:
    """convert's document: `model` {path, bytes, sha256} is the written .tflite;
    `quantization_error` (also under its older name `error`) the measured cost."""
    d = report.to_json()
    d["model"] = model_ref(d["output"])
    d["quantization_error"] = d.get("error")
    return d


def _kb(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else f"{n / 1024:,.1f} KiB"


def render(report) -> None:
    from rich.table import Table
    c = console()
    d = report.to_json()
    before = f"{_kb(d['bytes_before'])}"
    if d["params"] is not None:
        before += f" ({d['params']:,} params, {_kb(d['float_param_bytes'])} as float32)"
    c.print(f"[bold]{esc(d['output'])}[/]  {_kb(d['bytes_after'])}  quantize {esc(d['quantize'])}"
            f"  (from {esc(d['source'])}: {before})", soft_wrap=True)
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            q = "" if t.get("scale") is None or t.get("per_channel") else \
                f" s={t['scale']:.3g} zp={t['zero_point']}"
            c.print(esc(f"  {kind[:-1]:6} {'x'.join(map(str, t['shape']))} {t['dtype']}{q}"))
    ops = Table(title=esc(f"Ops in runtime {d['runtime']}"), show_edge=False)
    ops.add_column("op", no_wrap=True, min_width=max((len(o["name"]) for o in d["ops"]), default=2))
    ops.add_column("v", justify="right", no_wrap=True)
    ops.add_column("count", justify="right", no_wrap=True)
    ops.add_column("supported", overflow="fold")
    for o in d["ops"]:
        ops.add_row(esc(o["name"]), str(o["version"]), str(o["count"]),
                    "yes" if o["supported"] else f"[red]no[/]: {esc(o['reason'])}")
    c.print(ops)
    e = d["error"]
    if e:
        c.print(f"quantization error vs the float model on {e['samples']} calibration samples "
                f"({esc(e['engine'])}): max abs {e['max_abs']:.4g}, RMSE {e['rmse']:.4g} "
                f"(outputs up to {e['output_max_abs']:.3g})")
    else:
        c.print("quantization error: not measured (pass --calib to measure it)")
    for p in d["problems"]:
        color = "red" if p["level"] == "error" else "yellow"
        c.print(f"[{color}]{esc(p['level'])}[/]: {esc(p['message'])}", soft_wrap=True)
