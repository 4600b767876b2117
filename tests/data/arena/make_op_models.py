"""Generates the single-op models (models/op_*.tflite, float and int8) used by
the arena tests: python tests/data/arena/make_op_models.py [name...]."""
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

OUT = Path(__file__).parent / "models"
L = tf.keras.layers
def conv(fn, shapes, name, quant):
    specs = [tf.TensorSpec((1,) + s, tf.float32) for s in shapes]
    f = tf.function(fn).get_concrete_function(*specs)
    c = tf.lite.TFLiteConverter.from_concrete_functions([f], None)
    if quant:
        rng = np.random.default_rng(0)
        def rep():
            for _ in range(10):
                yield [rng.standard_normal((1,) + s).astype(np.float32) for s in shapes]
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = rep
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    try:
        data = c.convert()
    except Exception as e:
        print("FAIL", name, quant, str(e)[:100]); return
    (OUT / f"op_{name}_{'int8' if quant else 'float'}.tflite").write_bytes(data)
w = tf.constant(np.random.default_rng(1).standard_normal((3, 3, 4, 8)).astype(np.float32))
Z = {
 "sub": (lambda a, b: a - b, [(6, 6, 4), (6, 6, 4)]),
 "sub_bcast": (lambda a: a - tf.constant(np.arange(4, dtype=np.float32)), [(6, 6, 4)]),
 "mul": (lambda a, b: a * b, [(6, 6, 4), (6, 6, 4)]),
 "add_bcast": (lambda a: a + tf.constant(np.arange(4, dtype=np.float32)), [(6, 6, 4)]),
 "leaky": (lambda a: tf.nn.leaky_relu(a, 0.2), [(8, 8, 3)]),
 "hardswish": (lambda a: a * tf.nn.relu6(a + 3) / 6, [(8, 8, 3)]),
 "relu": (lambda a: tf.nn.relu(a) + 0.0, [(8, 8, 3)]),
 "relu6": (lambda a: tf.nn.relu6(a), [(8, 8, 3)]),
 "tanh": (lambda a: tf.tanh(a), [(10,)]),
 "logistic": (lambda a: tf.sigmoid(a), [(10,)]),
 "squeeze": (lambda a: tf.squeeze(a, axis=1) * 2.0, [(1, 8, 3)]),
 "expand": (lambda a: tf.expand_dims(a, 1) * 2.0, [(8, 3)]),
 "strided": (lambda a: a[:, 1:5:2, :, :] * 2.0, [(8, 8, 3)]),
 "split": (lambda a: tf.split(a, 2, axis=3)[0] * tf.split(a, 2, axis=3)[1], [(4, 4, 6)]),
 "splitv": (lambda a: tf.split(a, [2, 4], axis=3)[1] * 2.0, [(4, 4, 6)]),
 "pack": (lambda a, b: tf.stack([a, b], axis=1), [(5,), (5,)]),
 "unpack": (lambda a: tf.unstack(a, axis=1)[0] * 2.0, [(3, 5)]),
 "transpose": (lambda a: tf.transpose(a, [0, 2, 1, 3]) * 2.0, [(4, 6, 3)]),
 "tconv": (lambda a: tf.nn.conv2d_transpose(a, w, (1, 10, 10, 4), 2, padding="SAME"), [(5, 5, 8)]),
 "resize_nn": (lambda a: tf.image.resize(a, (8, 8), method="nearest"), [(4, 4, 3)]),
 "resize_bl": (lambda a: tf.image.resize(a, (8, 8), method="bilinear"), [(4, 4, 3)]),
 "maximum": (lambda a, b: tf.maximum(a, b), [(6, 3), (6, 3)]),
 "minimum": (lambda a: tf.minimum(a, 0.5), [(6, 3)]),
 "pad": (lambda a: tf.pad(a, [[0, 0], [1, 2], [2, 1], [0, 0]]), [(5, 5, 3)]),
 "padv2": (lambda a: tf.pad(a, [[0, 0], [1, 2], [2, 1], [0, 0]], constant_values=0.5), [(5, 5, 3)]),
 "mean": (lambda a: tf.reduce_mean(a, axis=[1, 2]), [(6, 6, 5)]),
 "mean_keep": (lambda a: tf.reduce_mean(a, axis=[1, 2], keepdims=True), [(6, 6, 5)]),
 "sum": (lambda a: tf.reduce_sum(a, axis=[2]), [(6, 6, 5)]),
 "reduce_max": (lambda a: tf.reduce_max(a, axis=[1]), [(6, 6, 5)]),
 "concat": (lambda a, b: tf.concat([a, b * 2.0], axis=3), [(4, 4, 3), (4, 4, 5)]),
 "softmax": (lambda a: tf.nn.softmax(a), [(10,)]),
 "l2norm": (lambda a: tf.math.l2_normalize(a, axis=-1), [(4, 8)]),
 "prelu": (lambda a: tf.keras.layers.PReLU(alpha_initializer=tf.constant_initializer(0.1))(a), [(4, 4, 3)]),
 "gather": (lambda a: tf.gather(a, [0, 2, 3], axis=1), [(6, 4)]),
 "s2d": (lambda a: tf.nn.space_to_depth(a, 2), [(4, 4, 3)]),
 "d2s": (lambda a: tf.nn.depth_to_space(a, 2), [(4, 4, 8)]),
 "elu": (lambda a: tf.nn.elu(a), [(10,)]),
 "exp": (lambda a: tf.exp(a), [(10,)]),
 "abs": (lambda a: tf.abs(a), [(10,)]),
 "sqrt": (lambda a: tf.sqrt(tf.abs(a)), [(10,)]),
 "rsqrt": (lambda a: tf.math.rsqrt(tf.abs(a) + 1.0), [(10,)]),
 "square": (lambda a: tf.square(a), [(10,)]),
 "neg": (lambda a: -a, [(10,)]),
 "div": (lambda a, b: a / (tf.abs(b) + 1.0), [(10,), (10,)]),
 "floor": (lambda a: tf.floor(a), [(10,)]),
 "sqdiff": (lambda a, b: tf.math.squared_difference(a, b), [(10,), (10,)]),
 "logsoftmax": (lambda a: tf.nn.log_softmax(a), [(10,)]),
 "argmax": (lambda a: tf.argmax(a, axis=1), [(10,)]),
 "slice": (lambda a: tf.slice(a, [0, 1, 0], [1, 3, 2]) * 2.0, [(5, 4)]),
 "batchmatmul_fc": (lambda a: tf.matmul(a, tf.constant(np.ones((8, 3), np.float32))), [(8,)]),
 "dwconv_mult": (lambda a: tf.nn.depthwise_conv2d(a, tf.constant(np.ones((3, 3, 4, 2), np.float32)), [1, 1, 1, 1], "SAME"), [(6, 6, 4)]),
 "conv_dil": (lambda a: tf.nn.conv2d(a, tf.constant(np.ones((3, 3, 4, 5), np.float32)), 1, "SAME", dilations=2), [(9, 9, 4)]),
 "conv_1x1": (lambda a: tf.nn.conv2d(a, tf.constant(np.ones((1, 1, 4, 5), np.float32)), 1, "VALID"), [(9, 9, 4)]),
 "conv_1xn": (lambda a: tf.nn.conv2d(a, tf.constant(np.ones((1, 3, 4, 5), np.float32)), 1, "VALID"), [(1, 10, 4)]),
 "fc_3d": (lambda a: tf.keras.layers.Dense(6)(a), [(5, 8)]),
 "avgpool_f": (lambda a: tf.nn.avg_pool2d(a, 3, 2, "SAME"), [(9, 9, 5)]),
 "maxpool": (lambda a: tf.nn.max_pool2d(a, 2, 2, "VALID"), [(9, 9, 5)]),
 "cast": (lambda a: tf.cast(tf.cast(a, tf.int32), tf.float32), [(10,)]),
 "select": (lambda a, b: tf.where(a > b, a, b * 2.0), [(10,), (10,)]),
 "equal_sel": (lambda a, b: tf.where(tf.equal(a, b), a, b), [(6,), (6,)]),
 "floordiv": (lambda a, b: tf.math.floordiv(a, tf.abs(b) + 1.0), [(6,), (6,)]),
 "sin": (lambda a: tf.sin(a), [(6,)]),
 "log": (lambda a: tf.math.log(tf.abs(a) + 1.0), [(6,)]),
 "round": (lambda a: tf.round(a), [(6,)]),
 "ceil": (lambda a: tf.math.ceil(a), [(6,)]),
 "s2b": (lambda a: tf.space_to_batch_nd(a, [2, 2], [[0, 0], [0, 0]]), [(4, 4, 3)]),
 "l2pool": (lambda a: tf.sqrt(tf.nn.avg_pool2d(a * a, 2, 2, "VALID")), [(4, 4, 3)]),
 "mirror": (lambda a: tf.pad(a, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT"), [(5, 5, 3)]),
 "cumsum": (lambda a: tf.cumsum(a, axis=1), [(6,)]),
 "gathernd": (lambda a: tf.gather_nd(a, [[0, 1], [0, 3]]), [(6,)]),
 "addn": (lambda a, b: tf.add_n([a, b, a]), [(6,), (6,)]),
 "selectv2": (lambda a, b: tf.raw_ops.SelectV2(condition=a > b, t=a, e=tf.constant([[0.5]] * 3)), [(10,), (3, 10)]),
 "cumsum8": (lambda a: tf.cumsum(tf.nn.relu(a), axis=1), [(6,)]),
 "b2s": (lambda a: tf.batch_to_space(tf.reshape(a, (4, 2, 2, 3)), [2, 2], [[0, 0], [0, 0]]), [(4, 4, 3)]),
 "bcast_to": (lambda a: tf.broadcast_to(a, (3, 6)) * 2.0, [(6,)]),
 "logical": (lambda a, b: tf.cast(tf.logical_and(a > 0, tf.logical_not(b > 0)), tf.float32), [(6,), (6,)]),
 "argmin32": (lambda a: tf.cast(tf.argmin(a, axis=1, output_type=tf.int32), tf.float32), [(10,)]),
 "argmax32": (lambda a: tf.cast(tf.argmax(a, axis=1, output_type=tf.int32), tf.float32), [(10,)]),
 "prelu2": (lambda a: tf.maximum(a, 0.0) + tf.constant(np.full((4, 4, 3), 0.1, np.float32)) * tf.minimum(a, 0.0), [(4, 4, 3)]),
 "hswish2": (lambda a: a * tf.nn.relu6(a + 3.0) * (1.0 / 6.0), [(4, 4, 3)]),
 "zeroslike_add": (lambda a: a + tf.zeros_like(a), [(10,)]),
}
names = sys.argv[1:] or list(Z)
for n in names:
    fn, shapes = Z[n]
    for q in (False, True):
        try:
            conv(fn, shapes, n, q)
        except Exception as e:
            print("FAIL", n, q, str(e)[:150])
