"""Shared CLI plumbing: error handling, JSON output, the rich console.

Usage in a command module::

    def register(app):
        @app.command()
        def thing(json_out: bool = JSON_OPTION):
            with handle_errors(json_out):
                result = domain.do_thing(...)       # returns data, never prints
                if json_out:
                    emit_json(result.to_json())
                else:
                    render_thing(result)            # rich
                raise typer.Exit(result.exit_code)
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass

import typer

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON (schema in docs/).")
BOARD_OPTION = typer.Option(None, "--board", "-b", help="Board id (see `nanoml boards`).")
RUNTIME_OPTION = typer.Option(None, "--runtime", "-r",
                              help="TFLM Arduino library profile (default chirale_2.0.0).")


@dataclass
class _State:
    debug: bool = False


STATE = _State()


def console(stderr: bool = False):
    from rich.console import Console
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, default=_default) + "\n")
    sys.stdout.flush()


def _default(o):
    if hasattr(o, "to_json"):
        return o.to_json()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def fail(message: str, hint: str | None = None, code: int = 1, json_out: bool = False):
    """Print a one-line error (and hint) and exit with `code`."""
    if json_out:
        emit_json({"error": message, "hint": hint, "exit_code": code})
    else:
        err = sys.stderr
        err.write(f"error: {message}\n")
        if hint:
            err.write(f"hint: {hint}\n")
        err.flush()
    raise typer.Exit(code)


@contextlib.contextmanager
def handle_errors(json_out: bool = False):
    """Turn NanomlError (and Ctrl-C) into a one-line message and exit code."""
    from ..errors import NanomlError
    from ..model.tflite import ModelError
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        if STATE.debug:
            raise
        sys.stderr.write("interrupted\n")
        raise typer.Exit(130)
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
        fail(f"internal error: {type(e).__name__}: {e}", "re-run with --debug and report the traceback",
             70, json_out)
