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
    instructions: int | None = None        # estimate only
    kernel: str | None = None              # kernel path (estimate), e.g. "dw_s8_3x3"
    basis: str | None = None               # "model" | "fallback" (estimate)
    share: float = 0.0                     # fraction of the total time

    @property
    def cycles_per_mac(self) -> float | None:
        return self.cycles / self.macs if self.macs else None

    def to_json(self) -> dict:
        d = {"index": self.index, "op": self.op, "output_shape": self.output_shape,
             "macs": self.macs, "instructions": self.instructions,
             "cycles": round(self.cycles), "ms": round(self.ms, 4),
             "percent": round(100 * self.share, 2),
             "cycles_per_mac": (round(self.cycles_per_mac, 3)
                                if self.cycles_per_mac is not None else None)}
        if self.kernel is not None:
            d["kernel"] = self.kernel
            d["basis"] = self.basis
        return d


@dataclass
class Latency:
    mean: float
    p50: float
    p99: float
    runs: int
    samples: list[float] = field(default_factory=list)

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> "Latency":
        n = len(samples_ms)
        mean = sum(samples_ms) / n if n else 0.0
        return cls(mean=mean, p50=percentile(samples_ms, 50), p99=percentile(samples_ms, 99),
                   runs=n, samples=list(samples_ms))

    def to_json(self) -> dict:
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
        if self.arena_recorded:
            d["arena_recorded"] = self.arena_recorded
        return d
