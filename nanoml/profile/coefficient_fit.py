"""Fit the per-loop instruction coefficients of the latency model to measured
per-operator instruction counts.

Input: one or more measurement files (JSON, format of tests/data/estimate/measured.json:
``{"models": {"<file>.tflite": {"ops": [{"index", "op", "instructions"}, ...],
"total_instructions": N}}}``) and the directories holding those .tflite files.
Output: a coefficient table (nanoml/profile/coefficients/<runtime>.json).

For each kernel path the instructions of one operator are modelled as
``fixed + sum_k coef_k * count_k`` where count_k are the loop iteration counts
from `kernels.operator_work`. The coefficients are fitted by non-negative least
squares on relative error (each operator weighs the same whatever its size), so
every coefficient stays a plausible "instructions per iteration" figure.

Run: ``python -m nanoml.profile.coefficient_fit OUT.json MEASURED.json:MODELDIR [...]``;
``--like TABLE.json`` (first) starts a new OUT from that table's header (runtime, build,
CPI, interpreter overhead), for another build's table (nanoml/profile/costmodel.py
`coefficient_name`): then edit its `optimize`, `flags`, `float_abi`, `measured_on`.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def nnls(a, b, iters: int = 500):
    """Lawson-Hanson non-negative least squares (small problems; numpy only)."""
    import numpy as np
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    for _ in range(iters):
        if passive.all() or w[~passive].max(initial=-1) <= 1e-12:
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
        w = a.T @ (b - a @ x)
    return x


def collect(pairs: list[tuple[Path, Path]]):
    """[(path, counts, measured instructions, model name, op index, op name, dtype path)]"""
    from ..model.tflite import load
    from .kernels import operator_work
    rows = []
    for measured, model_dir in pairs:
        data = json.loads(Path(measured).read_text())
        for name, m in data["models"].items():
            p = Path(model_dir) / name
            if not p.exists():
                continue
            model = load(p)
            ops = model.main.operators
            for rec in m["ops"]:
                op = ops[rec["index"]]
                w = operator_work(model.main, op)
                rows.append((w.path, w.counts, rec["instructions"], name, rec["index"], op.op,
                             w.dtype))
    return rows


def fit(rows, min_rel: float = 0.0) -> dict:
    import numpy as np
    by_path = defaultdict(list)
    for r in rows:
        by_path[r[0]].append(r)
    out = {}
    for path, rs in sorted(by_path.items()):
        keys = sorted({k for r in rs for k in r[1]})
        a = np.array([[1.0] + [float(r[1].get(k, 0)) for k in keys] for r in rs])
        b = np.array([float(r[2]) for r in rs])
        wgt = 1.0 / np.maximum(b, 1.0)
        coef = nnls(a * wgt[:, None], b * wgt)
        pred = a @ coef
        rel = np.abs(pred / b - 1)
        out[path] = {"fixed": round(float(coef[0]), 3),
                     "per": {k: round(float(c), 4) for k, c in zip(keys, coef[1:])},
                     # the dtype paths measured: the estimate calls any other unmeasured
                     "dtypes": sorted({r[6] for r in rs}),
                     "fit": {"operators": len(rs), "max_rel_err": round(float(rel.max()), 4),
                             "mean_rel_err": round(float(rel.mean()), 4)}}
    return out


def main(argv: list[str]) -> int:
    like = None
    if argv and argv[0] == "--like":
        like, argv = Path(argv[1]), argv[2:]
    out = Path(argv[0])
    pairs = []
    for spec in argv[1:]:
        measured, _, model_dir = spec.partition(":")
        pairs.append((Path(measured), Path(model_dir)))
    rows = collect(pairs)
    table = fit(rows)
    existing = json.loads((out if out.exists() else like).read_text()) \
        if out.exists() or like else {}
    existing["paths"] = table
    out.write_text(json.dumps(existing, indent=1, sort_keys=False) + "\n")
    for path, v in table.items():
        print(f"{path:18s} n={v['fit']['operators']:3d} max={v['fit']['max_rel_err']:.3f} "
              f"mean={v['fit']['mean_rel_err']:.3f} fixed={v['fixed']:.0f} {v['per']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
