"""nanoml command line: a thin typer app.

Each command lives in nanoml/commands/<name>.py and exposes `register(app)`.
Command modules import only typer at module level; domain code (and numpy,
tflite-micro, TensorFlow, PlatformIO) is imported inside the command, so
`nanoml --help` stays fast.
"""

from __future__ import annotations

import sys


def _interrupted():
    """Ctrl-C while Python is still importing typer and the commands: the same one
    line and exit code as later, not a traceback."""
    sys.stderr.write("interrupted\n")
    raise SystemExit(130)


try:
    import importlib

    import typer

    from . import __version__
    from .commands import _common
except KeyboardInterrupt:
    _interrupted()

COMMANDS = ["boards", "ports", "inspect", "convert", "build", "flash", "monitor", "sim",
            "profile", "validate", "features", "pipeline", "capture"]

app = typer.Typer(
    name="nanoml",
    help="Take a trained model to a running, measured deployment on the Arduino Nano 33 BLE Sense.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nanoml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _common.STATE.debug = debug


try:
    for _name in COMMANDS:
        importlib.import_module(f"nanoml.commands.{_name}").register(app)
except KeyboardInterrupt:
    _interrupted()


def main() -> None:
    """The process boundary (commands/_common.run): a closed stdout is a normal
    end (exit 0), Ctrl-C exits 130 with one line, an unexpected exception prints
    one line and saves its traceback to a file it names (--debug shows it)."""
    sys.exit(_common.run(app))


if __name__ == "__main__":
    main()
