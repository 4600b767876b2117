"""`nanoml profile --port` and `--sim`: run the profiling firmware (or the virtual
board in profiling mode), read its per-operator records back over the protocol,
and turn them into a ProfileResult.

Device flow: build the profiling variant of the firmware (nanoml.firmware, with
profile=True: TFLM's profiler hook around every operator, DWT CYCCNT and micros(),
on-device arena bisection, synthetic input), flash it, read `hello`, `arena`,
and `res` + `op` records for N inferences. `flash=False` skips build and flash
and reads a board that already runs the profiling firmware.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import NanomlError
from ..model.analysis import operator_macs
from ..model.tflite import Model, load
from ..sim.deadline import Deadline
from .record import record_arena
from .result import LayerProfile, Latency, ProfileResult
from .session import DeviceRun, collect

DEFAULT_TIMEOUT = 120.0


def assemble(model: Model, model_path: str, run: DeviceRun, board, runtime_id: str,
             source: str) -> ProfileResult:
    """Per-operator means over the runs, latency statistics from the res lines."""
    sg = model.main
    n = len(sg.operators)
    runs = run.inferences
    layers = []
    for i, op in enumerate(sg.operators):
        recs = [inf.ops[i] for inf in runs if i in inf.ops]
        cyc = sum(r.cycles for r in recs) / len(recs) if recs else 0.0
        us = sum(r.us for r in recs) / len(recs) if recs else 0.0
        # cycles are exact; micros() has 1 us resolution (and wraps the same way)
        ms = cyc / board.clock_hz * 1000.0 if cyc > 0 else us / 1000.0
        out = sg.tensors[op.outputs[0]] if op.outputs and op.outputs[0] >= 0 else None
        layers.append(LayerProfile(index=i, op=op.display_name,
                                   output_shape=list(out.shape) if out else [],
                                   macs=operator_macs(sg, op), cycles=cyc, ms=ms))
    samples = [inf.us / 1000.0 for inf in runs if inf.us is not None]
    res = ProfileResult(
        source=source, model=model_path, board=board.id, runtime=runtime_id,
        clock_hz=board.clock_hz, layers=layers, latency=Latency.from_samples(samples),
        arena_min_bytes=run.arena_min, arena_used_bytes=run.arena_used,
        total_cycles=sum(layer.cycles for layer in layers))
    names = {inf.ops[i].op for inf in runs for i in inf.ops if i < n}
    unknown = names - {op.display_name for op in sg.operators} - {"?"}
    if unknown:
        res.notes.append("the board reported operators this model does not have: "
                         + ", ".join(sorted(unknown)))
    if run.incomplete:
        res.notes.append(f"{run.incomplete} inference(s) with missing op records were dropped")
    if run.corrupt:
        res.notes.append(f"{run.corrupt} corrupt line(s) ignored")
    if run.restarts:
        res.notes.append(f"the board restarted {run.restarts} time(s) during the run")
    return res.finalize()


def default_project_dir(model_path: Path, cwd: Path | None = None) -> Path:
    """Where `nanoml build` puts the firmware for this model by default."""
    return (cwd or Path.cwd()) / f"{model_path.stem}-firmware"


def _record(res: ProfileResult, model: Model, project: Path | None, model_path: Path) -> None:
    """Into --project; else into the default `build` folder (device runs create it,
    sim runs only write into one that exists)."""
    if res.arena_min_bytes is None:
        return
    proj = project or default_project_dir(model_path)
    if project is None and res.source != "device" and not proj.is_dir():
        res.notes.append(f"arena not recorded: no project folder {proj} (use --project)")
        return
    p = record_arena(proj, model.sha256, res.runtime, res.board, res.arena_min_bytes,
                     res.arena_used_bytes, res.source)
    res.arena_recorded = str(p)


def _run_sim(model_path: Path, model: Model, board, runtime, runs: int, deadline,
             optimize: str | None = None):
    from .simboard import ProfilingVirtualBoard
    vb = ProfilingVirtualBoard(model_path, runtime.id, board.clock_hz, rate_hz=0,
                               board=board.id, count=runs + 1, deadline=deadline,
                               optimize=optimize)
    with vb:
        fd = os.open(vb.port, os.O_RDWR | os.O_NOCTTY)
        try:
            run = collect(vb.reader(fd), len(model.main.operators), runs,
                          timeout=deadline.left(DEFAULT_TIMEOUT), model_sha=model.sha256,
                          deadline=deadline)
        finally:
            os.close(fd)
    if vb.failure() is not None:
        raise vb.failure()
    return run


def _footprint_estimate(model_path: Path, board, runtime) -> tuple[int | None, int | None]:
    try:
        from ..model.inspect import inspect_model
        fp = inspect_model(str(model_path), board.id, runtime.id).footprint
        return fp.flash_bytes, fp.ram_bytes
    except Exception:  # noqa: BLE001 - the footprint is extra information here
        return None, None


def profile_on_board(model: Path, board, runtime, runs: int = 20, port: str | None = None,
                     sim: bool = False, project: Path | None = None, record: bool = True,
                     flash: bool = True, timeout: "float | Deadline" = DEFAULT_TIMEOUT,
                     on_stage=None, optimize: str | None = None) -> ProfileResult:
    """`timeout` bounds the whole sim run (start-up, arena probes, runs) and the
    device run's read. `optimize`: the optimization profile of the profiling firmware
    (None: build's default; with flash=False, the profile the board is assumed to run)."""
    deadline = Deadline.of(timeout)
    model_path = Path(model)
    m = load(model_path)
    stage = on_stage or (lambda s: None)
    if sim:
        stage("starting the virtual board (profiling mode)")
        run = _run_sim(model_path, m, board, runtime, runs, deadline, optimize)
        res = assemble(m, str(model_path), run, board, runtime.id, "sim")
        res.flash_bytes, res.ram_bytes = _footprint_estimate(model_path, board, runtime)
        res.notes.append("virtual board: operator cycles come from the latency model "
                         "(--estimate); the arena is the host interpreter's (64-bit build, "
                         "larger than the board's); flash/RAM are the inspect estimate")
    else:
        flash_bytes = ram_bytes = None
        if flash:
            stage("building and flashing the profiling firmware")
            flash_bytes, ram_bytes, port, optimize = _build_and_flash(model_path, board, runtime,
                                                                      port, optimize)
        if not port:
            from ..serial.ports import find_board_port
            port = find_board_port(board).device
        stage(f"timing {runs} inferences on the board ({port})")
        run = _read_device(port, m, runs, deadline.seconds or DEFAULT_TIMEOUT)
        res = assemble(m, str(model_path), run, board, runtime.id, "device")
        res.flash_bytes, res.ram_bytes = flash_bytes, ram_bytes
        if run.sim:
            res.source = "sim"
    instr = _cpi_note(res, m, runtime.id, board, optimize or "size")
    if record:
        _record(res, m, project, model_path)
        if instr:
            _record_cpi(res, m, project, model_path, optimize or "size", instr)
    return res


def _cpi_note(res: ProfileResult, model: Model, runtime_id: str, board,
              optimize: str) -> int | None:
    """Measured cycles over the latency model's instructions for the same build: the
    CPI the estimate should use (device runs; the sim's cycles come from the model
    itself). The estimated instructions, when every operator has a figure."""
    if res.source != "device" or not res.total_cycles:
        return None
    try:
        from .estimate import estimate_layers
        layers, instr, prior, _ = estimate_layers(model, runtime_id, board.clock_hz,
                                                  optimize=optimize, per_kernel_abi=True)
    except Exception:  # noqa: BLE001 - a note, not a result
        return None
    if any(not layer.estimated for layer in layers):   # instr is then a lower bound
        res.notes.append("no CPI figure: the latency model has no measured coefficients "
                         "for some of these operators (see `profile --estimate`)")
        return None
    if instr <= 0:
        return None
    res.notes.append(f"measured cycles / estimated instructions = "
                     f"{res.total_cycles / instr:.3f} ({optimize} build; the estimate assumes "
                     f"CPI {prior:g}; recorded for `profile --estimate` unless --no-record)")
    return instr


def _record_cpi(res: ProfileResult, model: Model, project: Path | None, model_path: Path,
                optimize: str, instr: int) -> None:
    from .cpi import record_cpi
    proj = project or default_project_dir(model_path)
    p = record_cpi(proj, model.sha256, res.runtime, res.board, optimize, res.total_cycles, instr)
    res.notes.append(f"CPI recorded in {p}")


def _read_device(port: str, model: Model, runs: int, timeout: float) -> DeviceRun:
    from ..serial.ports import open_port
    ser = open_port(port)
    try:
        return collect(ser, len(model.main.operators), runs, timeout=timeout,
                       model_sha=model.sha256)
    finally:
        ser.close()


def _build_and_flash(model_path: Path, board, runtime, port: str | None,
                     optimize: str | None = None):
    """(flash bytes, RAM bytes, port, optimization profile built) after building and
    uploading the profiling firmware."""
    from .. import progress
    from ..firmware.build import BuildOptions
    from ..firmware.upload import FlashOptions, flash
    out = Path.cwd() / f"{model_path.stem}-profile"
    bopts = BuildOptions(model=model_path, board=board.id, runtime=runtime.id,
                         input="synthetic", out=out, profile=True, optimize=optimize)
    res = flash(FlashOptions(target=model_path, port=port, board=board.id, build=bopts),
                on_line=progress.line, on_stage=progress.report)
    if not res.ok:
        adv = res.advice
        raise NanomlError("building or flashing the profiling firmware failed"
                          + (f": {adv.message}" if adv and getattr(adv, "message", None) else ""),
                          hint=getattr(adv, "hint", None) or "run `nanoml flash` to see the full log",
                          exit_code=res.exit_code)
    usage = res.build.usage if res.build else {}
    fl, ram = usage.get("Flash"), usage.get("RAM")
    plan = res.generated.spec.optimize if res.generated is not None else None
    return (fl.used if fl else None, ram.used if ram else None, res.plan.port.device,
            plan.profile if plan is not None else optimize)

