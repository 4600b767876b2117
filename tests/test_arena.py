"""Arena predictor against figures measured on the Cortex-M4 build (../shared truth)."""

from __future__ import annotations

import json

import pytest

from conftest import SHARED, shared_model_names, shared_path, shared_truth
from nanoml.errors import UsageError
from nanoml.memory import predict_arena
from nanoml.memory.planner import Buffer, plan
from nanoml.model.tflite import load

CONFIGS = [("chirale_2.0.0", "chirale_2.0.0", True),
           ("arduino_tflite_2023", "arduino_tflite_2023", True),
           ("chirale_2.0.0_no_static_memory", "chirale_2.0.0", False)]


def _truth() -> dict:
    """The measured arena figures, or {} when ../shared is absent (the tests then
    collect nothing from it: test_recording_allocator_categories still runs and skips)."""
    p = SHARED / "truth" / "arena_cortex_m4.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _cases():
    """Every (runtime configuration, model) the board build measured. A shared model
    without figures was not measurable (unsupported ops, or too big for flash):
    there is nothing to compare it with (test_unmeasurable_models_are_not_exact)."""
    runtimes = _truth().get("runtimes", {})
    return [(key, rid, st, n) for key, rid, st in CONFIGS for n in shared_model_names()
            if n in runtimes.get(key, {}).get("models", {})]


@pytest.mark.parametrize("key,runtime_id,static,name", _cases())
def test_matches_measured_truth(key, runtime_id, static, name):
    entry = shared_truth("arena_cortex_m4.json")["runtimes"][key]["models"][name]
    pred = predict_arena(load(shared_path("models", name)), runtime_id=runtime_id,
                         static_memory=static)
    assert (pred.min_bytes, pred.used_bytes) == (entry["min_bytes"], entry["used_bytes"])
    assert pred.exact


@pytest.mark.parametrize("name", sorted(_truth().get("unsupported", {})))
def test_unmeasurable_models_are_not_exact(name):
    """A model the board could not run (its AllocateTensors fails): the predictor
    must not claim an exact figure it cannot have."""
    assert not predict_arena(load(shared_path("models", name))).exact


def test_recording_allocator_categories():
    """Per-category figures of RecordingMicroAllocator on the board build."""
    truth = shared_truth("arena_cortex_m4.json")["runtimes"]["chirale_2.0.0"]["models"]
    for name, entry in truth.items():
        pred = predict_arena(load(shared_path("models", name)))
        cats = pred.breakdown["persistent_by_category"]
        for line in entry["recording_allocator_report"]:
            if "'TfLiteEvalTensor data' used" in line:
                assert cats["TfLiteEvalTensor data"] == int(line.split(" used ")[1].split()[0])
            if "'NodeAndRegistration struct' used" in line:
                assert cats["NodeAndRegistration structs"] == int(line.split(" used ")[1].split()[0])
            if "'TfLiteTensor variable buffer data' used" in line:
                assert cats["variable tensors"] == int(line.split(" used ")[1].split()[0])
            if line.startswith("Arena allocation head"):
                assert pred.breakdown["plan"] == int(line.split()[3])


def test_planner_reuses_memory_of_dead_buffers():
    # a -> b -> c chain: c can reuse a's memory, b cannot overlap either
    offsets, total = plan([Buffer(64, 0, 1), Buffer(32, 1, 2), Buffer(64, 2, 3)])
    assert total == 96
    assert offsets[1] == 64 and offsets[0] == offsets[2] == 0


def test_planner_ties_keep_library_order():
    # equal sizes: the library places the buffer added last first
    offsets, total = plan([Buffer(16, 0, 5), Buffer(16, 0, 5)])
    assert offsets == [16, 0] and total == 32


def test_unknown_runtime_is_a_usage_error():
    from nanoml.memory.profiles import get_profile
    with pytest.raises(UsageError):
        get_profile("no_such_runtime")
