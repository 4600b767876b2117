"""`profile --report`: the profile as Markdown (text bars) or self-contained HTML
(inline CSS bars, no scripts, no external resources). `render` returns the
text; `write` puts it in a file atomically."""

from __future__ import annotations

import html

from .result import ProfileResult

_SOURCE = {"device": "measured on the board", "sim": "virtual board (simulated timings)",
           "estimate": "estimated (cost model, no board)"}


def _fmt_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n:,} B"


def _summary(r: ProfileResult) -> list[tuple[str, str]]:
    rows = [("source", _SOURCE.get(r.source, r.source)), ("model", r.model),
            ("board", r.board), ("runtime", r.runtime),
            ("clock", f"{r.clock_hz / 1e6:g} MHz")]
    lat = r.latency
    if r.source == "estimate":
        if r.incomplete:
            n = len(r.missing)
            rows.append(("latency", f"at least {lat.mean:.3f} ms (estimate; lower bound: "
                                    f"{n} operator{'s' if n > 1 else ''} not estimated)"))
            rows.append(("instructions", f"at least {r.instructions:,}"))
        else:
            rows.append(("latency", f"{lat.mean:.3f} ms (estimate)"))
            rows.append(("instructions", f"{r.instructions:,}"))
        b = r.build or {}
        if b:
            rows.append(("build", f"{b['optimize']} profile ({b.get('chosen_by', 'option')}): "
                                  f"{' '.join(b['flags'])}, float ABI {b['float_abi']}, "
                                  f"latency table {b['coefficients']}"))
        rows.append(("CPI", f"{r.cpi:g}" + (f" ({b['cpi_source']})" if b.get("cpi_source") else "")))
    else:
        rows.append(("latency", f"mean {lat.mean:.3f} ms, p50 {lat.p50:.3f} ms, "
                                f"p99 {lat.p99:.3f} ms over {lat.runs} runs"))
    rows.append(("MACs", f"{r.total_macs:,}"))
    rows.append(("arena (minimal / used)",
                 f"{_fmt_bytes(r.arena_min_bytes)} / {_fmt_bytes(r.arena_used_bytes)}"))
    if r.flash_bytes is not None or r.ram_bytes is not None:
        how = "build" if r.source == "device" else "estimate"
        rows.append((f"flash / RAM ({how})", f"{_fmt_bytes(r.flash_bytes)} / {_fmt_bytes(r.ram_bytes)}"))
    if r.arena_recorded:
        rows.append(("arena recorded in", r.arena_recorded))
    return rows


def _cpm(layer) -> str:
    v = layer.cycles_per_mac
    return "-" if v is None else f"{v:.2f}"


def timing_cells(layer) -> tuple[str, str, str]:
    """(cycles, ms, %) of one operator as text; an estimate's operator with no
    figure says so instead ("not measured": no measured coefficients for its
    kernel and dtypes; "out of range": shapes beyond what can run)."""
    if not layer.estimated:
        word = "not measured" if layer.basis == "unmeasured" else "out of range"
        return word, "-", "-"
    return f"{layer.cycles:,.0f}", f"{layer.ms:.3f}", f"{100 * layer.share:.1f}"


def to_markdown(r: ProfileResult, width: int = 30) -> str:
    out = [f"# nanoml profile: {r.model}", ""]
    out += ["| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in _summary(r)]
    out += ["", "## Per operator", "",
            "| # | op | output shape | MACs | cycles | ms | % | cycles/MAC |",
            "|---:|---|---|---:|---:|---:|---:|---:|"]
    for layer in r.layers:
        cyc, ms, pct = timing_cells(layer)
        out.append(f"| {layer.index} | {layer.op} | {'x'.join(map(str, layer.output_shape))} | "
                   f"{layer.macs:,} | {cyc} | {ms} | {pct} | {_cpm(layer)} |")
    out += ["", "## Time per operator", "", "```"]
    top = max((layer.share for layer in r.layers), default=0) or 1.0
    label_w = max((len(f"{layer.index} {layer.op}") for layer in r.layers), default=4)
    for layer in r.layers:
        n = layer.share / top * width
        bar = "#" * int(n) + ("+" if n - int(n) >= 0.5 else "")
        tail = (f"{layer.ms:8.3f} ms {100 * layer.share:5.1f}%" if layer.estimated
                else timing_cells(layer)[0])
        out.append(f"{f'{layer.index} {layer.op}':<{label_w}} |{bar:<{width + 1}} {tail}")
    out.append("```")
    if r.errors:
        out += ["", "## Cannot run on the board", ""] + [f"- {m}" for m in r.errors]
    if r.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 8px;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#eee;width:320px;height:14px;position:relative}
.bar span{display:block;height:14px;background:#3b7dd8}"""


def to_html(r: ProfileResult) -> str:
    e = html.escape
    top = max((layer.share for layer in r.layers), default=0) or 1.0
    rows = []
    for layer in r.layers:
        pct = 100 * layer.share / top
        cyc, ms, share = timing_cells(layer)
        rows.append(
            f"<tr><td class=n>{layer.index}</td><td>{e(layer.op)}</td>"
            f"<td>{e('x'.join(map(str, layer.output_shape)))}</td><td class=n>{layer.macs:,}</td>"
            f"<td class=n>{cyc}</td><td class=n>{ms}</td>"
            f"<td class=n>{share}</td><td class=n>{_cpm(layer)}</td>"
            f"<td><div class=bar title='{100 * layer.share:.1f}%'>"
            f"<span style='width:{pct:.1f}%'></span></div></td></tr>")
    return html_document(
            f"nanoml profile: {r.model}", "nanoml profile", _summary(r),
            "<h2>Per operator</h2><table><tr><th>#</th><th>op</th><th>output shape</th>"
            "<th>MACs</th><th>cycles</th><th>ms</th><th>%</th><th>cycles/MAC</th>"
            f"<th>time</th></tr>{''.join(rows)}</table>",
            [("Cannot run on the board", r.errors), ("Notes", r.notes)])


def html_document(title: str, heading: str, summary: list[tuple[str, str]], body: str,
                  lists: list[tuple[str, list[str]]] = ()) -> str:
    """A self-contained page (inline CSS, no scripts): `heading`, the `summary`
    (key, value) table, `body` (HTML), then each non-empty (title, items) list.
    Text is escaped here; `body` is HTML already."""
    e = html.escape
    head = "".join(f"<tr><th align=left>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in summary)
    tail = "".join(f"<h2>{e(t)}</h2><ul>{''.join(f'<li>{e(x)}</li>' for x in items)}</ul>"
                   for t, items in lists if items)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{e(heading)}</h1><table>{head}</table>{body}{tail}</body></html>\n")


def is_html(path) -> bool:
    """A report file name that asks for HTML (.html/.htm); anything else is Markdown."""
    return str(path).lower().endswith((".html", ".htm"))


def render(r: ProfileResult, path: str) -> str:
    """Report text for a file name: .html/.htm -> HTML, anything else -> Markdown."""
    return to_html(r) if is_html(path) else to_markdown(r)


def write(r: ProfileResult, path) -> None:
    """Write the report whole or not at all (temp file + rename; UsageError, exit 2,
    on a full or read-only disk). `nanoml.atomic.check_output_file(path)` tells
    before the run whether it can be written."""
    from ..atomic import write_atomic
    write_atomic(path, render(r, str(path)), "report")
