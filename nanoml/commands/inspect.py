"""`nanoml inspect MODEL`: ops, shapes, MACs, runtime support, flash/RAM fit."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import (BOARD_OPTION, JSON_OPTION, RUNTIME_OPTION, InputSource, OptimizeProfile,
                      console, emit_json, esc, handle_errors, optimize_option, value_of)
from .build import INPUT_HELP


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect_cmd(
        model: Path = typer.Argument(..., help="A .tflite model."),
        board: str = BOARD_OPTION,
        runtime: str = RUNTIME_OPTION,
        input_source: InputSource = typer.Option(None, "--input", "-i", help=INPUT_HELP +
                                                 " Counted in the footprint and checked against "
                                                 "the model, as `build --input` does (default: "
                                                 "the footprint of serial)."),
        profile: bool = typer.Option(False, "--profile",
                                     help="Count the profiling firmware (`build --profile`)."),
        optimize: OptimizeProfile = optimize_option("The optimization profile `build "
                                                    "--optimize` would build (speed|size; "
                                                    "default: build's default): its latency "
                                                    "estimate and flash."),
        json_out: bool = JSON_OPTION,
    ) -> None:
        """Show ops, shapes, MACs, op support and whether the model fits the board.

        Exit 0: runs on the board; 1: it cannot (unsupported op, too big); 2: unusable file.
        """
        with handle_errors(json_out):
            from ..model.inspect import inspect_model
            report = inspect_model(str(model), board, runtime, input_kind=value_of(input_source),
                                   profile=profile, optimize=value_of(optimize))
            if json_out:
                emit_json(to_json(report), "inspect/2", report.exit_code)
            else:
                render(report)
            raise typer.Exit(report.exit_code)


def to_json(report) -> dict:
    """inspect's document; `footprint` in the shape every command uses
    ({flash_bytes, ram_bytes, flash: {part: B}, ram: {part: B}, fits, notes})."""
    d = report.to_json()
    fp = d.get("footprint")
    if isinstance(fp, dict):
        d["footprint"] = {"flash_bytes": d.get("flash_bytes"), "ram_bytes": d.get("ram_bytes"),
                          **fp, "fits": d.get("fits")}
    return d


def _fmt_shape(t: dict) -> str:
    return "x".join(str(d) for d in t["shape"]) + f" {t['dtype']}"


def _fmt_q(t: dict) -> str:
    if t.get("scale") is None:
        return ""
    if t.get("per_channel"):
        return f"per-channel ({len(t['scale'])})"
    return f"s={t['scale']:.3g} zp={t['zero_point']}"


def _b(v) -> str:
    """A byte figure; None is one the verdict found not real (`absurd_size`)."""
    return f"{v:,} B" if isinstance(v, int) else "n/a"


def render(report) -> None:
    from rich.table import Table
    c = console()
    d = report.to_json()
    m = d["model"]
    c.print(f"[bold]{esc(m['path'])}[/]  {m['bytes']:,} B  sha256 {m['sha256'][:12]}  "
            f"board {esc(d['board'])}  runtime {esc(d['runtime'])}", soft_wrap=True)
    io = Table(title="Inputs / outputs", show_edge=False)
    for col in ("", "shape", "quantization"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            io.add_row(kind[:-1], esc(_fmt_shape(t)), esc(_fmt_q(t)))
    c.print(io)

    ops = Table(title="Operators", show_edge=False)
    multi = len(report.model.subgraphs) > 1
    # index and op name are never cut: full width, no wrapping; shapes fold
    op_w = max((len(o["op"]) for o in d["operators"]), default=2)
    ops.add_column("#", justify="right", no_wrap=True)
    ops.add_column("op", no_wrap=True, min_width=op_w)
    ops.add_column("v", justify="right", no_wrap=True)
    ops.add_column("inputs", overflow="fold")
    ops.add_column("output", overflow="fold")
    ops.add_column("MACs", justify="right", no_wrap=True)
    ops.add_column("params B", justify="right", no_wrap=True)
    for o in d["operators"]:
        idx = f"{o['subgraph']}:{o['index']}" if multi else str(o["index"])
        ins = ", ".join("x".join(map(str, t["shape"])) for t in o["inputs"])
        outs = ", ".join(_fmt_shape(t) for t in o["outputs"])
        ops.add_row(idx, esc(o["op"]), str(o["version"]), esc(ins), esc(outs), f"{o['macs']:,}",
                    f"{o['param_bytes']:,}")
    c.print(ops)

    sup = Table(title=esc(f"Op support in {report.runtime.name} {report.runtime.version}"),
                show_edge=False)
    sup.add_column("op", no_wrap=True, min_width=max((len(o["name"]) for o in d["ops"]), default=2))
    for col in ("version", "count"):
        sup.add_column(col, no_wrap=True)
    sup.add_column("supported", overflow="fold")
    for o in d["ops"]:
        sup.add_row(esc(o["name"]), str(o["version"]), str(o["count"]),
                    "[green]yes[/]" if o["supported"] else f"[red]no[/] {esc(o['reason'] or '')}")
    c.print(sup)

    a = d["arena"]
    label = "" if a.get("exact", True) else " [yellow](upper bound)[/]"
    c.print(f"MACs {d['macs']:,}   parameters {d['params']:,} ({d['param_bytes']:,} B)")
    c.print(f"Tensor arena: minimal working {_b(a['min_bytes'])}{label}, "
            f"arena_used_bytes() {_b(a['used_bytes'])}  [dim]({esc(a.get('method', ''))})[/]")
    if a.get("breakdown"):
        c.print("  " + esc(", ".join(f"{k} {v:,} B" for k, v in a["breakdown"].items()
                                     if isinstance(v, int))))
    lim = d["limits"]
    for kind, key in (("Flash", "flash"), ("RAM", "ram")):
        used, cap = d[f"{key}_bytes"], lim[f"{key}_bytes"]
        ok = d["fits"][key] and used is not None
        pct = f"{100.0 * used / cap:.1f}%" if used is not None else "n/a"
        colour = "green" if ok else "red"
        parts = esc(", ".join(f"{k} {_b(v)}" for k, v in d["footprint"][key].items()
                              if isinstance(v, int) or v is None))
        c.print(f"{kind:5} [{colour}]{_b(used):>11} of {cap:,} B ({pct})[/]  [dim]{parts}[/]")
    for line in optimization_lines(d):
        c.print(line, soft_wrap=True)
    if report.pipeline is not None:
        from .pipeline import summary
        c.print("[bold]Pipeline[/] [dim](stored in the model)[/]")
        for line in summary(report.pipeline):
            c.print("  " + esc(line), soft_wrap=True)
    for p in d["problems"]:
        colour = {"error": "red", "warning": "yellow"}.get(p["level"], "cyan")
        c.print(f"[{colour}]{esc(p['level'])}:[/] {esc(p['message'])}", soft_wrap=True)
    c.print("[green]fits and runs on the board[/]" if d["can_run"]
            else "[red]cannot run on the board as is[/]")


def optimization_lines(d: dict) -> list[str]:
    """The latency estimate of the profile chosen and the profiles side by side (rich
    markup, escaped): inspect's text and profile --estimate's."""
    est, rows = d.get("estimate"), d.get("optimizations") or []
    lines = []
    if est:
        b = est["build"]
        at_least = "at least " if est["lower_bound"] else ""
        lines.append(esc(f"Latency (estimate, {b['optimize']} build: {' '.join(b['flags'])}, "
                         f"float ABI {b['float_abi']}): {at_least}{est['ms']:.3f} ms, "
                         f"{at_least}{est['instructions']:,} instructions at CPI {b['cpi']:g}"))
    for r in rows:
        lb = "at least " if r["lower_bound"] else ""
        fl = f"flash {r['flash_bytes']:,} B" if r["flash_bytes"] is not None else "flash n/a"
        tag = "" if r["measured"] else " (not measured: the size build's figures)"
        lines.append(esc(f"  {r['optimize']:5}  {lb}{r['instructions']:,} instructions  "
                         f"{lb}{r['ms']:.3f} ms  {fl}{tag}"))
    return lines
