"""`nanoml boards`: list the board profiles."""

from __future__ import annotations

import typer

from ._common import JSON_OPTION, console, emit_json, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("boards")
    def boards_cmd(json_out: bool = JSON_OPTION) -> None:
        """List the supported boards and their limits."""
        with handle_errors(json_out):
            from ..boards import DEFAULT_BOARD, all_boards
            boards = all_boards()
            if json_out:
                emit_json({"default": DEFAULT_BOARD, "boards": [b.to_json() for b in boards.values()]})
                return
            from rich.table import Table
            t = Table(title="Boards")
            for col in ("id", "name", "MCU", "flash", "RAM", "USB app / boot", "sensors"):
                t.add_column(col)
            for b in boards.values():
                sensors = ", ".join(s["part"] for s in b.sensors.values())
                t.add_row(b.id + (" (default)" if b.id == DEFAULT_BOARD else ""), b.name,
                          f"{b.mcu} @ {b.clock_hz // 1_000_000} MHz", f"{b.flash_bytes:,} B",
                          f"{b.ram_bytes:,} B", f"{b.usb_application} / {b.usb_bootloader}", sensors)
            console().print(t)
