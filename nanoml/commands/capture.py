"""`nanoml capture`: record labelled takes of raw sensor samples from the board
(or the virtual board) into a dataset folder; `--export edge-impulse` writes
the dataset in Edge Impulse's data-acquisition format (docs/capture.md)."""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from ._common import (BOARD_OPTION, FAST_OPTION, JSON_OPTION, NON_NEGATIVE, SIM_OPTION, console,
                      count_option, emit_json, esc, handle_errors, port_option, rate_option,
                      show_progress, source_option, timeout_option)

SCHEMA = "capture/1"


class Sensor(str, enum.Enum):
    mic = "mic"
    imu = "imu"


class ExportFormat(str, enum.Enum):
    edge_impulse = "edge-impulse"


def register(app: typer.Typer) -> None:
    @app.command("capture")
    def capture_cmd(
        out: Path = typer.Option(..., "--out", "-o",
                                 help="The dataset folder (created when missing): takes go to "
                                      "OUT/<label>/, one line each to OUT/manifest.jsonl."),
        label: str = typer.Option(None, "--label", help="What the takes are (a plain name); "
                                                        "with --export: only that label's."),
        sensor: Sensor = typer.Option(Sensor.mic, "--sensor",
                                      help="mic: 16 kHz 16-bit mono WAV; imu: CSV rows."),
        count: int = count_option(1, "Takes to record."),
        length: str = typer.Option("1", "--length",
                                   help="Length of each take: seconds (1.5, 1.5s), "
                                        "milliseconds (500ms) or samples (16000samples)."),
        port: str = port_option(),
        sim: bool = SIM_OPTION,
        source: Path = source_option("With --sim: play FILE.wav into the virtual microphone "
                                     "(FILE.csv into its IMU); default: a synthetic signal."),
        fast: bool = FAST_OPTION,
        board: str = BOARD_OPTION,
        rate: float = rate_option(None, "IMU samples per second (default: the sensor's own "
                                        "rate; mic: 16000 only)."),
        channels: int = typer.Option(None, "--channels",
                                     help="IMU channels: 3 (acc), 6 (+ gyro), 9 (+ mag); "
                                          "default 6."),
        countdown: float = typer.Option(3.0, "--countdown", callback=NON_NEGATIVE,
                                        help="Seconds of countdown before each take (0 for "
                                             "scripts)."),
        timeout: float = timeout_option(None, "the whole run; the take in progress is "
                                              "discarded when it passes"),
        export: ExportFormat = typer.Option(None, "--export",
                                            help="Instead of recording: write OUT's takes in "
                                                 "this format (edge-impulse)."),
        export_to: Path = typer.Option(None, "--export-to",
                                       help="With --export: the folder for the files "
                                            "(default OUT/_export/<format>)."),
        hmac_key: str = typer.Option(None, "--hmac-key", envvar="NANOML_EI_HMAC_KEY",
                                     help="With --export edge-impulse: sign each file with "
                                          "this HMAC key (env NANOML_EI_HMAC_KEY)."),
        include_gaps: bool = typer.Option(False, "--include-gaps",
                                          help="With --export: also the takes with gaps."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Record COUNT labelled takes of LENGTH from the board's microphone or IMU.

        Takes are never overwritten: numbering resumes after the highest in OUT.
        A take with gaps (samples the board never delivered) goes to OUT/_gaps/.
        Ctrl-C keeps every finished take. Exit 0: all takes clean; 1: some have
        gaps; 2: bad input; 3: no board / the board vanished; 130: interrupted."""
        with handle_errors(json_out):
            if export is not None:
                _export(out, export.value, export_to, hmac_key, include_gaps, label, json_out)
                return
            req, b = _request(out, label, sensor.value, count, length, rate, channels,
                              countdown, port, sim, source, fast, board)
            _record(req, b, port, sim, source, fast, timeout, json_out)


# ---------------------------------------------------------------- checks

def _request(out, label, sensor, count, length, rate, channels, countdown, port, sim,
             source, fast, board):
    from ..boards import get_board
    from ..capture import takes as T
    from ..capture.session import CaptureRequest
    from ..errors import UsageError
    if label is None:
        raise UsageError("--label is required to record", hint="e.g. --label yes")
    T.check_label(label)
    if sim and port:
        raise UsageError("--sim and --port exclude each other")
    if (source is not None or fast) and not sim:
        raise UsageError("--source and --fast go with --sim",
                         hint="a board's own sensors cannot play a file")
    b = get_board(board)
    T.check_sensor(b, sensor)
    if source is not None:
        from ..sim.sources import source_kind
        if source_kind(source) != sensor:
            raise UsageError(f"--source {source}: a {source.suffix} file plays into the "
                             f"{source_kind(source)}, not the {sensor}",
                             hint="a .wav file goes with --sensor mic, a .csv file with "
                                  "--sensor imu")
    if sensor == "mic":
        if rate not in (None, T.MIC_RATE):
            raise UsageError(f"--rate {rate:g}: the microphone records at {T.MIC_RATE} Hz only")
        if channels not in (None, 1):
            raise UsageError("--channels goes with --sensor imu (the microphone is mono)")
        rate, names = float(T.MIC_RATE), ["audio"]
    else:
        odr = float(b.sensors["imu"].get("odr_hz") or 0) or None
        if source is not None and (rate is None or channels is None):
            from ..pipeline.imu import csv_layout     # the source's own channels and rate
            src_channels, src_rate = csv_layout(source)
            channels = channels if channels is not None else src_channels
            rate = rate if rate is not None else src_rate
        rate = rate if rate is not None else odr
        if not rate or rate <= 0 or not float(rate).is_integer():
            raise UsageError(f"--rate {rate:g}: the IMU's rate is a whole number of Hz > 0")
        if odr and rate > odr:
            raise UsageError(f"--rate {rate:g}: the {b.name}'s IMU gives at most {odr:g} Hz")
        names = T.imu_channels(channels if channels is not None else 6)
    if source is not None and sensor == "mic":
        from ..pipeline.wav import read_wav
        read_wav(source, expect_rate=T.MIC_RATE)          # a wrong rate/width: one line, now
    n = T.length_samples(T.parse_length(length), rate)
    T.prepare_out(out)
    return CaptureRequest(out, label, sensor, count, n, rate, names, countdown,
                          source=str(source) if source is not None else None), b


# ---------------------------------------------------------------- recording

def _record(req, b, port, sim, source, fast, timeout, json_out) -> None:
    import signal
    import sys

    from .. import progress
    from ..capture.link import open_link
    from ..capture.session import CaptureResult, run_capture
    from ..errors import NanomlError
    from ._common import STATE

    res = CaptureResult()
    view = _view(json_out, req)

    def on_term(*_):
        raise KeyboardInterrupt

    def on_alarm(*_):
        raise _Timeout              # a BaseException: no `except Exception` on the way eats it
    signal.signal(signal.SIGTERM, on_term)
    if timeout is not None:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with progress.listening(view.step), view:      # the session's steps: "take 2 of 5"
            with open_link(port=port, sim=sim, source=source, fast=fast, board=b.id,
                           sensor=req.sensor) as link:
                run_capture(link, req, res, view)
    except KeyboardInterrupt:
        res.stopped = "interrupted"
    except _Timeout:
        res.stopped = "timeout"
        res.error = NanomlError(f"--timeout {timeout:g} s passed"
                                + ("; the take in progress was discarded" if res.discarded else ""),
                                hint="give a longer --timeout (or none)")
    except NanomlError as e:
        if not res.takes and not res.discarded:
            raise                       # nothing recorded: the plain error document
        res.stopped, res.error = "board-gone" if e.exit_code == 3 else "error", e
    finally:
        if timeout is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
    code = (130 if res.stopped == "interrupted" else res.error.exit_code if res.error
            else 1 if res.stopped == "source-ended" and len(res.takes) < req.count
            else 1 if res.with_gaps else 0)
    if json_out:
        emit_json(_json(req, res), SCHEMA, code)
    else:
        _summary(req, res, take_lines=not isinstance(view, _LiveView))
        if res.error is not None:
            sys.stderr.write(f"error: {res.error.message}\n")
            if res.error.hint:
                sys.stderr.write(f"hint: {res.error.hint}\n")
        elif res.stopped == "interrupted":
            sys.stderr.write("interrupted\n")
            STATE.interrupt_reported = True
    raise typer.Exit(code)


class _Timeout(BaseException):
    """--timeout passed (raised by SIGALRM wherever the run is)."""


def _json(req, res) -> dict:
    return {"action": "record", "out": str(req.out), "label": req.label, "sensor": req.sensor,
            "rate_hz": req.rate, "channels": req.channels, "samples_per_take": req.samples,
            "requested": req.count, "written": len(res.takes), "with_gaps": res.with_gaps,
            "discarded": res.discarded, "stopped": res.stopped,
            "error": None if res.error is None else {"message": res.error.message,
                                                     "hint": res.error.hint},
            "manifest": str(req.out / "manifest.jsonl"), "takes": res.takes}


def _summary(req, res, take_lines: bool) -> None:
    c = console()
    if take_lines:              # no live view printed them: one line per take here
        for t in res.takes:
            c.print(_take_line(t), soft_wrap=True)
    apart = f", {res.with_gaps} with gaps (in {esc(req.out)}/_gaps/)" if res.with_gaps else ""
    c.print(f"{len(res.takes)} of {req.count} take(s) written to {esc(req.out)}{apart}",
            soft_wrap=True)
    if res.stopped == "source-ended":
        c.print("[dim]the source ended; its last, partial take was not written[/]")


def _take_line(t: dict) -> str:
    gaps = f", [bold]{t['gaps']} samples missing[/] ({t['corrupt_lines']} corrupt line(s))" \
        if t["kept_apart"] else ""
    return f"{esc(t['file'])}: {t['samples']} samples, {t['duration_s']:g} s{gaps}"


def _view(json_out: bool, req):
    import sys
    from ._common import _is_terminal
    if json_out or not _is_terminal(sys.stderr):
        return _NoView()
    return _LiveView(req)


class _NoView:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def step(self, text):
        pass

    def countdown(self, i, left):
        pass

    def level(self, i, fraction, value):
        pass

    def take(self, i, entry):
        pass


class _LiveView(_NoView):
    """stderr: a bar over the takes, the countdown, a level meter (dBFS / g)."""

    def __init__(self, req):
        from rich.live import Live
        self.req = req
        self.c = console(stderr=True)
        self.live = Live(console=self.c, refresh_per_second=12, transient=True)
        self.done = 0
        self.state = "starting"
        self.fraction = 0.0
        self.value = None

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def step(self, text):
        self.state = text
        self._draw()

    def countdown(self, i, left):
        import math
        self.state = f"take {i + 1} of {self.req.count} in {math.ceil(left)}"
        self._draw()

    def level(self, i, fraction, value):
        self.state, self.fraction, self.value = f"recording take {i + 1}", fraction, value
        self._draw()

    def take(self, i, entry):
        self.done = i + 1
        self.fraction = 0.0
        self.live.console.print(_take_line(entry), soft_wrap=True)
        self._draw()

    def _draw(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text
        t = Table.grid(padding=(0, 1))
        t.add_row(Text(f"{esc(self.req.label)}: {self.done}/{self.req.count} takes"),
                  ProgressBar(total=self.req.count, completed=self.done, width=30))
        t.add_row(Text(self.state), ProgressBar(total=1.0, completed=self.fraction, width=30))
        t.add_row(Text("level"), _meter(self.value, self.req.sensor))
        self.live.update(t)


def _meter(value, sensor):
    from rich.text import Text
    if value is None:
        return Text("-")
    if sensor == "mic":                       # -60 .. 0 dBFS
        frac, label = min(1.0, max(0.0, (value + 60.0) / 60.0)), f"{value:6.1f} dBFS"
    else:                                     # 0 .. 4 g
        frac, label = min(1.0, max(0.0, value / 4.0)), f"{value:5.2f} g"
    n = round(frac * 30)
    style = "red" if sensor == "mic" and value > -3 else "green"
    return Text("█" * n + "·" * (30 - n) + " " + label, style=style)


# ---------------------------------------------------------------- export

def _export(out, fmt, export_to, hmac_key, include_gaps, label, json_out) -> None:
    from ..capture.export import export_edge_impulse
    from ..errors import UsageError
    if not out.is_dir():
        raise UsageError(f"--out {out}: no such dataset folder")
    dest = export_to or out / "_export" / fmt
    with show_progress(not json_out, "exporting"):
        files = export_edge_impulse(out, dest, hmac_key or None, include_gaps, label)
    if json_out:
        emit_json({"action": "export", "format": fmt, "out": str(out), "export_to": str(dest),
                   "signed": bool(hmac_key), "files": files}, SCHEMA, 0)
    else:
        console().print(f"wrote {len(files)} {fmt} file(s) to {esc(dest)}"
                        f"{' (HMAC-signed)' if hmac_key else ''}", soft_wrap=True)
    raise typer.Exit(0)
