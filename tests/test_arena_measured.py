"""Arena predictor against figures measured on the Cortex-M4 builds for models
it was not fitted to (tests/data/arena/measured.json, see its _note and
docs/arena.md). Runs without ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanoml.memory import kernels, predict_arena
from nanoml.model.tflite import load

DATA = Path(__file__).parent / "data" / "arena"
MEASURED = json.loads((DATA / "measured.json").read_text())
CONFIGS = {"chirale_2.0.0": ("chirale_2.0.0", True),
           "arduino_tflite_2023": ("arduino_tflite_2023", True),
           "chirale_2.0.0_no_static_memory": ("chirale_2.0.0", False)}

# Where the board survives memory corruption that the predictor treats as fatal
# (docs/arena.md, "What counts as working"): the prediction is a little above
# the measured minimum, never below.
KNOWN_CONSERVATIVE = {("chirale_2.0.0_no_static_memory", "op_gather_float.tflite")}


def _cases():
    return [(k, n) for k, models in MEASURED["runtimes"].items() for n in sorted(models)]


@pytest.mark.parametrize("key,name", _cases())
def test_measured_model(key, name):
    entry = MEASURED["runtimes"][key][name]
    runtime_id, static = CONFIGS[key]
    model = load(DATA / "models" / name)
    assert model.sha256 == entry["sha256"]
    pred = predict_arena(model, runtime_id=runtime_id, static_memory=static)
    assert pred.exact, pred.notes
    if (key, name) in KNOWN_CONSERVATIVE:
        assert entry["min_bytes"] <= pred.min_bytes <= entry["min_bytes"] * 1.03
        return
    assert (pred.min_bytes, pred.used_bytes) == (entry["min_bytes"], entry["used_bytes"])


def test_covers_the_three_configurations():
    assert set(MEASURED["runtimes"]) == set(CONFIGS)
    assert all(len(v) >= 50 for v in MEASURED["runtimes"].values())


@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD",
                                "MEAN", "SOFTMAX", "AVERAGE_POOL_2D", "CONCATENATION"])
def test_unmodelled_op_gives_labelled_safe_upper_bound(op, monkeypatch):
    """With an op's model removed the prediction must say so and never be below
    the measured minimum."""
    monkeypatch.delitem(kernels.PREPARE, op)
    checked = 0
    for name, entry in MEASURED["runtimes"]["chirale_2.0.0"].items():
        model = load(DATA / "models" / name)
        if not any(o.op == op for o in model.operators):
            continue
        pred = predict_arena(model)
        assert not pred.exact
        assert any("SAFE UPPER BOUND" in n for n in pred.notes)
        assert pred.min_bytes >= entry["min_bytes"]
        assert pred.used_bytes >= entry["used_bytes"]
        checked += 1
    assert checked


def test_prediction_json_shape():
    pred = predict_arena(load(DATA / "models" / "cnn_int8.tflite"))
    j = pred.to_json()
    assert set(j) == {"min_bytes", "used_bytes", "breakdown", "exact", "method", "notes"}
    for k in ("planned_activations", "persistent", "scratch", "temporary_peak"):
        assert isinstance(j["breakdown"][k], int)
    json.dumps(j)
