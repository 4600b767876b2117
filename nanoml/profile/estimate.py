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
        build = f"{cm.id}'s soft-float build" if cm.float_abi == "soft" else cm.id
        why = f"kernel {work.path} with {work.dtype} never measured on {build}"
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
                    optimize: str | None = None, float_abi: str | None = None,
                    per_kernel_abi: bool = False):
    """([LayerProfile], total instructions, cpi, notes) for the main subgraph, for the
    build of `optimize` (None: size) and `float_abi` (None: the FPU). `per_kernel_abi`:
    as nanoml's generated project builds it, each kernel with the float ABI measured
    best for it (nanoml.firmware.optimize): a kernel built soft gets the soft-float
    table of the profile when there is one.

    Ops with no figure (basis "unmeasured" or "out_of_range": instructions None,
    cycles 0) add nothing to the total, which is then a lower bound."""
    cm = load_cost_model(runtime_id, optimize, float_abi)
    soft = _kernel_tables(model, runtime_id, cm, optimize) \
        if per_kernel_abi and float_abi is None else {}
    cpi = cm.cpi if cpi is None else cpi
    sg = model.main
    layers, per_op, notes = [], [], []
    for op in sg.operators:
        work = operator_work(sg, op)
        instr, basis, reason = _op_estimate(soft.get(op.index, cm), sg, op, work)
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
    sets = sorted({t.optimize for t in soft.values() if t.optimize not in (SIZE, SPEED)})
    if sets:
        notes.append(f"speed build: {sum(1 for t in soft.values() if t.optimize in sets)} "
                     f"operators from the {'/'.join(sets)} tables (the whole library measured "
                     "with that flag set), the rest from the size build's")
    else:
        notes.extend(cm.notes)
    if len(model.subgraphs) > 1:
        notes.append("only the main subgraph is estimated (control-flow subgraphs are not)")
    return layers, total, cpi, notes


def _kernel_tables(model: Model, runtime_id: str, cm, profile: str | None) -> dict:
    """{operator index: the table of the build its kernel gets in nanoml's project},
    where that is not `cm`: a speed build without a table of its own gives each kernel
    its chosen flag set's table (`<runtime>.<flag set>.json`, when measured); a kernel
    built -mfloat-abi=soft takes the profile's soft-float table (when measured)."""
    from ..firmware import optimize
    from .costmodel import has_cost_model, load_flag_set_model
    table = optimize.load_table(cm.id)
    soft = load_cost_model(runtime_id, cm.optimize, SOFT) \
        if has_cost_model(cm.id, cm.optimize, SOFT) else None
    by_flags = profile == SPEED and cm.optimize == SIZE and table is not None
    sg = model.main
    out = {}
    for op in sg.operators:
        name, dtype = optimize.op_use(sg, op)
        entry = table.ops.get(name) if by_flags else None
        fs = load_flag_set_model(cm.id, entry.speed) if entry is not None else None
        if fs is not None:
            out[op.index] = fs
        elif soft is not None and optimize.op_float_abi(table, name, dtype) == SOFT \
                and soft.is_measured(operator_work(sg, op)):
            out[op.index] = soft     # (a path the soft table lacks keeps the FPU table)
    return out


EXIT_INCOMPLETE = 5    # the estimate misses operators (docs/profile.md)


def estimate(model_path: str | Path, runtime_id: str, board, cpi: float | None = None,
             static_memory: bool = True, optimize: str | None = None,
             float_abi: str | None = None, project: Path | None = None) -> ProfileResult:
    """The estimate of `model_path` on `board` for the build of `optimize` (None: build's
    default, nanoml.footprint.for_profile) and `float_abi` (None: as nanoml's project
    builds it, each kernel with its measured best ABI; "soft": a -mfloat-abi=soft build,
    e.g. a user's own PlatformIO project); arena, footprint and the verdict come from
    nanoml.model.verdict.assess (the runtime profile says whether its library is built
    with static memory, so `static_memory` is no longer needed). `project`: where a board
    run recorded its CPI (default: the folder `build` uses)."""
    model = load(model_path)
    if float_abi == SOFT and optimize is None:
        optimize = SIZE      # a soft-float build is PlatformIO's own: the core's -Os
    res = ProfileResult(source="estimate", model=str(model_path), board=board.id,
                        runtime=runtime_id, clock_hz=board.clock_hz, layers=[],
                        latency=Latency.estimated(0.0, False))
    plan, fps = _assess(res, model, board, runtime_id, optimize)
    chosen = plan.profile if plan is not None else (optimize or SIZE)
    cm = load_cost_model(runtime_id, chosen, float_abi)
    cpi, cpi_source = _cpi(cpi, cm, model, board, runtime_id, chosen, model_path, project)
    layers, total, cpi, notes = estimate_layers(model, runtime_id, board.clock_hz, cpi,
                                                chosen, float_abi, per_kernel_abi=True)
    cycles = total * cpi
    res.layers, res.instructions, res.cpi, res.total_cycles = layers, total, cpi, cycles
    res.latency = Latency.estimated(cycles / board.clock_hz * 1000.0,
                                    lower_bound=any(not x.estimated for x in layers))
    res.notes[:0] = notes + (plan.notes if plan is not None else [])
    res.build = build_description(cm, plan, float_abi, cpi, cpi_source)
    res.optimizations = optimization_rows(model, board, runtime_id, fps, cpi)
    _soft_float(res, model, runtime_id, board.clock_hz, float_abi)
    _pipeline_budget(res, model, total, cpi, board.clock_hz)
    res.exit_code = estimate_exit_code(res)
    return res.finalize()


def build_description(cm, plan, float_abi: str | None, cpi: float, cpi_source: str) -> dict:
    """The estimate's `build`: the profile, its flags and float ABI, the runtime, the
    latency tables used, the CPI and where it comes from, and how the profile was chosen."""
    d = {**cm.build(), "cpi": cpi, "cpi_source": cpi_source,
         "chosen_by": plan.chosen_by if plan is not None else "option"}
    if plan is not None:
        # the build's own profile and flags (the table may be another build's: `coefficients`)
        from ..firmware.optimize import split_flags
        opts = {f for flags in plan.files.values() for f in split_flags(flags)[0]}
        d["optimize"] = plan.profile
        d["flags"] = list(plan.base_flags) + sorted(opts - set(plan.base_flags))
        if float_abi is None:
            d["float_abi"] = plan.float_abi     # the build's (kernels may have their own)
    return d


def latency_summary(model: Model, board, runtime_id: str, plan, footprints: dict) -> dict:
    """What `inspect` reports of the latency model: the estimate of the profile `plan`
    chose (`estimate`: instructions, ms, lower_bound, build), the profiles side by side
    (`optimizations`) and the float share (`float`), at the tables' CPI."""
    from .softfloat import soft_float
    chosen = plan.profile if plan is not None else SIZE
    cm = load_cost_model(runtime_id, chosen)
    layers, total, cpi, _ = estimate_layers(model, runtime_id, board.clock_hz, None, chosen,
                                            per_kernel_abi=True)
    return {"estimate": {"instructions": total,
                         "ms": round(total * cpi / board.clock_hz * 1000.0, 4),
                         "lower_bound": any(not x.estimated for x in layers),
                         "build": build_description(cm, plan, None, cpi, cm.cpi_source)},
            "optimizations": optimization_rows(model, board, runtime_id, footprints),
            "float": soft_float(model, layers, total, runtime_id, board.clock_hz)}


def _cpi(cli_cpi, cm, model: Model, board, runtime_id: str, optimize: str, model_path,
         project: Path | None) -> tuple[float, str]:
    """--cpi, else the CPI a board run recorded in the project, else the table's."""
    from .cpi import CPI_FILE, choose_cpi, read_recorded_cpi
    from .run import default_project_dir
    proj = Path(project) if project is not None else default_project_dir(Path(model_path))
    rec = None if cli_cpi is not None else read_recorded_cpi(proj, model.sha256, runtime_id,
                                                             board.id, optimize)
    return choose_cpi(cli_cpi, rec, cm.cpi, cm.cpi_source, proj / CPI_FILE)


def optimization_rows(model: Model, board, runtime_id: str, footprints: dict,
                      cpi: float | None = None) -> list[dict]:
    """The optimization profiles this runtime builds, side by side (nanoml's builds):
    instructions, ms (at `cpi`, else each table's), flash and fit from `footprints`
    ({profile: Footprint}, nanoml.footprint.for_profile; {}: no flash figures)."""
    rows = []
    for opt in (SPEED, SIZE):
        if footprints and opt not in footprints:
            continue
        cm = load_cost_model(runtime_id, opt)
        layers, total, c, _ = estimate_layers(model, runtime_id, board.clock_hz, cpi, opt,
                                              per_kernel_abi=True)
        fp = footprints.get(opt)
        composed = any(t.optimize not in (SIZE, SPEED) for t in
                       _kernel_tables(model, runtime_id, cm, opt).values())
        rows.append({"optimize": opt, "measured": cm.optimize == opt or composed,
                     "flags": list(cm.flags),
                     "instructions": total, "ms": round(total * c / board.clock_hz * 1000.0, 4),
                     "lower_bound": any(not x.estimated for x in layers),
                     "flash_bytes": fp.flash_bytes if fp else None,
                     "fits": (fp.fits_flash and fp.fits_ram) if fp else None})
    return rows


def _soft_float(res: ProfileResult, model: Model, runtime_id: str, clock_hz: int,
                float_abi: str | None) -> None:
    """The float share and, for a float-heavy model on an FPU build, the warning."""
    from .softfloat import problem, soft_float
    res.float_info = soft_float(model, res.layers, res.instructions, runtime_id, clock_hz)
    p = problem(res.float_info) if float_abi != SOFT else None
    if p is not None and res.verdict is not None:
        res.verdict.problems.append(p)


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
            optimize: str | None = None):
    """Arena, footprint and the verdict (can it run: ops, hybrid ops, dtypes, fit,
    TFLM's own check) into `res`, for the optimization profile build would choose;
    (its OptimizePlan, {profile: Footprint}), or (None, {}) when not known."""
    from ..footprint import for_profile
    from ..model.verdict import assess
    from ..runtimes import get_runtime
    rt = get_runtime(runtime_id)
    try:
        a = assess(model, board, rt, optimize=optimize)
    except Exception as e:  # noqa: BLE001 - the latency estimate stays useful without it
        res.notes.append(f"arena, footprint and whether the model runs are not known "
                         f"({type(e).__name__}: {e})")
        return None, {}
    plan, fp, fps = for_profile(optimize, board, rt, model, a.arena_bytes)
    a.footprint = fp       # the default chose speed only if it fits: the size verdict holds
    res.verdict = a.verdict
    res.arena_min_bytes = int(a.arena["min_bytes"])
    res.arena_used_bytes = int(a.arena["used_bytes"])
    res.flash_bytes, res.ram_bytes = a.footprint.flash_bytes, a.footprint.ram_bytes
    res.notes.append("flash/RAM: inspect's footprint estimate (no build)")
    return plan, fps
