"""Child process for `nanoml convert`: the only place nanoml imports TensorFlow.

Run as ``python -m nanoml.model._convert_worker REQUEST.json``. The request
(written by nanoml.model.convert.run_worker) names the source model, the
.tflite to write, the quantization mode and the calibration data. The worker
writes RESULT.json: ``{"ok": true, ...}`` or ``{"error": {"class", "message",
"hint", "exit_code"}}``, plus ``reference.npz`` (calibration inputs, the float
model's outputs, tf.lite.Interpreter's outputs) for the error measurement.

If TensorFlow's converter kills this process (it can segfault), the parent sees
the signal and reports it; nothing here needs to survive that.

Test hook: NANOML_TEST_CONVERTER_CRASH=SIGSEGV (or another signal name) makes
the worker kill itself with that signal just before calling the converter, so
the crash path can be tested on a machine where the converter does not crash.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import traceback
from pathlib import Path


class _Fail(Exception):
    def __init__(self, cls: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.info = {"class": cls, "message": message, "hint": hint}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # tf.function errors wrap the cause: "in user code: ... SomeError: what"
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception): ", ln):
            return ln.split(": ", 1)[1][:300]
    # converter errors put the useful part after "error:"
    for ln in lines:
        if "error:" in ln and "Traceback" not in ln:
            return ln[ln.index("error:") + 6:].strip()[:300]
    return (lines[0] if lines else type(e).__name__)[:300]


def _import_tf():
    try:
        import tensorflow as tf  # noqa: F401
    except ImportError as e:
        raise _Fail("ToolError", f"TensorFlow is not installed (import tensorflow: {e})",
                    "install the converter extra: pip install 'nanoml[convert]'") from None
    return tf


def _load(req: dict, tf):
    """(callable on a list of tensors -> list of tensors, [(name, shape, dtype)], params)."""
    src = req["source"]
    if req["kind"] == "keras":
        import keras
        try:
            model = keras.models.load_model(src, compile=False)
        except Exception as e:  # noqa: BLE001
            raise _Fail("InputError", f"cannot load Keras model {src}: {_first_line(e)}",
                        "check the file; models with custom layers need them registered "
                        "(export a SavedModel with model.export(...) instead)") from None
        ins = [(t.name, tuple(t.shape), str(getattr(t, "dtype", "float32")))
               for t in model.inputs]
        multi = len(model.inputs) > 1

        def call(xs):
            y = model(list(xs) if multi else xs[0], training=False)
            if isinstance(y, dict):
                return [y[k] for k in sorted(y)]
            return list(y) if isinstance(y, (list, tuple)) else [y]
        return call, ins, int(model.count_params())

    try:
        obj = tf.saved_model.load(src)
    except Exception as e:  # noqa: BLE001
        raise _Fail("InputError", f"cannot load SavedModel {src}: {_first_line(e)}", None) from None
    sigs = dict(getattr(obj, "signatures", {}) or {})
    if not sigs:
        raise _Fail("InputError", f"SavedModel {src} has no serving signature",
                    "save it with a signature (model.export(path) or tf.saved_model.save(..., signatures=...))")
    sig = sigs.get("serving_default") or sigs[sorted(sigs)[0]]
    specs = sig.structured_input_signature[1]
    names = sorted(specs)
    ins = [(n, tuple(specs[n].shape), specs[n].dtype.name) for n in names]

    def call(xs):
        y = sig(**dict(zip(names, xs)))
        return [y[k] for k in sorted(y)] if isinstance(y, dict) else [y]
    call.keep_alive = obj   # the signature only holds weak references to the variables
    params = sum(int(v.shape.num_elements() or 0) for v in getattr(obj, "variables", []))
    return call, ins, params


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[1]).read_text())
    res_path = Path(req["result"])
    try:
        result = _run(req)
        res_path.write_text(json.dumps(result))
        return 0
    except _Fail as f:
        res_path.write_text(json.dumps({"error": f.info}))
        return 3
    except Exception as e:  # NanomlError from calibration checks, or the unexpected
        from nanoml.errors import NanomlError
        if isinstance(e, OSError) and e.filename and str(e.filename).startswith(req["workdir"]):
            from nanoml.atomic import os_error   # the temp folder's disk is full or read-only
            e = os_error(e, e.filename)
        if isinstance(e, NanomlError):
            info = {"class": type(e).__name__, "message": e.message, "hint": e.hint,
                    "exit_code": e.exit_code}
        else:
            traceback.print_exc()
            info = {"class": "ToolError",
                    "message": f"the TensorFlow converter failed converting "
                               f"{Path(req['source']).name} to {req['quantize']}: {_first_line(e)}",
                    "hint": _hint_for(e, req["quantize"])}
        res_path.write_text(json.dumps({"error": info}))
        return 3


def _hint_for(e: BaseException, quantize: str) -> str:
    text = str(e)
    if "SELECT_TF_OPS" in text or "Select TF" in text or "tensor list" in text.lower():
        return ("the model uses TensorFlow ops with no TFLite builtin (TFLite Micro has no Select TF "
                "ops): replace those layers, or unroll recurrent layers (unroll=True)")
    if quantize == "int8":
        return "try --quantize float16/none to see whether quantization is the cause; --debug shows the log"
    return "re-run with --debug to see the converter's output"


def _run(req: dict) -> dict:
    import numpy as np
    from nanoml.model.convert import InputSpec, load_calibration

    tf = _import_tf()
    call, ins, params = _load(req, tf)

    specs = [InputSpec(name=n.split(":")[0], shape=tuple(shape[1:]), dtype=dt)
             for n, shape, dt in ins]
    samples = None
    if req.get("calib"):
        samples = load_calibration(req["calib"], specs, req["samples"])
    fixed = []
    for k, s in enumerate(specs):
        shape = list(s.shape)
        if any(d is None for d in shape):
            if samples is None:
                raise _Fail("UsageError",
                            f"model input '{s.name}' has unknown dimensions {s.shape_str()}",
                            "pass --calib with samples; their shape fixes the unknown dimensions")
            shape = list(samples[k].shape[1:])
        fixed.append(shape)

    tspecs = [tf.TensorSpec([1] + shape, tf.as_dtype(dt if dt else "float32"), name=s.name)
              for shape, s, (_, _, dt) in zip(fixed, specs, ins)]

    @tf.function(input_signature=tspecs)
    def fn(*xs):
        return call(xs)

    concrete = fn.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    q = req["quantize"]
    if q == "int8":
        def rep():
            for i in range(len(samples[0])):
                yield [a[i:i + 1] for a in samples]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif q == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]

    crash = os.environ.get("NANOML_TEST_CONVERTER_CRASH")
    if crash:
        sys.stdout.flush()
        os.kill(os.getpid(), getattr(signal, crash))
    data = conv.convert()
    Path(req["output"]).write_bytes(data)

    out = {"ok": True, "tensorflow": tf.__version__, "params": params,
           "n_inputs": len(specs), "n_outputs": 0, "samples": 0}
    if samples is not None:
        ref: list[list] = []
        for i in range(len(samples[0])):
            ys = fn(*[tf.constant(a[i:i + 1]) for a in samples])
            for j, y in enumerate(ys):
                if len(ref) <= j:
                    ref.append([])
                ref[j].append(np.asarray(y)[0])
        arrays = {f"in{k}": a for k, a in enumerate(samples)}
        arrays.update({f"float{j}": np.stack(r) for j, r in enumerate(ref)})
        arrays.update(_tflite_outputs(tf, data, samples))
        np.savez(Path(req["workdir"]) / "reference.npz", **arrays)
        out.update(n_outputs=len(ref), samples=len(samples[0]))
    return out


def _tflite_outputs(tf, data: bytes, samples: list) -> dict:
    """The converted model's outputs from tf.lite.Interpreter (fallback when host
    TFLite Micro refuses the model, e.g. float16 weights)."""
    import numpy as np

    from nanoml.model.quant import dequantize, quantize
    try:
        it = tf.lite.Interpreter(model_content=data)
        it.allocate_tensors()
        ind, outd = it.get_input_details(), it.get_output_details()
        res: list[list] = [[] for _ in outd]
        for i in range(len(samples[0])):
            for k, d in enumerate(ind):
                x = samples[k][i:i + 1]
                if d["dtype"] in (np.int8, np.int16, np.uint8):
                    x = quantize(x, d["dtype"], *d["quantization"])
                it.set_tensor(d["index"], x.astype(d["dtype"]).reshape(d["shape"]))
            it.invoke()
            for j, d in enumerate(outd):
                y = it.get_tensor(d["index"])
                if d["dtype"] in (np.int8, np.int16, np.uint8):
                    y = dequantize(y, *d["quantization"])
                res[j].append(np.asarray(y, np.float32)[0])
        return {f"tfl{j}": np.stack(r) for j, r in enumerate(res)}
    except Exception:  # noqa: BLE001 - only a fallback
        return {}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
