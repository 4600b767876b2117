"""Runtime profiles (runtimes/*.toml) load and say what the real libraries support."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nanoml.errors import UsageError
from nanoml.runtimes import all_runtimes, default_runtime_id, get_runtime

from conftest import shared_model_names, shared_path, shared_truth

IDS = ["chirale_2.0.0", "arduino_tflite_2023"]
BUILTIN_OPS = json.loads(
    (Path(__file__).resolve().parent.parent / "nanoml" / "data" / "builtin_ops.json").read_text())


def _builtin_names() -> set[str]:
    d = BUILTIN_OPS
    if isinstance(d, dict):
        vals = list(d.values()) + list(d.keys())
    else:
        vals = list(d)
    return {v for v in vals if isinstance(v, str)}


def test_both_profiles_load():
    rts = all_runtimes()
    for rid in IDS:
        assert rid in rts
    assert default_runtime_id() == "chirale_2.0.0"
    assert get_runtime(None).id == "chirale_2.0.0"
    with pytest.raises(UsageError):
        get_runtime("no_such_runtime")


@pytest.mark.parametrize("rid", IDS)
def test_profile_fields(rid):
    r = get_runtime(rid)
    assert r.header.endswith(".h")
    assert r.lib_deps
    assert r.no_ops_code_bytes > r.empty_program_bytes > 0
    assert r.raw["source"] and r.raw["code_size_source"]
    assert len(r.ops) > 80


def test_pins():
    ch = get_runtime("chirale_2.0.0")
    assert ch.lib_deps == "spaziochirale/Chirale_TensorFLowLite@2.0.0"
    assert ch.header == "Chirale_TensorFlowLite.h"
    ar = get_runtime("arduino_tflite_2023")
    assert re.fullmatch(r"https://github\.com/tensorflow/tflite-micro-arduino-examples#[0-9a-f]{40}",
                        ar.lib_deps)
    assert ar.header == "TensorFlowLite.h"
    assert "approximation" in ar.raw["code_size_source"]
    assert not ar.raw["default"]


@pytest.mark.parametrize("rid", IDS)
def test_resolver_names_plausible(rid):
    r = get_runtime(rid)
    builtins = _builtin_names()
    seen = set()
    for name, s in r.ops.items():
        assert name in builtins, f"{name} is not a TFLite builtin op"
        assert re.fullmatch(r"Add[A-Z][A-Za-z0-9]*", s.resolver), s.resolver
        # the method name is the op name in CamelCase (AddConv2D <-> CONV_2D)
        assert s.resolver[3:].lower().replace("_", "") == name.lower().replace("_", ""), \
            (name, s.resolver)
        assert s.resolver not in seen
        seen.add(s.resolver)
        assert 1 <= s.max_version <= 12
        assert all(1 < v < s.max_version for v in s.excluded_versions)
    for code, meth in r.custom_ops.items():
        assert re.fullmatch(r"Add[A-Z][A-Za-z0-9]*", meth)


@pytest.mark.parametrize("rid", IDS)
def test_code_bytes_match_truth(rid):
    truth = shared_truth("code_size_cortex_m4.json")
    r = get_runtime(rid)
    assert r.no_ops_code_bytes == truth["conditions"]["no_ops_bytes"]
    for camel, b in truth["per_op_increment_bytes"].items():
        ops = [s for s in r.ops.values() if s.resolver == "Add" + camel]
        assert len(ops) == 1, camel
        assert ops[0].code_bytes == b


# The op versions the shared models use; every one must be supported by both libraries.
SHARED_MODEL_OPS = [("FULLY_CONNECTED", 4), ("FULLY_CONNECTED", 5), ("CONV_2D", 2), ("CONV_2D", 3),
                    ("DEPTHWISE_CONV_2D", 3), ("SVDF", 3), ("UNIDIRECTIONAL_SEQUENCE_LSTM", 1),
                    ("SOFTMAX", 2), ("QUANTIZE", 1), ("DEQUANTIZE", 2), ("LOGISTIC", 2),
                    ("AVERAGE_POOL_2D", 2), ("RESHAPE", 1), ("MEAN", 2), ("PAD", 2), ("ADD", 2),
                    ("TRANSPOSE", 2)]


@pytest.mark.parametrize("rid", IDS)
@pytest.mark.parametrize("op,version", SHARED_MODEL_OPS)
def test_shared_model_op_versions_supported(rid, op, version):
    ok, why = get_runtime(rid).support(op, version)
    assert ok, why


@pytest.mark.parametrize("rid", IDS)
def test_unsupported_cases(rid):
    r = get_runtime(rid)
    ok, why = r.support("CONV_2D", 99)
    assert not ok and "v" in why
    ok, why = r.support("FULLY_CONNECTED", 3)      # hybrid: rejected by the kernel
    assert not ok and why
    ok, why = r.support("NO_SUCH_OP", 1)
    assert not ok and "no kernel" in why
    ok, why = r.support_custom("SignalWindow")
    assert not ok and "SignalWindow" in why
    assert r.support_custom("TFLite_Detection_PostProcess")[0]


def test_libraries_differ_where_the_kernels_do():
    ch, ar = get_runtime("chirale_2.0.0"), get_runtime("arduino_tflite_2023")
    # the 2023 Arduino snapshot has int16 pooling and the int16x8 LSTM; Chirale 2.0.0 has not
    assert ar.support("AVERAGE_POOL_2D", 3)[0] and not ch.support("AVERAGE_POOL_2D", 3)[0]
    assert ar.support("UNIDIRECTIONAL_SEQUENCE_LSTM", 5)[0]
    assert not ch.support("UNIDIRECTIONAL_SEQUENCE_LSTM", 5)[0]


@pytest.mark.parametrize("rid", IDS)
@pytest.mark.parametrize("name", shared_model_names())
def test_shared_models(rid, name):
    from nanoml.model import tflite
    m = tflite.load(shared_path("models", name))
    r = get_runtime(rid)
    bad = []
    for op in m.operators:
        if op.op == "CUSTOM":
            ok, _ = r.support_custom(op.custom_code)
        else:
            ok, _ = r.support(op.op, op.version)
        if not ok:
            bad.append(op.custom_code or op.op)
    if name.startswith("audio_preprocessor"):
        assert bad and all(b.startswith("Signal") for b in bad), bad
    else:
        assert bad == [], bad
