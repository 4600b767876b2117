"""What `nanoml profile` returns: per-operator timings, totals, arena and footprint.

Plain data with `to_json()` (schema in docs/profile.md); no printing here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not values:
        return 0.0
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


@dataclass
class LayerProfile:
    index: int
    op: str
    output_shape: list[int]
    macs: int
    cycles: float
    ms: float
    instructions: int | None = None        # estimate only (None: no figure)
    kernel: str | None = None              # kernel path (estimate), e.g. "dw_s8_3x3"
    basis: str | None = None               # estimate: "model" | "unmeasured" | "out_of_range"
    dtype: str | None = None               # dtype path (estimate), e.g. "int16xint8"
    reason: str | None = None              # estimate: why there is no figure
    share: float = 0.0                     # fraction of the total time

    @property
    def estimated(self) -> bool:
        """False for an estimate's operator with no figure (its cycles/ms are 0 here
        and null in the JSON)."""
        return self.basis in (None, "model")

    @property
    def cycles_per_mac(self) -> float | None:
        return self.cycles / self.macs if self.macs and self.macs > 0 and self.estimated else None

    def to_json(self) -> dict:
        known = self.estimated
        d = {"index": self.index, "op": self.op, "output_shape": self.output_shape,
             "macs": self.macs, "instructions": self.instructions,
             "cycles": round(self.cycles) if known else None,
             "ms": round(self.ms, 4) if known else None,
             "percent": round(100 * self.share, 2) if known else None,
             "cycles_per_mac": (round(self.cycles_per_mac, 3)
                                if self.cycles_per_mac is not None else None)}
        if self.kernel is not None:
            d.update(kernel=self.kernel, dtype=self.dtype, basis=self.basis)
            if not known:
                d["reason"] = self.reason
        return d


@dataclass
class Latency:
    mean: float
    p50: float | None
    p99: float | None
    runs: int
    samples: list[float] = field(default_factory=list)
    lower_bound: bool = False              # estimate: some operators have no figure

    @classmethod
    def estimated(cls, ms: float, lower_bound: bool) -> "Latency":
        """An estimate: one figure, no runs, so no percentiles."""
        return cls(mean=ms, p50=None, p99=None, runs=0, lower_bound=lower_bound)

    @property
    def is_estimate(self) -> bool:
        return self.runs == 0 and self.p50 is None

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> "Latency":
        n = len(samples_ms)
        mean = sum(samples_ms) / n if n else 0.0
        return cls(mean=mean, p50=percentile(samples_ms, 50), p99=percentile(samples_ms, 99),
                   runs=n, samples=list(samples_ms))

    def to_json(self) -> dict:
        if self.is_estimate:
            return {"estimate": round(self.mean, 4), "lower_bound": self.lower_bound}
        return {"mean": round(self.mean, 4), "p50": round(self.p50, 4),
                "p99": round(self.p99, 4), "runs": self.runs}


@dataclass
class ProfileResult:
    source: str                            # "device" | "sim" | "estimate"
    model: str
    board: str
    runtime: str
    clock_hz: int
    layers: list[LayerProfile]
    latency: Latency
    arena_min_bytes: int | None = None
    arena_used_bytes: int | None = None
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    instructions: int | None = None        # estimate only: whole Invoke()
    cpi: float | None = None               # estimate only
    total_cycles: float | None = None
    arena_recorded: str | None = None      # file the measured arena was written to
    notes: list[str] = field(default_factory=list)
    verdict: object | None = None          # estimate: nanoml.model.verdict.Verdict (None: not known)
    pipeline: dict | None = None           # estimate: the audio pipeline's real-time budget
    build: dict | None = None              # estimate: the build described (costmodel.build())
    optimizations: list | None = None      # estimate: the optimization profiles side by side
    float_info: dict | None = None         # estimate: float share, soft-float cost (softfloat.py)
    exit_code: int = 0

    @property
    def can_run(self) -> bool | None:
        return None if self.verdict is None else self.verdict.can_run

    @property
    def errors(self) -> list[str]:
        """Why the model cannot run (the verdict's errors)."""
        return [p.message for p in self.verdict.errors] if self.verdict is not None else []

    @property
    def missing(self) -> list[LayerProfile]:
        """Operators of an estimate with no figure."""
        return [layer for layer in self.layers if not layer.estimated]

    @property
    def incomplete(self) -> bool:
        return bool(self.missing)

    def finalize(self) -> "ProfileResult":
        """Fill each layer's share of the total time."""
        total = sum(layer.ms for layer in self.layers) or 1.0
        for layer in self.layers:
            layer.share = layer.ms / total
        return self

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def to_json(self) -> dict:
        d = {"source": self.source, "model": self.model, "board": self.board,
             "runtime": self.runtime, "clock_hz": self.clock_hz,
             "arena": {"min_bytes": self.arena_min_bytes, "used_bytes": self.arena_used_bytes},
             "latency_ms": self.latency.to_json(),
             "flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
             "total_macs": self.total_macs,
             "total_cycles": round(self.total_cycles) if self.total_cycles is not None else None,
             "layers": [layer.to_json() for layer in self.layers],
             "notes": self.notes}
        if self.source == "estimate":
            d["instructions"] = self.instructions
            d["cpi"] = self.cpi
            d["incomplete"] = self.incomplete
            d["unmeasured"] = [{"index": x.index, "op": x.op, "dtype": x.dtype,
                                "kernel": x.kernel, "basis": x.basis, "reason": x.reason}
                               for x in self.missing]
            d["can_run"] = self.can_run
            d["problems"] = self.verdict.to_json() if self.verdict is not None else []
            d["exit_code"] = self.exit_code
            d["pipeline"] = self.pipeline
            d["build"] = self.build
            d["optimizations"] = self.optimizations
            d["float"] = self.float_info
        if self.arena_recorded:
            d["arena_recorded"] = self.arena_recorded
        return d
