"""`nanoml flash MODEL|PROJECT_DIR`: build when needed, upload through PlatformIO."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (BOARD_OPTION, JSON_OPTION, POSITIVE, RUNTIME_OPTION, InputSource,
                      arena_option, console, emit_json, esc, handle_errors, layers_option, port_option,
                      show_progress, value_of)


def register(app: typer.Typer) -> None:
    @app.command("flash")
    def flash_cmd(
        target: Path = typer.Argument(..., help="A .tflite model, or a project folder written "
                                                "by `nanoml build`."),
        port: str = port_option(),
        board: str = BOARD_OPTION,
        monitor: bool = typer.Option(False, "--monitor", "-m",
                                     help="Continue into `nanoml monitor` after the upload."),
        runtime: str = RUNTIME_OPTION,
        input_source: InputSource = typer.Option("serial", "--input", "-i",
                                                 help="MODEL only: the firmware's input source."),
        out: Path = typer.Option(None, "--out", "-o", help="MODEL only: project folder."),
        arena: str = arena_option("MODEL only: force the arena size (bytes, 20000 or 20K)."),
        arena_margin: str = typer.Option(None, "--arena-margin",
                                         help="MODEL only: margin over the predicted arena."),
        profile: bool = typer.Option(False, "--profile", help="MODEL only: profiling firmware."),
        layers: bool = layers_option("MODEL only: layer-dump firmware (--input serial), for "
                                     "`nanoml validate --layers`."),
        build_timeout: float = typer.Option(1800, "--build-timeout", callback=POSITIVE,
                                            help="Limit for the build step, seconds."),
        upload_timeout: float = typer.Option(180, "--upload-timeout", callback=POSITIVE,
                                             help="Limit for the upload step, seconds."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Show PlatformIO's output."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Upload firmware to the board (sam-ba/bossac through PlatformIO).

        Exit 0: uploaded; 2: bad input; 3: no board / no permission; 4: build or upload failed.
        """
        with handle_errors(json_out):
            from ..firmware.build import BuildOptions
            from ..firmware.upload import FlashOptions, flash
            bopts = BuildOptions(model=target, board=board, runtime=runtime,
                                 input=value_of(input_source),
                                 out=out, arena=arena, arena_margin=arena_margin, profile=profile,
                                 layers=layers, verbose=verbose)
            opts = FlashOptions(target=target, port=port, board=board, build=bopts,
                                build_timeout=build_timeout, upload_timeout=upload_timeout,
                                verbose=verbose)
            if json_out:
                result = flash(opts)
                d = result.to_json()
                if result.generated is not None:        # the build document's shapes
                    from .build import to_json as build_json
                    d["generated"] = build_json(result.generated)
                emit_json(d, "flash/1", result.exit_code)
                if result.ok and monitor:
                    raise typer.Exit(_monitor(result, port, json_out))
                raise typer.Exit(result.exit_code)
            c = console()
            result = _flash_with_progress(c, opts, verbose)
            _render(c, result)
            if result.ok and monitor:
                raise typer.Exit(_monitor(result, port, json_out))
            raise typer.Exit(result.exit_code)


def _flash_with_progress(c, opts, verbose: bool):
    from ..firmware.upload import flash
    if verbose:
        return flash(opts, on_line=lambda line: c.print(line, markup=False, highlight=False),
                     on_stage=lambda s: c.print(f"[bold]{esc(s)}[/]"))
    with show_progress(first="preparing") as p:       # stage and PlatformIO step, stderr
        return flash(opts, on_line=p.line, on_stage=p.step)


def _render(c, result) -> None:
    plan = result.plan
    if result.generated is not None:
        from .build import render_generated
        render_generated(c, result.generated)
    from .build import escape, render_advice
    if plan is not None:
        c.print(f"board: {escape(plan.board.name)} on {escape(plan.port.label())}", soft_wrap=True)
    if result.ok:
        extra = ""
        if result.bytes_written:
            extra = f": {result.bytes_written:,} B"
            if result.upload_seconds:
                extra += f" in {result.upload_seconds:.1f} s"
        c.print(f"[green]uploaded[/]{extra}")
        return
    render_advice(c, result.advice)


def _monitor(result, port: str | None, json_out: bool) -> int:
    """Continue into `nanoml monitor`: its command, registered alone on an app of its own."""
    import typer.main

    from ..firmware.upload import wait_for_sketch_port
    from . import monitor
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    monitor.register(app)
    # the board resets after the upload; the monitor's first connection must succeed
    wait_for_sketch_port(result.plan.board, port)
    args = ["--board", result.plan.board.id]
    if port:
        args += ["--port", port]
    if json_out:
        args.append("--json")
    rc = typer.main.get_command(app).main(args=args, standalone_mode=False)
    return rc if isinstance(rc, int) else 0
