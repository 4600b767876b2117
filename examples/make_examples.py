"""Make nanoml's example models from synthetic data (deterministic seeds).

    python examples/make_examples.py            # needs the [convert] extra (TensorFlow)

Writes, per example, into examples/<name>/:
  <name>.keras        the trained float Keras model (input of `nanoml convert`)
  <name>_int8.tflite  converted by nanoml's own convert code (int8 in/out)
  inputs.npy          float samples [N, ...input shape without batch] (calibration / validate)
  labels.npy          the class (gesture) or target value (sine) of each inputs.npy row
  info.json           classes, shapes, training settings and accuracy figures

Examples:
  gesture  synthetic 3-axis accelerometer windows (64 samples at ~100 Hz, in g),
           4 classes: idle, shake, punch, circle. CNN: CONV_2D, MAX_POOL_2D,
           DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX.
  sine     y = sin(x) for x in [0, 2*pi], 3 FULLY_CONNECTED layers (like TFLM's hello_world).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

GESTURES = ["idle", "shake", "punch", "circle"]
WINDOW = 64          # samples per window
RATE_HZ = 100.0      # nominal sample rate of the synthetic IMU


def gesture_data(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic accelerometer windows [n, 64, 3, 1] in g, and class ids.

    Every window has gravity on a random axis mix (the board held at a random
    tilt), sensor noise and a random gesture strength, speed and timing."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW) / RATE_HZ
    xs, ys = [], []
    for label, name in enumerate(GESTURES):
        for _ in range(n_per_class):
            g = rng.normal(size=3)
            g = g / np.linalg.norm(g) * 1.0                   # 1 g of gravity, random tilt
            w = np.tile(g, (WINDOW, 1)) + rng.normal(0, 0.03, (WINDOW, 3))
            amp = rng.uniform(0.5, 1.5)
            if name == "idle":
                w += rng.normal(0, 0.02, 3) + 0.05 * np.sin(2 * np.pi * rng.uniform(0.2, 1) * t)[:, None]
            elif name == "shake":                              # fast back-and-forth on one axis
                f, axis = rng.uniform(4, 7), rng.integers(0, 3)
                w[:, axis] += amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            elif name == "punch":                              # one sharp push then a stop
                c, axis = rng.integers(12, WINDOW - 16), rng.integers(0, 3)
                k = np.arange(WINDOW) - c
                w[:, axis] += 2.0 * amp * np.exp(-0.5 * (k / 2.0) ** 2) \
                    - 1.2 * amp * np.exp(-0.5 * ((k - 6) / 3.0) ** 2)
            elif name == "circle":                             # slow rotation in a plane
                f = rng.uniform(1, 2.5)
                a, b = rng.choice(3, 2, replace=False)
                ph = rng.uniform(0, 2 * np.pi)
                w[:, a] += amp * np.sin(2 * np.pi * f * t + ph)
                w[:, b] += amp * np.cos(2 * np.pi * f * t + ph)
            xs.append(w)
            ys.append(label)
    x = np.asarray(xs, np.float32)[..., None]
    y = np.asarray(ys, np.int64)
    order = rng.permutation(len(y))
    return x[order], y[order]


def gesture_model():
    import keras
    L = keras.layers
    return keras.Sequential([
        keras.Input((WINDOW, 3, 1), name="accel"),
        L.Conv2D(8, (5, 3), padding="same", activation="relu"),
        L.MaxPooling2D((2, 1)),
        L.DepthwiseConv2D((5, 3), padding="same", activation="relu"),
        L.Conv2D(12, (1, 3), activation="relu"),
        L.AveragePooling2D((4, 1)),
        L.Flatten(),
        L.Dense(16, activation="relu"),
        L.Dense(len(GESTURES)),
        L.Softmax(),
    ], name="gesture")


def sine_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2 * np.pi, (n, 1)).astype(np.float32)
    return x, np.sin(x).astype(np.float32)


def sine_model():
    import keras
    L = keras.layers
    return keras.Sequential([keras.Input((1,), name="x"), L.Dense(16, activation="relu"),
                             L.Dense(16, activation="relu"), L.Dense(1)], name="sine")


def _save_plain(m, make, path: Path) -> None:
    """Save the trained weights in an uncompiled copy (no optimizer state: smaller file)."""
    plain = make()
    plain.set_weights(m.get_weights())
    plain.save(path)


def _convert(keras_path: Path, out: Path, calib: Path) -> dict:
    from nanoml.model.convert import convert_model
    rep = convert_model(keras_path, out, quantize="int8", calib=calib, samples=100)
    r = rep.to_json()
    if r["unsupported"] or any(p["level"] == "error" for p in r["problems"]):
        raise SystemExit(f"{out}: {r['unsupported']} {r['problems']}")
    return r


def make_gesture(out_dir: Path) -> dict:
    import keras
    from nanoml.model.convert import run_tflm
    keras.utils.set_random_seed(1234)
    x_train, y_train = gesture_data(300, seed=1)
    x_test, y_test = gesture_data(50, seed=2)
    m = gesture_model()
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    m.fit(x_train, y_train, epochs=25, batch_size=32, verbose=0, shuffle=True)
    float_acc = float(m.evaluate(x_test, y_test, verbose=0)[1])

    out_dir.mkdir(parents=True, exist_ok=True)
    _save_plain(m, gesture_model, out_dir / "gesture.keras")
    # calibration / validation samples: 8 per class from the held-out set
    pick = np.concatenate([np.flatnonzero(y_test == c)[:8] for c in range(len(GESTURES))])
    np.save(out_dir / "inputs.npy", x_test[pick])
    np.save(out_dir / "labels.npy", y_test[pick])
    with tempfile.TemporaryDirectory() as td:
        calib = Path(td) / "calib.npy"
        np.save(calib, x_train[:100])
        report = _convert(out_dir / "gesture.keras", out_dir / "gesture_int8.tflite", calib)
    probs = run_tflm((out_dir / "gesture_int8.tflite").read_bytes(), [x_test])[0]
    int8_acc = float((probs.argmax(1) == y_test).mean())
    return {"name": "gesture", "classes": GESTURES, "input": "accelerometer x, y, z in g, "
            f"{WINDOW} samples at {RATE_HZ:g} Hz", "input_shape": [1, WINDOW, 3, 1],
            "output": "softmax probability per class", "train_samples": len(y_train),
            "test_samples": len(y_test), "float_test_accuracy": round(float_acc, 4),
            "int8_test_accuracy_host_tflm": round(int8_acc, 4),
            "params": report["params"], "tflite_bytes": report["bytes_after"],
            "ops": [f"{o['name']} v{o['version']}" for o in report["ops"]],
            "quantization_error_on_calibration": report["error"]}


def make_sine(out_dir: Path) -> dict:
    import keras
    from nanoml.model.convert import run_tflm
    keras.utils.set_random_seed(4321)
    x, y = sine_data(2000, seed=3)
    m = sine_model()
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    m.fit(x, y, epochs=150, batch_size=64, verbose=0)
    xt = np.linspace(0, 2 * np.pi, 200, dtype=np.float32)[:, None]
    float_mae = float(np.abs(np.asarray(m(xt)) - np.sin(xt)).mean())

    out_dir.mkdir(parents=True, exist_ok=True)
    _save_plain(m, sine_model, out_dir / "sine.keras")
    grid = np.linspace(0, 2 * np.pi, 16, dtype=np.float32)[:, None]
    np.save(out_dir / "inputs.npy", grid)
    np.save(out_dir / "labels.npy", np.sin(grid))
    with tempfile.TemporaryDirectory() as td:
        calib = Path(td) / "calib.npy"
        np.save(calib, x[:100])
        report = _convert(out_dir / "sine.keras", out_dir / "sine_int8.tflite", calib)
    yq = run_tflm((out_dir / "sine_int8.tflite").read_bytes(), [xt])[0]
    int8_mae = float(np.abs(yq - np.sin(xt)).mean())
    return {"name": "sine", "input": "x in [0, 2*pi] (float, quantized by the model's input scale)",
            "input_shape": [1, 1], "output": "sin(x)", "train_samples": len(x),
            "float_mae_vs_sin": round(float_mae, 4), "int8_mae_vs_sin_host_tflm": round(int8_mae, 4),
            "params": report["params"], "tflite_bytes": report["bytes_after"],
            "ops": [f"{o['name']} v{o['version']}" for o in report["ops"]],
            "quantization_error_on_calibration": report["error"]}


def main() -> int:
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    for name, fn in (("gesture", make_gesture), ("sine", make_sine)):
        info = fn(HERE / name)
        info["tensorflow"] = tf.__version__
        (HERE / name / "info.json").write_text(json.dumps(info, indent=1) + "\n")
        print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
