"""`nanoml inspect MODEL`: ops, shapes, MACs, runtime support, flash/RAM fit."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import BOARD_OPTION, JSON_OPTION, RUNTIME_OPTION, console, emit_json, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect_cmd(
        model: Path = typer.Argument(..., help="A .tflite model."),
        board: str = BOARD_OPTION,
        runtime: str = RUNTIME_OPTION,
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Show ops, shapes, MACs, op support and whether the model fits the board.

        Exit 0: runs on the board; 1: it cannot (unsupported op, too big); 2: unusable file.
        """
        with handle_errors(json_out):
            from ..model.inspect import inspect_model
            report = inspect_model(str(model), board, runtime)
            if json_out:
                emit_json(report.to_json())
            else:
                render(report)
            raise typer.Exit(report.exit_code)


def _fmt_shape(t: dict) -> str:
    return "x".join(str(d) for d in t["shape"]) + f" {t['dtype']}"


def _fmt_q(t: dict) -> str:
    if t.get("scale") is None:
        return ""
    if t.get("per_channel"):
        return f"per-channel ({len(t['scale'])})"
    return f"s={t['scale']:.3g} zp={t['zero_point']}"


def render(report) -> None:
    from rich.table import Table
    c = console()
    d = report.to_json()
    m = d["model"]
    c.print(f"[bold]{m['path']}[/]  {m['bytes']:,} B  sha256 {m['sha256'][:12]}  "
            f"board {d['board']}  runtime {d['runtime']}")
    io = Table(title="Inputs / outputs", show_edge=False)
    for col in ("", "shape", "quantization"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            io.add_row(kind[:-1], _fmt_shape(t), _fmt_q(t))
    c.print(io)

    ops = Table(title="Operators", show_edge=False)
    for col, j in (("#", "right"), ("op", "left"), ("v", "right"), ("inputs", "left"),
                   ("output", "left"), ("MACs", "right"), ("params B", "right")):
        ops.add_column(col, justify=j)
    multi = len(report.model.subgraphs) > 1
    for o in d["operators"]:
        idx = f"{o['subgraph']}:{o['index']}" if multi else str(o["index"])
        ins = ", ".join("x".join(map(str, t["shape"])) for t in o["inputs"])
        outs = ", ".join(_fmt_shape(t) for t in o["outputs"])
        ops.add_row(idx, o["op"], str(o["version"]), ins, outs, f"{o['macs']:,}",
                    f"{o['param_bytes']:,}")
    c.print(ops)

    sup = Table(title=f"Op support in {report.runtime.name} {report.runtime.version}",
                show_edge=False)
    for col in ("op", "version", "count", "supported"):
        sup.add_column(col)
    for o in d["ops"]:
        sup.add_row(o["name"], str(o["version"]), str(o["count"]),
                    "[green]yes[/]" if o["supported"] else f"[red]no[/] {o['reason'] or ''}")
    c.print(sup)

    a = d["arena"]
    label = "" if a.get("exact", True) else " [yellow](upper bound)[/]"
    c.print(f"MACs {d['macs']:,}   parameters {d['params']:,} ({d['param_bytes']:,} B)")
    c.print(f"Tensor arena: minimal working {a['min_bytes']:,} B{label}, "
            f"arena_used_bytes() {a['used_bytes']:,} B  [dim]({a.get('method', '')})[/]")
    if a.get("breakdown"):
        c.print("  " + ", ".join(f"{k} {v:,} B" for k, v in a["breakdown"].items()
                                 if isinstance(v, int)))
    lim = d["limits"]
    for kind, key in (("Flash", "flash"), ("RAM", "ram")):
        used, cap = d[f"{key}_bytes"], lim[f"{key}_bytes"]
        ok = d["fits"][key]
        pct = 100.0 * used / cap
        colour = "green" if ok else "red"
        parts = ", ".join(f"{k} {v:,}" for k, v in d["footprint"][key].items())
        c.print(f"{kind:5} [{colour}]{used:>9,} B of {cap:,} B ({pct:.1f}%)[/]  [dim]{parts}[/]")
    for p in d["problems"]:
        colour = {"error": "red", "warning": "yellow"}.get(p["level"], "cyan")
        c.print(f"[{colour}]{p['level']}:[/] {p['message']}")
    c.print("[green]fits and runs on the board[/]" if d["can_run"]
            else "[red]cannot run on the board as is[/]")
