"""Can this model run on this board with this runtime library? One answer, used by
`inspect`, `convert`, `build` and `profile`.

`judge()` looks at a parsed model (nanoml.model.tflite) and returns a Verdict: a list
of problems (level, code, message, the operator concerned) in the order a user should
read them, `can_run` (no error) and `exit_code` (0 runs, 1 cannot). The checks, in
that order:

1. hybrid operators (float activations with int8/uint8/int4 weights), named by the
   first such operator: TFLite Micro has no hybrid kernels (Chirale 2.0.0's CONV_2D
   and TRANSPOSE_CONV stop in Eval with "Hybrid models are not supported on TFLite
   Micro."; its FULLY_CONNECTED and DEPTHWISE_CONV_2D would run their float path over
   int8 bytes; SVDF and LSTM refuse in Prepare). This comes first because it is the
   real reason a model converted with dynamic-range quantization fails, whatever its
   op versions say;
2. ops and op versions the library has no kernel for (runtime profile);
3. tensor types TFLM kernels do not take (float16, float64, strings...) or that the
   schema does not define;
4. dimensions and MACs that cannot be real (negative);
5. figures that cannot be real (arena or footprint beyond 32 bits);
6. flash and RAM fit (the footprint, nanoml/footprint.py);
7. when all of that passes: TFLM itself. Its kernels check far more in Prepare than
   a table can say (ranks, shapes between tensors, quantization parameters), so the
   model is allocated and invoked once in TFLM's host interpreter, in a child process
   with time and memory limits (nanoml.sim.isolated). A refusal or a crash there is an
   error, so "can run" never says yes to a model the library refuses.

`assess()` computes the arena (as `build` sizes it), the footprint and the verdict
in one call.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..boards import Board
from ..runtimes import Runtime
from .tflite import TENSOR_TYPES, Model

# dtypes TFLM kernels on the board never take as activations or weights
UNSUPPORTED_DTYPES = frozenset({"float16", "float64", "complex64", "complex128", "string",
                                "resource", "variant", "bfloat16", "uint64"})
KNOWN_DTYPES = frozenset(TENSOR_TYPES.values())
# Weight-bearing ops and where their activation and weight inputs are:
# op -> (activation input index, weight input indices). EMBEDDING_LOOKUP is not here:
# TFLM's kernel does take int8 tables with float output (and the Arduino libraries
# have no kernel for it, which check 2 reports).
HYBRID_OPS = {
    "CONV_2D": (0, (1,)),
    "DEPTHWISE_CONV_2D": (0, (1,)),
    "FULLY_CONNECTED": (0, (1,)),
    "TRANSPOSE_CONV": (2, (1,)),
    "SVDF": (0, (1, 2)),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (0, tuple(range(1, 9))),
    "BATCH_MATMUL": (0, (1,)),
}
QUANTIZED_WEIGHT_DTYPES = frozenset({"int8", "uint8", "int4"})
MAX_FIGURE = 2 ** 32 - 1          # bytes: nothing on a 32-bit MCU is larger
FIT_CODES = frozenset({"does_not_fit_flash", "does_not_fit_ram"})
HOST_ARENA_BYTES = 8 << 20        # the host interpreter's arena for check 7 (64-bit build)
HOST_CHECK_TIMEOUT_S = 20.0
REQUANTIZE = "re-convert with full-integer quantization: `nanoml convert MODEL --quantize int8 --calib DATA`"


@dataclass(frozen=True)
class Problem:
    level: str                  # "error" | "warning" | "info"
    code: str                   # stable identifier, e.g. "hybrid_op" (docs/inspect.md)
    message: str
    op: int | None = None       # operator index in its subgraph, when one is concerned
    subgraph: int | None = None

    def to_json(self) -> dict:
        return {"level": self.level, "code": self.code, "message": self.message,
                "op": self.op, "subgraph": self.subgraph}


@dataclass
class Verdict:
    problems: list[Problem] = field(default_factory=list)
    library_check: str | None = None   # "ok", "refused", "crashed", "hung", "memory"; None: not run

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def can_run(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.can_run else 1

    def blocking(self) -> list[Problem]:
        """Errors that no build option changes (everything but fit)."""
        return [p for p in self.errors if p.code not in FIT_CODES]

    def to_json(self) -> list[dict]:
        return [p.to_json() for p in self.problems]


# ------------------------------------------------------------------ op support

def op_table(model: Model, runtime: Runtime) -> tuple[list[dict], list[str], dict]:
    """Distinct (op, version) pairs in first-use order: ([{name, version, count,
    supported, reason}], unsupported names, {(name, version): first (subgraph, index)})."""
    counts: "OrderedDict[tuple, int]" = OrderedDict()
    first: dict[tuple, tuple[int, int]] = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            key = (op.display_name, op.op, op.version)
            counts[key] = counts.get(key, 0) + 1
            first.setdefault((op.display_name, op.version), (sg.index, op.index))
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
    return ops, unsupported, first


def _tensor(sg, op, i: int):
    idx = op.inputs
    if i >= len(idx) or not 0 <= idx[i] < len(sg.tensors):
        return None
    return sg.tensors[idx[i]]


def hybrid_operators(model: Model) -> list[tuple[int, int, str, str, str]]:
    """[(subgraph, op index, op, activation dtype, weight dtype)] of hybrid operators."""
    out = []
    for sg in model.subgraphs:
        for op in sg.operators:
            where = HYBRID_OPS.get(op.op)
            if where is None:
                continue
            act = _tensor(sg, op, where[0])
            if act is None or act.dtype != "float32":
                continue
            for wi in where[1]:
                w = _tensor(sg, op, wi)
                if w is not None and w.dtype in QUANTIZED_WEIGHT_DTYPES:
                    out.append((sg.index, op.index, op.op, act.dtype, w.dtype))
                    break
    return out


# ------------------------------------------------------------------ the checks

def _hybrid(model: Model) -> list[Problem]:
    found = hybrid_operators(model)
    if not found:
        return []
    sg, i, name, act, w = found[0]
    more = f" (and {len(found) - 1} more hybrid operator{'s' if len(found) > 2 else ''})" \
        if len(found) > 1 else ""
    where = f"{sg}:{i}" if len(model.subgraphs) > 1 else str(i)
    return [Problem("error", "hybrid_op",
                    f"operator {where} ({name}) is hybrid: {act} input with {w} weights{more}; "
                    "TFLite Micro has no hybrid kernels (\"Hybrid models are not supported on "
                    f"TFLite Micro\"); {REQUANTIZE}", i, sg)]


def _ops(model: Model, ops: list[dict], first: dict) -> list[Problem]:
    out = []
    for o in ops:
        if o["supported"]:
            continue
        sg, i = first[(o["name"], o["version"])]
        code = "unsupported_custom_op" if o["name"].startswith("CUSTOM:") else (
            "unsupported_op_version" if "version" in (o["reason"] or "") else "unsupported_op")
        out.append(Problem("error", code, o["reason"], i, sg))
    return out


def _dtypes(model: Model) -> list[Problem]:
    out = []
    seen = OrderedDict()
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.dtype in UNSUPPORTED_DTYPES or t.dtype not in KNOWN_DTYPES:
                seen.setdefault(t.dtype, (sg.index, t))
    for dt, (sg, t) in seen.items():
        if dt in KNOWN_DTYPES:
            out.append(Problem("error", "unsupported_dtype",
                               f"model uses {dt} tensors (first: '{t.name}'), which TFLM kernels "
                               "do not handle; re-convert with `nanoml convert --quantize int8`",
                               None, sg))
        else:
            out.append(Problem("error", "unknown_dtype",
                               f"tensor '{t.name}' has a type the TFLite schema does not define "
                               f"({dt}); the file is corrupt or from an unknown converter",
                               None, sg))
    return out


def _dimensions(model: Model, stats) -> list[Problem]:
    out = []
    for sg in model.subgraphs:
        bad = next((t for t in sg.tensors if any(d < 0 for d in t.shape)), None)
        if bad is not None:
            out.append(Problem("error", "bad_dimension",
                               f"tensor '{bad.name}' has a negative dimension {list(bad.shape)}; "
                               "TFLM needs every dimension fixed (re-export the model with a "
                               "fixed input shape)", None, sg.index))
            break
    neg = next((s for s in stats if s.macs < 0), None)
    if neg is not None:
        out.append(Problem("error", "bad_macs",
                           f"operator {neg.index} ({neg.op.display_name}) has negative MACs "
                           f"({neg.macs:,}): its tensor shapes are inconsistent",
                           neg.index, neg.subgraph))
    return out


def _absurd(arena: dict | None, footprint) -> list[Problem]:
    figures = {}
    if arena:
        figures.update({"arena": arena.get("min_bytes"), "arena used": arena.get("used_bytes")})
    if footprint is not None:
        figures.update({"flash": footprint.flash_bytes, "RAM": footprint.ram_bytes})
    big = [k for k, v in figures.items() if isinstance(v, (int, float)) and not 0 <= v <= MAX_FIGURE]
    if not big:
        return []
    return [Problem("error", "absurd_size",
                    f"the model's {' and '.join(big)} figure is beyond 4 GiB (or negative): its "
                    "tensor shapes cannot be real")]


def _fit(model: Model, board: Board, fp, arena: dict | None) -> list[Problem]:
    out = []
    is_float = any(t.dtype == "float32" and t.is_const and t.elements > 16
                   for sg in model.subgraphs for t in sg.tensors)
    if not fp.fits_flash:
        over = fp.flash_bytes - board.flash_bytes
        hint = "int8 quantization (`nanoml convert --quantize int8`) makes weights 4x smaller" \
            if is_float else "use fewer filters/units or a smaller model (e.g. a lower width multiplier)"
        out.append(Problem("error", "does_not_fit_flash",
                           f"does not fit flash: needs {fp.flash_bytes:,} B of "
                           f"{board.flash_bytes:,} B ({over:,} B over; model alone is "
                           f"{model.size:,} B); {hint}"))
    if not fp.fits_ram:
        over = fp.ram_bytes - board.ram_bytes
        out.append(Problem("error", "does_not_fit_ram",
                           f"does not fit RAM: needs {fp.ram_bytes:,} B of {board.ram_bytes:,} B "
                           f"({over:,} B over; tensor arena {fp.ram_parts.get('arena', 0):,} B); "
                           "use a smaller input (resolution, window), fewer filters in the "
                           "early layers" + (", or int8 quantization" if is_float else "")))
    if is_float and fp.fits_flash and fp.fits_ram and not hybrid_operators(model):
        out.append(Problem("info", "float_model",
                           "float model: int8 quantization would make it about 4x smaller "
                           "and much faster with CMSIS-NN kernels"))
    return out


def _notes(model: Model, arena: dict | None, fp) -> list[Problem]:
    out = []
    if any(t.shape_signature and -1 in t.shape_signature[1:] for sg in model.subgraphs
           for t in sg.tensors):
        out.append(Problem("warning", "dynamic_shape",
                           "model has dynamic dimensions; TFLM uses the static shapes "
                           "stored in the file"))
    if arena and not arena.get("exact", True):
        out.append(Problem("warning", "arena_upper_bound",
                           "arena figure is a safe upper bound, not an exact prediction: "
                           + "; ".join(arena.get("notes", []))))
    for n in (fp.notes if fp is not None else []):
        out.append(Problem("info", "footprint_note", n))
    return out


def input_problems(model: Model, board: Board, input_kind: str) -> list[Problem]:
    """What `build --input K` refuses about this model and board (firmware/spec.py's
    check: one input tensor, the IMU's channels, a microphone on the board...)."""
    from ..errors import NanomlError
    from ..firmware.spec import _check_input
    try:
        _check_input(model, board, input_kind, None)
    except NanomlError as e:
        return [Problem("error", "input_mismatch",
                        ("" if "--input" in e.message else f"--input {input_kind}: ")
                        + e.message + (f" ({e.hint})" if e.hint else ""))]
    return []


def library_check(model: Model) -> tuple[str, Problem | None]:
    """Allocate and invoke once in TFLM's host interpreter, in a child process."""
    from ..sim.isolated import HostInterpreter, HostInterpreterError
    try:
        HostInterpreter(bytes(model.raw), HOST_ARENA_BYTES, len(model.main.inputs),
                        len(model.main.outputs), step_timeout=HOST_CHECK_TIMEOUT_S, serve=False)
    except HostInterpreterError as e:
        code = {"refused": "library_refused", "crashed": "library_crashed",
                "hung": "library_hung", "memory": "library_memory"}.get(e.status, "library_refused")
        return e.status, Problem("error", code, f"{e.message} (allocate + invoke on TFLM's host "
                                 "interpreter, which the board's library shares its kernels with)")
    return "ok", None


def judge(model: Model, runtime: Runtime, board: Board | None = None, footprint=None,
          arena: dict | None = None, stats=None, ops: tuple | None = None,
          check_library: bool = True) -> Verdict:
    """The verdict on `model` (see the module doc). Without `footprint` (convert with no
    --board) fit is not judged. `stats`/`ops`: analysis.analyse() / op_table() results
    when the caller has them already."""
    from . import analysis
    stats = analysis.analyse(model) if stats is None else stats
    table, _, first = op_table(model, runtime) if ops is None else ops
    problems = _hybrid(model) + _ops(model, table, first) + _dtypes(model) \
        + _dimensions(model, stats) + _absurd(arena, footprint)
    if footprint is not None and board is not None \
            and not any(p.code == "absurd_size" for p in problems):
        problems += _fit(model, board, footprint, arena)
    verdict = Verdict(problems)
    if check_library and not verdict.errors:
        verdict.library_check, p = library_check(model)
        if p is not None:
            problems.insert(0, p)
    verdict.problems = problems + _notes(model, arena, footprint)
    return verdict


# ------------------------------------------------------------------ one call

@dataclass
class Assessment:
    arena: dict              # the predictor's figures (nanoml.memory; docs/arena.md)
    arena_bytes: int         # the arena the firmware gets (build's margin included)
    footprint: object        # nanoml.footprint.Footprint
    verdict: Verdict
    ops: list[dict]
    unsupported: list[str]
    stats: list


def firmware_arena_bytes(min_bytes: int) -> int:
    """The arena `build` gives the firmware for a predicted minimum (default margin)."""
    from ..firmware.arena import parse_margin, round_up
    margin, _ = parse_margin(None, min_bytes)
    return round_up(min_bytes + margin)


def assess(model: Model, board: Board, runtime: Runtime, input_kind: str = "serial",
           profile: bool = False, arena_bytes: int | None = None, arena: dict | None = None,
           check_library: bool = True, check_input: bool = False,
           optimize: str | None = None) -> Assessment:
    """Arena + footprint + verdict. `arena_bytes`: the firmware's arena when the caller
    has planned it (build); otherwise the prediction plus build's default margin.
    `check_input`: also judge the model against `input_kind` as `build --input` does.
    `optimize`: the optimization profile whose flash is counted (None: size)."""
    from ..footprint import estimate
    from . import analysis
    if arena is None:
        from ..memory import predict_arena
        arena = predict_arena(model, runtime_id=runtime.id,
                              static_memory=runtime.static_memory).to_json()
    if arena_bytes is None:
        arena_bytes = firmware_arena_bytes(int(arena["min_bytes"]))
    fp = estimate(board, runtime, model, arena_bytes, input_kind, profile, optimize)
    stats = analysis.analyse(model)
    table = op_table(model, runtime)
    verdict = judge(model, runtime, board, fp, arena, stats, table, check_library)
    if check_input:
        verdict.problems[:0] = input_problems(model, board, input_kind)
    return Assessment(arena, arena_bytes, fp, verdict, table[0], table[1], stats)
