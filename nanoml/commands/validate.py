"""`nanoml validate`: the board's outputs against the reference host interpreter."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (BOARD_OPTION, FINITE, JSON_OPTION, SIM_OPTION, console, emit_json, esc,
                      handle_errors, latency_ms, limit_option, model_ref, port_option,
                      show_progress, timeout_option)


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate_cmd(
        model: Path = typer.Argument(..., help="The .tflite model the board runs."),
        inputs: Path = typer.Option(..., "--inputs",
                                    help="Inputs: .npy (N, *input_shape), or .npz (one array "
                                         "per input; float data is quantized for int8 inputs), "
                                         "or a folder DIR/<label>/*.wav of labelled clips "
                                         "(through the model's audio pipeline: accuracy, "
                                         "confusion)."),
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
        board: str = BOARD_OPTION,
        timeout: float = timeout_option(30.0, "exit 1 when it passes"),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Run inputs on the board and compare with the host reference interpreter.

        Exit 0 when within tolerance, 1 when not (or when the board fails)."""
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
