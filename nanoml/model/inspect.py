"""`inspect`: everything nanoml knows about a model on a given board and runtime.

Returns an InspectReport (data); the CLI renders it. JSON schema: docs/inspect.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..boards import Board, get_board
from ..errors import UsageError
from ..runtimes import Runtime, get_runtime
from . import analysis
from .tflite import Model, load
from .verdict import MAX_FIGURE, Verdict, assess


def _bounded(v):
    """A byte figure for JSON: None when it cannot be real (the verdict says why)."""
    return v if isinstance(v, int) and 0 <= v <= MAX_FIGURE else None


@dataclass
class InspectReport:
    model: Model
    board: Board
    runtime: Runtime
    stats: list
    ops: list[dict]
    unsupported: list[str]
    arena: dict
    footprint: object
    verdict: Verdict
    arena_bytes: int             # the arena `build` would give the firmware (margin included)
    pipeline: object = None      # the stored sensor pipeline (nanoml.pipeline.spec.Pipeline)
    plan: object = None          # the optimization profile (nanoml.firmware.optimize.OptimizePlan)
    latency: dict | None = None  # profile.estimate.latency_summary: estimate, optimizations, float

    @property
    def problems(self) -> list[dict]:
        return self.verdict.to_json()

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stats)

    @property
    def can_run(self) -> bool:
        return self.verdict.can_run

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    def to_json(self) -> dict:
        m = self.model
        params, param_bytes = analysis.parameter_count(m)
        operators = []
        for s in self.stats:
            sg = m.subgraphs[s.subgraph]
            op = s.op
            operators.append({
                "subgraph": s.subgraph, "index": s.index, "op": op.display_name,
                "version": op.version,
                "inputs": [sg.tensors[i].brief() for i in op.inputs if i >= 0],
                "outputs": [sg.tensors[i].brief() for i in op.outputs if i >= 0],
                "options": op.options, "macs": s.macs, "param_bytes": s.param_bytes,
            })
        fp = self.footprint
        return {
            "model": {"path": m.path, "bytes": m.size, "sha256": m.sha256,
                      "subgraphs": len(m.subgraphs), "description": m.description},
            "board": self.board.id,
            "runtime": self.runtime.id,
            "ops": self.ops,
            "operators": operators,
            "macs": self.macs,
            "params": params,
            "param_bytes": param_bytes,
            "inputs": [t.brief() for t in m.input_tensors],
            "outputs": [t.brief() for t in m.output_tensors],
            "arena": {k: (_bounded(v) if k.endswith("_bytes") else v)
                      for k, v in self.arena.items()},
            "arena_bytes": _bounded(self.arena["min_bytes"]),
            "firmware_arena_bytes": _bounded(self.arena_bytes),
            "flash_bytes": _bounded(fp.flash_bytes),
            "ram_bytes": _bounded(fp.ram_bytes),
            "limits": {"flash_bytes": self.board.flash_bytes, "ram_bytes": self.board.ram_bytes},
            "footprint": {"flash": {k: _bounded(v) for k, v in fp.flash_parts.items()},
                          "ram": {k: _bounded(v) for k, v in fp.ram_parts.items()},
                          "notes": fp.notes, "input": fp.input, "profile": fp.profile,
                          "optimize": fp.optimize},
            "fits": {"flash": fp.fits_flash, "ram": fp.fits_ram},
            "unsupported": self.unsupported,
            "can_run": self.can_run,
            "problems": self.problems,
            "pipeline": self.pipeline.to_json() if self.pipeline is not None else None,
            "optimize": _plan_json(self.plan),
            **(self.latency or {"estimate": None, "optimizations": [], "float": None}),
        }


def _plan_json(plan) -> dict | None:
    if plan is None:
        return None
    return {"profile": plan.profile, "chosen_by": plan.chosen_by, "float_abi": plan.float_abi,
            "extra_flash_bytes": plan.extra_flash_bytes, "notes": plan.notes}


def inspect_model(path: str, board_id: str | None = None, runtime_id: str | None = None,
                  model: Model | None = None, input_kind: str | None = None,
                  profile: bool = False, optimize: str | None = None) -> InspectReport:
    """Everything about `path` on a board and runtime; `input_kind`/`profile`/`optimize`:
    the firmware `build --input K [--profile] [--optimize P]` would make (they change the
    footprint; a given `input_kind` is also checked against the model as `build` does;
    None: the footprint of `--input serial`, unchecked; build's default profile)."""
    from ..footprint import INPUT_KINDS
    if input_kind is not None and input_kind not in INPUT_KINDS:
        raise UsageError(f"unknown input source '{input_kind}'",
                         hint=f"use one of: {', '.join(INPUT_KINDS)}")
    board = get_board(board_id)
    runtime = get_runtime(runtime_id)
    model = model or load(path)
    a = assess(model, board, runtime, input_kind or "serial", profile,
               check_input=input_kind is not None, optimize=optimize)
    plan, fp, latency = _latency(model, board, runtime, a, input_kind or "serial", profile,
                                 optimize)
    from ..pipeline.store import resolve
    return InspectReport(model, board, runtime, a.stats, a.ops, a.unsupported, a.arena,
                         fp, a.verdict, a.arena_bytes, pipeline=resolve(model), plan=plan,
                         latency=latency)


def _latency(model: Model, board: Board, runtime: Runtime, a, input_kind: str, profile: bool,
             optimize: str | None):
    """(OptimizePlan, the chosen profile's footprint, latency_summary) as `build` would
    choose; the soft-float warning joins the verdict. (None, a.footprint, None) when
    the footprint is not a real figure."""
    from ..footprint import for_profile
    from ..profile.estimate import latency_summary
    from ..profile.softfloat import problem
    if not isinstance(a.arena_bytes, int) or a.arena_bytes > MAX_FIGURE:
        return None, a.footprint, None
    plan, fp, fps = for_profile(optimize, board, runtime, model, a.arena_bytes, input_kind,
                                profile)
    latency = latency_summary(model, board, runtime.id, plan, fps)
    p = problem(latency["float"])
    if p is not None:
        a.verdict.problems.append(p)
    return plan, fp, latency
