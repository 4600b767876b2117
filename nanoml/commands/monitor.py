"""`nanoml monitor`: watch a board (or a virtual one) run: rate, latency,
outputs, protocol health; log everything it receives."""

from __future__ import annotations

from pathlib import Path

import typer

from . import _common
from ._common import (BOARD_OPTION, FAST_OPTION, JSON_OPTION, POSITIVE, count_option, emit_json,
                      handle_errors, latency_ms, port_option, source_option)

RAW_LINES = 8          # raw lines kept under the live view
MAX_BARS = 16          # outputs drawn as bars


def register(app: typer.Typer) -> None:
    @app.command("monitor")
    def monitor_cmd(
        port: str = port_option("Serial port (default: find the board by USB id)."),
        baud: int = typer.Option(115200, "--baud", help="Baud rate (USB CDC ignores it)."),
        json_out: bool = JSON_OPTION,
        log: Path = typer.Option(None, "--log", help="Append every record to FILE.jsonl or FILE.csv."),
        count: int = count_option(None, "Exit 0 after N results."),
        duration: float = typer.Option(None, "--duration", callback=POSITIVE,
                                       help="Exit 0 after S seconds."),
        raw: bool = typer.Option(False, "--raw", help="Print every received line as it is."),
        labels: str = typer.Option(None, "--labels", help="Output labels, comma-separated (a,b,c)."),
        sim: Path = typer.Option(None, "--sim", help="Start a virtual board running MODEL and attach to it."),
        sim_rate: float = typer.Option(10.0, "--sim-rate", callback=POSITIVE,
                                       help="Inferences/s of the --sim board (its --rate)."),
        source: Path = source_option("With --sim: play FILE.wav into the virtual board's "
                                     "microphone (FILE.csv into its IMU) through the "
                                     "model's pipeline; exit 0 after the file's last record."),
        fast: bool = FAST_OPTION,
        board: str = BOARD_OPTION,
        save: Path = typer.Option(None, "--save",
                                  help="Keep the raw window behind each detection in DIR, "
                                       "labelled with what the model said (a capture "
                                       "dataset: DIR/<label>/, DIR/manifest.jsonl)."),
    ) -> None:
        """Show live inference rate, latency and outputs from the board; log them."""
        with handle_errors(json_out):
            from ..boards import get_board
            from ..errors import UsageError
            from ..serial.log import LogError, RecordLogger
            from ..serial.monitor import Connector, Monitor

            if count is not None and count < 1:
                raise UsageError("--count must be >= 1")
            if duration is not None and duration <= 0:
                raise UsageError("--duration must be > 0")
            if sim and port:
                raise UsageError("--sim and --port exclude each other",
                                 hint="--sim starts its own virtual board and attaches to it")
            if (source is not None or fast) and not sim:
                raise UsageError("--source and --fast go with --sim MODEL",
                                 hint="a board's own sensors cannot play a file")
            if fast and source is None:
                raise UsageError("--fast goes with --source FILE")
            b = get_board(board)
            label_list = [x.strip() for x in labels.split(",")] if labels else None
            if source is not None:
                from ..sim.sources import source_kind
                source_kind(source)                 # .wav or .csv, before starting the sim
            if sim and label_list is None:
                label_list = _model_labels(sim)
            saver = _saver(save, sim, source)       # the folder checked before anything runs
            logger = None
            sim_proc = None
            view = None
            mon = None
            log_error = None
            stdout_gone = False
            try:
                if sim:
                    import os
                    import tempfile

                    from ..sim.process import SimProcess
                    link = Path(tempfile.gettempdir()) / f"nanoml-{getattr(os, 'getuid', lambda: 0)()}" / \
                        f"monitor-{os.getpid()}-sim"
                    extra = []
                    if source is not None:
                        extra = ["--source", str(source)] + (["--fast"] if fast else []) + \
                            (["--labels", ",".join(label_list)] if label_list else [])
                    sim_proc = SimProcess.spawn(sim, rate_hz=sim_rate, link=link, board=b.id,
                                                extra_args=extra)
                    port = sim_proc.link
                # opened once the sim runs: a sim that cannot start leaves no log behind
                logger = RecordLogger(log) if log else None
                mon = Monitor(Connector(b, port, baud), labels=label_list,
                              **(saver.hooks() if saver is not None else {}))
                if saver is not None:
                    saver.port = port
                view = _make_view(json_out, raw, label_list)
                _stop_on_signals(mon)
                try:
                    from ..serial.log import dumps
                    # with --sim, waiting out a disconnect ends if the sim itself has exited
                    waits = {"sleep": sim_proc.sleep} if sim_proc is not None else {}
                    for batch in mon.batches(count=count, duration=duration, **waits):
                        if saver is not None:
                            batch = saver.batch(batch)
                            if not batch:       # only a window's frames: nothing to show
                                continue
                        recs = [rec for rec, _ in batch]
                        lines = [dumps(r) for r in recs] if json_out else None
                        if logger:          # logged before shown: the log never lags the screen
                            logger.write_many(recs, lines if logger.format == "jsonl" else None)
                        view.batch(batch, lines, mon)
                except KeyboardInterrupt:
                    mon.exit_reason = "interrupt"
                except BrokenPipeError:         # `monitor ... | head`: a normal end
                    from ._common import quiet_stdout
                    quiet_stdout()
                    mon.exit_reason, stdout_gone = "closed", True
                except LogError as e:           # disk full, log removed: stop, summary, exit 2
                    mon.exit_reason, log_error = "log-error", e
            finally:
                if view is not None:
                    view.close(mon)
                if mon is not None:
                    mon.close()
                if logger:
                    logger.close()
                if sim_proc is not None:
                    sim_proc.stop()
            summary = {"type": "summary", "exit": mon.exit_reason, "port": mon.connector.current,
                       **mon.stats.summary()}
            if logger:
                summary["log"] = str(log)
            if saver is not None:
                summary["saved"] = saver.summary()
            if json_out and not stdout_gone:
                emit_json(summary_json(summary), "monitor/1", 2 if log_error is not None else 0)
            elif not json_out:
                _print_summary(summary)
            if log_error is not None:
                raise log_error


def _saver(save: Path | None, sim: Path | None, source: Path | None):
    """monitor --save DIR: the windows behind detections, kept (nanoml.capture.windows)."""
    if save is None:
        return None
    from ..capture.windows import WindowSaver
    model = _common.model_ref(sim)["sha256"][:12] if sim and Path(sim).is_file() else None
    return _SaveHooks(WindowSaver(save, model=model,
                                  source=str(source) if source is not None else None))


class _SaveHooks:
    """Ask for the windows on every (re)connection, feed the saver every line, and
    show one `saved` record per window instead of its raw frames."""

    WINDOW_TYPES = ("cst", "smp", "cend")

    def __init__(self, saver):
        self.saver = saver
        self.port = None
        self.new: list[dict] = []
        self._seq = 0

    def hooks(self) -> dict:
        return {"on_connect": self.ask, "tap": self.tap}

    def ask(self, ser) -> None:
        from ..serial.protocol import encode_line
        self._seq += 1
        try:
            ser.write(b"\n" + encode_line("dwin", {"seq": self._seq, "on": True}))
            ser.flush()
        except Exception:  # noqa: BLE001 - a port gone: the monitor's read says so
            pass

    def tap(self, parsed) -> None:
        from ..serial.protocol import Message
        self.saver.port = self.saver.port or self.port
        if isinstance(parsed, Message) and parsed.type == "cack" and parsed.known \
                and parsed.fields.get("seq") == self._seq and not parsed.fields.get("ok"):
            self.refused = parsed.fields.get("why") or "?"
            self.warn = True
        self.new += self.saver.feed(parsed)

    refused = None                  # the firmware's why= when it refused `dwin`
    warn = False

    def batch(self, batch):
        import time
        out = [(r, raw) for r, raw in batch if r.get("type") not in self.WINDOW_TYPES]
        if self.warn:
            self.warn = False
            msg = (f"the firmware does not send detection windows (cack why={self.refused}): "
                   "--save keeps nothing from this board")
            out.append(({"type": "status", "t": time.time(), "event": "no-windows",
                         "port": self.port, "message": msg}, msg))
        for e in self.new:
            rec = {"type": "saved", "t": time.time(), "file": e["file"], "label": e["label"],
                   "predicted": e["predicted"], "score": e["score"], "det_seq": e["det_seq"],
                   "samples": e["samples"], "gaps": e["gaps"]}
            out.append((rec, f"saved {e['file']} ({e['predicted']}, score {e['score']})"))
        self.new = []
        return out

    def summary(self) -> dict:
        s = self.saver
        return {"dir": str(s.out), "windows": len(s.saved), "with_gaps": s.with_gaps,
                "refused": self.refused}


def _model_labels(model: Path) -> list[str] | None:
    """The labels of the model's pipeline (or standard metadata), for --sim; None
    when it has none or cannot be read (the sim then reports the error)."""
    try:
        from ..model import tflite
        from ..pipeline.store import read_pipeline, standard_labels
        m = tflite.load(model)
        p = read_pipeline(m)
        return (p.labels if p is not None else None) or standard_labels(m)
    except Exception:  # noqa: BLE001 - labels are extra information
        return None


def summary_json(s: dict) -> dict:
    """The summary line with the latency also in the shape every command uses."""
    lat = s.get("latency_us") or {}
    return {**s, "latency": latency_ms(None, min=lat.get("min"), p50=lat.get("p50"),
                                       p95=lat.get("p95"), max=lat.get("max"),
                                       runs=lat.get("window"), scale=1e-3)}


# ---------------------------------------------------------------- views

def _make_view(json_out: bool, raw: bool, labels):
    if json_out:
        return _JsonView()
    if raw:
        return _RawView()
    from ._common import console
    c = console()
    if not c.is_terminal:
        return _RawView()
    return _LiveView(c, labels)


def _stop_on_signals(mon) -> None:
    """Ctrl-C, SIGTERM and SIGHUP end the monitor between two reads (summary, log
    closed, sim stopped), so a result counted in the summary is always logged; a
    second signal interrupts at once."""
    import signal

    def stop(*_):
        if mon.stop_requested:
            raise KeyboardInterrupt
        mon.stop_requested = True
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, stop)


class _JsonView:
    def batch(self, batch, lines: list[str], mon) -> None:
        import sys
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    def close(self, mon) -> None:
        pass


class _RawView:
    """Lines as received on stdout; status and warnings on stderr."""

    def batch(self, batch, lines, mon) -> None:
        import sys
        out = []
        for rec, raw in batch:
            if rec["type"] == "status":
                sys.stderr.write(f"[{rec['event']}] {rec['message']}\n")
                sys.stderr.flush()
                continue
            if rec.get("warning"):
                sys.stderr.write(f"warning: {rec['warning']}\n")
            out.append(raw)
        if out:
            sys.stdout.write("\n".join(out) + "\n")
            sys.stdout.flush()

    def close(self, mon) -> None:
        pass


class _LiveView:
    def __init__(self, console, labels):
        from collections import deque

        from rich.live import Live
        self.c = console
        self.labels = labels
        self.raw = deque(maxlen=RAW_LINES)
        self.status = "connecting"
        self.event = "connecting"
        self.port = None
        self.mon = None
        self.warning = None
        self.live = Live(get_renderable=self._render, console=console, refresh_per_second=8,
                         transient=False)
        self.live.start()

    def batch(self, batch, lines, mon) -> None:
        for rec, raw in batch:
            self.record(rec, raw, mon)

    def record(self, rec: dict, raw: str, mon) -> None:
        self.mon = mon
        if rec["type"] == "status":
            self.status = rec["message"]
            self.event = rec["event"]
            self.port = rec.get("port") or self.port
            self.raw.append(("status", _safe(f"[{rec['event']}] {rec['message']}")))
            return
        if rec.get("warning"):
            self.warning = rec["warning"]
        style = {"foreign": "dim", "corrupt": "red"}.get(rec["type"], "")
        self.raw.append((style, _safe(raw[:200])))

    def close(self, mon) -> None:
        self.mon = mon or self.mon
        self.live.stop()

    def _render(self):
        """Called by rich's refresh thread: whatever the board sent, it returns
        something to draw (an exception here would end that thread for good)."""
        try:
            return self._view()
        except Exception as e:  # noqa: BLE001 - keep the view alive, say what went wrong
            from rich.text import Text
            return Text(f"nanoml monitor: cannot draw the view ({type(e).__name__}: {e}); "
                        "the log and the summary are not affected", style="red")

    def _view(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        mon = self.mon
        parts = []
        if mon is None:
            return Panel(Text(self.status), title="nanoml monitor")
        st = mon.stats
        h = st.hello
        if h:
            parts.append(Text(_safe(
                f"model {h.get('model')}  board {h.get('board')}  runtime {h.get('runtime')}  "
                f"fw {h.get('fw')}  input {h.get('input')}  "
                f"arena {h.get('used', 0):,} of {h.get('arena', 0):,} B used")))
        else:
            parts.append(Text("waiting for the board's hello (sent every few seconds)", style="dim"))
        if self.event not in ("connected", "reconnected"):
            parts.append(Text(self.status, style="bold red"))
        if st.sim:
            parts.append(Text("SIMULATED board: latency is host time, not the Nano's",
                              style="bold yellow"))
        if self.warning:
            parts.append(Text(self.warning, style="bold red"))
        lat = st.latency()
        rate = st.rate(_now())

        def f(v):
            return "-" if v is None else f"{v:,.0f}"
        nums = Table.grid(padding=(0, 2))
        nums.add_row(f"results {st.results:,}", f"rate {rate:.2f}/s" if rate is not None else "rate -",
                     f"latency us: min {f(lat['min'])}  p50 {f(lat['p50'])}  p95 {f(lat['p95'])}  "
                     f"max {f(lat['max'])}")
        nums.add_row(f"corrupt {st.corrupt}", f"invalid {st.invalid}  foreign {st.foreign}",
                     f"missed {st.missed}  restarts {st.restarts}  reconnects {st.reconnects}  "
                     f"errors {st.errors}")
        parts.append(nums)
        if st.feature_us_last is not None or st.dropped is not None:
            parts.append(Text(_safe(f"features us: last {f(st.feature_us_last)}  max "
                                    f"{f(st.feature_us_max)}  samples dropped {f(st.dropped)}")))
        if st.last_err:
            parts.append(Text(_safe(f"last error: {st.last_err}"), style="red"))
        if st.last_det:
            d = st.last_det
            parts.append(Text(_safe(f"detections {st.dets}; last: {d.get('label')} (score "
                                    f"{d.get('score')}) at {d.get('t_ms', 0) / 1000:.2f} s"),
                              style="bold green"))
        if st.last_out:
            top = st.last_top
            name = (self.labels[top] if self.labels and top is not None and 0 <= top < len(self.labels)
                    else str(top))
            parts.append(Text(_safe(f"outputs of result {st.last_seq}: top {name}"), style="bold"))
            parts.append(self._bars(st))
        raw = Text()
        for i, (style, line) in enumerate(list(self.raw)):
            raw.append(("\n" if i else "") + line, style=style or None)
        parts.append(Panel(raw, title="raw", title_align="left"))
        return Panel(Group(*parts), title=Text(_safe(f"nanoml monitor · {self.port or ''} · "
                                                     f"{self.event}")), title_align="left")

    def _bars(self, st):
        import math

        from rich.table import Table
        from rich.text import Text
        out = st.last_out
        shown = out[:MAX_BARS]
        finite = [v for v in shown if math.isfinite(v)] or [0.0]   # nan / inf: no bar
        lo, hi = min(finite), max(finite)
        unit = lo >= 0 and hi <= 1
        scale = 1.0 if unit else max(abs(lo), abs(hi)) or 1.0
        t = Table.grid(padding=(0, 1))
        width = 30
        for i, v in enumerate(shown):
            name = self.labels[i] if self.labels and i < len(self.labels) else str(i)
            n = int(round(min(abs(v) / scale, 1.0) * width)) if math.isfinite(v) else 0
            bar = ("█" * n).ljust(width)
            style = "bold green" if i == st.last_top else None
            t.add_row(Text(_safe(name)), Text(bar, style=style), Text(f"{v:.6g}"))
        if len(out) > MAX_BARS:
            t.add_row("…", f"{len(out) - MAX_BARS} more outputs", "")
        return t


def _now() -> float:
    import time
    return time.time()


def _safe(text: str) -> str:
    """Text from the board or the user, for the live view: control characters
    shown as \\xNN (callers wrap it in rich Text objects: no markup is parsed)."""
    from ..serial.protocol import printable
    return printable(str(text))


def _print_summary(s: dict) -> None:
    import sys
    lat = s["latency_us"]

    def f(v):
        return "-" if v is None else f"{v:,.0f}"
    rate = f"{s['rate_hz']:.2f}/s" if s["rate_hz"] else "-"
    sim = " (SIMULATED: host time)" if s["sim"] else ""
    sys.stderr.write(
        f"{s['exit'] or 'stopped'}: {s['results']} results at {rate}; latency us min {f(lat['min'])} "
        f"p50 {f(lat['p50'])} p95 {f(lat['p95'])} max {f(lat['max'])}{sim}; corrupt {s['corrupt']}, "
        f"invalid {s['invalid']}, foreign {s['foreign']}, missed {s['missed']}, "
        f"reconnects {s['reconnects']}, detections {s.get('dets', 0)}\n")
    if s.get("saved"):
        v = s["saved"]
        gaps = f", {v['with_gaps']} with gaps" if v["with_gaps"] else ""
        why = f" (the firmware refused: why={v['refused']})" if v["refused"] else ""
        sys.stderr.write(f"saved {v['windows']} detection window(s) to {v['dir']}{gaps}{why}\n")
