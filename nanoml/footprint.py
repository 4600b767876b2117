"""Firmware footprint estimate: how much flash and RAM the generated firmware takes.

flash = empty-sketch baseline (board profile)
      + TFLM core code (runtime profile: no-ops program minus an empty program)
      + code of exactly the model's ops (see `ops_code_bytes`)
      + with `--optimize speed`: what the speed flags add to those ops' kernels
        (`speed_code_bytes`, from the measured code_bytes of nanoml/data/optimize/<runtime>.toml)
      + nanoml's own firmware code (protocol, main loop)
      + the input source's library (--input imu) and the profiling build (--profile)
      + the model flatbuffer
ram   = empty-sketch baseline RAM + tensor arena (as `build` sizes it, margin included)
      + objects the runtime library pulls in (Wire/Wire1)
      + nanoml's buffers (a fixed part + the line buffer + 8 B per output value)
      + the input source's buffers (--input mic) and the profiling build (--profile)

The figures the model cannot tell (nanoml's code and buffers, the libraries, the
input kinds, the profiling build) are data, in nanoml/data/footprint.toml, measured
from an approximate link of the real firmware (see that file). `inspect` and `build`
both call `estimate`, so they agree.

Per-op code sizes come from a Cortex-M4 build of the runtime library (each op
added alone to an empty resolver). Ops share helper code (quantization utils,
kernel_util), so increments do not simply add up: every op after the largest
one is assumed to share up to `shared_helper_bytes` of its increment with code
already linked. Measured on the shared models this is within about 2 KB of the
real TFLM code size for the whole op set. Ops with no measured size get
`unknown_op_bytes` (a deliberately generous figure), and the estimate says so.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from .boards import Board
from .runtimes import Runtime

INPUT_KINDS = ("serial", "synthetic", "imu", "mic")   # = firmware/spec.py INPUTS
DEFAULT_SHARED_HELPER_BYTES = 3_200
DEFAULT_UNKNOWN_OP_BYTES = 12_000
OUTPUT_VALUE_BYTES = 8          # g_output_values (float) + g_output_raw (int32) per value


@lru_cache(maxsize=1)
def figures() -> dict:
    """nanoml/data/footprint.toml."""
    return tomllib.loads(resources.files("nanoml.data").joinpath("footprint.toml").read_text())


@dataclass
class Footprint:
    flash_bytes: int
    ram_bytes: int
    flash_parts: dict
    ram_parts: dict
    fits_flash: bool
    fits_ram: bool
    notes: list[str] = field(default_factory=list)
    input: str = "serial"
    profile: bool = False
    optimize: str = "size"       # the optimization profile counted

    def to_json(self) -> dict:
        return {"flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "flash_parts": self.flash_parts, "ram_parts": self.ram_parts,
                "fits": {"flash": self.fits_flash, "ram": self.fits_ram}, "notes": self.notes,
                "input": self.input, "profile": self.profile, "optimize": self.optimize}


def ops_code_bytes(runtime: Runtime, ops: list[str]) -> tuple[int, list[str]]:
    """Estimated TFLM kernel code for a set of builtin ops, and ops without a measured size."""
    shared = runtime.raw.get("code_size", {}).get("shared_helper_bytes", DEFAULT_SHARED_HELPER_BYTES)
    unknown_default = runtime.raw.get("code_size", {}).get("unknown_op_bytes", DEFAULT_UNKNOWN_OP_BYTES)
    sizes = []
    unknown = []
    for name in sorted(set(ops)):
        s = runtime.ops.get(name)
        if s is not None and s.code_bytes:
            sizes.append(s.code_bytes)
        else:
            unknown.append(name)
            sizes.append(unknown_default)
    if not sizes:
        return 0, unknown
    sizes.sort(reverse=True)
    total = sizes[0] + sum(s - min(s, shared) for s in sizes[1:])
    return total, unknown


def nanoml_ram_bytes(model) -> int:
    """nanoml's buffers in the firmware for this model (fixed part + line + outputs)."""
    from .firmware.spec import line_buffer_bytes
    outs = model.output_tensors
    n_out = sum(t.elements for t in outs)
    quantized = all(t.quant is not None and t.dtype in ("int8", "uint8", "int16", "int32")
                    for t in outs)
    seq = [(op.custom_code or "") if op.op == "CUSTOM" else op.op for op in model.operators]
    return (figures()["nanoml"]["ram_fixed_bytes"] + line_buffer_bytes(model, seq, n_out, quantized)
            + OUTPUT_VALUE_BYTES * max(n_out, 1))


def input_bytes(board: Board, input_kind: str) -> tuple[int, int, str | None]:
    """(flash, RAM, library) the input source adds beyond nanoml's own code."""
    f = figures()["input"]
    if input_kind == "imu":
        lib = (board.sensors.get("imu") or {}).get("library")
        d = f["imu"].get(lib) or f["imu"]["default"]
        return d["flash_bytes"], d["ram_bytes"], lib
    d = f.get(input_kind, {})
    return d.get("flash_bytes", 0), d.get("ram_bytes", 0), None


def _frontend_figures(model, input_kind: str) -> dict | None:
    """[frontend.<kind>] of footprint.toml when `--input mic` runs a stored audio
    pipeline's front end (a corrupt description is the pipeline reader's error to
    report, not the footprint's)."""
    if input_kind != "mic":
        return None
    from .errors import NanomlError
    from .pipeline.store import read_pipeline
    try:
        pipe = read_pipeline(model)
    except NanomlError:
        return None
    if pipe is None or pipe.frontend is None:
        return None
    return figures().get("frontend", {}).get(pipe.frontend.kind)


def estimate(board: Board, runtime: Runtime, model, arena_bytes: int,
             input_kind: str = "serial", profile: bool = False,
             optimize: str | None = None) -> Footprint:
    """The footprint of the firmware `build` makes for `model` with this arena size
    and optimization profile (None/"size": the library at the core's flags)."""
    fig = figures()
    builtin = [o.op for o in model.operators if o.op != "CUSTOM"]
    code, unknown = ops_code_bytes(runtime, builtin)
    speed = _speed_code_bytes(runtime, model) if optimize == "speed" else 0
    unsized = speed is None
    speed = speed or 0
    core = runtime.no_ops_code_bytes - runtime.empty_program_bytes
    in_flash, in_ram, _ = input_bytes(board, input_kind)
    fe = _frontend_figures(model, input_kind)
    if fe:                      # an audio pipeline's front end replaces the raw-sample input
        in_flash, in_ram = in_flash + fe["flash_bytes"], fe["ram_bytes"]
    prof = fig["profile"] if profile else {"flash_bytes": 0, "ram_bytes": 0}
    flash_parts = {"baseline": board.baseline_flash, "tflm_core": core, "tflm_ops": code,
                   **({"tflm_ops_speed": speed} if optimize == "speed" else {}),
                   "nanoml": fig["nanoml"]["flash_bytes"], "input": in_flash,
                   "profiling": prof["flash_bytes"], "model": model.size}
    ram_parts = {"baseline": board.baseline_ram, "arena": arena_bytes,
                 "runtime_objects": fig["runtime"].get(runtime.id, {}).get("ram_bytes", 0),
                 "nanoml": nanoml_ram_bytes(model), "input": in_ram,
                 "profiling": prof["ram_bytes"]}
    flash = sum(flash_parts.values())
    ram = sum(ram_parts.values())
    notes = []
    if unknown:
        notes.append("no measured code size for " + ", ".join(unknown) +
                     f"; assumed {DEFAULT_UNKNOWN_OP_BYTES:,} B each")
    if unsized:
        notes.append("the speed build's extra kernel code was not measured for some of these "
                     "ops (not counted in tflm_ops_speed)")
    return Footprint(flash, ram, flash_parts, ram_parts, flash <= board.flash_bytes,
                     ram <= board.ram_bytes, notes, input_kind, profile, optimize or "size")


def _speed_code_bytes(runtime: Runtime, model) -> int | None:
    """What the speed flags add to the model's kernels (nanoml.firmware.optimize's
    measured code_bytes; 0 without a table; None when a chosen kernel was not sized)."""
    from .firmware import optimize
    return optimize.extra_code_bytes(optimize.load_table(runtime.id), optimize.op_uses(model),
                                     "speed")


def for_profile(requested: str | None, board: Board, runtime: Runtime, model, arena_bytes: int,
                input_kind: str = "serial", profile: bool = False, fmt: str = "platformio"):
    """(OptimizePlan, the footprint of the profile it chose, {profile: Footprint}): the
    optimization profile `build --optimize` takes (None: its default, speed when the
    speed firmware still fits with nanoml.firmware.optimize's margin), judged on these
    footprints; inspect and profile --estimate call it, so all three agree."""
    from .firmware import optimize
    fps = {"size": estimate(board, runtime, model, arena_bytes, input_kind, profile, "size")}
    if fmt == "platformio" and optimize.load_table(runtime.id) is not None:
        fps["speed"] = estimate(board, runtime, model, arena_bytes, input_kind, profile, "speed")
    plan = optimize.plan(requested, runtime, optimize.op_uses(model), fmt, board.flash_bytes,
                         fps["size"].flash_bytes,
                         fps["speed"].flash_bytes if "speed" in fps else None)
    return plan, fps.get(plan.profile, fps["size"]), fps
