"""Arena predictor against figures measured on the Cortex-M4 build (../shared truth)."""

from __future__ import annotations

import pytest

from conftest import shared_model_names, shared_path, shared_truth
from nanoml.errors import UsageError
from nanoml.memory import predict_arena
from nanoml.memory.planner import Buffer, plan
from nanoml.model.tflite import load

CONFIGS = [("chirale_2.0.0", "chirale_2.0.0", True),
           ("arduino_tflite_2023", "arduino_tflite_2023", True),
           ("chirale_2.0.0_no_static_memory", "chirale_2.0.0", False)]


def _cases():
    names = shared_model_names()
    return [(key, rid, st, n) for key, rid, st in CONFIGS for n in names]


@pytest.mark.parametrize("key,runtime_id,static,name", _cases())
def test_matches_measured_truth(key, runtime_id, static, name):
    truth = shared_truth("arena_cortex_m4.json")
    model = load(shared_path("models", name))
    pred = predict_arena(model, runtime_id=runtime_id, static_memory=static)
    entry = truth["runtimes"][key]["models"].get(name)
    if entry is None:
        # not measurable on the board (unsupported ops / does not fit): the
        # predictor must not claim an exact figure it cannot have
        if name in truth.get("unsupported", {}):
            assert not pred.exact
        return
    assert (pred.min_bytes, pred.used_bytes) == (entry["min_bytes"], entry["used_bytes"])
    assert pred.exact


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
