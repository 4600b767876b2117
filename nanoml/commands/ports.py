"""`nanoml ports`: the serial ports attached, which are a Nano 33 BLE (Sense)
running a sketch or in its bootloader, and running virtual boards."""

from __future__ import annotations

import typer

from ._common import JSON_OPTION, emit_json, handle_errors

SCHEMA = "ports/1"


def register(app: typer.Typer) -> None:
    @app.command("ports")
    def ports_cmd(
        board: str = typer.Option(None, "--board", "-b",
                                  help="Show only the ports with this board profile's USB ids."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """List serial ports: port, board (sketch or bootloader), USB id, serial number."""
        with handle_errors(json_out):
            from ..errors import UsageError
            from ..serial.ports import survey
            if board is not None and not board.strip():
                raise UsageError("--board must not be empty", hint="leave it out to list every port")
            result = survey(board=board)
            if json_out:
                emit_json(result.to_json(), SCHEMA, 0)
            else:
                _render(result)


_MODE_TEXT = {"application": "sketch", "bootloader": "bootloader", "virtual": "virtual",
              "unknown": "-"}


def _render(result) -> None:
    import sys

    from rich.table import Table
    from rich.text import Text

    from ..serial.ports import APPLICATION, BOOTLOADER, VIRTUAL
    from ._common import console

    if not result.ports:
        what = f"with the USB ids of {result.board}" if result.board else "found"
        sys.stderr.write(f"no serial ports {what}\n"
                         "hint: plug the board in with a data USB cable (charge-only cables show "
                         "no port); `nanoml sim MODEL` starts a virtual board\n")
        return
    rows = [[p.device, _MODE_TEXT[p.mode], p.board_name or "-", p.vidpid or "-",
             p.serial_number or "-", p.description or "-"] for p in result.ports]
    t = Table(box=None, pad_edge=False, header_style="bold")
    for i, col in enumerate(("port", "mode", "board", "USB id", "serial number", "description")):
        if col in ("board", "description"):          # words: these wrap
            t.add_column(col, overflow="fold")
        else:                                        # ids: never cut, never folded
            t.add_column(col, no_wrap=True, min_width=max(len(col), *(len(r[i]) for r in rows)))
    for r in rows:
        t.add_row(*map(Text, r))
    console().print(t)
    apps, boots, virtual = result.of(APPLICATION), result.of(BOOTLOADER), result.of(VIRTUAL)
    lines = []
    if apps:
        lines.append(f"{len(apps)} board(s) running a sketch: " + ", ".join(p.device for p in apps))
    for p in boots:
        lines.append(f"{p.device}: in its bootloader (double-tapped reset or an upload): press "
                     "reset once to start the sketch, or flash one with `nanoml flash`")
    if virtual:
        lines.append(f"{len(virtual)} virtual board(s): pass the link to --port")
    if not (apps or boots):
        lines.append("no Nano 33 BLE found (looked for the USB ids in boards/*.toml)")
    sys.stderr.write("".join(f"{x}\n" for x in lines))
