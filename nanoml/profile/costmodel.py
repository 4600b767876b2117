"""Per-operator latency model for the Cortex-M4: instructions -> cycles -> ms.

instructions(op) = fixed[path] + sum_k per[path][k] * work_k(op)
cycles(op)       = instructions(op) * CPI            (CPI documented, 1.25 prior)
ms(op)           = cycles(op) / clock_hz * 1000

An op is *measured* when its kernel path has coefficients and its dtype path
(`kernels.dtype_path`) is one of those the coefficients were fitted on (each
path's "dtypes" in the table); any other op is unmeasured and gets no figure.

`work_k` comes from `kernels.operator_work` (which kernel path the runtime runs and
how many times each of its loops iterates); the coefficients (instructions per loop
iteration) are data, one JSON file per runtime in nanoml/profile/coefficients/,
fitted by `nanoml.profile.coefficient_fit` to instruction counts measured on a Cortex-M4 build
(tests/data/estimate/ and ../shared/truth/instructions_cortex_m4.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..errors import UsageError
from .kernels import Work

DEFAULT_CPI = 1.25


@dataclass(frozen=True)
class PathCost:
    fixed: float
    per: dict
    dtypes: frozenset                # dtype paths the coefficients were fitted on

    def instructions(self, counts: dict) -> int:
        # exact integer arithmetic on the counts (they can be huge), then rounded
        total = self.fixed + sum(self.per.get(k, 0.0) * float(v) for k, v in counts.items())
        return max(int(round(total)), 0)


@dataclass(frozen=True)
class CostModel:
    id: str
    description: str
    cpi: float
    invoke_fixed: float              # Invoke() around the operators
    per_op_dispatch: float           # interpreter loop between two operators
    paths: dict                      # path -> PathCost
    measured_on: str

    def is_measured(self, work: Work) -> bool:
        pc = self.paths.get(work.path)
        return pc is not None and work.dtype in pc.dtypes

    def op_instructions(self, work: Work) -> int | None:
        """Instructions of one op, or None when its kernel path / dtype path was
        never measured (no figure rather than a guess)."""
        if not self.is_measured(work):
            return None
        return self.paths[work.path].instructions(work.counts)

    def total_instructions(self, per_op: list[int], n_ops: int) -> int:
        """Invoke() of `n_ops` operators of which `per_op` are the estimated ones
        (a lower bound when some are missing)."""
        return int(round(sum(per_op) + self.invoke_fixed + self.per_op_dispatch * n_ops))


# Runtimes whose Cortex-M4 kernels we have not measured separately use the nearest
# measured table (same kernels, other build flags); the estimate says so.
_ALIASES = {"chirale_2.0.0_no_static_memory": "chirale_2.0.0"}


@lru_cache(maxsize=None)
def load_cost_model(runtime_id: str) -> CostModel:
    rid = _ALIASES.get(runtime_id, runtime_id)
    root = resources.files("nanoml.profile").joinpath("coefficients")
    f = root.joinpath(f"{rid}.json")
    if not f.is_file():
        known = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))
        raise UsageError(f"no latency model for runtime '{runtime_id}'",
                         f"use --runtime with one of: {', '.join(known)}")
    d = json.loads(f.read_text())
    paths = {k: PathCost(float(v["fixed"]), {kk: float(vv) for kk, vv in v["per"].items()},
                         frozenset(v["dtypes"]))
             for k, v in d["paths"].items()}
    return CostModel(id=rid, description=d.get("description", ""),
                     cpi=float(d.get("cpi", DEFAULT_CPI)),
                     invoke_fixed=float(d["invoke_fixed"]),
                     per_op_dispatch=float(d["per_op_dispatch"]), paths=paths,
                     measured_on=d.get("measured_on", ""))
