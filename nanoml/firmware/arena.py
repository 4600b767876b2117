"""Tensor-arena size for the firmware: the predictor's minimum plus a margin.

    arena = round_up_16(predicted_min_bytes + margin)       (default)
    arena = round_up_16(N)                                  (--arena N: forced)

The margin is bytes ("1024", "2K", "2KiB") or a percentage of the prediction
("10%"). DEFAULT_MARGIN is 1 KiB: the predictor aims at the exact minimum, and
1 KiB covers small differences without wasting RAM on small models; use a
percentage for large models whose prediction you trust less.

The prediction assumes the runtime library is built with -DTF_LITE_STATIC_MEMORY
(PlatformIO builds, where nanoml passes the flag); an Arduino IDE build cannot
pass it, so the Arduino sketch format asks for the no-static-memory prediction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import InputError, NanomlError, UsageError

DEFAULT_MARGIN = "1KiB"
ALIGN = 16
# No tensor arena is larger than this: the firmware's size fields are 32-bit, and
# no board nanoml knows has a fraction of it.
MAX_ARENA_BYTES = 2 ** 31 - ALIGN

_SIZE_RE = re.compile(r"^\s*(\d+)\s*(k|kb|kib|m|mb|mib)?\s*$", re.I)
_PCT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def round_up(n: int, align: int = ALIGN) -> int:
    return (n + align - 1) // align * align


def parse_size(text: str | int, what: str = "size") -> int:
    """'2048', '2K', '2KiB', '1M' -> bytes (K = 1024)."""
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"{what} must not be negative (got {text})")
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"cannot read {what} '{text}'",
                         hint="give bytes, e.g. 2048, 2K or 2KiB")
    n = int(m.group(1))
    unit = (m.group(2) or "").lower()
    if unit.startswith("k"):
        n *= 1024
    elif unit.startswith("m"):
        n *= 1024 * 1024
    return n


def parse_margin(text: str | int | None, predicted: int) -> tuple[int, str]:
    """(margin bytes, how it was read) for '1024', '2K', '10%'."""
    spec = DEFAULT_MARGIN if text is None else text
    if isinstance(spec, str):
        m = _PCT_RE.match(spec)
        if m:
            pct = float(m.group(1))
            if pct > 1000:
                raise UsageError(f"arena margin {spec} is not plausible", hint="use e.g. 10%")
            return math.ceil(predicted * pct / 100.0), f"{m.group(1)}%"
    n = parse_size(spec, "arena margin")
    return n, f"{n} B"


@dataclass(frozen=True)
class ArenaPlan:
    size: int                   # bytes in the firmware (multiple of 16)
    predicted: int | None       # predictor's min_bytes (None when forced and no prediction)
    margin: int                 # bytes added to the prediction
    margin_spec: str
    forced: bool                # --arena N
    static_memory: bool         # prediction made for -DTF_LITE_STATIC_MEMORY
    predictor: str              # where the prediction came from (its method)
    exact: bool | None = None   # predictor: exact figure (False: a safe upper bound)
    notes: tuple[str, ...] = ()
    measured: int | None = None  # min_bytes measured on the board (`nanoml profile`), used
                                 # instead of the prediction when recorded for this model

    @property
    def base(self) -> int | None:
        """The minimum the margin is added to: measured if recorded, else predicted."""
        return self.measured if self.measured is not None else self.predicted

    @property
    def explain(self) -> str:
        if self.forced:
            return f"forced with --arena (prediction: {self.predicted if self.predicted is not None else 'n/a'})"
        what = "measured minimum (nanoml profile)" if self.measured is not None else \
            "predicted minimum"
        return (f"{what} {self.base} + margin {self.margin} ({self.margin_spec}), "
                f"rounded up to 16")

    def to_json(self) -> dict:
        return {"bytes": self.size, "predicted_min_bytes": self.predicted,
                "margin_bytes": self.margin, "margin": self.margin_spec, "forced": self.forced,
                "static_memory": self.static_memory, "predictor": self.predictor,
                "exact": self.exact, "notes": list(self.notes),
                "measured_min_bytes": self.measured}


def sane_size(value: object) -> int | None:
    """`value` as a byte count if it is a whole number in 1..MAX_ARENA_BYTES (not a
    bool, NaN, infinity, negative, fractional or huge), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        return None
    n = int(value)
    return n if 0 < n <= MAX_ARENA_BYTES else None


def predict(model, runtime_id: str, static_memory: bool):
    """The arena predictor's result (nanoml.memory.predict_arena): .min_bytes,
    .exact, .method, .notes."""
    from ..memory import predict_arena
    try:
        p = predict_arena(model, runtime_id=runtime_id, static_memory=static_memory)
    except NanomlError:
        raise
    except Exception as e:  # noqa: BLE001 - predictor failure: say so, suggest --arena
        raise NanomlError(f"arena prediction failed: {type(e).__name__}: {e}",
                          hint="give the arena size yourself with --arena N") from e
    if sane_size(p.min_bytes) is None:
        raise InputError(f"the predicted arena, {p.min_bytes!r} B, is not a plausible size "
                         "(a tensor shape of the model is absurd)",
                         hint="check the model's tensor shapes with `nanoml inspect MODEL`, "
                              "or give the arena with --arena N")
    return p


def plan_arena(model, runtime_id: str, static_memory: bool, arena: str | int | None = None,
               margin: str | int | None = None, measured: int | None = None) -> ArenaPlan:
    """The arena for the firmware. `measured`: a minimum measured on the board for
    this model and runtime (`nanoml profile` records it), preferred to the prediction."""
    if arena is not None:
        n = parse_size(arena, "--arena")
        if n <= 0:
            raise UsageError("--arena must be a positive number of bytes")
        if sane_size(n) is None:
            raise UsageError(f"--arena {arena}: {n:,} B is not a plausible arena size",
                             hint="give the bytes the model needs, e.g. --arena 20K "
                                  "(`nanoml inspect MODEL` predicts it)")
        try:
            p = predict(model, runtime_id, static_memory)
        except NanomlError:
            p = None
        return ArenaPlan(size=round_up(n), predicted=int(p.min_bytes) if p else None, margin=0,
                         margin_spec="none", forced=True, static_memory=static_memory,
                         predictor=getattr(p, "method", "none") if p else "none",
                         exact=getattr(p, "exact", None) if p else None,
                         notes=tuple(getattr(p, "notes", ()) or ()) if p else ())
    if measured is not None:
        try:
            p = predict(model, runtime_id, static_memory)
        except NanomlError:
            p = None
    else:
        p = predict(model, runtime_id, static_memory)
    predicted = int(p.min_bytes) if p is not None else None
    base = measured if measured is not None else predicted
    m, spec = parse_margin(margin, base)
    if sane_size(base + m) is None:
        raise UsageError(f"arena {base:,} B + margin {m:,} B is not a plausible arena size",
                         hint="use a smaller --arena-margin, e.g. 1K or 10%")
    return ArenaPlan(size=round_up(base + m), predicted=predicted, margin=m,
                     margin_spec=spec, forced=False, static_memory=static_memory,
                     predictor=getattr(p, "method", "nanoml.memory") if p is not None else "none",
                     exact=getattr(p, "exact", None) if p is not None else None,
                     notes=tuple(getattr(p, "notes", ()) or ()) if p is not None else (),
                     measured=measured)
