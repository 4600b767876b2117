"""Per-operator latency model for the Cortex-M4: instructions -> cycles -> ms.

instructions(op) = fixed[path] + sum_k per[path][k] * work_k(op)
cycles(op)       = instructions(op) * CPI            (CPI documented, 1.25 prior)
ms(op)           = cycles(op) / clock_hz * 1000

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

    def instructions(self, counts: dict) -> float:
        return self.fixed + sum(self.per.get(k, 0.0) * v for k, v in counts.items())


@dataclass(frozen=True)
class CostModel:
    id: str
    description: str
    cpi: float
    invoke_fixed: float              # Invoke() around the operators
    per_op_dispatch: float           # interpreter loop between two operators
    paths: dict                      # path -> PathCost
    fallback_fixed: float            # for ops with no measured path
    fallback_per_element: float
    measured_on: str

    def op_instructions(self, work: Work) -> tuple[int, str]:
        """(instructions, basis): basis is "model" for a measured kernel path, or
        "fallback" when the op has no path of its own (rough per-element guess)."""
        pc = self.paths.get(work.path)
        if pc is not None:
            return max(int(round(pc.instructions(work.counts))), 0), "model"
        n = float(work.counts.get("elements", 0))
        return int(round(self.fallback_fixed + self.fallback_per_element * n)), "fallback"

    def total_instructions(self, per_op: list[int]) -> int:
        return int(round(sum(per_op) + self.invoke_fixed + self.per_op_dispatch * len(per_op)))


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
    paths = {k: PathCost(float(v["fixed"]), {kk: float(vv) for kk, vv in v["per"].items()})
             for k, v in d["paths"].items()}
    return CostModel(id=rid, description=d.get("description", ""),
                     cpi=float(d.get("cpi", DEFAULT_CPI)),
                     invoke_fixed=float(d["invoke_fixed"]),
                     per_op_dispatch=float(d["per_op_dispatch"]), paths=paths,
                     fallback_fixed=float(d["fallback"]["fixed"]),
                     fallback_per_element=float(d["fallback"]["per_element"]),
                     measured_on=d.get("measured_on", ""))
