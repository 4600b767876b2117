"""`inspect`: everything nanoml knows about a model on a given board and runtime.

Returns an InspectReport (data); the CLI renders it. JSON schema: docs/inspect.md.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..boards import Board, get_board
from ..runtimes import Runtime, get_runtime
from . import analysis
from .tflite import Model, load

# dtypes TFLM kernels on the board never take as activations or weights
_UNSUPPORTED_DTYPES = {"float16", "float64", "complex64", "complex128", "string",
                       "resource", "variant", "bfloat16", "uint64"}


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
    problems: list[dict] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stats)

    @property
    def can_run(self) -> bool:
        return not self.unsupported and self.footprint.fits_flash and self.footprint.fits_ram

    @property
    def exit_code(self) -> int:
        return 0 if self.can_run else 1

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
            "arena": self.arena,
            "arena_bytes": self.arena["min_bytes"],
            "flash_bytes": fp.flash_bytes,
            "ram_bytes": fp.ram_bytes,
            "limits": {"flash_bytes": self.board.flash_bytes, "ram_bytes": self.board.ram_bytes},
            "footprint": {"flash": fp.flash_parts, "ram": fp.ram_parts, "notes": fp.notes},
            "fits": {"flash": fp.fits_flash, "ram": fp.fits_ram},
            "unsupported": self.unsupported,
            "can_run": self.can_run,
            "problems": self.problems,
        }


def predict_arena_for(model: Model, runtime: Runtime, static_memory: bool = True) -> dict:
    """Arena figures from the predictor (nanoml.memory)."""
    from ..memory import predict_arena
    return predict_arena(model, runtime_id=runtime.id, static_memory=static_memory).to_json()


def _op_table(model: Model, runtime: Runtime) -> tuple[list[dict], list[str]]:
    counts: "OrderedDict[tuple, int]" = OrderedDict()
    for op in model.operators:
        key = (op.display_name, op.op, op.version)
        counts[key] = counts.get(key, 0) + 1
    ops, unsupported = [], []
    for (display, name, version), n in counts.items():
        if name == "CUSTOM":
            ok, why = runtime.support_custom(display[len("CUSTOM:"):])
        else:
            ok, why = runtime.support(name, version)
        ops.append({"name": display, "version": version, "count": n, "supported": ok,
                    "reason": why})
        if not ok:
            known = name != "CUSTOM" and name in runtime.ops
            unsupported.append(f"{display} v{version}" if known else display)
    return ops, unsupported


def _problems(report: InspectReport) -> list[dict]:
    out = []
    m, b, fp = report.model, report.board, report.footprint
    for o in report.ops:
        if not o["supported"]:
            out.append({"level": "error", "message": o["reason"]})
    bad = sorted({t.dtype for sg in m.subgraphs for t in sg.tensors if t.dtype in _UNSUPPORTED_DTYPES})
    for dt in bad:
        out.append({"level": "error",
                    "message": f"model uses {dt} tensors, which TFLM kernels do not handle; "
                               "re-convert with `nanoml convert --quantize int8`"})
    if any(t.shape_signature and -1 in t.shape_signature[1:] for sg in m.subgraphs
           for t in sg.tensors):
        out.append({"level": "warning",
                    "message": "model has dynamic dimensions; TFLM uses the static shapes "
                               "stored in the file"})
    is_float = any(t.dtype == "float32" and t.is_const and t.elements > 16
                   for sg in m.subgraphs for t in sg.tensors)
    if not fp.fits_flash:
        over = fp.flash_bytes - b.flash_bytes
        hint = "int8 quantization (`nanoml convert --quantize int8`) makes weights 4x smaller" \
            if is_float else "use fewer filters/units or a smaller model (e.g. a lower width multiplier)"
        out.append({"level": "error",
                    "message": f"does not fit flash: needs {fp.flash_bytes:,} B of "
                               f"{b.flash_bytes:,} B ({over:,} B over; model alone is "
                               f"{m.size:,} B); {hint}"})
    if not fp.fits_ram:
        over = fp.ram_bytes - b.ram_bytes
        out.append({"level": "error",
                    "message": f"does not fit RAM: needs {fp.ram_bytes:,} B of {b.ram_bytes:,} B "
                               f"({over:,} B over; tensor arena {report.arena['min_bytes']:,} B); "
                               "use a smaller input (resolution, window), fewer filters in the "
                               "early layers" + (", or int8 quantization" if is_float else "")})
    if is_float and fp.fits_flash and fp.fits_ram:
        out.append({"level": "info",
                    "message": "float model: int8 quantization would make it about 4x smaller "
                               "and much faster with CMSIS-NN kernels"})
    if not report.arena.get("exact", True):
        out.append({"level": "warning",
                    "message": "arena figure is a safe upper bound, not an exact prediction: "
                               + "; ".join(report.arena.get("notes", []))})
    for n in fp.notes:
        out.append({"level": "info", "message": n})
    return out


def inspect_model(path: str, board_id: str | None = None, runtime_id: str | None = None,
                  model: Model | None = None) -> InspectReport:
    board = get_board(board_id)
    runtime = get_runtime(runtime_id)
    model = model or load(path)
    stats = analysis.analyse(model)
    ops, unsupported = _op_table(model, runtime)
    arena = predict_arena_for(model, runtime, static_memory=runtime.static_memory)
    from ..fit import estimate
    footprint = estimate(board, runtime, [o.op for o in model.operators if o.op != "CUSTOM"],
                         model.size, arena["min_bytes"])
    report = InspectReport(model, board, runtime, stats, ops, unsupported, arena, footprint)
    report.problems = _problems(report)
    return report
