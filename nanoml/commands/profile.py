"""`nanoml profile`: per-operator latency and the real arena, on the board, on the
virtual board, or estimated without one."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import BOARD_OPTION, JSON_OPTION, RUNTIME_OPTION, console, emit_json, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile_cmd(
        model: Path = typer.Argument(..., help="The .tflite model."),
        port: str = typer.Option(None, "--port", help="Serial port of the board (device run)."),
        sim: bool = typer.Option(False, "--sim", help="Run on the virtual board instead."),
        estimate: bool = typer.Option(False, "--estimate",
                                      help="No board: cost model for latency, predictor for arena."),
        runs: int = typer.Option(20, "--runs", min=1, max=10000, help="Inferences to time."),
        board: str = BOARD_OPTION,
        runtime: str = RUNTIME_OPTION,
        cpi: float = typer.Option(None, "--cpi", min=0.1, max=20.0,
                                  help="Cycles per instruction for --estimate (default 1.25)."),
        project: Path = typer.Option(None, "--project",
                                     help="Project dir to record the measured arena in "
                                          "(default: the model's directory)."),
        no_record: bool = typer.Option(False, "--no-record",
                                       help="Do not record the measured arena for `build`."),
        no_flash: bool = typer.Option(False, "--no-flash",
                                      help="The board already runs the profiling firmware: "
                                           "do not build and flash it."),
        timeout: float = typer.Option(120.0, "--timeout", min=1.0,
                                      help="Seconds to wait for the runs (device, sim)."),
        report: Path = typer.Option(None, "--report",
                                    help="Also write a report: FILE.md (text bars) or FILE.html."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Time every operator and find the smallest working arena."""
        with handle_errors(json_out):
            from ..errors import UsageError
            modes = sum([bool(port), sim, estimate])
            if modes > 1:
                raise UsageError("choose one of --port, --sim and --estimate",
                                 "--estimate needs no board; --sim uses the virtual board")
            if report is not None and report.suffix.lower() not in (".md", ".html", ".htm"):
                raise UsageError(f"--report {report}: unknown report type",
                                 "name the file .md (Markdown) or .html (HTML)")
            from ..boards import get_board
            from ..runtimes import get_runtime
            b = get_board(board)
            rt = get_runtime(runtime)
            if not model.exists():
                from ..errors import InputError
                raise InputError(f"{model}: no such file", "pass the path of a .tflite model")
            if estimate:
                from ..profile.estimate import estimate as run_estimate
                result = run_estimate(model, rt.id, b, cpi=cpi, static_memory=rt.static_memory)
            else:
                from ..profile.run import profile_on_board
                result = profile_on_board(model, board=b, runtime=rt, runs=runs,
                                          port=port, sim=sim, project=project,
                                          record=not no_record, flash=not no_flash,
                                          timeout=timeout)
            if report is not None:
                from ..profile.report import render
                report.write_text(render(result, str(report)))
            if json_out:
                emit_json(result.to_json())
            else:
                _render(result, report)

    def _render(result, report) -> None:
        from rich.table import Table
        from ..profile.report import _summary
        c = console()
        t = Table(title=f"profile ({result.source})")
        for col in ("#", "op", "output", "MACs", "cycles", "ms", "%", "cyc/MAC"):
            t.add_column(col, justify="right" if col not in ("op", "output") else "left")
        for layer in result.layers:
            cpm = layer.cycles_per_mac
            t.add_row(str(layer.index), layer.op, "x".join(map(str, layer.output_shape)),
                      f"{layer.macs:,}", f"{layer.cycles:,.0f}", f"{layer.ms:.3f}",
                      f"{100 * layer.share:.1f}", "-" if cpm is None else f"{cpm:.2f}")
        c.print(t)
        for k, v in _summary(result):
            c.print(f"{k}: {v}")
        for n in result.notes:
            c.print(f"note: {n}")
        if report is not None:
            c.print(f"report written to {report}")
