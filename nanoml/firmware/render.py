"""Render a FirmwareSpec into project files (path -> bytes), from sketches/.

Layouts:
  platformio: platformio.ini + nanoml_flags.py + src/<files>
  arduino:    <name>.ino + <files> (the folder itself is the sketch, named <name>)

Files (all owned by nanoml; see project.py for how they are written):
  main.cpp / <name>.ino   Arduino + TFLM glue; independent of the model
  model_data.h/.cpp       the model array (the only file a model swap must change)
  nanoml_ops.h/.cpp       MicroMutableOpResolver<N> with exactly the model's ops
  nanoml_buffers.h/.cpp   tensor arena and line/output buffers sized for the model
  nanoml_config.h         build options (board, runtime, input, rates, profile)
  nanoml_app.h/.cpp       Arduino/TFLM-free helpers (quantization, windows, lines)
  nanoml_protocol.h       the serial protocol (sketches/common)
  nanoml_cycles.h         DWT cycle counter
  nanoml_capture.h        raw sample capture (cap/stop commands, smp frames)
  nanoml_input.h/.cpp     imu / mic input only
  nanoml_profiler.h       profiling firmware only (per-operator timing)
  nanoml_arena_probe.h    profiling firmware only (safe arena bisection)
  nanoml_layers.h         layer-dump firmware only (lay/lch/lend framing, CRC-32)
  nanoml_layer_hook.h     layer-dump firmware only (each operator's output from the profiler hook)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..resources import data_dir
from .offline import LocalPackages, lib_dep_name
from .spec import (ARENA_PROBE_UNSAFE_OPS, BAUD, HELLO_PERIOD_MS, MAX_OP_EVENTS,
                   MIC_RING_SAMPLES, SERIAL_WAIT_MS, FirmwareSpec)

# Copied verbatim (no template).
STATIC_FILES = ("model_data.h", "nanoml_ops.h", "nanoml_buffers.h", "nanoml_app.h",
                "nanoml_app.cpp", "nanoml_cycles.h", "nanoml_capture.h")
# Sensor pipelines (mic/imu input with a pipeline): windows, conversion, decisions.
PIPELINE_FILES = ("nanoml_window.h", "nanoml_recognizer.h")
# Layer-dump build (--layers): the dump's framing and its TFLM hook.
LAYER_FILES = ("nanoml_layers.h", "nanoml_layer_hook.h")
# nanoml_app.h's TensorType (TfLiteType numbers).
TYPE_CODES = {"float32": 1, "int8": 9, "uint8": 3, "int16": 7}
# PDM gain of the pipeline firmware: the value TFLM's micro_speech example for
# this board uses (tflite-micro-arduino-examples, arduino_audio_provider.cpp).
PDM_GAIN = 13
PROTOCOL_HEADER = "common/nanoml_protocol.h"
# PlatformIO extra script: the optimization profile's per-file flags and float ABI
# (nanoml/firmware/optimize.py; platformio.ini's extra_scripts).
FLAGS_SCRIPT = "nanoml_flags.py"
_HEX = [f"0x{b:02x}" for b in range(256)]


@lru_cache(maxsize=1)
def _env():
    import jinja2
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("sketches"))),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        autoescape=False)


def model_bytes_text(data: bytes, per_line: int = 16) -> str:
    """The model as C array initializer lines: '    0x1c, 0x00, ...,'."""
    hx = _HEX
    lines = []
    for i in range(0, len(data), per_line):
        lines.append("    " + ", ".join(hx[b] for b in data[i:i + per_line]) + ",")
    return "\n".join(lines)


def _c_string(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def c_literal(s: str) -> str:
    """Any text as the body of a C string literal: printable ASCII kept, every
    other byte (UTF-8) as an octal escape."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '"\\?' or not 32 <= b < 127:
            out.append(f"\\{b:03o}")
        else:
            out.append(c)
    return "".join(out)


def c_float(x: float) -> str:
    """A float32 constant: the float32 nearest x, written so the compiler reads
    back exactly that value (the host twins round parameters to float32 too)."""
    import numpy as np
    v = float(np.float32(x))
    text = repr(v)
    if "e" not in text and "." not in text and "inf" not in text:
        text += ".0"
    return text + "f"


def pipeline_context(spec: FirmwareSpec) -> dict | None:
    """The pipeline's parameters as the firmware config renders them."""
    from ..errors import UsageError
    from ..pipeline.spec import IMU_CHANNELS
    p = spec.pipeline
    if p is None:
        return None
    conv = p.tensor
    ctx = {"source": p.source, "type": TYPE_CODES[conv.dtype], "dtype": conv.dtype,
           "multiplier": conv.multiplier, "shift": conv.shift, "zero_point": conv.zero_point,
           "qmin": conv.qmin, "qmax": conv.qmax, "feature_scale": c_float(conv.feature_scale),
           "frames": p.frames, "channels": p.channels, "decision": None,
           "labels": [c_literal(p.label(i)) for i in range(spec.model.output_tensors[0].elements)]}
    if p.source == "mic":
        fe = dict(p.frontend.params)
        ctx.update(frontend={k: (c_float(v) if isinstance(v, float) else int(v))
                             for k, v in fe.items()},
                   step_samples=p.step_samples, window_samples=p.window_samples,
                   stride=p.stride_frames, pdm_gain=PDM_GAIN)
    else:
        im = p.imu
        ctx.update(stride=int(p.window["stride"]),
                   channel_index=[IMU_CHANNELS.index(c) for c in im.channels],
                   read_gyro=any(c[0] == "g" for c in im.channels),
                   read_mag=any(c[0] == "m" for c in im.channels),
                   offset=[c_float(v) for v in im.offset] if im.offset is not None else None,
                   scale=[c_float(v) for v in im.scale] if im.scale is not None else None)
    if p.decision is not None:
        if len(spec.model.output_tensors) != 1:
            raise UsageError("the pipeline's decisions need a model with one output tensor",
                             hint="build with --no-decision")
        d = p.decision
        ignore = set(d.ignore or [])
        ctx["decision"] = {"average_window_ms": d.average_window_ms, "threshold": d.threshold,
                           "suppression_ms": d.suppression_ms, "minimum_count": d.minimum_count,
                           "ignore": [1 if p.label(i) in ignore else 0
                                      for i in range(len(ctx["labels"]))]}
    return ctx


def platformio_env(spec: FirmwareSpec) -> str:
    return spec.board.id


def arduino_libraries(spec: FirmwareSpec) -> list[str]:
    libs = []
    rt = spec.runtime
    libs.append(rt.arduino_library or f"{rt.name} {rt.version} (git: {rt.lib_deps})")
    if spec.imu:
        libs.append(spec.imu["library"].split("/", 1)[-1])
    return libs


def git_install_url(url: str) -> str:
    """A lib_deps git URL ('https://host/owner/repo#ref') in the form
    `arduino-cli lib install --git-url` documents: 'https://host/owner/repo.git#ref'."""
    base, sep, ref = url.partition("#")
    base = base.rstrip("/")
    if not base.endswith(".git"):
        base += ".git"
    return base + sep + ref


def arduino_install_commands(spec: FirmwareSpec) -> list[str]:
    """The arduino-cli commands that install the sketch's libraries: by name from the
    library manager, or --git-url (which arduino-cli refuses until
    library.enable_unsafe_install is set) for a library that is not in it."""
    rt = spec.runtime
    cmds = []
    if rt.arduino_library:
        cmds.append(f'arduino-cli lib install "{rt.arduino_library}"')
    else:
        cmds.append("arduino-cli config set library.enable_unsafe_install true")
        cmds.append(f"arduino-cli lib install --git-url {git_install_url(rt.lib_deps)}")
    if spec.imu:
        cmds.append(f'arduino-cli lib install "{spec.imu["library"].split("/", 1)[-1]}"')
    return cmds


def ini_sources(spec: FirmwareSpec, local: LocalPackages | None) -> tuple[str, list[str], list[str]]:
    """(platform, platform_packages, lib_deps) with local sources substituted."""
    platform = spec.board.platformio["platform"]
    packages: list[str] = []
    lib_deps = list(spec.lib_deps)
    if local is not None:
        if local.platform:
            platform = local.platform
        packages = [f"{name} @ {url}" for name, url in sorted(local.packages.items())]
        lib_deps = [local.library_url(d) or d for d in lib_deps]
    return platform, packages, lib_deps


def context(spec: FirmwareSpec, local: LocalPackages | None = None,
            sketch_name: str | None = None) -> dict:
    m = spec.model
    platform, packages, lib_deps = ini_sources(spec, local)
    return {
        "nanoml_version": spec.nanoml_version,
        "fmt": spec.fmt,
        "sketch_name": sketch_name or spec.name,
        "model_file": Path(spec.model_path).name,
        "model_file_c": _c_string(Path(spec.model_path).name),
        "model_name": spec.name,
        "model_size": m.size,
        "model_sha256": m.sha256,
        "op_sequence": spec.op_sequence,
        "ops": spec.ops,
        "probe_unsafe_ops": sorted({o.name for o in spec.ops} & ARENA_PROBE_UNSAFE_OPS),
        "board": spec.board,
        "runtime": spec.runtime,
        "input": spec.input,
        "profile": spec.profile,
        "layers": spec.layers,
        "arena": spec.arena,
        "line_bytes": spec.line_bytes,
        "output_capacity": spec.output_capacity,
        "baud": BAUD,
        "serial_wait_ms": SERIAL_WAIT_MS,
        "hello_period_ms": HELLO_PERIOD_MS,
        "rate_hz": spec.rate_hz or 1,
        "interval_ms": spec.interval_ms,
        "max_op_events": MAX_OP_EVENTS,
        "mic_ring_samples": MIC_RING_SAMPLES,
        "imu": spec.imu,
        "mic": spec.mic,
        "pipe": pipeline_context(spec),
        "env": platformio_env(spec),
        "platform": platform,
        "platform_packages": packages,
        "lib_deps": lib_deps,
        "lib_names": [lib_dep_name(d) for d in spec.lib_deps],
        "build_flags": spec.build_flags,
        "static_memory": spec.static_memory,
        "local": local,
        "arduino_libraries": arduino_libraries(spec),
        "arduino_install_commands": arduino_install_commands(spec),
        "optimize": spec.optimize,
    }


def render_sources(spec: FirmwareSpec, ctx: dict) -> dict[str, str]:
    """Source files by bare name (main.cpp included)."""
    env = _env()
    sk = data_dir("sketches")
    out: dict[str, str] = {}
    for name in STATIC_FILES:
        out[name] = (sk / "firmware" / name).read_text()
    proto = sk / PROTOCOL_HEADER
    if not proto.is_file():
        raise FileNotFoundError(f"{proto} is missing from this nanoml installation")
    out["nanoml_protocol.h"] = proto.read_text()
    for name in ("main.cpp", "nanoml_config.h", "nanoml_ops.cpp", "nanoml_buffers.cpp"):
        out[name] = env.get_template(f"firmware/{name}.j2").render(ctx)
    out["model_data.cpp"] = env.get_template("firmware/model_data.cpp.j2").render(
        dict(ctx, model_bytes_text=model_bytes_text(spec.model.raw)))
    if spec.input in ("imu", "mic"):
        out["nanoml_input.h"] = (sk / "firmware" / "nanoml_input.h").read_text()
        if spec.pipeline is not None:
            for name in PIPELINE_FILES:
                out[name] = (sk / "firmware" / name).read_text()
        out["nanoml_input.cpp"] = env.get_template(
            f"firmware/nanoml_input_{spec.input}.cpp.j2").render(ctx)
    if spec.profile:
        for name in ("nanoml_profiler.h", "nanoml_arena_probe.h"):
            out[name] = (sk / "firmware" / name).read_text()
    if spec.layers:
        for name in LAYER_FILES:
            out[name] = (sk / "firmware" / name).read_text()
    return out


# Every source file name render_sources() can produce, whatever the options.
SOURCE_NAMES = frozenset(STATIC_FILES + PIPELINE_FILES + (
    "nanoml_protocol.h", "main.cpp", "nanoml_config.h", "nanoml_ops.cpp", "nanoml_buffers.cpp",
    "model_data.cpp", "nanoml_input.h", "nanoml_input.cpp", "nanoml_profiler.h",
    "nanoml_arena_probe.h") + LAYER_FILES)


def is_generated_name(rel: str, folder: str) -> bool:
    """Whether `rel` is a path some build into `folder` (its name) could have generated:
    platformio.ini, src/<source>, or a sketch's flat <source> and <folder>.ino. Only
    those may a manifest make nanoml delete: a manifest from elsewhere cannot remove the
    user's own files."""
    if rel in ("platformio.ini", FLAGS_SCRIPT):
        return True
    head, _, name = rel.rpartition("/")
    if head == "src":
        return name in SOURCE_NAMES
    return head == "" and (name in SOURCE_NAMES or name == f"{folder}.ino")


def render_project(spec: FirmwareSpec, local: LocalPackages | None = None,
                   sketch_name: str | None = None) -> dict[str, bytes]:
    """All files of the project, by path relative to the project folder.

    Arduino sketches are named after their folder: pass that as sketch_name."""
    sketch_name = sketch_name or spec.name
    ctx = context(spec, local, sketch_name)
    sources = render_sources(spec, ctx)
    files: dict[str, bytes] = {}
    if spec.fmt == "platformio":
        files["platformio.ini"] = _env().get_template("platformio/platformio.ini.j2").render(ctx).encode()
        files[FLAGS_SCRIPT] = _env().get_template(f"platformio/{FLAGS_SCRIPT}.j2").render(ctx).encode()
        for name, text in sources.items():
            files[f"src/{name}"] = text.encode()
    else:
        for name, text in sources.items():
            files[f"{sketch_name}.ino" if name == "main.cpp" else name] = text.encode()
    return files
