"""`nanoml validate`: the board's outputs against the reference host interpreter."""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from ._common import (BOARD_OPTION, FINITE, JSON_OPTION, SIM_OPTION, console, emit_json, esc,
                      handle_errors, latency_ms, layers_option, limit_option, model_ref,
                      port_option, show_progress, timeout_option, value_of)


class Reference(str, enum.Enum):
    """--reference: the interpreter the layers are compared with."""
    tflm = "tflm"
    tflite = "tflite"


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate_cmd(
        model: Path = typer.Argument(..., help="The .tflite model the board runs."),
        inputs: Path = typer.Option(None, "--inputs",
                                    help="Inputs: .npy (N, *input_shape), or .npz (one array "
                                         "per input; float data is quantized for int8 inputs), "
                                         "or a folder DIR/<label>/*.wav of labelled clips "
                                         "(through the model's audio pipeline: accuracy, "
                                         "confusion). Required, except with --layers "
                                         "(default there: the protocol's synthetic input)."),
        port: str = port_option(),
        sim: bool = SIM_OPTION,
        atol: float = typer.Option(None, "--atol", callback=FINITE,
                                   help="Largest allowed absolute output difference "
                                        "(default: one output quantization step; 1e-4 for float)."),
        min_top1: float = typer.Option(0.99, "--min-top1", callback=FINITE,
                                       help="Smallest allowed top-1 agreement (0..1)."),
        limit: int = limit_option(None, "Use the first N samples only."),
        labels: str = typer.Option(None, "--labels",
                                   help="With --inputs DIR: the model's labels, comma-separated "
                                        "(default: its pipeline's)."),
        min_accuracy: float = typer.Option(None, "--min-accuracy", callback=FINITE,
                                           help="With --inputs DIR: smallest allowed accuracy "
                                                "on the labelled clips (0..1; default: none)."),
        layers: bool = layers_option("Compare every operator's output (needs the layer-dump "
                                     "firmware, or --sim): the first layer beyond tolerance "
                                     "and its likely cause."),
        reference: Reference = typer.Option("tflm", "--reference",
                                            help="With --layers: the reference interpreter, "
                                                 "tflm (TFLM's host interpreter) or tflite "
                                                 "(TensorFlow Lite's)."),
        tolerance_lsb: int = typer.Option(None, "--tolerance-lsb",
                                          help="With --layers: largest allowed difference of a "
                                               "quantized tensor in output steps (default 1)."),
        tolerance_rel: float = typer.Option(None, "--tolerance-rel", callback=FINITE,
                                            help="With --layers: largest allowed difference of "
                                                 "a float tensor, relative to its largest "
                                                 "reference value (default 1e-4)."),
        report: Path = typer.Option(None, "--report",
                                    help="With --layers: also write a report, FILE.md or "
                                         "FILE.html."),
        board: str = BOARD_OPTION,
        timeout: float = timeout_option(30.0, "exit 1 when it passes"),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Run inputs on the board and compare with the host reference interpreter.

        With --layers: every operator's output, the first layer beyond tolerance and
        its likely cause. Exit 0 when within tolerance, 1 when not (or when the board
        fails)."""
        with handle_errors(json_out):
            from ..sim.deadline import Deadline
            deadline = Deadline(timeout)            # from the start: --timeout bounds it all
            from ..errors import InputError, UsageError
            from ..validate.run import check_args, validate
            if port and sim:
                raise UsageError("choose one of --port and --sim")
            check_args(atol, min_top1)
            if min_accuracy is not None and not 0.0 <= min_accuracy <= 1.0:
                raise UsageError(f"--min-accuracy must be between 0 and 1, got {min_accuracy}")
            if not model.exists():
                raise InputError(f"{model}: no such file", "pass the path of a .tflite model")
            reference = value_of(reference)
            if layers:
                if atol is not None:
                    raise UsageError("--atol goes without --layers",
                                     "with --layers: --tolerance-lsb N / --tolerance-rel R")
                _layers(model, inputs, port, sim, limit, board, reference, tolerance_lsb,
                        tolerance_rel, report, timeout, deadline, labels, min_accuracy, json_out)
            if report is not None or tolerance_lsb is not None or tolerance_rel is not None \
                    or reference != "tflm":
                raise UsageError("--report, --reference and --tolerance-* go with --layers")
            if inputs is None:
                raise UsageError("--inputs is required (without --layers)",
                                 "pass --inputs X.npy|X.npz|DIR, or compare layers: --layers")
            with show_progress(not json_out):
                res = validate(model, inputs, port=port, sim=sim, atol=atol, min_top1=min_top1,
                               limit=limit, board_id=board, frame_timeout=timeout,
                               deadline=deadline,
                               labels=[x.strip() for x in labels.split(",")] if labels else None,
                               min_accuracy=min_accuracy)
            if json_out:
                emit_json(_json(res, model), "validate/1", res.exit_code)
            else:
                _render(res)
            raise typer.Exit(res.exit_code)

    def _layers(model, inputs, port, sim, limit, board, reference, tolerance_lsb, tolerance_rel,
                report, timeout, deadline, labels, min_accuracy, json_out) -> None:
        from ..errors import UsageError
        from ..validate.layers_run import check_tolerance, validate_layers
        if min_accuracy is not None:
            raise UsageError("--min-accuracy does not go with --layers")
        tol = check_tolerance(tolerance_lsb, tolerance_rel)
        if report is not None:
            if report.suffix.lower() not in (".md", ".html", ".htm"):
                raise UsageError(f"--report {report}: unknown report type",
                                 "use FILE.md or FILE.html")
            from ..atomic import check_output_file
            check_output_file(report, "report")
        with show_progress(not json_out):
            res = validate_layers(model, inputs, port=port, sim=sim, limit=limit, board_id=board,
                                  reference=reference, tolerance=tol, frame_timeout=timeout,
                                  deadline=deadline,
                                  labels=[x.strip() for x in labels.split(",")] if labels
                                  else None)
        if report is not None:
            from ..validate.layers_report import write
            write(res, report)
        if json_out:
            doc = res.to_json()
            doc["model"] = model_ref(model)
            emit_json(doc, "validate-layers/1", res.exit_code)
        else:
            _render_layers(res, report)
        raise typer.Exit(res.exit_code)

    def _render_layers(res, report) -> None:
        from rich.table import Table
        from ..validate.layers_report import cells, local_cell, summary
        c = console()
        for k, v in summary(res):
            c.print(f"{k:<16} {esc(v)}", soft_wrap=True)
        t = Table(show_edge=False)
        for name in ("#", "op", "output", "dtype", "LSB", "real", "rel", "local", "input", ""):
            t.add_column(name, justify="right" if name in ("#", "LSB", "real", "rel", "local",
                                                           "input")
                         else "left", overflow="fold")
        for row in res.rows:
            lsb, real, rel, verdict = cells(row)
            first = res.first is not None and res.first.index == row.index
            t.add_row(str(row.index), esc(row.op), "x".join(map(str, row.shape)), row.dtype, lsb,
                      real, rel, local_cell(row), "-" if row.input is None else str(row.input),
                      esc(verdict + (" <- first divergent" if first else "")),
                      style="bold red" if first else None)
        c.print(t)
        for n in res.notes:
            c.print(f"note: {esc(n)}", soft_wrap=True)
        if report is not None:
            c.print(f"report written to {esc(report)}", soft_wrap=True)
        c.print("PASS: every layer within tolerance" if res.passed else
                "FAIL: a layer is beyond tolerance")

    def _json(res, model: Path) -> dict:
        doc = res.to_json()
        us = res.device_us
        doc["model"] = model_ref(model)
        doc["latency"] = (latency_ms(sum(us) / len(us), max=max(us), runs=len(us), scale=1e-3)
                          if us else None)
        return doc

    def _render(res) -> None:
        c = console()
        c.print(f"validated {len(res.samples)} input(s) on the "
                f"{'virtual board' if res.source == 'sim' else 'board'} against the host "
                f"reference interpreter")
        basis = ("the quantized outputs" if res.compared == "q"
                 else "the outputs' 6-digit text")
        c.print(f"max abs error  {res.max_abs_error:.6g}  (tolerance {res.atol:.6g}; "
                f"compared on {basis})")
        c.print(f"RMSE           {res.rmse:.6g}")
        c.print(f"top-1 agreement {100 * res.top1_agreement:.1f}%  "
                f"(at least {100 * res.min_top1:.1f}%)")
        if res.max_lsb is not None:
            c.print(f"worst quantized difference {res.max_lsb} LSB")
        if res.classes:
            _render_classes(c, res)
        for n in res.notes:
            c.print(f"note: {esc(n)}")
        c.print("PASS" if res.passed else "FAIL: outside the tolerances")

    def _render_classes(c, res) -> None:
        k = res.classes
        need = f" (at least {100 * res.min_accuracy:.1f}%)" if res.min_accuracy is not None else ""
        c.print(f"accuracy       {100 * k['accuracy']:.1f}%  ({k['correct']} of {k['clips']} "
                f"labelled clips){need}")
        width = max(len(x) for x in k["labels"])
        c.print("confusion (rows: true label, columns: predicted)")
        c.print(esc(" " * (width + 2) + " ".join(f"{x:>{max(5, len(x))}}" for x in k["labels"])))
        for name, row in zip(k["labels"], k["confusion"]):
            c.print(esc(f"{name:>{width}}  " + " ".join(
                f"{v:>{max(5, len(x))}}" for v, x in zip(row, k["labels"]))))
