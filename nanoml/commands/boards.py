"""`nanoml boards`: list the board profiles."""

from __future__ import annotations

import typer

from ._common import JSON_OPTION, console, emit_json, esc, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("boards")
    def boards_cmd(json_out: bool = JSON_OPTION) -> None:
        """List the supported boards and their limits."""
        with handle_errors(json_out):
            from ..boards import DEFAULT_BOARD, all_boards
            boards = all_boards()
            if json_out:
                emit_json({"default": DEFAULT_BOARD, "boards": [b.to_json() for b in boards.values()]},
                          "boards/1", 0)
                return
            from rich.table import Table
            t = Table(title="Boards", caption="* default board", show_lines=True)
            # ids are what users type: never cut (no_wrap, full width); the details wrap
            ids = [b.id + ("*" if b.id == DEFAULT_BOARD else "") for b in boards.values()]
            t.add_column("id", no_wrap=True, min_width=max(map(len, ids), default=2))
            t.add_column("board", overflow="fold")
            for shown, b in zip(ids, boards.values()):
                sensors = ", ".join(s["part"] for s in b.sensors.values())
                t.add_row(esc(shown), esc(
                    f"{b.name}\n{b.mcu} {b.clock_hz // 1_000_000} MHz, flash {b.flash_bytes:,} B, "
                    f"RAM {b.ram_bytes:,} B\nUSB {b.usb_application} (app), "
                    f"{b.usb_bootloader} (bootloader)\nsensors: {sensors}"))
            console().print(t)
