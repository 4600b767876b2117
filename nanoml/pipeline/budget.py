"""Real-time budget of an audio pipeline on the board: does one stride's front-end
work plus one inference fit in the stride at the board's clock?

The front end's instructions per step are MEASURED data (nanoml/data/footprint.toml
[frontend.<kind>], how they were measured is written there); the inference's come
from the latency estimate. Cycles = instructions x CPI (an assumption, labelled)."""

from __future__ import annotations


def frontend_figures(kind: str) -> dict | None:
    from ..footprint import figures
    return figures().get("frontend", {}).get(kind)


def audio_budget(pipeline, inference_instructions: int | None, clock_hz: int,
                 cpi: float) -> dict | None:
    """None for pipelines without a front end (IMU) or a front end with no figures."""
    if pipeline is None or pipeline.source != "mic" or pipeline.frontend is None:
        return None
    fig = frontend_figures(pipeline.frontend.kind)
    if not fig or "instructions_per_step" not in fig:
        return None
    steps = pipeline.stride_frames
    fe = int(fig["instructions_per_step"]) * steps
    stride_ms = steps * pipeline.frontend.params["window_step_ms"]
    fe_ms = fe * cpi / clock_hz * 1000.0
    inf_ms = None if inference_instructions is None else \
        inference_instructions * cpi / clock_hz * 1000.0
    busy = None if inf_ms is None else fe_ms + inf_ms
    return {"frontend": pipeline.frontend.kind,
            "instructions_per_step": int(fig["instructions_per_step"]),
            "steps_per_stride": steps, "stride_ms": stride_ms,
            "frontend_ms": round(fe_ms, 3),
            "inference_ms": None if inf_ms is None else round(inf_ms, 3),
            "busy_ms": None if busy is None else round(busy, 3),
            "keeps_up": None if busy is None else busy <= stride_ms,
            "basis": fig.get("source", "")}
