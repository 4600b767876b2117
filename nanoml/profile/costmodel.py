"""Per-operator latency model for the Cortex-M4: instructions -> cycles -> ms.

instructions(op) = fixed[path] + sum_k per[path][k] * work_k(op)
cycles(op)       = instructions(op) * CPI            (the table's CPI and its source)
ms(op)           = cycles(op) / clock_hz * 1000

An op is *measured* when its kernel path has coefficients and its dtype path
(`kernels.dtype_path`) is one of those the coefficients were fitted on (each
path's "dtypes" in the table); any other op is unmeasured and gets no figure.

`work_k` comes from `kernels.operator_work` (which kernel path the runtime runs and
how many times each of its loops iterates); the coefficients (instructions per loop
iteration) are data, one JSON file per runtime in nanoml/profile/coefficients/,
fitted by `nanoml.profile.coefficient_fit` to instruction counts measured on a Cortex-M4 build
(tests/data/estimate/ and ../shared/truth/instructions_cortex_m4.json).

One table per build (`coefficient_name`): `<runtime>.json` is the `size` optimization
profile (the library at the core's -Os, FPU on), `<runtime>.speed.json` the `speed`
profile (the model's kernels at their measured best flags), `<runtime>.soft.json` the
-Os library with `-mfloat-abi=soft` (what a user's own PlatformIO project builds). Each
table says which build it describes (`optimize`, `flags`, `float_abi`) and where its
CPI comes from (`cpi_source`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..errors import UsageError
from .kernels import Work

DEFAULT_CPI = 1.4                # the tables' own `cpi` and `cpi_source` say why
SIZE, SPEED = "size", "speed"            # optimization profiles (= nanoml.firmware.optimize)
SOFTFP, SOFT = "softfp", "soft"          # float ABIs a table can describe


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
    optimize: str = SIZE                 # the build the table describes
    flags: tuple = ("-Os",)
    float_abi: str = SOFTFP
    cpi_source: str = ""
    notes: tuple = ()                    # e.g. the profile asked for has no table here

    def build(self) -> dict:
        """Which build the figures describe (the estimate's JSON `build`)."""
        return {"optimize": self.optimize, "flags": list(self.flags), "float_abi": self.float_abi,
                "runtime": self.id, "coefficients": coefficient_name(self.id, self.optimize,
                                                                     self.float_abi),
                "cpi": self.cpi, "cpi_source": self.cpi_source}

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


def coefficient_name(runtime_id: str, optimize: str = SIZE, float_abi: str = SOFTFP) -> str:
    """The table's file stem: `<rt>` (size, FPU), `<rt>.speed`, `<rt>.soft` (size, soft float)."""
    if float_abi == SOFT:
        return f"{runtime_id}.{SOFT}" if optimize == SIZE else f"{runtime_id}.{optimize}.{SOFT}"
    return runtime_id if optimize == SIZE else f"{runtime_id}.{optimize}"


def _root():
    return resources.files("nanoml.profile").joinpath("coefficients")


def has_cost_model(runtime_id: str, optimize: str = SIZE, float_abi: str = SOFTFP) -> bool:
    rid = _ALIASES.get(runtime_id, runtime_id)
    return _root().joinpath(coefficient_name(rid, optimize, float_abi) + ".json").is_file()


@lru_cache(maxsize=None)
def load_cost_model(runtime_id: str, optimize: str | None = None,
                    float_abi: str | None = None) -> CostModel:
    """The table of `runtime_id` for the `optimize` profile (None: size) and float ABI
    (None: the FPU, as nanoml's generated project builds). A runtime with no speed table
    has only the size build (nanoml.firmware.optimize builds it for `speed` too): its size
    table, with a note. A soft-float table that was never measured is a usage error."""
    optimize = optimize or SIZE
    float_abi = float_abi or SOFTFP
    if optimize not in (SIZE, SPEED):
        raise UsageError(f"unknown optimization profile '{optimize}'", "use speed or size")
    if float_abi not in (SOFTFP, SOFT):
        raise UsageError(f"unknown float ABI '{float_abi}'", "use softfp or soft")
    rid = _ALIASES.get(runtime_id, runtime_id)
    root = _root()
    if not root.joinpath(f"{rid}.json").is_file():
        known = sorted(p.name[:-5] for p in root.iterdir()
                       if p.name.endswith(".json") and "." not in p.name[:-5])
        raise UsageError(f"no latency model for runtime '{runtime_id}'",
                         f"use --runtime with one of: {', '.join(known)}")
    notes = []
    if not has_cost_model(rid, optimize, float_abi):
        if float_abi == SOFT and optimize != SIZE:
            raise UsageError(f"no soft-float latency model for {rid} with --optimize {optimize}"
                             " (never measured)",
                             "use --optimize size with --float-abi soft, or drop --float-abi")
        if float_abi == SOFT:
            raise UsageError(f"no soft-float latency model for {rid} (never measured)",
                             "drop --float-abi (the estimate of nanoml's build)")
        notes.append(f"no latency table of the {optimize} build for {rid}: the figures are "
                     "the size build's")
        optimize = SIZE
    return _read(rid, coefficient_name(rid, optimize, float_abi), optimize, float_abi, notes)


@lru_cache(maxsize=None)
def load_flag_set_model(runtime_id: str, flag_set: str) -> CostModel | None:
    """The table of the whole library built with one flag set of
    nanoml/data/optimize/<runtime>.toml (`<runtime>.<flag set>.json`, e.g. O2), or None.
    The speed build's kernels take their flag set's table when the speed build has no
    table of its own (nanoml.profile.estimate)."""
    rid = _ALIASES.get(runtime_id, runtime_id)
    stem = f"{rid}.{flag_set}"
    if flag_set in (SIZE, SPEED, SOFT) or not _root().joinpath(stem + ".json").is_file():
        return None
    return _read(rid, stem, flag_set, SOFTFP, [])


def _read(rid: str, stem: str, optimize: str, float_abi: str, notes: list) -> CostModel:
    d = json.loads(_root().joinpath(stem + ".json").read_text())
    paths = {k: PathCost(float(v["fixed"]), {kk: float(vv) for kk, vv in v["per"].items()},
                         frozenset(v["dtypes"]))
             for k, v in d["paths"].items()}
    return CostModel(id=rid, description=d.get("description", ""),
                     cpi=float(d.get("cpi", DEFAULT_CPI)),
                     invoke_fixed=float(d["invoke_fixed"]),
                     per_op_dispatch=float(d["per_op_dispatch"]), paths=paths,
                     measured_on=d.get("measured_on", ""), optimize=optimize,
                     flags=tuple(d.get("flags", ["-Os"])),
                     float_abi=d.get("float_abi", float_abi),
                     cpi_source=d.get("cpi_source", ""), notes=tuple(notes))
