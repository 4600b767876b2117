"""`nanoml pipeline`: the fixed interface, what inspect shows of it, the JSON against
docs/pipeline.md, and every refusal is one line, a non-zero exit and nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, shared_path
from mutants import run_cli
from test_json_schema import check, schema

from nanoml.model.tflite import load, load_bytes
from nanoml.pipeline import spec, store

GESTURE = EXAMPLES / "gesture" / "gesture_int8.tflite"       # input [1, 64, 3, 1], 4 outputs
LABELS = "silence,unknown,yes,no"


@pytest.fixture(scope="module")
def speech() -> Path:
    return shared_path("models", "micro_speech_quantized.tflite")


def _ok(args: list[str]) -> str:
    r = run_cli([str(a) for a in args])
    assert r.exit_code == 0 and not r.traceback, (args, r.stdout, r.stderr)
    return r.stdout


def _refused(args: list[str], words: str, out: Path | None = None, code: int = 2) -> str:
    r = run_cli([str(a) for a in args])
    assert r.exit_code == code and not r.traceback, (args, r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and words in lines[0], r.stderr
    assert len(lines) <= 2 and all(x.startswith(("error: ", "hint: ")) for x in lines)
    if out is not None:
        assert not out.exists(), f"{out} was written"
        assert not [p for p in out.parent.iterdir() if "nanoml-tmp" in p.name]
    return lines[0]


def test_the_interface_writes_what_inspect_reads(speech, tmp_path):
    out = tmp_path / "OUT.tflite"
    _ok(["pipeline", speech, "--frontend", "micro_speech", "--labels", LABELS, "--out", out])
    d = json.loads(_ok(["inspect", out, "--json"]))
    p = d["pipeline"]
    assert p["source"] == "mic" and p["frontend"]["kind"] == "micro_speech"
    assert p["frontend"]["params"] == spec.MICRO_SPEECH
    assert p["window"] == {"frames": 49, "stride_ms": 100}          # [1, 1960] = 49 x 40
    assert p["labels"] == LABELS.split(",")
    q = load(speech).input_tensors[0].quant
    conv = spec.conversion_for("int8", q.scale[0], q.zero_point[0],
                               spec.MICRO_SPEECH_FEATURE_SCALE)
    assert p["tensor"]["multiplier"] == conv.multiplier and p["tensor"]["zero_point"] == -128
    assert p["decision"]["threshold"] == spec.DEFAULT_DECISION["threshold"]
    # the rest of inspect's report is the input's, apart from the model file itself
    d0 = json.loads(_ok(["inspect", speech, "--json"]))
    assert d0["pipeline"] is None
    assert d0["operators"] == d["operators"] and d0["inputs"] == d["inputs"]
    text = _ok(["inspect", out])
    assert "Pipeline" in text and "micro_speech" in text and "49 frames x 40 channels" in text
    assert "silence, unknown, yes, no" in text and "threshold 200" in text


def test_json_follows_the_documented_schema(speech, tmp_path):
    out = tmp_path / "a.tflite"
    d = json.loads(_ok(["pipeline", speech, "--frontend", "micro_speech", "--labels", LABELS,
                        "--out", out, "--json"]))
    assert d["schema"] == "pipeline/1" and d["action"] == "write"
    assert d["out"]["bytes"] == out.stat().st_size
    check(d, schema("pipeline/1"), "pipeline (audio)")
    shown = json.loads(_ok(["pipeline", out, "--show", "--json"]))
    assert shown["action"] == "show" and shown["out"] is None
    assert shown["pipeline"] == d["pipeline"]
    check(shown, schema("pipeline/1"), "pipeline --show")
    imu = tmp_path / "imu.tflite"
    d = json.loads(_ok(["pipeline", GESTURE, "--imu", "ax,ay,az", "--rate", 100, "--stride", 16,
                        "--offset", "0,0,1", "--scale", "2,2,2", "--labels", "a,b,c,d",
                        "--out", imu, "--json"]))
    check(d, schema("pipeline/1"), "pipeline (imu)")
    assert d["pipeline"]["window"] == {"samples": 64, "stride": 16}
    assert d["pipeline"]["imu"] == {"channels": ["ax", "ay", "az"], "rate_hz": 100.0,
                                    "offset": [0.0, 0.0, 1.0], "scale": [2.0, 2.0, 2.0]}
    none = json.loads(_ok(["pipeline", GESTURE, "--json"]))
    assert none["pipeline"] is None
    check(none, schema("pipeline/1"), "pipeline --show (none)")


def test_frames_come_from_the_input_shape_in_either_form(speech, tmp_path):
    """[1, 1960] and [1, 49, 40, 1] are both 49 frames of 40 channels."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    from test_pipeline_store import _pack
    m = fb.ModelT.InitFromPackedBuf(bytearray(speech.read_bytes()), 0)
    sg = m.subgraphs[0]
    sg.tensors[sg.inputs[0]].shape = np.array([1, 49, 40, 1], dtype=np.int32)
    four = tmp_path / "four_d.tflite"
    four.write_bytes(_pack(m))
    out = tmp_path / "o.tflite"
    _ok(["pipeline", four, "--frontend", "micro_speech", "--out", out])
    p = store.read_pipeline(load(out))
    assert p.frames == 49 and p.channels == 40
    # a front end with 20 channels makes the same input 98 frames
    _ok(["pipeline", speech, "--frontend", "micro_speech", "--frontend-param", "num_channels=20",
         "--out", out, "--force"])
    p = store.read_pipeline(load(out))
    assert (p.frames, p.channels) == (98, 20) and p.frontend.params["num_channels"] == 20


def test_options_change_the_stored_pipeline(speech, tmp_path):
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    _ok(["pipeline", speech, "--frontend", "micro_speech", "--labels", LABELS, "--out", a])
    _ok(["pipeline", a, "--threshold", 150, "--stride-ms", 200, "--frontend-param",
         "pcan_strength=0.9", "--frontend-param", "enable_log=false", "--out", b])
    p = store.read_pipeline(load(b))
    assert p.labels == LABELS.split(",")              # kept
    assert p.decision.threshold == 150 and p.decision.minimum_count == 3
    assert p.window["stride_ms"] == 200
    assert p.frontend.params["pcan_strength"] == 0.9 and p.frontend.params["enable_log"] is False
    _ok(["pipeline", b, "--no-decision", "--out", a, "--force"])
    assert store.read_pipeline(load(a)).decision is None
    imu = tmp_path / "imu.tflite"
    _ok(["pipeline", GESTURE, "--imu", "ax,ay,az", "--out", imu])
    _refused(["pipeline", imu, "--frontend-param", "num_channels=3", "--out", tmp_path / "c"],
             "IMU one", tmp_path / "c")
    _ok(["pipeline", a, "--remove", "--out", b, "--force"])
    assert store.read_pipeline(load(b)) is None


def test_resolve_overrides_the_stored_description(speech, tmp_path):
    """What build/sim/validate/... call: stored + command-line flags, checked."""
    data = store.write_pipeline(speech.read_bytes(), store.resolve(
        load(speech), frontend="micro_speech", labels=LABELS.split(",")))
    m = load_bytes(data, "m")
    assert store.resolve(m) == store.read_pipeline(m)
    p = store.resolve(m, labels=list("abcd"), stride_ms=50, threshold=10)
    assert p.labels == list("abcd") and p.window["stride_ms"] == 50 and p.decision.threshold == 10
    assert store.resolve(load(speech)) is None
    from nanoml.errors import UsageError
    with pytest.raises(UsageError, match="3 labels for a model with 4 output values"):
        store.resolve(m, labels=list("abc"))
    # a stored description that does not fit the model: refused when read
    bad = store.write_pipeline(GESTURE.read_bytes(), store.read_pipeline(m))
    with pytest.raises(spec.PipelineError, match="holds 192"):
        store.resolve(load_bytes(bad, "bad"))


def test_refusals_are_one_line_and_write_nothing(speech, tmp_path):
    out = tmp_path / "x.tflite"
    base = ["pipeline", speech, "--out", out]
    _refused(base + ["--frontend", "micro_speech", "--labels", "a,b"], "2 labels", out)
    _refused(["pipeline", GESTURE, "--out", out, "--imu", "ax,ay,az,gx,gy"],
             "not a multiple of the 5 channels", out)
    _refused(["pipeline", GESTURE, "--out", out, "--frontend", "micro_speech"],
             "not a multiple of the 40 channels", out)
    _refused(base + ["--frontend", "mfcc"], "not available yet", out)
    _refused(base + ["--frontend", "nope"], "unknown front end 'nope'", out)
    _refused(base + ["--frontend", "micro_speech", "--frontend-param", "num_channels=0"],
             "num_channels", out)
    _refused(base + ["--frontend", "micro_speech", "--frontend-param", "bogus=1"],
             "no parameter 'bogus'", out)
    _refused(base + ["--frontend", "micro_speech", "--frontend-param", "gain_bits=x"],
             "must be an integer", out)
    _refused(base + ["--frontend", "mfcc", "--frontend-param", "x=1"], "not available yet", out)
    _refused(base + ["--frontend", "micro_speech", "--imu", "ax"], "exclude each other", out)
    _refused(base + ["--labels", LABELS], "no pipeline", out)
    _refused(["pipeline", GESTURE, "--out", out, "--imu", "ax,ay,az", "--offset", "1,2"],
             "--offset needs 3", out)
    _refused(["pipeline", GESTURE, "--out", out, "--imu", "ax,ay,qq"], "channels", out)
    _refused(["pipeline", GESTURE, "--out", out, "--imu", "ax,ay,az", "--offset", "1,x,2"],
             "comma-separated numbers", out)
    _refused(["pipeline", GESTURE, "--out", out, "--imu", "ax,ay,az", "--scale", "1,nan,2"],
             "finite", out)
    _refused(["pipeline", GESTURE, "--out", out, "--imu", "ax,ay,az", "--scale", "1,0,2"],
             "must not contain 0", out)
    _refused(["pipeline", GESTURE, "--out", out, "--imu", "ax,,az"], "none empty", out)
    _refused(base + ["--frontend", "micro_speech", "--labels", "a,,b,c"], "none empty", out)
    _refused(base + ["--frontend", "micro_speech", "--threshold", "300"], "0..255", out)
    _refused(base + ["--frontend", "micro_speech", "--no-decision", "--threshold", "3"],
             "--no-decision", out)
    _refused(["pipeline", speech, "--frontend", "micro_speech"], "without --out")
    # --out is the input, unless --force
    copy = tmp_path / "in.tflite"
    copy.write_bytes(speech.read_bytes())
    _refused(["pipeline", copy, "--frontend", "micro_speech", "--out", copy], "is the input")
    assert copy.read_bytes() == speech.read_bytes()
    _ok(["pipeline", copy, "--frontend", "micro_speech", "--out", copy, "--force"])
    assert store.read_pipeline(load(copy)) is not None
    # an output that cannot be written
    _refused(base[:2] + ["--frontend", "micro_speech", "--out", tmp_path / "no" / "x.tflite"],
             "does not exist")
    (tmp_path / "dir.tflite").mkdir()
    _refused(base[:2] + ["--frontend", "micro_speech", "--out", tmp_path / "dir.tflite"],
             "is a folder")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            _refused(base[:2] + ["--frontend", "micro_speech", "--out", ro / "x.tflite"],
                     "cannot write")
        finally:
            ro.chmod(0o700)


def test_corrupt_pipeline_metadata_in_the_input(tmp_path):
    from test_pipeline_store import _with_entry
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_with_entry(GESTURE.read_bytes(), spec.METADATA_NAME, b'{"version": 1'))
    out = tmp_path / "out.tflite"
    _refused(["pipeline", bad, "--labels", "a,b,c,d", "--out", out], "not valid JSON", out)
    _refused(["pipeline", bad, "--show"], "nanoml.pipeline metadata")
    _refused(["inspect", bad], "not valid JSON")
    r = run_cli(["inspect", str(bad), "--json"])
    d = json.loads(r.stdout)
    assert r.exit_code == 2 and d["schema"] == "error/1" and "not valid JSON" in d["error"]
    # --frontend/--imu make a new description: the corrupt one is still refused first
    _refused(["pipeline", bad, "--imu", "ax,ay,az", "--out", out], "not valid JSON", out)
