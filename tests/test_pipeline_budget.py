"""The audio pipeline's real-time budget (profile --estimate) and its front end in the
footprint (inspect --input mic): the front end's figures are measured data in
nanoml/data/footprint.toml [frontend.micro_speech]."""

from __future__ import annotations

import json

import pytest

from conftest import shared_path
from mutants import run_cli

LABELS = "silence,unknown,yes,no"


def _with_pipeline(tmp_path, stride_ms: int):
    src = shared_path("models", "micro_speech_quantized.tflite")
    out = tmp_path / f"ms_{stride_ms}.tflite"
    r = run_cli(["pipeline", str(src), "--frontend", "micro_speech", "--labels", LABELS,
                 "--stride-ms", str(stride_ms), "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    return src, out


def _figures():
    from nanoml.footprint import figures
    return figures()["frontend"]["micro_speech"]


@pytest.mark.parametrize("stride_ms,keeps_up", [(100, True), (20, False)])
def test_estimate_says_whether_features_and_inference_fit_the_stride(tmp_path, stride_ms,
                                                                     keeps_up):
    _, model = _with_pipeline(tmp_path, stride_ms)
    r = run_cli(["profile", str(model), "--estimate", "--json"])
    d = json.loads(r.stdout)
    assert r.exit_code == 0, r.stderr
    b = d["pipeline"]
    steps = stride_ms // 20
    fe_ms = _figures()["instructions_per_step"] * steps * d["cpi"] / d["clock_hz"] * 1000
    inf_ms = d["instructions"] * d["cpi"] / d["clock_hz"] * 1000
    assert b["steps_per_stride"] == steps and b["stride_ms"] == stride_ms
    assert b["frontend_ms"] == pytest.approx(fe_ms, abs=1e-3)
    assert b["inference_ms"] == pytest.approx(inf_ms, abs=1e-3)
    assert b["keeps_up"] is keeps_up and (fe_ms + inf_ms <= stride_ms) is keeps_up
    assert any("cannot keep up" in n for n in d["notes"]) is (not keeps_up)


def test_a_model_without_a_pipeline_has_no_budget():
    src = shared_path("models", "micro_speech_quantized.tflite")
    d = json.loads(run_cli(["profile", str(src), "--estimate", "--json"]).stdout)
    assert d["pipeline"] is None


def test_inspect_counts_the_front_end_for_a_pipeline_mic_build(tmp_path):
    src, model = _with_pipeline(tmp_path, 100)
    raw = json.loads(run_cli(["inspect", str(src), "--input", "mic", "--json"]).stdout)
    fe = json.loads(run_cli(["inspect", str(model), "--input", "mic", "--json"]).stdout)
    f = _figures()
    assert fe["footprint"]["ram"]["input"] == f["ram_bytes"]
    assert fe["footprint"]["flash"]["input"] == raw["footprint"]["flash"]["input"] + f["flash_bytes"]
    assert fe["footprint"]["ram"]["input"] > raw["footprint"]["ram"]["input"]
    serial = json.loads(run_cli(["inspect", str(model), "--json"]).stdout)
    assert serial["footprint"]["input"] == "serial"          # the front end only with --input mic
    assert serial["footprint"]["ram"]["input"] == 0 and serial["footprint"]["flash"]["input"] == 0
