"""`nanoml inspect`: parsing, MACs, op support, fit verdicts and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import EXAMPLES, shared_path

NANOML = [sys.executable, "-m", "nanoml"]


def run(*args, check_rc=None):
    p = subprocess.run(NANOML + list(map(str, args)), capture_output=True, text=True, timeout=120)
    if check_rc is not None:
        assert p.returncode == check_rc, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def inspect_json(path, *extra, rc=0):
    p = run("inspect", path, "--json", *extra, check_rc=rc)
    return json.loads(p.stdout)


def macs_by(d, op):
    return sum(o["macs"] for o in d["operators"] if o["op"] == op)


def test_person_detect_macs_and_ops():
    d = inspect_json(shared_path("models", "person_detect.tflite"))
    assert d["macs"] == 7_157_888
    assert macs_by(d, "CONV_2D") + macs_by(d, "DEPTHWISE_CONV_2D") == 7_157_888
    names = {(o["name"], o["version"]) for o in d["ops"]}
    assert names == {("AVERAGE_POOL_2D", 2), ("CONV_2D", 2), ("DEPTHWISE_CONV_2D", 3),
                     ("RESHAPE", 1), ("SOFTMAX", 2)}
    assert all(o["supported"] for o in d["ops"])
    assert d["fits"] == {"flash": True, "ram": True}
    assert d["model"]["bytes"] == 300_568
    assert len(d["model"]["sha256"]) == 64
    assert d["inputs"][0]["shape"] == [1, 96, 96, 1] and d["inputs"][0]["dtype"] == "int8"
    assert d["outputs"][0]["shape"] == [1, 2]
    # flash estimate includes at least baseline + model
    assert d["flash_bytes"] > 85_328 + 300_568
    assert d["ram_bytes"] > 44_552 + d["arena_bytes"] - 1


def test_micro_speech_macs():
    d = inspect_json(shared_path("models", "micro_speech_quantized.tflite"))
    assert d["macs"] == 336_000
    assert macs_by(d, "DEPTHWISE_CONV_2D") + macs_by(d, "FULLY_CONNECTED") == 336_000


def test_per_channel_quantization_reported():
    d = inspect_json(shared_path("models", "person_detect.tflite"))
    conv = next(o for o in d["operators"] if o["op"] == "CONV_2D")
    weights = conv["inputs"][1]
    assert weights["per_channel"] is True
    assert isinstance(weights["scale"], list) and len(weights["scale"]) == weights["shape"][0]


def test_custom_signal_ops_unsupported_exit_1():
    d = inspect_json(shared_path("models", "audio_preprocessor_int8.tflite"), rc=1)
    assert "CUSTOM:SignalWindow" in d["unsupported"]
    assert any(o["name"] == "CUSTOM:SignalRfft" and not o["supported"] for o in d["ops"])
    assert any(p["level"] == "error" for p in d["problems"])


def test_mobilenet_v2_does_not_fit_flash_exit_1():
    d = inspect_json(shared_path("models", "mobilenet_v2_quantized_1x3x224x224.tflite"), rc=1)
    assert d["fits"]["flash"] is False
    assert any("flash" in p["message"] and p["level"] == "error" for p in d["problems"])
    p = run("inspect", shared_path("models", "mobilenet_v2_quantized_1x3x224x224.tflite"))
    assert p.returncode == 1 and "does not fit flash" in p.stdout.replace("\n", " ")


@pytest.mark.parametrize("name", ["hello_world_int8.tflite", "hello_world_float.tflite",
                                  "keyword_scrambled.tflite", "trained_lstm_int8.tflite",
                                  "dtln_noise_suppression.tflite"])
def test_shared_models_run(name):
    d = inspect_json(shared_path("models", name), rc=0)
    assert d["unsupported"] == [] and d["can_run"]


def test_every_subgraph_and_op_versions_read(tmp_path):
    # versions come from the file, not a table
    d = inspect_json(shared_path("models", "dtln_noise_suppression.tflite"))
    assert {(o["name"], o["version"]) for o in d["ops"]} == {
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", 1), ("FULLY_CONNECTED", 5), ("LOGISTIC", 2)}


def _a_model():
    ex = sorted(EXAMPLES.rglob("*.tflite"))
    if ex:
        return ex[0]
    return shared_path("models", "hello_world_int8.tflite")


def test_truncated_file_exit_2(tmp_path):
    src = _a_model().read_bytes()
    for cut in (3, 7, 64, len(src) // 2, len(src) - 9):
        f = tmp_path / f"cut{cut}.tflite"
        f.write_bytes(src[:cut])
        p = run("inspect", f)
        assert p.returncode == 2, (cut, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr
        assert p.stderr.startswith("error: ")
        assert len(p.stderr.strip().splitlines()) <= 2  # error line + hint line


def test_text_file_and_missing_file_exit_2(tmp_path):
    f = tmp_path / "notes.tflite"
    f.write_text("this is not a model\n" * 10)
    for path in (f, tmp_path / "missing.tflite", tmp_path):
        p = run("inspect", path)
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert "error:" in p.stderr


def test_json_error_object_on_bad_input(tmp_path):
    f = tmp_path / "x.tflite"
    f.write_bytes(b"\x00" * 100)
    p = run("inspect", f, "--json")
    assert p.returncode == 2
    err = json.loads(p.stdout)
    assert err["exit_code"] == 2 and err["error"]


def test_random_corruption_never_crashes(tmp_path):
    """Flip bytes all over a real model: `nanoml inspect` (the command, in a child
    with a time and memory limit) must exit 0/1/2, never a traceback, an internal
    error (70), a signal or a hang."""
    import random

    from mutants import run_cli
    src = bytearray(_a_model().read_bytes())
    rng = random.Random(1234)
    bad = []
    for i in range(100):                   # each one a whole `nanoml inspect` run
        b = bytearray(src)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        f = tmp_path / f"fuzz{i}.tflite"
        f.write_bytes(bytes(b))
        r = run_cli(["inspect", str(f), "--json"], timeout=30, mem_mb=2048)
        if r.exit_code not in (0, 1, 2) or r.traceback or r.signal or r.timed_out:
            bad.append((i, r.exit_code, r.signal, r.timed_out, r.stderr[-300:], r.stdout[-300:]))
        f.unlink()
    assert not bad, bad[:5]


def test_unknown_board_is_usage_error():
    p = run("inspect", _a_model(), "--board", "uno")
    assert p.returncode == 2 and "unknown board" in p.stderr


def test_example_model_inspects_clean():
    ex = sorted(EXAMPLES.rglob("*.tflite"))
    if not ex:
        pytest.fail("examples/ has no .tflite model")
    for f in ex:
        d = inspect_json(f, rc=0)
        assert d["can_run"] and d["macs"] > 0
