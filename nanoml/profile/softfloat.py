"""Is this model float-heavy, and what would a soft-float build cost it?

A user's own PlatformIO project for the Nano 33 BLE computes floats in software:
PlatformIO's mbed core builder (`configure_fpu_flags`) appends `-mfloat-abi=soft` after
the variant's `-mfloat-abi=softfp`, and the last flag wins. nanoml's generated project
fixes that (docs/build.md). `inspect` and `profile --estimate` warn when such a build
would hurt: the model is *float-heavy* when at least `FLOAT_HEAVY_SHARE` of its
estimated instructions are in float kernels (an operator whose dtype path has a
float32 tensor). With the smallest float slowdown measured (1.9x, a float MobileNet-v1
at -Os) that share costs a soft-float build about +10%.

The factor comes from the soft-float latency table when the runtime has one
(`<runtime>.soft.json`: the whole library at -Os with -mfloat-abi=soft, fitted like the
other tables), else the measured range (labelled with its source).
"""

from __future__ import annotations

FLOAT_HEAVY_SHARE = 0.10
# Used until a soft-float table exists: soft vs softfp at -Os, instructions per Invoke().
ISSUE_SOURCE = ("measured on an emulated Cortex-M4 build of Chirale_TensorFlowLite 2.0.0 at -Os: "
                "float models 1.9x-5.7x (tests/data/estimate/chirale_2.0.0.soft.*.json), a float "
                "LSTM 10.2x (issue 11's table)")


def is_float(dtype: str | None) -> bool:
    return bool(dtype) and "float32" in dtype


def float_share(layers) -> float:
    """Share of the estimated instructions in float kernels (estimated ops only)."""
    known = [x for x in layers if x.estimated and x.instructions is not None]
    total = sum(x.instructions for x in known)
    if total <= 0:
        return 0.0
    return sum(x.instructions for x in known if is_float(x.dtype)) / total


def soft_float(model, layers, total: int, runtime_id: str, clock_hz: int) -> dict:
    """{share, heavy, soft_instructions, soft_factor, source}: the float share of this
    estimate and, when the runtime's soft-float table estimates every operator, the
    instructions of the same model built with -mfloat-abi=soft."""
    from ..errors import UsageError
    from .costmodel import SIZE, SOFT, has_cost_model
    share = float_share(layers)
    out = {"share": round(share, 4), "heavy": share >= FLOAT_HEAVY_SHARE,
           "soft_instructions": None, "soft_factor": None, "source": ISSUE_SOURCE}
    if not has_cost_model(runtime_id, SIZE, SOFT):
        return out
    from .estimate import estimate_layers
    try:
        soft_layers, soft_total, _, _ = estimate_layers(model, runtime_id, clock_hz,
                                                        optimize=SIZE, float_abi=SOFT)
    except UsageError:
        return out
    if all(x.estimated for x in soft_layers) and total > 0:
        out.update(soft_instructions=soft_total, soft_factor=round(soft_total / total, 2),
                   source=f"latency model of {runtime_id} built with -mfloat-abi=soft "
                          "(nanoml/profile/coefficients)")
    return out


def warning(info: dict) -> str | None:
    """The warning for a float-heavy model (None otherwise)."""
    if not info["heavy"]:
        return None
    pct = 100 * info["share"]
    if info["soft_factor"] is not None:
        cost = (f"would retire {info['soft_factor']:.1f}x the instructions of this estimate "
                f"({info['soft_instructions']:,}; {info['source']})")
    else:
        cost = "would run its float kernels about 2x-10x slower (" + info["source"] + ")"
    return (f"{pct:.0f}% of this model's estimated instructions are in float kernels: a build "
            "that computes floats in software (e.g. your own PlatformIO project for this "
            "board: PlatformIO's mbed builder appends -mfloat-abi=soft) " + cost
            + "; nanoml's generated project runs them on the FPU")


def problem(info: dict):
    """The verdict's `soft_float` warning (nanoml.model.verdict.Problem), or None."""
    text = warning(info)
    if text is None:
        return None
    from ..model.verdict import Problem
    return Problem("warning", "soft_float", text)
