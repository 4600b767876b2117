"""`validate --layers --report FILE.md|.html`: the layer comparison as Markdown or
self-contained HTML (the page machinery of `profile --report`,
nanoml.profile.report). `render` returns the text; `write` puts it in a file
atomically. Never prints.
"""

from __future__ import annotations

import html

from .layers import LayersResult

_WHERE = {"device": "the board", "sim": "the virtual board"}
_REFERENCE = {"tflm": "TFLM's host interpreter", "tflite": "TensorFlow Lite's interpreter"}


def summary(r: LayersResult) -> list[tuple[str, str]]:
    t = r.tolerance
    rows = [("model", r.model), ("compared", f"{_WHERE.get(r.source, r.source)} against "
                                             f"{_REFERENCE.get(r.reference, r.reference)}"),
            ("inputs", f"{r.samples} ({r.inputs})"),
            ("tolerance", f"{t.lsb} LSB (quantized), {t.rel:g} of the range (float)")]
    if r.first is None:
        rows.append(("result", "every layer within tolerance"))
    else:
        rows.append(("first divergent", f"operator {r.first.index} ({r.first.op}) on input "
                                        f"{r.first.input}"))
        rows.append(("cause", r.first.likely))
    rows.append(("link", f"{r.link_bytes:,} B of layer dumps, {r.retries} re-send(s), "
                         f"{r.corrupt_lines} corrupt line(s)"))
    return rows


def cells(row) -> tuple[str, str, str, str]:
    """(LSB, real, relative, verdict) of one layer as text."""
    lsb = "-" if row.max_lsb is None else str(row.max_lsb)
    real = "inf" if row.max_abs == float("inf") else f"{row.max_abs:.4g}"
    rel = "-" if row.max_rel is None else f"{row.max_rel:.2g}"
    verdict = "ok" if row.within else (row.mismatch or "DIFFERS")
    return lsb, real, rel, verdict


def local_cell(row) -> str:
    """The operator alone on the board's inputs (what `within` judges): its LSB
    (real units for float tensors), or "-" when it could not run alone."""
    if row.local_within is None:
        return "-"
    if row.local_max_lsb is not None:
        return str(row.local_max_lsb)
    return "inf" if row.local_max_abs is None else f"{row.local_max_abs:.4g}"


def to_markdown(r: LayersResult) -> str:
    out = [f"# nanoml validate --layers: {r.model}", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in summary(r)]
    out += ["", "## Per operator", "",
            "| # | op | output | dtype | max LSB | max real | relative | local | input | |",
            "|---:|---|---|---|---:|---:|---:|---:|---:|---|"]
    for row in r.rows:
        lsb, real, rel, verdict = cells(row)
        mark = " **first divergent**" if r.first and r.first.index == row.index else ""
        out.append(f"| {row.index} | {row.op} | {'x'.join(map(str, row.shape))} | {row.dtype} | "
                   f"{lsb} | {real} | {rel} | {local_cell(row)} | "
                   f"{'-' if row.input is None else row.input} | "
                   f"{verdict}{mark} |")
    if r.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(out) + "\n"


def to_html(r: LayersResult) -> str:
    from ..profile.report import html_document
    e = html.escape
    rows = []
    for row in r.rows:
        lsb, real, rel, verdict = cells(row)
        first = r.first is not None and r.first.index == row.index
        style = " style='background:#fde2e2'" if first else ""
        rows.append(f"<tr{style}><td class=n>{row.index}</td><td>{e(row.op)}</td>"
                    f"<td>{e('x'.join(map(str, row.shape)))}</td><td>{e(row.dtype)}</td>"
                    f"<td class=n>{lsb}</td><td class=n>{real}</td><td class=n>{rel}</td>"
                    f"<td class=n>{local_cell(row)}</td>"
                    f"<td class=n>{'-' if row.input is None else row.input}</td>"
                    f"<td>{e(verdict)}{' (first divergent)' if first else ''}</td></tr>")
    return html_document(
        f"nanoml validate --layers: {r.model}", "nanoml validate --layers", summary(r),
        "<h2>Per operator</h2><table><tr><th>#</th><th>op</th><th>output</th><th>dtype</th>"
        "<th>max LSB</th><th>max real</th><th>relative</th><th>local</th><th>input</th>"
        "<th></th></tr>"
        f"{''.join(rows)}</table>", [("Notes", r.notes)])


def render(r: LayersResult, path) -> str:
    from ..profile.report import is_html
    return to_html(r) if is_html(path) else to_markdown(r)


def write(r: LayersResult, path) -> None:
    """Whole or not at all (nanoml.atomic)."""
    from ..atomic import write_atomic
    write_atomic(path, render(r, path), "report")
