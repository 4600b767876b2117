"""Shared CLI plumbing: the option vocabulary, the process boundary (errors,
Ctrl-C, closed pipes, crash files), versioned JSON output, the rich console.

Usage in a command module::

    def register(app):
        @app.command()
        def thing(board: str = BOARD_OPTION, json_out: bool = JSON_OPTION):
            with handle_errors(json_out):
                result = domain.do_thing(...)       # returns data, never prints
                if json_out:
                    emit_json(result.to_json(), "thing/1", result.exit_code)
                else:
                    render_thing(result)            # rich; outside text escaped
                raise typer.Exit(result.exit_code)

The vocabulary (docs/options.md): one meaning per option name in every command.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import sys
from dataclasses import dataclass

import typer

# ---------------------------------------------------------------- choices

class InputSource(str, enum.Enum):
    """Where the firmware's input tensor comes from."""
    serial = "serial"
    synthetic = "synthetic"
    imu = "imu"
    mic = "mic"


class SimInput(str, enum.Enum):
    """The virtual board's input sources."""
    synthetic = "synthetic"
    serial = "serial"


class ProjectFormat(str, enum.Enum):
    platformio = "platformio"
    arduino = "arduino"


class OptimizeProfile(str, enum.Enum):
    """Optimization profile of the firmware (nanoml/firmware/optimize.py PROFILES)."""
    speed = "speed"
    size = "size"


def optimize_option(help: str = "Optimization profile: speed (the model's kernel sources "
                                "at their measured best flags) or size (the core's -Os); "
                                "default speed when it fits the flash with a margin.") \
        -> typer.Option:
    """--optimize speed|size (docs/options.md); None: the default profile."""
    return typer.Option(None, "--optimize", help=help)


class Quantize(str, enum.Enum):
    int8 = "int8"
    float16 = "float16"
    none = "none"


def value_of(choice):
    """The plain string of an Enum choice (domain code takes strings)."""
    return choice.value if isinstance(choice, enum.Enum) else choice


# ---------------------------------------------------------------- value checks

def _non_empty(ctx, param, value):
    """An option given as '' (or spaces) is a usage error, not 'the default'."""
    if value is not None and not str(value).strip():
        raise typer.BadParameter("must not be empty (leave the option out for the default)")
    return value


def _finite(ctx, param, value):
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number (got {value})")
    return value


def _positive(ctx, param, value):
    value = _finite(ctx, param, value)
    if value is not None and value <= 0:
        raise typer.BadParameter(f"must be > 0 (got {value:g})")
    return value


def _non_negative(ctx, param, value):
    value = _finite(ctx, param, value)
    if value is not None and value < 0:
        raise typer.BadParameter(f"must be >= 0 (got {value:g})")
    return value


def _count(ctx, param, value):
    if value is not None and value < 1:
        raise typer.BadParameter(f"must be >= 1 (got {value})")
    return value


def _bytes(ctx, param, value):
    """'20000', '20K', '20KiB', '1M' -> bytes (K = 1024)."""
    if value is None:
        return None
    from ..errors import UsageError
    from ..firmware.arena import parse_size
    try:
        return parse_size(str(value), param.name)
    except UsageError as e:
        raise typer.BadParameter(f"{e.message}; {e.hint}" if e.hint else e.message) from None


FINITE = _finite              # callbacks for command-specific float options
POSITIVE = _positive
NON_NEGATIVE = _non_negative

# ---------------------------------------------------------------- the vocabulary

def board_option(help: str) -> typer.Option:
    """--board/-b with a command's own wording (BOARD_OPTION otherwise)."""
    return typer.Option(None, "--board", "-b", callback=_non_empty, help=help)


JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON (schema in docs/).")
BOARD_OPTION = board_option("Board id (see `nanoml boards`; default nano33ble_sense).")
RUNTIME_OPTION = typer.Option(None, "--runtime", "-r", callback=_non_empty,
                              help="TFLM Arduino library profile (default chirale_2.0.0).")
SIM_OPTION = typer.Option(False, "--sim",
                          help="Use the virtual board (`nanoml sim`) instead of a real one.")


def port_option(help: str = "Serial port of the board (default: found by its USB id).") -> typer.Option:
    return typer.Option(None, "--port", "-p", callback=_non_empty, help=help)


def timeout_option(default: float | None, what: str = "") -> typer.Option:
    """--timeout: a wall-clock limit in seconds for the whole command."""
    return typer.Option(default, "--timeout", callback=_positive,
                        help="Wall-clock limit for the whole command, seconds" + (f" ({what})." if what else "."))


def count_option(default: int | None, what: str) -> typer.Option:
    """--count N: how many results (inferences) to run or collect before stopping."""
    return typer.Option(default, "--count", callback=_count, help=what)


def limit_option(default: int | None, what: str) -> typer.Option:
    """--limit N: use at most the first N samples of an input file."""
    return typer.Option(default, "--limit", callback=_count, help=what)


def hidden_alias(name: str, *more: str) -> typer.Option:
    """An old name of a "how many" option, kept working (not shown in --help;
    docs/options.md)."""
    return typer.Option(None, name, *more, hidden=True, callback=_count)


def rate_option(default: float | None, what: str) -> typer.Option:
    """--rate HZ: how often the input source produces data (samples or windows per second)."""
    return typer.Option(default, "--rate", callback=_non_negative, help=what)


def arena_option(what: str) -> typer.Option:
    """--arena SIZE: the tensor arena size to use, bytes (20000, 20K)."""
    return typer.Option(None, "--arena", callback=_bytes, help=what)


# the sensor pipeline's overrides (docs/pipeline.md): every command that reads the
# model's stored pipeline takes the same names for changing it

def labels_option(help: str = "Output labels, comma-separated, one per output value "
                               "(overrides the model's pipeline).") -> typer.Option:
    return typer.Option(None, "--labels", callback=_name_list, help=help)


def source_option(help: str) -> typer.Option:
    """`--source FILE.wav|FILE.csv`: a sensor file played into a virtual board."""
    return typer.Option(None, "--source", help=help)


def layers_option(help: str) -> typer.Option:
    """The layer-dump firmware / comparison (docs/options.md `--layers`)."""
    return typer.Option(False, "--layers", help=help)


FAST_OPTION = typer.Option(False, "--fast",
                           help="With --source: as fast as possible (default: real time).")


def frontend_option(help: str) -> typer.Option:
    return typer.Option(None, "--frontend", callback=_non_empty, help=help)


def stride_ms_option(help: str = "Audio pipeline: ms between inferences.") -> typer.Option:
    return typer.Option(None, "--stride-ms", callback=_count, help=help)


def stride_option(help: str = "IMU pipeline: samples between inferences.") -> typer.Option:
    return typer.Option(None, "--stride", callback=_count, help=help)


def decision_option(help: str = "Turn the pipeline's score smoothing into detections "
                                "on or off.") -> typer.Option:
    return typer.Option(None, "--decision/--no-decision", help=help)


def threshold_option(help: str = "Detection threshold on the smoothed score, 0..255.") \
        -> typer.Option:
    return typer.Option(None, "--threshold", callback=_score, help=help)


def _name_list(ctx, param, value):
    """A comma-separated list of names: no empty name (checked, the string kept)."""
    if value is not None and any(not s.strip() for s in str(value).split(",")):
        raise typer.BadParameter("a comma-separated list of names, none empty (a,b,c)")
    return value


def _score(ctx, param, value):
    if value is not None and not 0 <= value <= 255:
        raise typer.BadParameter(f"must be 0..255 (got {value})")
    return value


def names(value: str | None) -> list[str] | None:
    """The names of a comma-separated option value (None when not given)."""
    return None if value is None else [s.strip() for s in value.split(",")]


def either(new, old, default=None):
    """The value of an option or of its hidden old name."""
    return new if new is not None else old if old is not None else default


@dataclass
class _State:
    debug: bool = False
    interrupt_reported: bool = False


STATE = _State()


def console(stderr: bool = False):
    """The rich console of a command (a closed pipe ends the command with 0, not
    rich's SystemExit(1), which reads as "cannot run")."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console(stderr=stderr, highlight=False, soft_wrap=False)


def esc(text) -> str:
    """Outside text (paths, model names, serial lines) made safe to print as rich markup."""
    from rich.markup import escape
    return escape(str(text))


@contextlib.contextmanager
def show_progress(enabled: bool = True, first: str = "starting"):
    """Show what nanoml.progress reports during the block: one status line on stderr,
    only when enabled (not --json) and stderr is a terminal. Yields the Progress."""
    from .. import progress
    status = None
    if enabled and _is_terminal(sys.stderr):
        from rich.status import Status
        status = Status(esc(first) + "...", console=console(stderr=True), spinner="dots")

    def sink(text: str) -> None:
        if status is not None:
            status.update(esc(text[:200]) + "...")
    with progress.listening(sink) as p:
        if status is None:
            yield p
        else:
            with status:
                yield p


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------- JSON

def emit_json(obj, schema: str | None = None, exit_code: int | None = None,
              final: bool = True) -> None:
    """One JSON document on stdout, with the envelope every document carries:
    `nanoml_version`, `schema` ("<command>/<version>"), `exit_code` and `ok`
    (both null in the first line of a stream, `final=False`: not known yet).
    Non-finite floats become null (never a bare NaN/Infinity token)."""
    doc = _plain(obj)
    if schema is not None:
        from .. import __version__
        if not isinstance(doc, dict):
            doc = {"data": doc}
        code = exit_code if exit_code is not None else doc.get("exit_code", 0)
        code = code if final else None
        head = {"nanoml_version": __version__, "schema": schema, "exit_code": code,
                "ok": code == 0 if isinstance(code, int) else None}
        doc = {**head, **{k: v for k, v in doc.items() if k not in head}}
    sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    sys.stdout.flush()


def _plain(o, depth: int = 0):
    """JSON-ready copy: to_json()/tolist() expanded, tuples/sets as lists, NaN/inf as None."""
    if depth > 200:
        return str(o)
    if o is None or isinstance(o, (bool, str, int)):
        return o
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _plain(v, depth + 1) for k, v in o.items()}
    if isinstance(o, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in o]
    if isinstance(o, enum.Enum):
        return _plain(o.value, depth + 1)
    if hasattr(o, "to_json"):
        return _plain(o.to_json(), depth + 1)
    if hasattr(o, "tolist"):
        return _plain(o.tolist(), depth + 1)
    if hasattr(o, "__fspath__"):
        return os.fspath(o)
    return str(o)


def model_ref(path) -> dict:
    """The one shape of a model file in every JSON document: {path, bytes, sha256}."""
    import hashlib
    p = os.fspath(path)
    try:
        h = hashlib.sha256()
        size = 0
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
        return {"path": p, "bytes": size, "sha256": h.hexdigest()}
    except OSError:
        return {"path": p, "bytes": None, "sha256": None}


def latency_ms(mean=None, *, min=None, p50=None, p95=None, p99=None, max=None,
               runs=None, scale: float = 1.0) -> dict:
    """The one shape of a latency in JSON: {ms (mean), min_ms, p50_ms, p95_ms, p99_ms,
    max_ms, runs}; figures not measured are null. `scale` converts the inputs to ms."""
    def ms(v):
        return None if v is None else round(float(v) * scale, 4)
    return {"ms": ms(mean), "min_ms": ms(min), "p50_ms": ms(p50), "p95_ms": ms(p95),
            "p99_ms": ms(p99), "max_ms": ms(max), "runs": runs}


# ---------------------------------------------------------------- errors

def fail(message: str, hint: str | None = None, code: int = 1, json_out: bool = False):
    """Print a one-line error (and hint) and exit with `code`."""
    message = _one_line(message)
    hint = _one_line(hint) if hint else hint
    if json_out:
        emit_json({"error": message, "hint": hint}, "error/1", code)
    else:
        err = sys.stderr
        err.write(f"error: {message}\n")
        if hint:
            err.write(f"hint: {hint}\n")
        err.flush()
    raise typer.Exit(code)


def _one_line(text: str, limit: int = 2000) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def quiet_stdout() -> None:
    """The reader of stdout went away (`| head`): send the rest to /dev/null
    (the recipe of Python's signal docs), so nothing fails at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def save_traceback(exc: BaseException) -> str | None:
    """Write the traceback of an unexpected exception to a crash file; its path."""
    import tempfile
    import time
    import traceback

    from .. import __version__
    text = (f"nanoml {__version__}\nargv: {sys.argv!r}\npython: {sys.version}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (os.path.join(cache, "nanoml"), os.path.join(tempfile.gettempdir(), "nanoml")):
        try:
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, name)
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return None


def internal_error(exc: BaseException, json_out: bool = False):
    """An exception nobody expected: one line naming the saved traceback, exit 70."""
    path = save_traceback(exc)
    where = f"traceback saved to {path}" if path else "re-run with --debug to see the traceback"
    fail(f"internal error: {type(exc).__name__}: {exc}; {where}", None, 70, json_out)


@contextlib.contextmanager
def handle_errors(json_out: bool = False):
    """Turn NanomlError, bad model files, Ctrl-C, a closed stdout and bugs into a
    one-line message and an exit code."""
    from ..errors import NanomlError
    from ..model.tflite import ModelError
    try:
        yield
    except typer.Exit:
        raise
    except BrokenPipeError:
        quiet_stdout()
        raise typer.Exit(0) from None
    except KeyboardInterrupt:
        if STATE.debug:
            raise
        sys.stderr.write("interrupted\n")
        STATE.interrupt_reported = True
        raise typer.Exit(130) from None
    except NanomlError as e:
        if STATE.debug:
            raise
        fail(e.message, e.hint, e.exit_code, json_out)
    except ModelError as e:
        if STATE.debug:
            raise
        fail(str(e), "check that the file is a complete .tflite model (re-export or re-download it)",
             2, json_out)
    except Exception as e:  # noqa: BLE001 - last resort: one line, not a traceback
        if STATE.debug:
            raise
        internal_error(e, json_out)


def _usage_error(e, argv: list[str]) -> int:
    """A bad option or argument, in the same one-line form as every other error
    (`error: ...` / `hint: ...`; one JSON document with --json), exit 2."""
    ctx = getattr(e, "ctx", None)
    hint = f"see `{ctx.command_path} --help`" if ctx is not None else "see `nanoml --help`"
    try:
        fail(e.format_message(), hint, e.exit_code, "--json" in argv)
    except typer.Exit as x:
        return x.exit_code
    return e.exit_code


def run(app, args: list[str] | None = None) -> int:
    """The process boundary: run the typer app, return the exit code. A closed
    stdout ends quietly with 0; Ctrl-C is 130 with one line; --help and usage
    errors are click's (exit 2); anything else is one line and a crash file."""
    from typer import _click   # typer's own click (typer >= 0.20 vendors it)

    cmd = typer.main.get_command(app)
    try:
        try:
            rc = cmd.main(args=args, prog_name="nanoml", standalone_mode=False)
        except typer.Abort:
            rc = 130
        except _click.exceptions.NoArgsIsHelpError as e:
            e.show()
            rc = e.exit_code
        except _click.ClickException as e:
            rc = _usage_error(e, sys.argv[1:] if args is None else args)
        except KeyboardInterrupt:
            rc = 130
        except SystemExit as e:
            if not isinstance(sys.stdout, _click.utils.PacifyFlushWrapper):
                raise
            raise BrokenPipeError from e    # click's own EPIPE exit (1): a normal end here
        except BrokenPipeError:
            raise
        except Exception as e:  # noqa: BLE001 - outside any command: still one line
            if STATE.debug:
                raise
            try:
                internal_error(e)
            except typer.Exit as x:
                rc = x.exit_code
        if rc == 130 and not STATE.interrupt_reported:
            sys.stderr.write("interrupted\n")
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
        return 0
    return rc if isinstance(rc, int) else 0
