"""Exact tensor-arena prediction for the board's TFLM runtime libraries.

    from nanoml.memory import predict_arena
    pred = predict_arena(model, runtime_id="chirale_2.0.0", static_memory=True)
    pred.min_bytes, pred.used_bytes, pred.breakdown, pred.exact

See docs/arena.md for how the figure is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .profiles import get_profile, profile_ids
from .allocator import replay
from . import events as _events

__all__ = ["ArenaPrediction", "predict_arena", "profile_ids"]


@dataclass
class ArenaPrediction:
    min_bytes: int
    used_bytes: int
    breakdown: dict
    exact: bool
    method: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"min_bytes": self.min_bytes, "used_bytes": self.used_bytes,
                "breakdown": self.breakdown, "exact": self.exact, "method": self.method,
                "notes": list(self.notes)}


def predict_arena(model, runtime_id: str = "chirale_2.0.0",
                  static_memory: bool = True) -> ArenaPrediction:
    """Minimal kTensorArenaSize and the arena_used_bytes() the board reports, for
    a plain tflite::MicroInterpreter on the Cortex-M4 build of `runtime_id`."""
    prof = get_profile(runtime_id)
    stream = _events.build(model, prof, static_memory)
    r = replay(stream.events, "refined")
    breakdown = {
        "planned_activations": stream.activation_bytes,
        "scratch": stream.plan_bytes - stream.activation_bytes,
        "plan": stream.plan_bytes,
        "persistent": r.persistent_bytes,
        "temporary_peak": r.min_bytes - r.used_bytes,
        "persistent_by_category": dict(sorted(r.by_tag.items())),
        "scratch_requests_bytes": stream.scratch_bytes,
        "planned_buffers": stream.planned_buffers,
        "binding_step": r.binding,
    }
    notes = []
    if r.min_bytes > r.used_bytes:
        notes.append(f"arena_used_bytes() under-reports the need by {r.min_bytes - r.used_bytes} B: "
                     f"the peak is during {r.binding}")
    cfg = f"{runtime_id}{'' if static_memory else ' without TF_LITE_STATIC_MEMORY'}"
    if not stream.unmodelled:
        return ArenaPrediction(min_bytes=r.min_bytes, used_bytes=r.used_bytes,
                               breakdown=breakdown, exact=True,
                               method=f"allocator replay ({cfg})", notes=notes)
    # Some op has no model: its allocations were replaced by pessimistic
    # allowances (kernels.prep_unmodelled) and the replay treats any overlap
    # of persistent and temporary memory as fatal.
    strict = replay(stream.events, "strict")
    bound = (max(strict.min_bytes, strict.used_bytes) + 15) // 16 * 16
    notes = [f"not modelled: {u}" for u in stream.unmodelled] + [
        "min_bytes and used_bytes are a SAFE UPPER BOUND, not an exact figure"]
    breakdown["persistent"] = strict.persistent_bytes
    breakdown["temporary_peak"] = bound - strict.used_bytes
    breakdown["binding_step"] = strict.binding
    return ArenaPrediction(min_bytes=bound, used_bytes=bound, breakdown=breakdown, exact=False,
                           method=f"upper bound ({cfg})", notes=notes)
