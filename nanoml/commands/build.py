"""`nanoml build MODEL`: generate the firmware project and compile it with PlatformIO."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (BOARD_OPTION, JSON_OPTION, POSITIVE, RUNTIME_OPTION, InputSource,
                      OptimizeProfile, ProjectFormat, arena_option, console, decision_option, emit_json, esc,
                      frontend_option, handle_errors, labels_option, layers_option, model_ref, names,
                      show_progress, stride_ms_option, stride_option, threshold_option,
                      optimize_option, timeout_option, value_of)


def escape(text: str) -> str:
    from rich.markup import escape as _escape
    return _escape(text)

INPUT_HELP = ("Input source: serial (host sends tensors), synthetic (test pattern, "
              "benchmarking), imu (accelerometer/gyroscope windows), mic (PDM audio).")


def register(app: typer.Typer) -> None:
    @app.command("build")
    def build_cmd(
        model: Path = typer.Argument(..., help="The .tflite model."),
        board: str = BOARD_OPTION,
        runtime: str = RUNTIME_OPTION,
        input_source: InputSource = typer.Option("serial", "--input", "-i", help=INPUT_HELP),
        out: Path = typer.Option(None, "--out", "-o",
                                 help="Project folder (default ./<model>-firmware, or "
                                      "./<model> for --format arduino). Updated in place."),
        no_compile: bool = typer.Option(False, "--no-compile",
                                        help="Write the project, do not run PlatformIO."),
        arena: str = arena_option("Force the tensor arena size (bytes, e.g. 20000 or 20K)."),
        arena_margin: str = typer.Option(None, "--arena-margin",
                                         help="Added to the predicted arena: bytes (1024, 2K) or "
                                              "a percentage (10%). Default 1KiB."),
        fmt: ProjectFormat = typer.Option("platformio", "--format", "-f",
                                help="platformio (project folder) or arduino (sketch folder)."),
        rate: int = typer.Option(None, "--rate", callback=POSITIVE,
                                 help="Input rate in Hz: samples per second of --input imu "
                                      "(default 100) or mic (16000)."),
        interval_ms: int = typer.Option(0, "--interval-ms",
                                        help="--input synthetic: pause between inferences."),
        profile: bool = typer.Option(False, "--profile",
                                     help="Profiling firmware: per-operator cycles ('op' lines) "
                                          "and an arena bisection at start-up ('arena' line)."),
        layers: bool = layers_option("Layer-dump firmware (--input serial): for each input "
                                     "frame, every operator's output ('lay'/'lch' lines), "
                                     "for `nanoml validate --layers`."),
        force: bool = typer.Option(False, "--force",
                                   help="Overwrite files in --out that nanoml did not write or "
                                        "that were edited."),
        config: Path = typer.Option(None, "--config",
                                    help="nanoml.toml with [offline] local package sources "
                                         "(default: ./nanoml.toml if present)."),
        packages_dir: Path = typer.Option(None, "--packages-dir",
                                          help="Folder of local PlatformIO packages/libraries "
                                               "for an offline build (docs/build.md)."),
        timeout: float = timeout_option(1800, "the PlatformIO build"),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Show PlatformIO's output."),
        frontend: str = frontend_option("--input mic: the audio front end (micro_speech), "
                                        "overriding the model's stored pipeline."),
        labels: str = labels_option(),
        stride_ms: int = stride_ms_option("--input mic pipeline: ms between inferences."),
        stride: int = stride_option("--input imu pipeline: samples between inferences."),
        decision: bool = decision_option("Turn the pipeline's score smoothing (det lines) "
                                         "on or off."),
        threshold: int = threshold_option(),
        optimize: OptimizeProfile = optimize_option(),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Generate a PlatformIO project (or Arduino sketch) for MODEL and compile it.

        Exit 0: built (or written, with --no-compile); 2: bad input; 4: PlatformIO failed.
        """
        with handle_errors(json_out):
            from ..firmware.build import BuildOptions, build, compile_project, generate
            from ..firmware.render import platformio_env
            overrides = {"frontend": frontend, "labels": names(labels),
                         "stride_ms": stride_ms, "stride": stride, "decision": decision,
                         "threshold": threshold}
            opts = BuildOptions(model=model, board=board, runtime=runtime,
                                input=value_of(input_source), out=out, fmt=value_of(fmt),
                                arena=arena, arena_margin=arena_margin,
                                rate_hz=rate, interval_ms=interval_ms, profile=profile,
                                compile=not no_compile, force=force, config=config,
                                packages_dir=packages_dir, verbose=verbose, timeout=timeout,
                                pipeline=overrides, optimize=value_of(optimize),
                                layers=layers)
            if json_out:
                result = build(opts)
                emit_json(to_json(result), "build/1", result.exit_code)
                raise typer.Exit(result.exit_code)
            c = console()
            result = generate(opts)
            render_generated(c, result)
            if opts.compile and result.spec.fmt == "platformio":
                result.pio = run_with_progress(
                    c, "building", verbose,
                    lambda on_line: compile_project(result.project_dir, result.spec, on_line,
                                                    timeout, verbose,
                                                    platformio_env(result.spec)))
                render_compiled(c, result)
            elif opts.compile:
                c.print(f"compile it with: arduino-cli compile -b {esc(result.spec.board.fqbn)} "
                        f"{esc(result.project_dir)}", soft_wrap=True)
            raise typer.Exit(result.exit_code)


def to_json(result) -> dict:
    """build's document, with the shapes every command shares: `model` {path, bytes,
    sha256}, `limits` {flash_bytes, ram_bytes} (the board's; what the build used is
    `usage`), `spec.footprint` {flash_bytes, ram_bytes, flash: {part: B}, ram: {...}, fits}."""
    d = result.to_json()
    spec = d.get("spec") or {}
    m = spec.get("model") or {}
    d["model"] = {"path": m.get("path"), "bytes": m.get("bytes"), "sha256": m.get("sha256")} \
        if m else model_ref(result.spec.model_path)
    fp = spec.get("footprint")
    if isinstance(fp, dict) and "flash_parts" in fp:
        fp["flash"] = fp.pop("flash_parts")
        fp["ram"] = fp.pop("ram_parts", {})
    board = result.spec.board
    d["usage"] = d.get("limits") or {}
    d["limits"] = {"flash_bytes": board.flash_bytes, "ram_bytes": board.ram_bytes}
    return d


def run_with_progress(c, what: str, verbose: bool, fn):
    """Run fn(on_line) showing PlatformIO's current step (progress on stderr), or,
    with --verbose, every line PlatformIO prints."""
    if verbose:
        return fn(lambda line: c.print(line, markup=False, highlight=False))
    with show_progress(first=what) as p:
        p.step(what)
        return fn(p.line)


def render_generated(c, result) -> None:
    from rich.markup import escape
    s = result.spec
    f = result.files
    a = s.arena
    c.print(f"[bold]{escape(str(result.project_dir))}[/]  ({s.fmt}) {escape(s.model_path.name)} -> "
            f"{escape(s.board.name)}, {s.runtime.name} {s.runtime.version}, input {s.input}"
            + (", profiling" if s.profile else "") + (", layer dumps" if s.layers else ""),
            soft_wrap=True)
    c.print(f"ops ({len(s.ops)}): " + escape(", ".join(o.name for o in s.ops)), soft_wrap=True)
    if a.forced:
        c.print(f"arena {a.size:,} B (forced; predicted minimum "
                f"{a.predicted if a.predicted is not None else 'n/a'})")
    elif a.measured is not None:
        c.print(f"arena {a.size:,} B = measured on the board {a.measured:,} B + margin "
                f"{a.margin:,} B ({escape(str(a.margin_spec))})")
    else:
        c.print(f"arena {a.size:,} B = predicted {a.predicted:,} B + margin {a.margin:,} B "
                f"({escape(str(a.margin_spec))})" + ("" if a.static_memory else ", no TF_LITE_STATIC_MEMORY"))
    if result.local:
        c.print(f"local packages from {escape(result.local.source)}", soft_wrap=True)
    changed = f.written + f.removed
    c.print(f"files: {len(f.written)} written, {len(f.unchanged)} unchanged"
            + (f", {len(f.removed)} removed" if f.removed else "")
            + (f"  ({escape(', '.join(changed))})" if changed and len(changed) <= 6 else ""),
            soft_wrap=True)
    o = s.optimize
    if o is not None:
        own = o.tuned()
        c.print(f"optimization profile {o.profile} ({o.chosen_by}), float ABI {o.float_abi}"
                + (f", {own} kernel source pattern(s) with their own flags" if own else "")
                + (f", +{o.extra_flash_bytes:,} B of flash" if o.extra_flash_bytes else ""),
                soft_wrap=True)
    for w in s.warnings + (o.notes if o is not None else []) + result.notes:
        c.print(f"[yellow]note:[/] {escape(w)}", soft_wrap=True)


def render_advice(c, adv) -> None:
    """One line of error, one of hint, on stderr (never wrapped, never read as markup)."""
    if adv is None:
        return
    c = console(stderr=True)
    c.print(f"[red]error:[/] {escape(adv.message)}", soft_wrap=True)
    c.print(f"hint: {escape(adv.hint)}", soft_wrap=True)
    if adv.detail and adv.detail not in adv.message:
        c.print(f"  ({adv.detail})", markup=False, soft_wrap=True)


def render_compiled(c, result) -> None:
    from rich.table import Table
    p = result.pio
    if p is None:
        return
    if not p.ok:
        render_advice(c, p.advice)
        return
    lim = result.limits()
    t = Table(title=f"built in {p.seconds:.1f} s", show_edge=False)
    for col in ("", "used", "board", "free", "%"):
        t.add_column(col, justify="right" if col else "left")
    for key in ("flash", "ram"):
        if key in lim:
            v = lim[key]
            t.add_row(key.capitalize() if key == "flash" else "RAM", f"{v['used_bytes']:,} B",
                      f"{v['board_bytes']:,} B", f"{v['free_bytes']:,} B", f"{v['percent']:.1f}")
    if lim:
        c.print(t)
    c.print(f"upload: nanoml flash {escape(str(result.project_dir))}", soft_wrap=True)
