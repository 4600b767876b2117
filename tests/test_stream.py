"""Streaming windows (nanoml.pipeline.stream) and the whole streaming path:
`monitor --sim MODEL --source FILE.wav --json --fast` gives the `det` records
that a reference built here gives: TensorFlow's audio_microfrontend op on the
whole file, the documented windowing (docs/pipeline.md "Streaming") by slicing,
the model's input quantization, the host TFLM interpreter, and a separate
transcription of the documented recognizer rules."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
from conftest import shared_path
from mutants import run_cli
from speech import require_speech, say

from nanoml.pipeline.frontend import MicroFrontend
from nanoml.pipeline.spec import MICRO_SPEECH, Decision, Pipeline, check_frontend, conversion_for
from nanoml.pipeline.stream import AudioStream

LABELS = ["silence", "unknown", "yes", "no"]
RATE = 16000
STEP, SIZE = 320, 480          # 20 ms and 30 ms at 16 kHz


def pipeline(frames=49, stride_ms=100, scale=0.1, zp=-128) -> Pipeline:
    return Pipeline(source="mic", window={"frames": frames, "stride_ms": stride_ms},
                    tensor=conversion_for("int8", scale, zp, 10 / 256),
                    frontend=check_frontend("micro_speech", {}), decision=Decision(),
                    labels=LABELS)


def noise(seconds, seed=1):
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(int(seconds * RATE)) * 3000, -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("frames,stride_ms", [(49, 100), (10, 20), (7, 60)])
def test_windows_are_the_latest_frames_every_stride(frames, stride_ms):
    x = noise(3.1)
    whole = MicroFrontend().process(x)                 # all frames of the clip at once
    stride = stride_ms // 20
    ends = list(range(frames - 1, len(whole), stride))
    assert len(ends) > 3
    for chunk in (1, 77, STEP, 4000):
        s = AudioStream(pipeline(frames, stride_ms))
        got = []
        for i in range(0, len(x), chunk):
            got += s.feed(x[i:i + chunk])
        assert [w.index for w in got] == list(range(len(ends)))
        assert [w.t_ms for w in got] == [(k * STEP + SIZE) * 1000 // RATE for k in ends]
        for w, k in zip(got, ends):
            assert np.array_equal(w.raw, whole[k - frames + 1:k + 1])
            assert w.tensor.dtype == np.int8 and w.tensor.shape == (frames * 40,)


def test_no_window_before_the_window_is_full():
    s = AudioStream(pipeline(49, 100))
    # 49 frames need 48 * 320 + 480 = 15840 samples
    assert s.feed(noise(15839 / RATE)) == []
    got = s.feed(np.zeros(1, dtype=np.int16))
    assert [w.t_ms for w in got] == [990]


# ---------------------------------------------------------------- the whole path

WORDS_AT = [(1.5, "yes"), (4.0, "no"), (6.5, "yes"), (9.0, "no")]
SECONDS = 12


@pytest.fixture(scope="module")
def stream_wav(tmp_path_factory):
    require_speech()
    folder = tmp_path_factory.mktemp("stream")
    x = np.zeros(SECONDS * RATE, dtype=np.int16)
    for t, word in WORDS_AT:
        w = np.frombuffer(wave.open(str(say(word, folder / f"{word}.wav", "en-us")))
                          .readframes(10 ** 6), dtype="<i2")
        i = int(t * RATE)
        x[i:i + len(w)] = w[:len(x) - i]
    path = folder / "words.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(x.astype("<i2").tobytes())
    return path, x


def reference_recognizer(results, d: Decision, labels):
    """The documented rules, transcribed on their own: results [(t_ms, scores)]."""
    dets, prev, prev_t = [], 0, None
    for i, (t, _) in enumerate(results):
        kept = [r for r in results[max(0, i - 49):i + 1] if r[0] >= t - d.average_window_ms]
        if len(kept) < d.minimum_count or t - kept[0][0] < d.average_window_ms // 4:
            continue
        avg = np.sum([r[1] for r in kept], axis=0) // len(kept)
        top = int(np.argmax(avg)) if avg.max() > 0 else 0
        since = None if (prev == 0 or prev_t is None) else t - prev_t
        if avg[top] > d.threshold and (top != prev or since is None or since > d.suppression_ms):
            prev, prev_t = top, t
            if labels[top] not in d.ignore:
                dets.append({"i": top, "label": labels[top], "score": int(avg[top]), "t_ms": t})
    return dets


def test_monitor_sim_source_dets_equal_the_tensorflow_reference(stream_wav):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
    from tensorflow.lite.experimental.microfrontend.python.ops import \
        audio_microfrontend_op as mf
    from tflite_micro.python.tflite_micro import runtime
    model = shared_path("models", "micro_speech_quantized.tflite")
    path, x = stream_wav
    # reference: the op's float output (x 10/256), windows by slicing, input quantization
    kw = {{"window_size_ms": "window_size", "window_step_ms": "window_step"}.get(k, k): v
          for k, v in MICRO_SPEECH.items()}
    feats = mf.audio_microfrontend(tf.constant(x), out_type=tf.float32, **kw).numpy() * 10 / 256
    interp = runtime.Interpreter.from_bytes(model.read_bytes())
    det_in = interp.get_input_details(0)
    scale, zp = det_in["quantization_parameters"]["scales"][0], \
        det_in["quantization_parameters"]["zero_points"][0]
    results = []
    for k in range(48, len(feats), 5):                 # 49 frames, an inference every 100 ms
        v = feats[k - 48:k + 1] / scale
        q = np.clip(np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5)) + zp, -128, 127)
        interp.set_input(q.astype(np.int8).reshape(det_in["shape"]), 0)
        interp.invoke()
        out = interp.get_output(0).reshape(-1).astype(np.int32)
        results.append(((k * STEP + SIZE) * 1000 // RATE, out + 128))
    want = reference_recognizer(results, Decision(), LABELS)

    r = run_cli(["monitor", "--sim", str(model), "--source", str(path), "--json", "--fast",
                 "--labels", ",".join(LABELS)], timeout=120)
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    got = [{k: d[k] for k in ("i", "label", "score", "t_ms")} for d in recs if d["type"] == "det"]
    res = [d for d in recs if d["type"] == "res"]
    assert len(res) == len(results)
    assert [d["t_ms"] for d in res] == [t for t, _ in results]
    assert recs[-1]["type"] == "summary" and recs[-1]["exit"] == "end"
    assert got == want
    assert len(got) >= 2                               # the words are heard
    assert all(d["t_ms"] >= 1000 for d in got)         # nothing in the leading second
    onsets = [t * 1000 for t, _ in WORDS_AT]
    for d in got:                                      # each within 2 s after a word's onset
        assert any(0 <= d["t_ms"] - o <= 2000 for o in onsets), d
