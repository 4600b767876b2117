"""`nanoml profile --estimate`: no board. Latency from the per-operator cost model,
arena from the arena predictor (nanoml.memory) when it is available."""

from __future__ import annotations

from pathlib import Path

from ..model.analysis import operator_macs
from ..model.tflite import Model, load
from .costmodel import load_cost_model
from .kernels import operator_work
from .result import LayerProfile, Latency, ProfileResult


def estimate_layers(model: Model, runtime_id: str, clock_hz: int, cpi: float | None = None):
    """([LayerProfile], total instructions, cpi, notes) for the main subgraph."""
    cm = load_cost_model(runtime_id)
    cpi = cm.cpi if cpi is None else cpi
    sg = model.main
    layers, per_op, notes = [], [], []
    fallback_ops = []
    for op in sg.operators:
        work = operator_work(sg, op)
        instr, basis = cm.op_instructions(work)
        if basis == "fallback":
            fallback_ops.append(f"{op.index}:{op.op}")
        per_op.append(instr)
        cycles = instr * cpi
        out = sg.tensors[op.outputs[0]] if op.outputs and op.outputs[0] >= 0 else None
        layers.append(LayerProfile(
            index=op.index, op=op.display_name, output_shape=list(out.shape) if out else [],
            macs=operator_macs(sg, op), instructions=instr, cycles=cycles,
            ms=cycles / clock_hz * 1000.0, kernel=work.path, basis=basis))
    total = cm.total_instructions(per_op)
    if fallback_ops:
        notes.append("no measured kernel model for " + ", ".join(fallback_ops)
                     + ": rough per-element guess")
    if cm.id != runtime_id:
        notes.append(f"latency model of {cm.id} used for {runtime_id} (same CMSIS-NN kernels)")
    if len(model.subgraphs) > 1:
        notes.append("only the main subgraph is estimated (control-flow subgraphs are not)")
    return layers, total, cpi, notes


def _arena(model: Model, runtime_id: str, static_memory: bool) -> tuple[int | None, int | None, str | None]:
    try:
        from ..memory import predict_arena  # written by the arena-predictor work
    except ImportError:
        return None, None, "arena predictor not available in this version"
    try:
        a = predict_arena(model, runtime_id, static_memory=static_memory)
    except Exception as e:  # noqa: BLE001 - the estimate stays useful without the arena
        return None, None, f"arena not predicted ({type(e).__name__}: {e})"
    return int(a.min_bytes), int(a.used_bytes), None


def estimate(model_path: str | Path, runtime_id: str, board, cpi: float | None = None,
             static_memory: bool = True) -> ProfileResult:
    model = load(model_path)
    layers, total, cpi, notes = estimate_layers(model, runtime_id, board.clock_hz, cpi)
    cycles = total * cpi
    ms = cycles / board.clock_hz * 1000.0
    amin, aused, anote = _arena(model, runtime_id, static_memory)
    if anote:
        notes.append(anote)
    res = ProfileResult(
        source="estimate", model=str(model_path), board=board.id, runtime=runtime_id,
        clock_hz=board.clock_hz, layers=layers,
        latency=Latency(mean=ms, p50=ms, p99=ms, runs=0),
        arena_min_bytes=amin, arena_used_bytes=aused, instructions=total, cpi=cpi,
        total_cycles=cycles, notes=notes)
    res.flash_bytes, res.ram_bytes = _footprint(model, board, runtime_id)
    if res.flash_bytes is not None:
        res.notes.append("flash/RAM: inspect's footprint estimate (no build)")
    return res.finalize()


def _footprint(model: Model, board, runtime_id: str) -> tuple[int | None, int | None]:
    try:
        from ..model.inspect import inspect_model
        fp = inspect_model(model.path, board.id, runtime_id, model=model).footprint
        return fp.flash_bytes, fp.ram_bytes
    except Exception:  # noqa: BLE001 - extra information only
        return None, None
