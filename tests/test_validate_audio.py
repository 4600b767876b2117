"""`validate MODEL --inputs DIR --sim --json` with DIR/<label>/*.wav: accuracy,
confusion and per-file list; on 1 s yes/no clips synthesised here, the
micro_speech model's accuracy is no worse than the TensorFlow reference path
(audio_microfrontend op, float output x 10/256, the model's input
quantization, host TFLM). Bad folders are one-line errors."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from mutants import run_cli
from speech import VOICES, require_speech, say

from nanoml.model import tflite
from nanoml.pipeline.store import resolve, write_pipeline

LABELS = ["silence", "unknown", "yes", "no"]
RATE = 16000


def one_second(path: Path) -> np.ndarray:
    """The clip padded with zeros / cut to exactly 1 s, written back."""
    with wave.open(str(path)) as f:
        x = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    y = np.zeros(RATE, dtype="<i2")
    y[:min(len(x), RATE)] = x[:RATE]
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(y.tobytes())
    return y


@pytest.fixture(scope="module")
def model_with_pipeline(tmp_path_factory) -> Path:
    src = shared_path("models", "micro_speech_quantized.tflite")
    m = tflite.load(src)
    out = tmp_path_factory.mktemp("m") / "micro_speech_pipe.tflite"
    out.write_bytes(write_pipeline(bytes(m.raw), resolve(m, frontend="micro_speech",
                                                         labels=LABELS)))
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    require_speech()
    root = tmp_path_factory.mktemp("clips")
    out = []
    for word in ("yes", "no"):
        (root / word).mkdir()
        for voice in VOICES:
            p = say(word, root / word / f"{voice.replace('+', '_')}.wav", voice)
            out.append((p, LABELS.index(word), one_second(p)))
    return root, out


def reference_accuracy(model: Path, clips) -> float:
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
    from tensorflow.lite.experimental.microfrontend.python.ops import \
        audio_microfrontend_op as mf
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(model.read_bytes())
    d = interp.get_input_details(0)
    scale = d["quantization_parameters"]["scales"][0]
    zp = d["quantization_parameters"]["zero_points"][0]
    right = 0
    for _, label, x in clips:
        f = mf.audio_microfrontend(tf.constant(x.astype(np.int16)), sample_rate=RATE,
                                   window_size=30, window_step=20, num_channels=40,
                                   out_scale=1, out_type=tf.float32).numpy() * 10 / 256
        assert f.shape == (49, 40)
        v = f / scale
        q = np.clip(np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5)) + zp, -128, 127)
        interp.set_input(q.astype(np.int8).reshape(d["shape"]), 0)
        interp.invoke()
        right += int(np.argmax(interp.get_output(0).reshape(-1))) == label
    return right / len(clips)


def test_accuracy_is_no_worse_than_the_tensorflow_reference(model_with_pipeline, clips):
    root, items = clips
    want = reference_accuracy(model_with_pipeline, items)
    r = run_cli(["validate", str(model_with_pipeline), "--inputs", str(root), "--sim", "--json"],
                timeout=120)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["samples"] == len(items) == 10
    assert doc["accuracy"] >= want
    assert want >= 0.8                              # the reference itself hears the words
    assert doc["labels"] == LABELS
    conf = doc["confusion"]
    assert len(conf) == 4 and all(len(row) == 4 for row in conf)
    assert sum(map(sum, conf)) == 10 and sum(conf[2]) == sum(conf[3]) == 5
    assert conf[2][2] + conf[3][3] == round(doc["accuracy"] * 10)
    files = {Path(f["path"]).name + "/" + f["label"]: f for f in doc["files"]}
    assert len(files) == 10
    assert all(f["correct"] == (f["label"] == f["predicted"]) for f in doc["files"])
    assert all(f["fit"] == "cut" for f in doc["files"])  # 16000 samples, 15840 used
    from test_json_schema import check, schema
    check(doc, schema("validate/1"), "validate --inputs DIR")    # docs/validate.md's table


def test_labels_given_on_the_command_line(clips):
    root, _ = clips
    model = shared_path("models", "micro_speech_quantized.tflite")
    r = run_cli(["validate", str(model), "--inputs", str(root), "--sim", "--json",
                 "--labels", ",".join(LABELS), "--min-accuracy", "1.01"], timeout=120)
    assert r.exit_code == 2 and "--min-accuracy must be between 0 and 1" in r.stdout
    r = run_cli(["validate", str(model), "--inputs", str(root), "--sim", "--json",
                 "--labels", ",".join(LABELS), "--min-accuracy", "1"], timeout=120)
    doc = json.loads(r.stdout)
    assert r.exit_code == (0 if doc["accuracy"] == 1.0 else 1)
    assert doc["min_accuracy"] == 1.0


def _one_line(r, part):
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr and len(err) <= 2 and err[0].startswith("error: ")
    assert part in err[0], err[0]


def test_bad_folders_are_one_line_errors(model_with_pipeline, tmp_path):
    bad = tmp_path / "bad"
    (bad / "maybe").mkdir(parents=True)
    (bad / "maybe" / "a.wav").write_bytes(b"")
    _one_line(run_cli(["validate", str(model_with_pipeline), "--inputs", str(bad), "--sim"]),
              "subfolder 'maybe' is not a label")
    rate = tmp_path / "rate"
    (rate / "yes").mkdir(parents=True)
    with wave.open(str(rate / "yes" / "x.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(np.zeros(8000, dtype="<i2").tobytes())
    _one_line(run_cli(["validate", str(model_with_pipeline), "--inputs", str(rate), "--sim"]),
              "sample rate 8000 Hz")
    _one_line(run_cli(["validate", str(model_with_pipeline), "--inputs", str(rate), "--sim",
                       "--labels", "a,b,yes"]), "3 labels for a model with 4 output")
    plain = shared_path("models", "micro_speech_quantized.tflite")
    _one_line(run_cli(["validate", str(plain), "--inputs", str(rate), "--sim"]),
              "has no labels")
