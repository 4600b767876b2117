"""`nanoml build` as a library: spec -> files on disk -> PlatformIO.

    result = build(BuildOptions(model="m.tflite", ...), on_line=...)

Never prints; the CLI renders the BuildResult.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ToolError, UsageError
from .offline import LocalPackages, lib_dep_name, load_local_packages
from .advice import network_advice
from .pio import DEFAULT_BUILD_TIMEOUT, PioResult, pio_command, run_pio
from .preflight import offline_reason
from .project import WriteReport, read_manifest, sync_files
from .render import is_generated_name, platformio_env, render_project
from .spec import FirmwareSpec, c_name, make_spec

_SKETCH_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass
class BuildOptions:
    model: str | Path
    board: str | None = None
    runtime: str | None = None
    input: str = "serial"
    out: str | Path | None = None
    fmt: str = "platformio"
    arena: str | int | None = None
    arena_margin: str | int | None = None
    rate_hz: int | None = None
    interval_ms: int = 0
    profile: bool = False
    compile: bool = True
    force: bool = False
    config: str | Path | None = None
    packages_dir: str | Path | None = None
    verbose: bool = False
    timeout: float = DEFAULT_BUILD_TIMEOUT
    cwd: Path | None = None
    # Overrides of the model's pipeline (mic/imu): store.resolve's keyword arguments.
    pipeline: dict | None = None
    optimize: str | None = None     # optimization profile (None: the default)
    layers: bool = False            # layer-dump build (docs/build.md "Layer-dump build")


@dataclass
class BuildResult:
    spec: FirmwareSpec
    project_dir: Path
    files: WriteReport
    local: LocalPackages | None
    pio: PioResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.pio is not None and not self.pio.ok:
            return ToolError.exit_code
        return 0

    def limits(self) -> dict:
        """Used vs board limits from PlatformIO's size report."""
        out = {}
        if self.pio is None:
            return out
        b = self.spec.board
        for key, total in (("Flash", b.flash_bytes), ("RAM", b.ram_bytes)):
            u = self.pio.usage.get(key)
            if u:
                out[key.lower()] = {"used_bytes": u.used, "board_bytes": total,
                                    "free_bytes": total - u.used,
                                    "percent": round(100.0 * u.used / total, 1)}
        return out

    def to_json(self) -> dict:
        return {"project_dir": str(self.project_dir), "format": self.spec.fmt,
                "spec": self.spec.to_json(), "files": self.files.to_json(),
                "local_packages": self.local.to_json() if self.local else None,
                "compiled": self.pio is not None,
                "pio": self.pio.to_json() if self.pio else None,
                "limits": self.limits(), "notes": self.notes, "exit_code": self.exit_code}


def default_out_dir(model: str | Path, fmt: str, cwd: Path) -> Path:
    """./<model stem>-firmware, or ./<stem> for an Arduino sketch (the folder names
    the sketch: a stem that cannot be a sketch name is made into one)."""
    stem = Path(model).stem
    if fmt == "arduino":
        return cwd / (stem if _SKETCH_NAME_RE.match(stem) else c_name(stem))
    return cwd / f"{stem}-firmware"


def pio_context(spec: FirmwareSpec) -> dict:
    return {"board": spec.board, "arena": spec.arena.size, "model_bytes": spec.model.size,
            "libraries": [lib_dep_name(d) for d in spec.lib_deps]}


def generate(opts: BuildOptions) -> BuildResult:
    """Check, render and write the project (no compile)."""
    cwd = Path(opts.cwd) if opts.cwd else Path.cwd()
    out = Path(opts.out) if opts.out else default_out_dir(opts.model, opts.fmt, cwd)
    if not out.is_absolute():
        out = cwd / out
    spec = make_spec(opts.model, opts.board, opts.runtime, opts.input, opts.fmt, opts.arena,
                     opts.arena_margin, opts.rate_hz, opts.interval_ms, opts.profile,
                     project_dir=out, pipeline=opts.pipeline, optimize=opts.optimize,
                     layers=opts.layers)
    sketch_name = None
    if spec.fmt == "arduino":
        sketch_name = out.name
        if not _SKETCH_NAME_RE.match(sketch_name):
            raise UsageError(f"'{sketch_name}' cannot be an Arduino sketch name (the folder "
                             f"names the sketch)", hint="use an --out folder named with letters, "
                             "digits, '_', '-' or '.', starting with a letter or digit")
    local = None
    if spec.fmt == "platformio":
        local = load_local_packages(spec.lib_deps, cwd=cwd, project_dir=out,
                                    config=Path(opts.config) if opts.config else None,
                                    packages_dir=Path(opts.packages_dir) if opts.packages_dir else None)
    elif opts.config or opts.packages_dir:
        raise UsageError("local packages (--config/--packages-dir) apply to --format platformio only")
    files = render_project(spec, local, sketch_name)
    if local is not None and local.unused:
        spec.warnings.append(f"{local.source}: not used by this build, ignored: "
                             + ", ".join(local.unused))
    meta = {"format": spec.fmt, "board": spec.board.id, "runtime": spec.runtime.id,
            "input": spec.input, "profile": spec.profile, "layers": spec.layers,
            "model": Path(spec.model_path).name,
            "model_sha256": spec.model.sha256, "arena_bytes": spec.arena.size,
            "optimize": spec.optimize.profile if spec.optimize is not None else None,
            "env": platformio_env(spec) if spec.fmt == "platformio" else None}
    report = sync_files(out, files, force=opts.force, meta=meta, generated=lambda rel: is_generated_name(rel, out.name))
    res = BuildResult(spec=spec, project_dir=out, files=report, local=local)
    if report.edited:
        res.notes.append("kept your edits (nanoml's version did not change): "
                         + ", ".join(report.edited))
    if report.kept:
        res.notes.append("left in place (edited, no longer generated): " + ", ".join(report.kept))
    if report.ignored:
        res.notes.append(f"ignored {len(report.ignored)} entr"
                         f"{'y' if len(report.ignored) == 1 else 'ies'} of .nanoml/manifest.json "
                         "outside the project folder or not valid: "
                         + ", ".join(report.ignored[:5]) + (" ..." if len(report.ignored) > 5 else ""))
    return res


def compile_project(project_dir: Path, spec: FirmwareSpec | None = None,
                    on_line: Callable[[str], None] | None = None,
                    timeout: float = DEFAULT_BUILD_TIMEOUT, verbose: bool = False,
                    environment: str | None = None) -> PioResult:
    cmd = pio_command(project_dir, environment=environment, verbose=verbose)
    reason = offline_reason(project_dir)
    if reason:
        res = PioResult(cmd, 1, 0.0, [f"nanoml: {reason}"])
        res.advice = network_advice(pio_context(spec) if spec else None, reason)
        return res
    return run_pio(cmd, on_line=on_line, timeout=timeout,
                   context=pio_context(spec) if spec else None)


def build(opts: BuildOptions, on_line: Callable[[str], None] | None = None) -> BuildResult:
    res = generate(opts)
    if opts.compile and res.spec.fmt == "platformio":
        res.pio = compile_project(res.project_dir, res.spec, on_line, opts.timeout, opts.verbose,
                                  platformio_env(res.spec))
    elif opts.compile and res.spec.fmt == "arduino":
        res.notes.append(f"Arduino sketch: compile it with arduino-cli compile -b "
                         f"{res.spec.board.fqbn} {res.project_dir} (or the Arduino IDE)")
    return res


def project_meta(project_dir: Path) -> dict:
    """What nanoml recorded about a generated project ({} when not generated by nanoml)."""
    m = read_manifest(project_dir)
    return {k: v for k, v in m.items() if k != "files"}
