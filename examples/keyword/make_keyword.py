"""Make nanoml's keyword-spotting example: synthesised speech -> nanoml's own
micro_speech features -> a small int8 model with its pipeline stored in it.

    python examples/keyword/make_keyword.py     # needs TensorFlow ('nanoml[convert]'),
                                                # espeak-ng and sox on PATH

Every step is the path a user takes with real recordings:

1. Clips: 1 s, 16 kHz, mono 16-bit, spoken by espeak-ng (voices, speeds and
   pitches below), converted by sox, then placed at a random time in the second
   with a random gain and background noise (numpy, fixed seeds). Labels
   silence (low noise only), unknown (other words), yes, no.
2. Features: nanoml's host twin of the board's front end
   (`nanoml.pipeline.frontend.MicroFrontend`, the micro_speech preset), a fresh
   front end per clip on its first 15,840 samples, as `nanoml features` does;
   the model is trained on the raw values times 10/256 (the preset's
   feature_scale, as TFLM's micro_speech training feeds them).
3. Model: Keras, 49x40x1 input, CONV_2D (stride 2) + DEPTHWISE_CONV_2D + 1x1
   CONV_2D + AVERAGE_POOL_2D + FULLY_CONNECTED + SOFTMAX, a few thousand
   parameters; converted to int8 by nanoml's convert code (calibration: the
   training features).
4. Pipeline: `nanoml pipeline MODEL --frontend micro_speech --labels
   silence,unknown,yes,no --out examples/keyword/keyword_int8.tflite`.
5. Accuracy on held-out clips (other voice variants, accents, speeds, pitches
   and words than training), written as DIR/<label>/*.wav into a temporary
   folder and measured by `nanoml validate MODEL --inputs DIR --sim --json`:
   the board's features, conversion and model on the virtual board.

Writes examples/keyword/keyword_int8.tflite and info.json (the figures); no
audio is kept. Deterministic: fixed seeds, TensorFlow op determinism, espeak-ng
and sox are deterministic for the same arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

LABELS = ["silence", "unknown", "yes", "no"]
# ms between inferences: `nanoml profile --estimate` puts this model's inference at about
# 111 ms (+9 ms of features per 100 ms), so 100 ms would not keep up on the board.
STRIDE_MS = 200
RATE = 16000
CLIP = RATE                     # 1 s clips
# training speakers: espeak-ng accents x voice variants; held out: other
# variants, two more accents, other speeds and pitches
TRAIN_VOICES = [f"{lang}+{v}" for lang in ("en-gb", "en-us", "en-gb-x-rp")
                for v in ("m1", "m2", "m3", "m4", "m5", "f1", "f2")]
TRAIN_SPEEDS = (135, 160, 185)
TRAIN_PITCHES = (35, 65)
TEST_VOICES = [f"{lang}+{v}" for lang in ("en-gb", "en-us", "en-gb-scotland", "en-029")
               for v in ("m6", "m7", "f3", "f4")]
TEST_SPEEDS = (120, 200)
TEST_PITCHES = (50,)
TRAIN_UNKNOWN = ("up", "down", "left", "right", "go", "stop", "on", "off", "cat",
                 "dog", "bird", "house", "one", "two", "three", "wow", "yet", "yellow",
                 "less", "test", "zero", "seven", "eight", "learn")
TEST_UNKNOWN = ("up", "left", "go", "off", "dog", "three", "four", "bed", "tree", "happy")
AUGMENT = 2                     # noisy/shifted copies per synthesised training word
SEED = 2026


# ---------------------------------------------------------------- audio

def speak(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """`word` spoken by espeak-ng, as int16 samples at 16 kHz (sox converts; -D: no
    dither, whose noise sox seeds from the clock, so the same word gives the same
    samples on every run)."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                          "--stdout", word], capture_output=True, check=True, timeout=60)
    raw = subprocess.run(["sox", "-D", "-t", "wav", "-", "-t", "raw", "-r", str(RATE), "-c", "1",
                          "-b", "16", "-e", "signed-integer", "-"], input=wav.stdout,
                         capture_output=True, check=True, timeout=60)
    return np.frombuffer(raw.stdout, dtype="<i2").astype(np.int16)


def speak_all(jobs: list[tuple[str, str, int, int]]) -> list[np.ndarray]:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda j: speak(*j), jobs))


def trim(x: np.ndarray, level: int = 200) -> np.ndarray:
    """The spoken part: from the first to the last sample above `level`."""
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > level)
    return x[loud[0]:loud[-1] + 1] if loud.size else x[:0]


def place(word: np.ndarray, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
    """A 1 s clip: the word at a random time, random gain, background noise."""
    w = trim(word).astype(np.float64)[:CLIP]
    out = np.zeros(CLIP)
    start = int(rng.integers(0, CLIP - len(w) + 1))
    out[start:start + len(w)] = w * rng.uniform(0.25, 1.2)
    if noise:
        out += rng.normal(0, rng.uniform(0, 120), CLIP)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def silence(rng: np.random.Generator) -> np.ndarray:
    """Low background noise: white, sometimes low-passed (rumble) or with a hum."""
    x = rng.normal(0, rng.uniform(0, 150), CLIP)
    kind = rng.integers(0, 3)
    if kind == 1:
        x = np.convolve(x, np.ones(16) / 4, mode="same")
    elif kind == 2:
        t = np.arange(CLIP) / RATE
        x += rng.uniform(0, 300) * np.sin(2 * np.pi * rng.choice([50, 60, 100]) * t)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def clips(voices, speeds, pitches, unknown_words, per_voice: int, copies: int, seed: int,
          n_silence: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Labelled 1 s clips: yes/no from every voice x speed x pitch (`copies` placed
    copies of each), unknown: `per_voice` of `unknown_words` from each voice (taken
    in turn, speeds and pitches varied), silence: `n_silence` noise clips."""
    rng = np.random.default_rng(seed)
    jobs, labels = [], []
    for word in ("yes", "no"):
        for v in voices:
            for s in speeds:
                for p in pitches:
                    jobs.append((word, v, s, p))
                    labels.append(LABELS.index(word))
    for i, v in enumerate(voices):
        for j in range(per_voice):
            k = i * per_voice + j
            jobs.append((unknown_words[k % len(unknown_words)], v, speeds[k % len(speeds)],
                         pitches[(k // len(speeds)) % len(pitches)]))
            labels.append(LABELS.index("unknown"))
    xs, ys = [], []
    for w, lab in zip(speak_all(jobs), labels):
        for _ in range(copies):
            xs.append(place(w, rng))
            ys.append(lab)
    for _ in range(n_silence):
        xs.append(silence(rng))
        ys.append(0)
    return xs, np.asarray(ys, np.int64)


# ---------------------------------------------------------------- features

def raw_features(samples: list[np.ndarray]) -> np.ndarray:
    """nanoml's micro_speech front end on each clip: uint16 [N, 49, 40]."""
    from nanoml.pipeline.frontend import MicroFrontend
    fe = MicroFrontend()              # the micro_speech preset
    n = 48 * fe.step + fe.size        # 49 frames: 15,840 samples
    out = []
    for x in samples:
        fe.reset()
        out.append(fe.process(x[:n]))
    return np.stack(out)


def train_inputs(raw: np.ndarray) -> np.ndarray:
    """Float model inputs [N, 49, 40, 1]: the raw values times the preset's feature_scale."""
    from nanoml.pipeline.spec import MICRO_SPEECH_FEATURE_SCALE
    return (raw.astype(np.float32) * np.float32(MICRO_SPEECH_FEATURE_SCALE))[..., None]


def write_wav(path: Path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(x.astype("<i2").tobytes())


# ---------------------------------------------------------------- model

def keyword_model():
    import keras
    L = keras.layers
    return keras.Sequential([
        keras.Input((49, 40, 1), name="features"),
        L.Conv2D(12, (10, 8), strides=(2, 2), padding="same", activation="relu"),
        L.DepthwiseConv2D((3, 3), padding="same", activation="relu"),
        L.Conv2D(24, (1, 1), activation="relu"),
        L.AveragePooling2D((5, 4)),
        L.Flatten(),
        L.Dense(len(LABELS)),
        L.Softmax(),
    ], name="keyword")


def nanoml(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("nanoml")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nanoml"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=1800)


def main() -> int:
    import keras
    import tensorflow as tf
    from nanoml.model.convert import convert_model, run_tflm
    from nanoml.model.tflite import load_bytes
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(SEED)

    x_train, y_train = clips(TRAIN_VOICES, TRAIN_SPEEDS, TRAIN_PITCHES, TRAIN_UNKNOWN,
                             per_voice=10, copies=AUGMENT, seed=1, n_silence=250)
    x_test, y_test = clips(TEST_VOICES, TEST_SPEEDS, TEST_PITCHES, TEST_UNKNOWN,
                           per_voice=2, copies=1, seed=2, n_silence=32)
    f_train = train_inputs(raw_features(x_train))
    f_test = train_inputs(raw_features(x_test))
    import hashlib
    print(f"train {np.bincount(y_train).tolist()}  test {np.bincount(y_test).tolist()}  "
          f"features sha1 {hashlib.sha1(f_train.tobytes()).hexdigest()[:12]}", file=sys.stderr)

    m = keyword_model()
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    m.fit(f_train, y_train, epochs=50, batch_size=32, verbose=0, shuffle=True)
    float_acc = float(m.evaluate(f_test, y_test, verbose=0)[1])
    print("weights sha1", hashlib.sha1(b"".join(w.tobytes() for w in m.get_weights()))
          .hexdigest()[:12], file=sys.stderr)

    out = HERE / "keyword_int8.tflite"
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        m.save(td / "keyword.keras")
        calib = td / "calib.npy"
        np.save(calib, f_train[np.random.default_rng(3).permutation(len(f_train))[:200]])
        rep = convert_model(td / "keyword.keras", td / "plain_int8.tflite", quantize="int8",
                            calib=calib, samples=200).to_json()
        if rep["unsupported"] or any(p["level"] == "error" for p in rep["problems"]):
            raise SystemExit(f"convert: {rep['unsupported']} {rep['problems']}")
        r = nanoml("pipeline", str(td / "plain_int8.tflite"), "--frontend", "micro_speech",
                   "--labels", ",".join(LABELS), "--stride-ms", str(STRIDE_MS), "--out", str(out))
        if r.returncode:
            raise SystemExit(f"nanoml pipeline: {r.stderr.strip()}")

        # held-out clips as the user's folder of recordings: DIR/<label>/*.wav
        clips_dir = td / "heldout"
        for i, (x, y) in enumerate(zip(x_test, y_test)):
            d = clips_dir / LABELS[y]
            d.mkdir(parents=True, exist_ok=True)
            write_wav(d / f"{i:04d}.wav", x)
        v = nanoml("validate", str(out), "--inputs", str(clips_dir), "--sim", "--json",
                   "--timeout", "600")
        if v.returncode not in (0, 1):
            raise SystemExit(f"nanoml validate: {v.stderr.strip()}")
        val = json.loads(v.stdout)
        # the same clips through `nanoml features` and host TFLM (no board)
        feats = td / "heldout.npy"
        r = nanoml("features", str(clips_dir), "--model", str(out), "-o", str(feats))
        if r.returncode:
            raise SystemExit(f"nanoml features: {r.stderr.strip()}")
        # run_tflm takes real values and quantizes them with the input's scale and
        # zero point: give it the int8 tensors' exact real values
        q = load_bytes(out.read_bytes()).input_tensors[0].quant
        real = (np.load(feats).astype(np.float64) - q.zero_point[0]) * q.scale[0]
        host = run_tflm(out.read_bytes(), [real])[0]
        order = sorted((LABELS[y], f"{i:04d}.wav", y) for i, y in enumerate(y_test))
        host_acc = float(np.mean([host[k].argmax() == y for k, (_, _, y) in enumerate(order)]))

    insp = json.loads(nanoml("inspect", str(out), "--json").stdout)
    info = {
        "name": "keyword", "labels": LABELS,
        "input": "micro_speech features (nanoml's host front end = the board's): 49 frames "
                 "x 40 channels, int8 by the pipeline's conversion",
        "input_shape": [1, 49, 40, 1], "output": "softmax probability per label",
        "train_clips": np.bincount(y_train, minlength=4).tolist(),
        "heldout_clips": np.bincount(y_test, minlength=4).tolist(),
        "train_voices": TRAIN_VOICES, "train_speeds": list(TRAIN_SPEEDS),
        "train_pitches": list(TRAIN_PITCHES), "train_unknown_words": list(TRAIN_UNKNOWN),
        "heldout_voices": TEST_VOICES, "heldout_speeds": list(TEST_SPEEDS),
        "heldout_pitches": list(TEST_PITCHES), "heldout_unknown_words": list(TEST_UNKNOWN),
        "float_heldout_accuracy": round(float_acc, 4),
        "int8_heldout_accuracy_validate_sim": val.get("accuracy"),
        "int8_heldout_confusion_validate_sim": val.get("confusion"),
        "int8_heldout_accuracy_features_host_tflm": round(host_acc, 4),
        "params": rep["params"], "tflite_bytes": out.stat().st_size,
        "ops": [f"{o['name']} v{o['version']}" for o in rep["ops"]],
        "quantization_error_on_calibration": rep["error"],
        "arena_bytes": insp["arena_bytes"], "flash_bytes": insp["flash_bytes"],
        "ram_bytes": insp["ram_bytes"], "fits": insp["fits"],
        "tensorflow": tf.__version__,
    }
    (HERE / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
