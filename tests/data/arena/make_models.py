"""Generates the small .tflite models in models/ (run with TensorFlow installed:
python tests/data/arena/make_models.py). Their arena figures in measured.json
were measured on the Cortex-M4 build (see docs/arena.md), not computed here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

L = tf.keras.layers
OUT = Path(__file__).parent / "models"


def convert(model, name, quant, shape, int_io=True):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant:
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(20):
                yield [rng.standard_normal((1, *shape)).astype(np.float32)]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        if quant == "int16":
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            if int_io:
                conv.inference_input_type = tf.int16
                conv.inference_output_type = tf.int16
        else:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int_io:
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
    data = conv.convert()
    (OUT / f"{name}.tflite").write_bytes(data)
    print(name, len(data))


def cnn(shape=(32, 32, 3)):
    i = L.Input(shape, batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(i)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(16, 3, strides=2, padding="valid", activation="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(10)(x)
    x = L.Softmax()(x)
    return tf.keras.Model(i, x), shape


def residual(shape=(24, 24, 4)):
    i = L.Input(shape, batch_size=1)
    x = L.Conv2D(12, 3, padding="same", activation="relu")(i)
    y = L.Conv2D(12, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    x = L.Add()([x, y])
    x = L.ReLU()(x)
    y = L.DepthwiseConv2D(3, padding="same")(x)
    y = L.Conv2D(12, 1)(y)
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(5)(x)
    return tf.keras.Model(i, x), shape


def dense(shape=(40,)):
    i = L.Input(shape, batch_size=1)
    x = L.Dense(64, activation="relu")(i)
    x = L.Dense(32, activation="relu")(x)
    x = L.Dense(16, activation="tanh")(x)
    x = L.Dense(3, activation="sigmoid")(x)
    return tf.keras.Model(i, x), shape


def mobile(shape=(48, 48, 1)):
    i = L.Input(shape, batch_size=1)
    x = L.Conv2D(8, 3, strides=2, padding="same")(i)
    x = L.ReLU(6.0)(x)
    for ch, st in ((16, 1), (24, 2), (24, 1), (32, 2)):
        x = L.DepthwiseConv2D(3, strides=st, padding="same")(x)
        x = L.ReLU(6.0)(x)
        x = L.Conv2D(ch, 1)(x)
        x = L.ReLU(6.0)(x)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(4, activation="softmax")(x)
    return tf.keras.Model(i, x), shape


def conv1d(shape=(64, 6)):
    i = L.Input(shape, batch_size=1)
    x = L.Conv1D(16, 5, padding="same", activation="relu")(i)
    x = L.MaxPooling1D(2)(x)
    x = L.Conv1D(16, 3, activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(6, activation="softmax")(x)
    return tf.keras.Model(i, x), shape


def branches(shape=(20, 20, 3)):
    i = L.Input(shape, batch_size=1)
    a = L.Conv2D(6, 3, padding="same", activation="relu")(i)
    b = L.Conv2D(4, 5, padding="same", dilation_rate=2, activation="relu")(i)
    c = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(i)
    x = L.Concatenate()([a, b, c])
    x = L.Conv2D(8, 3, strides=2, activation="relu")(x)
    y = L.Conv2D(8, 1)(x)
    x = L.Multiply()([x, y])
    x = L.Subtract()([x, y])
    x = L.LeakyReLU(0.1)(x)
    x = L.Flatten()(x)
    x = L.Dense(7)(x)
    return tf.keras.Model(i, x), shape


def random_cnn(seed: int):
    """A random small CNN: conv/depthwise/pool blocks, optional residual ADDs,
    global pooling or flatten, dense head."""
    rng = np.random.default_rng(seed)
    h = int(rng.choice([16, 20, 28, 32, 40]))
    shape = (h, h, int(rng.choice([1, 3, 4])))
    i = L.Input(shape, batch_size=1)
    x = L.Conv2D(int(rng.choice([4, 8, 12])), int(rng.choice([3, 5])), strides=int(rng.choice([1, 2])),
                 padding=str(rng.choice(["same", "valid"])), activation="relu")(i)
    for _ in range(int(rng.integers(2, 5))):
        kind = rng.integers(0, 4)
        ch = x.shape[-1]
        if kind == 0:
            y = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
            y = L.Conv2D(ch, 1)(y)
            x = L.Add()([x, y])
        elif kind == 1:
            x = L.Conv2D(int(ch * rng.choice([1, 2])), 3, padding=str(rng.choice(["same", "valid"])),
                         activation=str(rng.choice(["relu", "relu6"])))(x)
        elif kind == 2 and x.shape[1] >= 4:
            x = (L.MaxPooling2D if rng.integers(0, 2) else L.AveragePooling2D)(2)(x)
        else:
            x = L.DepthwiseConv2D(3, strides=int(rng.choice([1, 2])), padding="same",
                                  depth_multiplier=int(rng.choice([1, 2])))(x)
            x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x) if rng.integers(0, 2) else L.Flatten()(x)
    x = L.Dense(int(rng.choice([8, 16, 32])), activation="relu")(x)
    x = L.Dense(int(rng.choice([2, 5, 10])))(x)
    return tf.keras.Model(i, x), shape


def random_cnn2(seed: int):
    """Wider variety: bias-free convs, separable convs, zero padding, batch norm,
    larger inputs, dense without bias, two outputs."""
    rng = np.random.default_rng(100 + seed)
    h = int(rng.choice([32, 48, 64, 96]))
    shape = (h, h, int(rng.choice([1, 3])))
    i = L.Input(shape, batch_size=1)
    x = L.ZeroPadding2D(1)(i) if rng.integers(0, 2) else i
    x = L.Conv2D(int(rng.choice([8, 16])), 3, strides=2, use_bias=bool(rng.integers(0, 2)))(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    for _ in range(int(rng.integers(2, 6))):
        kind = rng.integers(0, 5)
        ch = x.shape[-1]
        if kind == 0:
            x = L.SeparableConv2D(int(ch * rng.choice([1, 2])), 3, padding="same",
                                  activation="relu")(x)
        elif kind == 1 and x.shape[1] >= 6:
            x = L.Conv2D(ch, 3, strides=2, padding="same", activation="relu")(x)
        elif kind == 2:
            y = L.Conv2D(ch, 3, padding="same", use_bias=False)(x)
            y = L.BatchNormalization()(y)
            x = L.ReLU()(L.Add()([x, y]))
        elif kind == 3 and x.shape[1] >= 4:
            x = L.MaxPooling2D(int(rng.choice([2, 3])), strides=2, padding="same")(x)
        else:
            x = L.DepthwiseConv2D(int(rng.choice([3, 5])), padding="same", activation="relu")(x)
    f = L.GlobalAveragePooling2D()(x)
    a = L.Dense(int(rng.choice([4, 10])), use_bias=bool(rng.integers(0, 2)))(f)
    b = L.Dense(1, activation="sigmoid")(L.Dropout(0.2)(f))
    return tf.keras.Model(i, [a, b]), shape


BUILDERS = {"cnn": cnn, "residual": residual, "dense": dense, "mobile": mobile,
            "conv1d": conv1d, "branches": branches,
            **{f"rand{k}": (lambda k=k: random_cnn(k)) for k in range(1, 9)},
            **{f"wide{k}": (lambda k=k: random_cnn2(k)) for k in range(1, 9)}}

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    tf.keras.utils.set_random_seed(1)
    args = sys.argv[1:]
    int16 = "--int16" in args
    names = [a for a in args if not a.startswith("--")] or list(BUILDERS)
    for n in names:
        model, shape = BUILDERS[n]()
        if int16:
            convert(model, f"{n}_int16", "int16", shape)
            continue
        convert(model, f"{n}_float", False, shape)
        convert(model, f"{n}_int8", True, shape)
        convert(model, f"{n}_int8_floatio", True, shape, int_io=False)
