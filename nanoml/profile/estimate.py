"""`nanoml profile --estimate`: no board. Latency from the per-operator cost model;
arena, footprint and "can it run" from nanoml.model.verdict. Every figure is finite:
an operator the cost model cannot estimate (kernel or dtypes never measured, shapes
beyond a 32-bit runtime) has no figure, the totals are then lower bounds and the
exit code says so (EXIT_INCOMPLETE)."""

from __future__ import annotations

from pathlib import Path

from ..model.analysis import operator_macs
from ..model.tflite import Model, load
from .costmodel import SIZE, SOFT, SPEED, load_cost_model
from .kernels import operator_work
from .result import LayerProfile, Latency, ProfileResult


# Limits of a 32-bit runtime: TFLM counts a tensor's elements in an int and its
# bytes in a 32-bit size_t, so an op with a larger tensor cannot run anywhere.
MAX_TENSOR_ELEMENTS = 2 ** 31 - 1
MAX_TENSOR_BYTES = 2 ** 32 - 1
# Beyond this the figure would be an extrapolation far past every measured op
# (the largest measured operators retire ~1e9 instructions): 2^40 instructions is
# about 4.8 hours at 64 MHz. Such an op gets no figure.
MAX_OP_INSTRUCTIONS = 2 ** 40

UNMEASURED = "unmeasured"          # LayerProfile.basis: no measured coefficients
OUT_OF_RANGE = "out_of_range"      # LayerProfile.basis: shapes beyond what can run


def _too_large(sg, op) -> str | None:
    """Why an op's tensors are beyond a 32-bit runtime, or None."""
    for i in list(op.inputs) + list(op.outputs):
        if 0 <= i < len(sg.tensors):
            t = sg.tensors[i]
            if t.elements > MAX_TENSOR_ELEMENTS or t.nbytes > MAX_TENSOR_BYTES:
                return (f"tensor {i} ({'x'.join(map(str, t.shape))} {t.dtype}) is beyond a "
                        "32-bit runtime's limits")
    return None


def _op_estimate(cm, sg, op, work) -> tuple[int | None, str, str | None]:
    """(instructions or None, basis, reason when None)."""
    big = _too_large(sg, op)
    if big:
        return None, OUT_OF_RANGE, big
    if not cm.is_measured(work):
        why = f"kernel {work.path} with {work.dtype} never measured on {cm.id}"
        return None, UNMEASURED, why + (f" ({work.note})" if work.note else "")
    try:
        instr = cm.op_instructions(work)
    except OverflowError:
        instr = None
    if instr is None or instr > MAX_OP_INSTRUCTIONS:
        return None, OUT_OF_RANGE, (f"more than {MAX_OP_INSTRUCTIONS:,} instructions: far beyond "
                                    "every measured operator")
    return instr, "model", None


def estimate_layers(model: Model, runtime_id: str, clock_hz: int, cpi: float | None = None,
                    optimize: str | None = None, float_abi: str | None = None):
    """([LayerProfile], total instructions, cpi, notes) for the main subgraph, for the
    build of `optimize` (None: size) and `float_abi` (None: the FPU).

    Ops with no figure (basis "unmeasured" or "out_of_range": instructions None,
    cycles 0) add nothing to the total, which is then a lower bound."""
    cm = load_cost_model(runtime_id, optimize, float_abi)
    cpi = cm.cpi if cpi is None else cpi
    sg = model.main
    layers, per_op, notes = [], [], []
    for op in sg.operators:
        work = operator_work(sg, op)
        instr, basis, reason = _op_estimate(cm, sg, op, work)
        if instr is not None:
            per_op.append(instr)
        cycles = instr * cpi if instr is not None else 0.0
        out = sg.tensors[op.outputs[0]] if op.outputs and 0 <= op.outputs[0] < len(sg.tensors) \
            else None
        layers.append(LayerProfile(
            index=op.index, op=op.display_name, output_shape=list(out.shape) if out else [],
            macs=operator_macs(sg, op), instructions=instr, cycles=cycles,
            ms=cycles / clock_hz * 1000.0, kernel=work.path, basis=basis, dtype=work.dtype,
            reason=reason))
    total = cm.total_instructions(per_op, len(sg.operators))
    missing = [layer for layer in layers if not layer.estimated]
    if missing:
        notes.append(f"{len(missing)} of {len(layers)} operators have no figure (see the "
                     "table): the totals are lower bounds")
    if cm.id != runtime_id:
        notes.append(f"latency model of {cm.id} used for {runtime_id} (same CMSIS-NN kernels)")
    notes.extend(cm.notes)
    if len(model.subgraphs) > 1:
        notes.append("only the main subgraph is estimated (control-flow subgraphs are not)")
    return layers, total, cpi, notes


EXIT_INCOMPLETE = 5    # the estimate misses operators (docs/profile.md)


def estimate(model_path: str | Path, runtime_id: str, board, cpi: float | None = None,
             static_memory: bool = True, optimize: str | None = None,
             float_abi: str | None = None, project: Path | None = None) -> ProfileResult:
    """The estimate of `model_path` on `board` for the build of `optimize` (None: the
    default profile, nanoml.firmware.optimize) and `float_abi` (None: nanoml's FPU
    build; "soft": a -mfloat-abi=soft build); arena, footprint and the verdict come
    from nanoml.model.verdict.assess (the runtime profile says whether its library is
    built with static memory, so `static_memory` is no longer needed). `project`: where
    a board run recorded its CPI (default: the folder `build` uses)."""
    model = load(model_path)
    res = ProfileResult(source="estimate", model=str(model_path), board=board.id,
                        runtime=runtime_id, clock_hz=board.clock_hz, layers=[],
                        latency=Latency.estimated(0.0, False))
    arena_bytes = _assess(res, model, board, runtime_id, optimize)
    chosen, why = choose_optimize(optimize, model, board, runtime_id, arena_bytes)
    cm = load_cost_model(runtime_id, chosen, float_abi)
    cpi, cpi_source = _cpi(cpi, cm, model, board, runtime_id, chosen, model_path, project)
    layers, total, cpi, notes = estimate_layers(model, runtime_id, board.clock_hz, cpi,
                                                chosen, float_abi)
    cycles = total * cpi
    res.layers, res.instructions, res.cpi, res.total_cycles = layers, total, cpi, cycles
    res.latency = Latency.estimated(cycles / board.clock_hz * 1000.0,
                                    lower_bound=any(not x.estimated for x in layers))
    res.notes[:0] = notes
    res.build = {**cm.build(), "cpi": cpi, "cpi_source": cpi_source, "choice": why}
    res.optimizations = optimization_rows(model, board, runtime_id, arena_bytes, cpi)
    if optimize is None and arena_bytes is not None:
        # the default chose speed only if it fits: the size verdict holds, the flash is speed's
        res.flash_bytes = next(r["flash_bytes"] for r in res.optimizations if r["optimize"] == chosen)
    _soft_float(res, model, runtime_id, board.clock_hz, float_abi)
    _pipeline_budget(res, model, total, cpi, board.clock_hz)
    res.exit_code = estimate_exit_code(res)
    return res.finalize()


def choose_optimize(requested: str | None, model: Model, board, runtime_id: str,
                    arena_bytes: int | None, input_kind: str = "serial",
                    profile: bool = False) -> tuple[str, str]:
    """(optimization profile, why): the one asked for, else build's default
    (nanoml.firmware.optimize: speed when the firmware still fits, else size)."""
    if requested:
        return requested, "--optimize"
    try:
        from ..firmware.optimize import default_profile
    except ImportError:
        return SIZE, "default"
    from ..runtimes import get_runtime
    return default_profile(model, board, get_runtime(runtime_id), arena_bytes,
                           input_kind=input_kind, profile=profile)


def _cpi(cli_cpi, cm, model: Model, board, runtime_id: str, optimize: str, model_path,
         project: Path | None) -> tuple[float, str]:
    """--cpi, else the CPI a board run recorded in the project, else the table's."""
    from .cpi import CPI_FILE, choose_cpi, read_recorded_cpi
    from .run import default_project_dir
    proj = Path(project) if project is not None else default_project_dir(Path(model_path))
    rec = None if cli_cpi is not None else read_recorded_cpi(proj, model.sha256, runtime_id,
                                                             board.id, optimize)
    return choose_cpi(cli_cpi, rec, cm.cpi, cm.cpi_source, proj / CPI_FILE)


def optimization_rows(model: Model, board, runtime_id: str, arena_bytes: int | None,
                      cpi: float | None = None, input_kind: str = "serial",
                      profile: bool = False) -> list[dict]:
    """The optimization profiles side by side: instructions, ms (at `cpi`, else each
    table's), flash and whether it fits, for each profile (FPU builds)."""
    from ..footprint import estimate as footprint
    from ..runtimes import get_runtime
    rt = get_runtime(runtime_id)
    rows = []
    for opt in (SPEED, SIZE):
        cm = load_cost_model(runtime_id, opt)
        layers, total, c, _ = estimate_layers(model, runtime_id, board.clock_hz, cpi, opt)
        fp = footprint(board, rt, model, arena_bytes, input_kind, profile, opt) \
            if arena_bytes is not None else None
        rows.append({"optimize": opt, "measured": cm.optimize == opt, "flags": list(cm.flags),
                     "instructions": total, "ms": round(total * c / board.clock_hz * 1000.0, 4),
                     "lower_bound": any(not x.estimated for x in layers),
                     "flash_bytes": fp.flash_bytes if fp else None,
                     "fits": (fp.fits_flash and fp.fits_ram) if fp else None})
    return rows


def _soft_float(res: ProfileResult, model: Model, runtime_id: str, clock_hz: int,
                float_abi: str | None) -> None:
    """The float share and, for a float-heavy model on an FPU build, the warning."""
    from .softfloat import soft_float, warning
    res.float_info = soft_float(model, res.layers, res.instructions, runtime_id, clock_hz)
    text = warning(res.float_info) if float_abi != SOFT else None
    if text and res.verdict is not None:
        from ..model.verdict import Problem
        res.verdict.problems.append(Problem("warning", "soft_float", text))


def _pipeline_budget(res: ProfileResult, model: Model, total: int, cpi: float,
                     clock_hz: int) -> None:
    """The stored audio pipeline's front end per stride + one inference vs the stride."""
    from ..errors import NanomlError
    from ..pipeline.budget import audio_budget
    from ..pipeline.store import read_pipeline
    try:
        pipe = read_pipeline(model)
    except NanomlError as e:
        res.notes.append(f"pipeline not read: {e.message}")
        return
    lower = any(not x.estimated for x in res.layers)
    res.pipeline = audio_budget(pipe, None if lower else total, clock_hz, cpi)
    b = res.pipeline
    if b and b["keeps_up"] is False:
        res.notes.append(f"the board cannot keep up: {b['frontend_ms']:.1f} ms of features + "
                         f"{b['inference_ms']:.1f} ms of inference per {b['stride_ms']} ms "
                         f"stride at {clock_hz / 1e6:g} MHz; use a longer stride (`nanoml pipeline --stride-ms`) "
                         "or a smaller model")


def estimate_exit_code(res: ProfileResult) -> int:
    """The verdict's exit code (1) when the model cannot run on the board, else
    EXIT_INCOMPLETE when some operator has no figure, else 0."""
    if res.verdict is not None and not res.verdict.can_run:
        return res.verdict.exit_code
    return EXIT_INCOMPLETE if res.incomplete else 0


def _assess(res: ProfileResult, model: Model, board, runtime_id: str,
            optimize: str | None = None) -> int | None:
    """Arena, footprint and the verdict (can it run: ops, hybrid ops, dtypes, fit,
    TFLM's own check) into `res`; the firmware's arena (None when not known)."""
    from ..model.verdict import assess
    from ..runtimes import get_runtime
    try:
        a = assess(model, board, get_runtime(runtime_id), optimize=optimize)
    except Exception as e:  # noqa: BLE001 - the latency estimate stays useful without it
        res.notes.append(f"arena, footprint and whether the model runs are not known "
                         f"({type(e).__name__}: {e})")
        return None
    res.verdict = a.verdict
    res.arena_min_bytes = int(a.arena["min_bytes"])
    res.arena_used_bytes = int(a.arena["used_bytes"])
    res.flash_bytes, res.ram_bytes = a.footprint.flash_bytes, a.footprint.ram_bytes
    res.notes.append("flash/RAM: inspect's footprint estimate (no build)")
    return a.arena_bytes
