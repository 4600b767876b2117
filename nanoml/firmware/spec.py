"""What a firmware build is made of: model, board, runtime, input, ops, arena.

`make_spec()` checks everything that can be checked before compiling (the
model's ops against the runtime profile, the input source against the model
and the board, the footprint against the board) and returns a FirmwareSpec that
`render.py` turns into files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..boards import Board, get_board
from ..errors import UsageError
from ..model.tflite import Model, load
from ..runtimes import Runtime, get_runtime
from .arena import ArenaPlan, plan_arena, sane_size

INPUTS = ("serial", "synthetic", "imu", "mic")
FORMATS = ("platformio", "arduino")
SUPPORTED_SAMPLE_TYPES = ("float32", "int8", "uint8", "int16")
IMU_CHANNELS = {3: "accelerometer", 6: "accelerometer + gyroscope",
                9: "accelerometer + gyroscope + magnetometer"}
MIC_RATES = (16_000, 41_667)      # PDM rates the nRF52840 mbed core supports
DEFAULT_IMU_RATE = 100
DEFAULT_MIC_RATE = 16_000
BAUD = 115_200
SERIAL_WAIT_MS = 2_000
HELLO_PERIOD_MS = 5_000
MAX_OP_EVENTS = 256
MIC_RING_SAMPLES = 4_096          # 256 ms at 16 kHz
# Operators with which a too-small arena hangs or aborts TFLM instead of failing
# (../shared/README.md: trained_lstm_int8 hangs on Chirale 2.0.0; the host build of
# Chirale aborts in a later Softmax Prepare): the profiling firmware does not
# bisect the arena of such models ("arena min=0").
ARENA_PROBE_UNSAFE_OPS = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM"})
FLOAT_CHARS = 15                  # longest %.6g float the device writes ("-1.23457e+06" ...)


@dataclass(frozen=True)
class OpEntry:
    name: str          # builtin name, or the custom code of a CUSTOM op
    resolver: str      # MicroMutableOpResolver method
    custom: bool = False

    def to_json(self) -> dict:
        return {"name": self.name, "resolver": self.resolver, "custom": self.custom}


@dataclass
class FirmwareSpec:
    model_path: Path
    model: Model
    name: str                    # C/Arduino-safe name from the model file
    board: Board
    runtime: Runtime
    input: str
    fmt: str
    rate_hz: int
    interval_ms: int
    profile: bool
    ops: list[OpEntry]           # unique, sorted: the resolver's content
    op_sequence: list[str]       # execution order (hello line)
    arena: ArenaPlan
    line_bytes: int
    output_capacity: int
    static_memory: bool          # library built with -DTF_LITE_STATIC_MEMORY
    build_flags: list[str]
    lib_deps: list[str]
    imu: dict | None = None
    mic: dict | None = None
    footprint: object | None = None
    warnings: list[str] = field(default_factory=list)
    pipeline: object | None = None   # nanoml.pipeline.spec.Pipeline (mic/imu), or None
    optimize: object | None = None   # nanoml.firmware.optimize.OptimizePlan
    layers: bool = False             # layer-dump build (every operator's output per frame)

    @property
    def nanoml_version(self) -> str:
        return __version__

    def to_json(self) -> dict:
        return {
            "model": {"path": str(self.model_path), "name": self.name, "bytes": self.model.size,
                      "sha256": self.model.sha256},
            "board": self.board.id, "runtime": self.runtime.id, "input": self.input,
            "format": self.fmt, "rate_hz": self.rate_hz if self.input in ("imu", "mic") else None,
            "profile": self.profile, "layers": self.layers,
            "ops": [o.to_json() for o in self.ops], "arena": self.arena.to_json(),
            "static_memory": self.static_memory, "build_flags": self.build_flags,
            "lib_deps": self.lib_deps,
            "footprint": self.footprint.to_json() if self.footprint is not None else None,
            "pipeline": self.pipeline.to_json() if self.pipeline is not None else None,
            "optimize": self.optimize.to_json() if self.optimize is not None else None,
            "warnings": self.warnings,
        }


def channel_dim(shape: list[int]) -> int:
    """The last dimension above 1 (the firmware's channel_dim()): [1, 64, 3, 1] -> 3."""
    for d in reversed(shape or []):
        if d > 1:
            return d
    return 1


def c_name(stem: str) -> str:
    """A C identifier / Arduino sketch name from a file name."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", stem).strip("_") or "model"
    if s[0].isdigit():
        s = "m_" + s
    return s


def resolve_ops(model: Model, runtime: Runtime) -> tuple[list[OpEntry], list[str]]:
    """The resolver entries (unique, sorted) and the execution-order names.

    Raises UsageError naming every operator the runtime cannot run."""
    entries: dict[str, OpEntry] = {}
    sequence: list[str] = []
    problems: list[str] = []
    custom_missing: list[str] = []
    for op in model.operators:
        if op.op == "CUSTOM":
            code = op.custom_code or ""
            ok, _ = runtime.support_custom(code)
            if ok:
                entries.setdefault("CUSTOM:" + code,
                                   OpEntry(code, runtime.custom_ops[code], custom=True))
            elif code not in custom_missing:
                custom_missing.append(code)
            sequence.append(code)
            continue
        ok, why = runtime.support(op.op, op.version)
        if ok:
            entries.setdefault(op.op, OpEntry(op.op, runtime.ops[op.op].resolver))
        elif why not in problems:
            problems.append(why)
        sequence.append(op.op)
    if custom_missing:
        problems.append(f"custom op{'s' if len(custom_missing) > 1 else ''} "
                        f"{', '.join(custom_missing)} not registered by the library")
    if problems:
        raise UsageError(
            f"{Path(model.path).name} cannot run on {runtime.name} {runtime.version}: "
            + "; ".join(problems),
            hint="see `nanoml inspect MODEL`; try the other --runtime, or convert the model "
                 "with ops the library has")
    if not entries:
        raise UsageError(f"{Path(model.path).name} has no operators")
    return sorted(entries.values(), key=lambda e: e.name), sequence


def _tensor_text_len(t) -> int:
    return len(t.dtype) + 1 + len("x".join(str(d) for d in t.shape))


def line_buffer_bytes(model: Model, op_sequence: list[str], n_outputs_total: int,
                      quantized_outputs: bool, layers: bool = False) -> int:
    """Bytes for the longest line the firmware writes (hello or res; with `layers`
    also the layer dump's, nanoml.serial.layers.layer_line_bytes), with room to spare."""
    hello = (200 + sum(len(o) + 1 for o in op_sequence)
             + sum(_tensor_text_len(t) + 1 for t in model.input_tensors + model.output_tensors))
    res = 64 + n_outputs_total * (FLOAT_CHARS + 1)
    if quantized_outputs:
        res += n_outputs_total * 12
    need = max(hello, res, 256) + 64
    if layers:
        from ..serial.layers import layer_line_bytes
        need = max(need, layer_line_bytes(model))
    return (need + 63) // 64 * 64


def _check_layers(model: Model, layers: bool, input_source: str, profile: bool) -> None:
    """The layer-dump build runs on the host's input frames, without profiling."""
    if not layers:
        return
    if input_source != "serial":
        raise UsageError("--layers dumps the layers of the host's input frames: it needs "
                         "--input serial", hint="build with --input serial --layers")
    if profile:
        raise UsageError("--layers and --profile are two debug builds: choose one",
                         hint="--profile times the operators, --layers sends their outputs")


def build_flags(static_memory: bool, profile: bool) -> list[str]:
    flags = []
    if static_memory:
        flags.append("-DTF_LITE_STATIC_MEMORY")
    flags.append("-DNDEBUG")
    if not profile:
        # Drops TFLM's error strings (flash) and its profiler hook; the
        # profiling firmware needs the hook, so it keeps them.
        flags.append("-DTF_LITE_STRIP_ERROR_STRINGS")
    return flags


def _check_input(model: Model, board: Board, source: str, rate: int | None) -> tuple[int, dict | None, dict | None, list[str]]:
    ins = model.input_tensors
    warnings: list[str] = []
    if source not in INPUTS:
        raise UsageError(f"unknown input source '{source}'", hint=f"use one of: {', '.join(INPUTS)}")
    if source in ("serial", "imu", "mic") and len(ins) != 1:
        raise UsageError(f"--input {source} needs a model with one input tensor "
                         f"({Path(model.path).name} has {len(ins)})",
                         hint="use --input synthetic for benchmarking")
    imu = mic = None
    if source == "imu":
        imu = board.sensors.get("imu")
        if not imu:
            raise UsageError(f"{board.name} has no IMU in its board profile")
        t = ins[0]
        ch = channel_dim(t.shape)
        if ch not in IMU_CHANNELS:
            raise UsageError(
                f"--input imu needs 3, 6 or 9 channels (accelerometer, + gyroscope, "
                f"+ magnetometer) as the input's last dimension above 1; "
                f"{Path(model.path).name}'s input is {t.dtype} {t.shape}",
                hint="shape the model's input as [1, window, channels] (or [1, window, channels, 1])")
        if t.dtype not in SUPPORTED_SAMPLE_TYPES:
            raise UsageError(f"--input imu cannot fill a {t.dtype} input tensor")
        odr = int(imu.get("odr_hz", DEFAULT_IMU_RATE))
        rate = rate or min(DEFAULT_IMU_RATE, odr)
        if rate <= 0 or rate > odr:
            raise UsageError(f"--rate {rate} Hz: the {imu['part']} runs at {odr} Hz with "
                             f"{imu['library']}", hint=f"use --rate {odr} or lower")
        imu = dict(imu, odr_hz=odr, channels=ch, window=t.elements // ch)
    elif source == "mic":
        mic = board.sensors.get("mic")
        if not mic:
            raise UsageError(f"{board.name} has no microphone",
                             hint="use a Sense board (--board nano33ble_sense or nano33ble_sense_rev2)")
        t = ins[0]
        if t.dtype not in SUPPORTED_SAMPLE_TYPES:
            raise UsageError(f"--input mic cannot fill a {t.dtype} input tensor")
        rate = rate or DEFAULT_MIC_RATE
        if rate not in MIC_RATES:
            raise UsageError(f"--rate {rate}: the PDM microphone runs at "
                             f"{' or '.join(str(r) for r in MIC_RATES)} Hz")
        mic = dict(mic, window=t.elements)
        if t.dtype != "int16" and (t.quant is None) and t.dtype != "float32":
            warnings.append(f"input {t.dtype} has no quantization: samples are stored as s/32768")
    else:
        rate = rate or 0
    return rate, imu, mic, warnings


def _recorded_arena(project_dir: Path, sha256: str, runtime_id: str,
                    warnings: list[str]) -> int | None:
    """The arena measured on the board for this model and runtime, if `nanoml profile`
    recorded one in the project; a record that is not a sane byte count is ignored
    (with a warning), never rendered."""
    from ..profile.record import ARENA_FILE, read_recorded_arena
    path = Path(project_dir) / ARENA_FILE
    if not path.is_file():          # absent, or a FIFO / device: never opened
        return None
    d = read_recorded_arena(Path(project_dir), sha256, runtime_id)
    n = sane_size(d.get("min_bytes")) if d else None
    if d and n is not None:
        return n
    why = None
    try:
        raw = json.loads(path.read_text()) if path.stat().st_size < 65536 else None
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        raw = None
    if not isinstance(raw, dict):
        why = "it is not a JSON record"
    elif (raw.get("model_sha256"), raw.get("runtime")) == (sha256, runtime_id) and \
            sane_size(raw.get("min_bytes")) is None:
        why = f"its min_bytes ({str(raw.get('min_bytes'))[:40]}) is not a plausible arena size"
    if why:
        warnings.append(f"ignored {path}: {why}; the arena comes from the prediction")
    return None


def _check_arena_fits(plan: ArenaPlan, board: Board, project_dir: Path | None) -> None:
    """Refuse an arena the board's RAM cannot hold next to an empty sketch."""
    room = board.ram_bytes - board.baseline_ram
    if plan.size <= room:
        return
    if plan.forced:
        source, hint = "--arena", "give a smaller --arena"
    elif plan.measured is not None:
        source = f"the minimum measured on the board (recorded in {project_dir}/.nanoml/arena.json)"
        hint = "delete that file if it is wrong, or give the arena with --arena N"
    else:
        source = "the predicted minimum + margin"
        hint = ("use a smaller model (smaller activations, int8), a smaller --arena-margin, "
                "or check the prediction with `nanoml inspect MODEL`")
    raise UsageError(f"arena of {plan.size:,} B ({source}) does not fit the {board.ram_bytes:,} B "
                     f"of RAM of the {board.name} (an empty sketch already takes "
                     f"{board.baseline_ram:,} B, leaving {room:,} B)", hint=hint)


def make_spec(model_path: str | Path, board_id: str | None = None, runtime_id: str | None = None,
              input_source: str = "serial", fmt: str = "platformio", arena: str | int | None = None,
              arena_margin: str | int | None = None, rate_hz: int | None = None,
              interval_ms: int = 0, profile: bool = False,
              project_dir: Path | None = None,
              pipeline: dict | None = None, optimize: str | None = None,
              layers: bool = False) -> FirmwareSpec:
    """Check and describe a firmware build. `project_dir`: the output folder, where
    `nanoml profile` may have recorded the arena measured on the board. `pipeline`:
    overrides of the model's stored pipeline (`nanoml.pipeline.store.resolve`'s
    keyword arguments); mic/imu input only. `optimize`: the optimization profile
    (`speed`/`size`; None: the default, nanoml/firmware/optimize.py). `layers`: the
    layer-dump build (serial input; not with `profile`)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'", hint=f"use one of: {', '.join(FORMATS)}")
    model_path = Path(model_path)
    model = load(model_path)
    board = get_board(board_id)
    runtime = get_runtime(runtime_id)
    ops, sequence = resolve_ops(model, runtime)
    pipe = sensor_pipeline(model, input_source, pipeline or {})
    rate_hz = _pipeline_rate(pipe, rate_hz)
    rate, imu, mic, warnings = _check_input(model, board, input_source, rate_hz)
    if pipe is not None and imu is not None:
        imu["channels"] = pipe.channels
    if interval_ms < 0:
        raise UsageError("--interval-ms must not be negative")
    _check_layers(model, layers, input_source, profile)

    # The Arduino IDE cannot pass -DTF_LITE_STATIC_MEMORY to a library.
    static_memory = runtime.static_memory and fmt == "platformio"
    if fmt == "arduino" and runtime.static_memory:
        warnings.append("Arduino sketch: the IDE cannot pass -DTF_LITE_STATIC_MEMORY to the "
                        "library, so the arena is sized for a build without it")
    if fmt == "arduino" and not runtime.arduino_library:
        warnings.append(f"{runtime.name} is not in the Arduino library manager: install it from "
                        f"{runtime.lib_deps}")
    measured = None
    if arena is None and static_memory and project_dir is not None:
        measured = _recorded_arena(project_dir, model.sha256, runtime.id, warnings)
    plan = plan_arena(model, runtime.id, static_memory, arena, arena_margin, measured)
    _check_arena_fits(plan, board, project_dir)
    if measured is not None:
        warnings.append(f"arena from the minimum measured on the board ({measured:,} B, "
                        f"{project_dir}/.nanoml/arena.json) instead of the prediction"
                        + (f" ({plan.predicted:,} B)" if plan.predicted is not None else ""))
    if plan.exact is False and not plan.forced:
        warnings.append("the arena prediction is a safe upper bound, not an exact figure "
                        "(some op has no allocation model); `nanoml build --profile` measures "
                        "the real minimum on the board")

    outputs_total = sum(t.elements for t in model.output_tensors)
    quantized_outputs = all(t.quant is not None and t.dtype in ("int8", "uint8", "int16", "int32")
                            for t in model.output_tensors)

    from ..model.verdict import assess   # the verdict and footprint inspect gives
    # the layer-dump build keeps TFLM's error strings and profiler hook, as the
    # profiling build does: counted as one (docs/build.md "Layer-dump build")
    verdict = assess(model, board, runtime, input_source, profile or layers,
                     arena_bytes=plan.size)
    fp = verdict.footprint
    if verdict.verdict.blocking():
        raise UsageError(f"{model_path.name} cannot run on {runtime.name} {runtime.version}: "
                         f"{verdict.verdict.blocking()[0].message}",
                         hint="see `nanoml inspect MODEL`")
    if model.size + board.baseline_flash > board.flash_bytes:
        raise UsageError(
            f"{model_path.name} ({model.size:,} B) cannot fit the {board.flash_bytes:,} B of "
            f"application flash of the {board.name} (an empty sketch already takes "
            f"{board.baseline_flash:,} B)", hint="use a smaller model (fewer or int8 weights)")
    from ..footprint import for_profile     # the optimization profile and its footprint
    opt, fp, _ = for_profile(optimize, board, runtime, model, plan.size, input_source,
                             profile or layers, fmt)
    if not fp.fits_flash:
        warnings.append(f"estimated flash {fp.flash_bytes:,} B exceeds the board's "
                        f"{board.flash_bytes:,} B: the link will probably fail")
    if not fp.fits_ram:
        warnings.append(f"estimated RAM {fp.ram_bytes:,} B (arena {plan.size:,} B) exceeds the "
                        f"board's {board.ram_bytes:,} B: the link will probably fail")

    unsafe = sorted({o.name for o in ops} & ARENA_PROBE_UNSAFE_OPS)
    if profile and unsafe:
        warnings.append(f"profiling firmware: {', '.join(unsafe)} can hang TFLM when the arena "
                        f"is too small, so the arena is not bisected on the board (arena min=0)")

    lib_deps = [runtime.lib_deps]
    if imu:
        lib_deps.append(imu["library"])

    return FirmwareSpec(
        model_path=model_path, model=model, name=c_name(model_path.stem), board=board,
        runtime=runtime, input=input_source, fmt=fmt, rate_hz=rate, interval_ms=interval_ms,
        profile=profile, ops=ops, op_sequence=sequence, arena=plan,
        line_bytes=line_buffer_bytes(model, sequence, outputs_total, quantized_outputs, layers),
        output_capacity=max(outputs_total, 1), static_memory=static_memory,
        build_flags=build_flags(static_memory, profile or layers) if fmt == "platformio" else [],
        lib_deps=lib_deps, imu=imu, mic=mic, footprint=fp, warnings=warnings, pipeline=pipe,
        optimize=opt, layers=layers)


def sensor_pipeline(model: Model, source: str, overrides: dict):
    """The pipeline a mic/imu build renders: the model's stored description with
    the command line's overrides (None: the input takes raw samples, as before)."""
    if source not in ("mic", "imu"):
        if any(v is not None for v in overrides.values()):
            raise UsageError(f"pipeline options apply to --input mic or imu, not {source}")
        return None
    from ..pipeline.store import resolve
    pipe = resolve(model, **overrides)
    if pipe is not None and pipe.source != source:
        raise UsageError(f"{Path(model.path).name} has a {pipe.source} pipeline, but the "
                         f"build asks for --input {source}",
                         hint=f"use --input {pipe.source}")
    return pipe


def _pipeline_rate(pipe, rate_hz: int | None) -> int | None:
    """The sensor rate the pipeline fixes (an explicit --rate must agree)."""
    if pipe is None:
        return rate_hz
    want = pipe.sample_rate
    if int(want) != want:
        raise UsageError(f"the pipeline's rate {want:g} Hz is not a whole number of Hz",
                         hint="rewrite it with `nanoml pipeline MODEL --rate N`")
    if rate_hz is not None and rate_hz != int(want):
        raise UsageError(f"--rate {rate_hz} differs from the pipeline's {int(want)} Hz",
                         hint="leave --rate out (the pipeline sets it)")
    return int(want)
