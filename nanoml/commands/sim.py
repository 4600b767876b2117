"""`nanoml sim MODEL`: a virtual Nano 33 BLE Sense on a pseudo-terminal."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (BOARD_OPTION, FAST_OPTION, JSON_OPTION, POSITIVE, RUNTIME_OPTION, SimInput, arena_option,
                      console, count_option, emit_json, handle_errors, layers_option, model_ref,
                      rate_option,
                      source_option, timeout_option, value_of)


def register(app: typer.Typer) -> None:
    @app.command("sim")
    def sim_cmd(
        model: Path = typer.Argument(..., help="The .tflite model to run."),
        input: SimInput = typer.Option("synthetic", "--input", "-i",
                                  help="synthetic: the firmware's test pattern at --rate; "
                                       "serial: run on input frames the host sends."),
        rate: float = rate_option(10.0, "Synthetic input windows (inferences) per second "
                                        "(0 = as fast as possible)."),
        board: str = BOARD_OPTION,
        runtime: str = RUNTIME_OPTION,
        link: Path = typer.Option(None, "--link",
                                  help="Stable symlink to the port, kept across sim restarts "
                                       "(default: <tmp>/nanoml-<uid>/nanoml-sim)."),
        no_link: bool = typer.Option(False, "--no-link", help="Create no symlink."),
        count: int = count_option(None, "Stop after N results."),
        duration: float = typer.Option(None, "--duration", callback=POSITIVE,
                                       help="Stop after S seconds."),
        arena: str = arena_option("Arena for the host interpreter, bytes (20000, 20K; "
                                  "default: 10x the model, >= 64 KiB)."),
        timeout: float = timeout_option(None, "start-up and serving; exit 1 when it passes "
                                              "before --count/--duration end the run"),
        exit_with_parent: bool = typer.Option(False, "--exit-with-parent", hidden=True,
                                              help="Stop when the parent process dies "
                                                   "(used by monitor --sim)."),
        source: Path = source_option("Play FILE.wav into the microphone or FILE.csv into "
                                     "the IMU, through the model's pipeline, once a host "
                                     "opens the port; the sim stops at the file's end."),
        fast: bool = FAST_OPTION,
        labels: str = typer.Option(None, "--labels",
                                   help="With --source: label names, comma-separated (a,b,c; "
                                        "default: the model's pipeline)."),
        layers: bool = layers_option("With --input serial: as the layer-dump firmware, send "
                                     "every operator's output for each input frame "
                                     "(docs/protocol.md \"Layer dumps\")."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Run MODEL on a virtual board that speaks the firmware's serial protocol.

        Prints the port (/dev/pts/N) as the first line, then serves until Ctrl-C.
        Attach with `nanoml monitor --port <link>`."""
        with handle_errors(json_out):
            import os
            import signal
            import threading
            import time

            from ..boards import get_board
            from ..runtimes import all_runtimes, get_runtime
            from ..sim.board import VirtualBoard, default_link_path
            from ..sim.deadline import Deadline

            deadline = Deadline(timeout)
            if fast and source is None:
                from ..errors import UsageError
                raise UsageError("--fast goes with --source FILE",
                                 hint="synthetic input runs as fast as possible with --rate 0")

            b = get_board(board)
            rt = get_runtime(runtime).id if (runtime or all_runtimes()) else "tflm-host"
            vb = VirtualBoard(model, input=value_of(input), rate_hz=rate, board=b.id, runtime=rt,
                              link=None if no_link else (link or default_link_path()),
                              count=count, arena_size=arena, deadline=deadline, source=source,
                              fast=fast, labels=_label_list(labels), layers=layers)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            parent = os.getppid()
            vb.start()
            try:
                if json_out:
                    emit_json({"type": "start", "port": vb.port, "link": vb.link,
                               "input": vb.input, "rate_hz": vb.rate_hz, "board": vb.board,
                               "source": vb.source.path if vb.source else None,
                               "fast": vb.fast,
                               "runtime": vb.runtime, "sim": True, "layers": vb.layers,
                               "model": {**vb.model.to_json(), **model_ref(model)}},
                              "sim/1", final=False)
                else:
                    _print_banner(vb)
                end = time.monotonic() + duration if duration else None
                while vb.running and not stop.is_set():
                    if end is not None and time.monotonic() >= end:
                        break
                    if exit_with_parent and os.getppid() != parent:
                        break
                    if deadline.expired:
                        vb.error = vb.error or deadline.error(
                            f"serving results ({vb.stats.results} so far)")
                        break
                    time.sleep(0.1)
            except KeyboardInterrupt:
                pass
            finally:
                vb.stop()
            if vb.error is not None:
                raise vb.error
            if json_out:
                emit_json({"type": "summary", **vb.stats.to_json(),
                           "end": "source" if vb.source is not None and not vb.running
                           and not stop.is_set() else None}, "sim/1", 0)
            else:
                s = vb.stats
                console(stderr=True).print(
                    f"stopped: {s.results} results, {s.frames_ok} frames accepted, "
                    f"{s.frames_rejected} rejected, {s.lines_dropped} lines dropped")


def _label_list(labels: str | None) -> list[str] | None:
    return [x.strip() for x in labels.split(",")] if labels else None


def _print_banner(vb) -> None:
    import sys
    m = vb.model
    what = (f"synthetic input at {vb.rate_hz:g} Hz" if vb.input == "synthetic" and vb.rate_hz
            else "synthetic input, as fast as possible" if vb.input == "synthetic"
            else f"{vb.source.path} into the {vb.input}"
            + (", as fast as possible" if vb.fast else ", in real time") if vb.source
            else "input frames from the host")
    if vb.layers:
        what += ", sending every operator's output (layer dumps)"
    lines = [vb.port,                     # first line: the port, for scripts
             f"virtual {vb.board} running {Path(m.path).name} ({what}); latency is host time"]
    if vb.link:
        lines.append(f"stable link: {vb.link} -> {vb.port}")
    lines.append(f"attach: nanoml monitor --port {vb.link or vb.port}    stop: Ctrl-C")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
