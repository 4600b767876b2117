"""`nanoml profile`: per-operator latency and the real arena, on the board, on the
virtual board, or estimated without one."""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from ._common import (BOARD_OPTION, FINITE, JSON_OPTION, RUNTIME_OPTION, SIM_OPTION,
                      OptimizeProfile, console, count_option, either, emit_json, esc,
                      handle_errors, hidden_alias, latency_ms, model_ref, optimize_option,
                      port_option, show_progress, timeout_option, value_of)


class FloatAbi(str, enum.Enum):
    """--float-abi of an estimate (nanoml/profile/costmodel.py SOFTFP, SOFT)."""
    softfp = "softfp"
    soft = "soft"


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile_cmd(
        model: Path = typer.Argument(..., help="The .tflite model."),
        port: str = port_option("Serial port of the board (device run; default: the board "
                                "found by its USB id)."),
        sim: bool = SIM_OPTION,
        estimate: bool = typer.Option(False, "--estimate",
                                      help="No board: cost model for latency, predictor for arena."),
        count: int = count_option(None, "Inferences to time (device, sim; default 20, at most "
                                        "10000)."),
        runs: int = hidden_alias("--runs"),
        board: str = BOARD_OPTION,
        runtime: str = RUNTIME_OPTION,
        cpi: float = typer.Option(None, "--cpi", min=0.1, max=20.0, callback=FINITE,
                                  help="Cycles per instruction for --estimate (default: the "
                                       "CPI a board run recorded in --project, else the "
                                       "latency table's; docs/profile.md)."),
        optimize: OptimizeProfile = optimize_option("The optimization profile of the build "
                                                    "estimated or profiled (speed|size; "
                                                    "default: build's default)."),
        float_abi: FloatAbi = typer.Option(None, "--float-abi",
                                           help="--estimate: describe a build whose float "
                                                "ABI is this for every file (soft: e.g. your "
                                                "own PlatformIO project; default: as nanoml "
                                                "builds it)."),
        project: Path = typer.Option(None, "--project",
                                     help="Project dir to record the measured arena in "
                                          "(default: ./<model>-firmware, the folder "
                                          "`nanoml build` uses)."),
        no_record: bool = typer.Option(False, "--no-record",
                                       help="Do not record the measured arena for `build`."),
        no_flash: bool = typer.Option(False, "--no-flash",
                                      help="The board already runs the profiling firmware: "
                                           "do not build and flash it."),
        timeout: float = timeout_option(120.0, "device, sim"),
        report: Path = typer.Option(None, "--report",
                                    help="Also write a report: FILE.md (text bars) or FILE.html."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Time every operator and find the smallest working arena."""
        with handle_errors(json_out):
            from ..sim.deadline import Deadline
            deadline = Deadline(timeout)            # --timeout counts from here
            from ..errors import UsageError
            runs = either(count, runs, 20)
            if runs > 10000:
                raise UsageError(f"--count {runs}: at most 10000 inferences",
                                 "time fewer inferences (the default is 20)")
            modes = sum([bool(port), sim, estimate])
            if modes > 1:
                raise UsageError("choose one of --port, --sim and --estimate",
                                 "--estimate needs no board; --sim uses the virtual board")
            if report is not None and report.suffix.lower() not in (".md", ".html", ".htm"):
                raise UsageError(f"--report {report}: unknown report type",
                                 "name the file .md (Markdown) or .html (HTML)")
            if report is not None:
                from ..atomic import check_output_file
                check_output_file(report, "report")   # before the run, not after it
            from ..boards import get_board
            from ..runtimes import get_runtime
            b = get_board(board)
            rt = get_runtime(runtime)
            if not model.exists():
                from ..errors import InputError
                raise InputError(f"{model}: no such file", "pass the path of a .tflite model")
            if float_abi is not None and not estimate:
                raise UsageError("--float-abi describes an estimate",
                                 "add --estimate (a board run measures the build it flashes)")
            if estimate:
                from ..profile.estimate import estimate as run_estimate
                result = run_estimate(model, rt.id, b, cpi=cpi, static_memory=rt.static_memory,
                                      optimize=value_of(optimize), float_abi=value_of(float_abi),
                                      project=project)
            else:
                from ..profile.run import profile_on_board
                with show_progress(not json_out) as p:      # build, flash, read (stderr)
                    result = profile_on_board(model, board=b, runtime=rt, runs=runs,
                                              port=port, sim=sim, project=project,
                                              record=not no_record, flash=not no_flash,
                                              timeout=deadline, on_stage=p.step,
                                              optimize=value_of(optimize))
            if report is not None:
                from ..profile.report import write
                write(result, report)
            if json_out:
                emit_json(to_json(result, model, b), "profile/2", result.exit_code)
            else:
                _render(result, report)
            if result.exit_code:
                raise typer.Exit(result.exit_code)

    def _render(result, report) -> None:
        from rich.table import Table
        from ..profile.report import _summary, timing_cells
        c = console()
        t = Table(title=f"profile ({esc(result.source)})")
        # index and op name are never cut (no_wrap, their full width); shapes fold
        t.add_column("#", justify="right", no_wrap=True)
        t.add_column("op", no_wrap=True, min_width=max((len(x.op) for x in result.layers), default=2))
        t.add_column("output", overflow="fold")
        for col in ("MACs", "cycles", "ms", "%", "cyc/MAC"):
            # an estimate's op with no figure says "not measured" / "out of range" there
            wide = col == "cycles" and result.missing
            t.add_column(col, justify="right", overflow="fold", min_width=12 if wide else None)
        for layer in result.layers:
            cpm = layer.cycles_per_mac
            t.add_row(str(layer.index), esc(layer.op), "x".join(map(str, layer.output_shape)),
                      f"{layer.macs:,}", *timing_cells(layer),
                      "-" if cpm is None else f"{cpm:.2f}")
        c.print(t)
        for k, v in _summary(result):
            c.print(esc(f"{k}: {v}"))
        if result.source == "estimate":
            from .inspect import optimization_lines
            for line in optimization_lines({"optimizations": result.optimizations}):
                c.print(line, soft_wrap=True)
            for p in result.verdict.problems if result.verdict is not None else []:
                if p.level == "warning":
                    c.print(f"[yellow]warning:[/] {esc(p.message)}", soft_wrap=True)
        for layer in result.missing:
            c.print(esc(f"not estimated: {layer.index} {layer.op} ({layer.dtype}): {layer.reason}"))
        for n in result.notes:
            c.print(esc(f"note: {n}"))
        err = console(stderr=True)
        for message in result.errors:
            err.print(esc(f"error: {message}"))
        if report is not None:
            c.print(f"report written to {esc(report)}", soft_wrap=True)


def to_json(result, model: Path, board) -> dict:
    """profile's document, with the shapes every command shares: `model` {path, bytes,
    sha256}, `macs`, `latency` {ms, ...}, `limits` {flash_bytes, ram_bytes}."""
    d = result.to_json()
    lat = d.get("latency_ms") or {}
    d["model"] = model_ref(model)
    d["macs"] = d.get("total_macs")
    d["latency"] = latency_ms(lat.get("mean", lat.get("estimate")), p50=lat.get("p50"),
                              p99=lat.get("p99"), runs=lat.get("runs"))
    d["limits"] = {"flash_bytes": board.flash_bytes, "ram_bytes": board.ram_bytes}
    return d
