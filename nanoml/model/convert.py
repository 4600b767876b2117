"""`convert`: Keras / SavedModel -> .tflite for TFLite Micro, with a report.

TensorFlow runs only in a child process (`nanoml.model._convert_worker`): its
converter can crash the interpreter (TensorFlow 2.21 segfaults converting a Keras
LSTM to int8), and nanoml must then say so in one line instead of dying. This
module never imports TensorFlow; it needs numpy, and tflite_micro to measure the
quantization error with the same kernels the board runs.

JSON schema of ConvertReport.to_json(): docs/convert.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import errors, progress
from ..atomic import check_output_file, os_error, write_atomic
from ..errors import InputError, NanomlError, ToolError, UsageError
from .quant import dequantize, quantize

QUANTIZE_MODES = ("int8", "float16", "none")
DEFAULT_SAMPLES = 100
# ops a Keras graph with an unknown batch dimension turns into (Flatten -> SHAPE/...)
DYNAMIC_SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK")
INSTALL_HINT = "install the converter extra: pip install 'nanoml[convert]'"
_HOST_ARENA_BYTES = 4 * 1024 * 1024
WORKER_TIMEOUT_S = 1800


# ---------------------------------------------------------------- inputs

@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | None, ...]     # without the batch dimension; None = unknown
    dtype: str = "float32"

    def shape_str(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


def source_kind(src: Path) -> str:
    """'keras' (.keras/.h5/.hdf5) or 'saved_model' (directory); InputError otherwise."""
    if not src.exists():
        raise InputError(f"{src} does not exist",
                         "pass a Keras model (.keras, .h5) or a SavedModel directory")
    if src.is_dir():
        if (src / "saved_model.pb").exists() or (src / "saved_model.pbtxt").exists():
            return "saved_model"
        raise InputError(f"{src} is a directory without saved_model.pb",
                         "pass a SavedModel directory (tf.saved_model.save / model.export) "
                         "or a Keras file (.keras, .h5)")
    if src.suffix.lower() in (".keras", ".h5", ".hdf5"):
        return "keras"
    if src.suffix.lower() == ".tflite":
        raise InputError(f"{src} is already a .tflite model",
                         f"use `nanoml inspect {src}` to check it; convert takes Keras or SavedModel")
    raise InputError(f"{src}: unknown model format '{src.suffix}'",
                     "pass a Keras model (.keras, .h5) or a SavedModel directory")


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


_CALIB_HINT = "save samples with numpy.save(path, array) or numpy.savez(path, input_name=array)"


def _calibration_sources(path: Path) -> tuple[str, list[tuple[str, object]]]:
    """("dir" | "npz" | "npy", [(name, array)]) of --calib: a directory of .npy files
    (file names), an .npz (member names) or a .npy. Every file is read through
    nanoml.arrays: regular files only, each header checked against the file size
    (a 193-byte header cannot ask for 70 TiB), all together bounded."""
    from ..arrays import MAX_ARRAY_BYTES, read_npy, read_npz
    if not path.exists():
        raise InputError(f"calibration data {path} does not exist",
                         "pass --calib FILE.npy|FILE.npz|DIR of .npy files")
    if path.is_dir():
        files = sorted(f for f in path.glob("*.npy") if f.is_file())
        if not files:
            raise InputError(f"calibration directory {path} has no .npy files",
                             "put one .npy per sample (or per batch of samples) in it")
        out, left = [], MAX_ARRAY_BYTES
        for f in files:
            a = read_npy(f, max_bytes=left, hint=_CALIB_HINT)
            left -= a.nbytes
            out.append((f.name, a))
        return "dir", out
    if path.suffix.lower() == ".npz":
        return "npz", list(read_npz(path, hint=_CALIB_HINT).items())
    if path.suffix.lower() == ".npy":
        return "npy", [(path.name, read_npy(path, hint=_CALIB_HINT))]
    raise InputError(f"calibration data {path}: expected .npy, .npz or a directory",
                     "save samples with numpy.save(path, array) shaped [N, ...input shape]")


def _check_samples(where: str, a, finite: bool = True) -> None:
    """Refuse calibration samples int8 quantization cannot use: none at all, not
    real numbers, NaN or infinity."""
    import numpy as np
    if a.dtype.kind not in "fiub":
        raise InputError(f"calibration data {where} has dtype {a.dtype}; numbers expected",
                         "save float samples, e.g. numpy.save(path, x.astype('float32'))")
    if a.size == 0:
        raise InputError(f"calibration data {where} is empty (shape {_fmt_shape(a.shape)}): "
                         "int8 quantization needs samples",
                         "save at least one sample shaped like the model input")
    if finite and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise InputError(f"calibration data {where} contains NaN or infinity",
                         "clean the samples before converting")


def check_calibration(path: str | Path, samples: int = DEFAULT_SAMPLES) -> None:
    """What can be checked in --calib without the model, before TensorFlow starts:
    readable files, sane headers, numbers, not empty, finite (the `samples` used)."""
    path = Path(path)
    kind, arrays = _calibration_sources(path)
    if not arrays:
        raise InputError(f"calibration file {path} holds no arrays",
                         "int8 quantization needs samples; " + _CALIB_HINT)
    for name, a in arrays:
        _check_samples(f"{path}" + (f" ({name})" if kind != "npy" else ""),
                       a[:samples] if a.ndim else a)


def _read_calibration_arrays(path: Path, inputs: list[InputSpec]) -> list:
    """One array per model input, as found in `path` (no shape check yet)."""
    import numpy as np
    names = [i.name for i in inputs]
    kind, found = _calibration_sources(path)
    if kind == "dir":
        if len(inputs) != 1:
            raise InputError(f"a directory of .npy files feeds one input, the model has {len(inputs)}",
                             f"pass an .npz with one array per input: {', '.join(names)}")
        parts = [a[None] if a.ndim == len(inputs[0].shape) else a for _, a in found]
        try:
            return [np.concatenate(parts, axis=0)]
        except ValueError:
            shapes = sorted({_fmt_shape(p.shape[1:]) for p in parts})
            raise InputError(f"the .npy files in {path} have different shapes: {', '.join(shapes)}",
                             f"every file must hold samples shaped {inputs[0].shape_str()}") from None
    if kind == "npz":
        arrays = dict(found)
        keys = list(arrays)
        if not keys:
            raise InputError(f"calibration file {path} holds no arrays", None)
        if all(n in arrays for n in names):
            return [arrays[n] for n in names]
        if len(inputs) == 1:
            return [arrays[keys[0]]]
        if len(keys) == len(inputs):
            return [arrays[k] for k in keys]
        raise InputError(f"{path} has arrays {', '.join(keys)}; the model has {len(inputs)} inputs",
                         f"name the arrays after the inputs: {', '.join(names)}")
    if len(inputs) != 1:
        raise InputError(f"a .npy file feeds one input, the model has {len(inputs)}",
                         f"pass an .npz with one array per input: {', '.join(names)}")
    return [found[0][1]]


def load_calibration(path: str | Path, inputs: list[InputSpec],
                     samples: int = DEFAULT_SAMPLES) -> list:
    """Calibration samples per model input: float32 arrays [n, *input shape].

    `inputs` give each input's shape without the batch dimension (None = any size,
    taken from the data). A single sample without a leading N is accepted.
    """
    import numpy as np
    if samples < 1:
        raise UsageError(f"--samples must be at least 1 (got {samples})", None)
    path = Path(path)
    arrays = _read_calibration_arrays(path, inputs)
    out = []
    for spec, a in zip(inputs, arrays):
        _check_samples(f"for '{spec.name}'", a, finite=False)
        if a.ndim == len(spec.shape) and _shape_matches(a.shape, spec.shape):
            a = a[None]
        if a.ndim != len(spec.shape) + 1 or not _shape_matches(a.shape[1:], spec.shape):
            raise InputError(
                f"calibration data shape {_fmt_shape(a.shape)} does not match model input "
                f"'{spec.name}' {spec.shape_str()} (batch dimension dropped)",
                f"pass samples shaped [N, {spec.shape_str()[1:-1]}] (numpy.save of an array)")
        a = np.ascontiguousarray(a[:samples], dtype=np.float32)
        _check_samples(f"for '{spec.name}'", a)
        out.append(a)
    n = {len(a) for a in out}
    if len(n) > 1:
        raise InputError(f"calibration arrays hold different sample counts: {sorted(n)}",
                         "give every input the same number of samples")
    return out


def _shape_matches(actual, expected) -> bool:
    return len(actual) == len(expected) and all(
        e is None or a == e for a, e in zip(actual, expected))


# ---------------------------------------------------------------- report

@dataclass
class ConvertReport:
    source: str
    output: str
    quantize: str
    runtime_id: str
    bytes_before: int               # Keras file / SavedModel directory size
    bytes_after: int                # .tflite size
    params: int | None              # trainable + non-trainable parameters
    float_param_bytes: int | None   # params x 4 (float32 weights)
    inputs: list[dict]
    outputs: list[dict]
    ops: list[dict]
    unsupported: list[str]
    error: dict | None
    problems: list[dict] = field(default_factory=list)
    tensorflow: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if any(p["level"] == "error" for p in self.problems) else 0

    def to_json(self) -> dict:
        return {"source": self.source, "output": self.output, "quantize": self.quantize,
                "runtime": self.runtime_id, "tensorflow": self.tensorflow,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "params": self.params, "float_param_bytes": self.float_param_bytes,
                "inputs": self.inputs, "outputs": self.outputs,
                "ops": self.ops, "unsupported": self.unsupported, "error": self.error,
                "problems": self.problems, "exit_code": self.exit_code}


def _path_bytes(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def check_converted(model, quantize: str, runtime, board=None) -> tuple[list[dict], list[str], list[dict]]:
    """(ops, unsupported, problems) of a converted model: the verdict every command
    shares (nanoml.model.verdict; fit only with a board), plus what conversion can say."""
    from .verdict import assess, judge, op_table
    if board is not None:
        a = assess(model, board, runtime, check_library=False)   # convert runs TFLM itself
        ops, bad, verdict = a.ops, a.unsupported, a.verdict
    else:
        table = op_table(model, runtime)
        ops, bad = table[0], table[1]
        verdict = judge(model, runtime, ops=table, check_library=False)
    problems = verdict.to_json()
    present = {o.op for o in model.operators}
    dyn = [n for n in DYNAMIC_SHAPE_OPS if n in present]
    if "SHAPE" in present:
        problems.append({"level": "warning", "code": "shape_ops", "op": None, "subgraph": None,
                         "message": f"the graph computes shapes at run time ({', '.join(dyn)}): "
                                    "a dimension was left unknown"})
    for t in model.input_tensors + model.output_tensors:
        if t.shape_signature and any(d < 0 for d in t.shape_signature):
            problems.append({"level": "warning", "code": "dynamic_shape", "op": None,
                             "subgraph": 0,
                             "message": f"tensor '{t.name}' has a dynamic shape {t.shape_signature}"})
    if quantize == "int8":
        for kind, ts in (("input", model.input_tensors), ("output", model.output_tensors)):
            for t in ts:
                if t.dtype != "int8":
                    problems.append({"level": "warning", "code": "io_not_int8", "op": None,
                                     "subgraph": 0,
                                     "message": f"{kind} '{t.name}' is {t.dtype}, not int8"})
    return ops, bad, problems


# ---------------------------------------------------------------- error measurement

def run_tflm(model_bytes: bytes, inputs: list, model=None) -> list:
    """Run the converted model in host TFLite Micro, sample by sample.

    `inputs`: float arrays [n, ...] per model input. Returns float arrays [n, ...]
    per output (quantized inputs/outputs are (de)quantized with the tensor's
    scale and zero point). The interpreter runs in a worker process
    (nanoml.sim.isolated): a crash or hang there raises HostInterpreterError."""
    import numpy as np
    from ..sim.isolated import HostInterpreter
    from .tflite import load_bytes
    model = model or load_bytes(model_bytes)
    n = len(inputs[0])
    outs: list[list] = [[] for _ in model.output_tensors]
    with HostInterpreter(model_bytes, _HOST_ARENA_BYTES, len(model.input_tensors),
                         len(model.output_tensors)) as interp:
        for s in range(n):
            ys, _ = interp.run([_to_tensor(inputs[i][s:s + 1], t).reshape(t.shape)
                                for i, t in enumerate(model.input_tensors)])
            for j, t in enumerate(model.output_tensors):
                y = np.asarray(ys[j])
                outs[j].append(_from_tensor(y, t)[0] if y.shape and y.shape[0] == 1 else _from_tensor(y, t))
    return [np.stack(o) for o in outs]


def _to_tensor(x, t):
    if t.dtype in ("int8", "int16", "uint8") and t.quant:
        return quantize(x, t.dtype, t.quant.scale[0], t.quant.zero_point[0])
    return x.astype(t.dtype)


def _from_tensor(y, t):
    import numpy as np
    if t.dtype in ("int8", "int16", "uint8") and t.quant:
        return dequantize(y, t.quant.scale[0], t.quant.zero_point[0])
    return y.astype(np.float32)


def error_stats(ref: list, got: list) -> dict:
    import numpy as np
    diffs = [np.abs(np.asarray(r, np.float64).reshape(len(r), -1)
                    - np.asarray(g, np.float64).reshape(len(g), -1)) for r, g in zip(ref, got)]
    d = np.concatenate([x.ravel() for x in diffs])
    scale = max(float(np.max(np.abs(np.concatenate([np.ravel(r) for r in ref])))), 1e-12)
    return {"max_abs": float(d.max()), "rmse": float(np.sqrt(np.mean(d ** 2))),
            "samples": int(len(ref[0])), "output_max_abs": scale}


# ---------------------------------------------------------------- driver

def _worker_error(info: dict) -> NanomlError:
    cls = getattr(errors, info.get("class", "ToolError"), ToolError)
    if not (isinstance(cls, type) and issubclass(cls, NanomlError)):
        cls = ToolError
    return cls(info.get("message", "conversion failed"), info.get("hint"),
               info.get("exit_code"))


def _tail(path: Path, n: int = 1) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def run_worker(request: dict, workdir: Path, timeout: int = WORKER_TIMEOUT_S,
               show_log: bool = False) -> dict:
    """Run the TensorFlow side in a child process; return its result dict.

    Raises ToolError when the child dies (signal, timeout, no result) and the
    NanomlError the child reported otherwise."""
    req = workdir / "request.json"
    res = workdir / "result.json"
    log = workdir / "worker.log"
    request = dict(request, result=str(res), workdir=str(workdir))
    try:
        req.write_text(json.dumps(request))
    except OSError as e:
        raise os_error(e, req) from None
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONUNBUFFERED", "1")
    what = f"{Path(request['source']).name} to {request['quantize']}"
    try:
        with open(log, "wb") as lf:
            sink = sys.stderr if show_log else lf   # --debug: the converter's own output
            p = subprocess.run([sys.executable, "-m", "nanoml.model._convert_worker", str(req)],
                               stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"the TensorFlow converter did not finish within {timeout} s converting {what}",
                        "try a smaller model or --quantize none") from None
    result = None
    if res.exists():
        try:
            result = json.loads(res.read_text())
        except ValueError:
            result = None
    if p.returncode < 0 or p.returncode >= 128 and result is None:
        from ..sim.isolated import signal_name
        sig = -p.returncode if p.returncode < 0 else p.returncode - 128
        alt = "float16/none" if request["quantize"] == "int8" else (
            "none" if request["quantize"] == "float16" else "int8")
        raise ToolError(
            f"the TensorFlow converter crashed ({signal_name(sig)}, signal {sig}) while converting {what}",
            f"try --quantize {alt}, or simplify the model (e.g. unroll or drop recurrent layers); "
            "re-run with --debug to see the converter's output")
    if result is None:
        raise ToolError(f"the TensorFlow converter exited with code {p.returncode} while converting {what}"
                        + (f": {_tail(log)}" if _tail(log) else ""),
                        "re-run with --debug to see the converter's output")
    if result.get("error"):
        raise _worker_error(result["error"])
    return result


def convert_model(src: str | Path, out: str | Path | None = None, quantize: str = "int8",
                  calib: str | Path | None = None, samples: int = DEFAULT_SAMPLES,
                  runtime_id: str | None = None, board_id: str | None = None,
                  debug: bool = False) -> ConvertReport:
    """Convert a Keras/SavedModel model to .tflite (TensorFlow in a child process)."""
    import numpy as np
    from ..boards import get_board
    from ..runtimes import get_runtime
    from .tflite import load_bytes

    src = Path(src)
    if quantize not in QUANTIZE_MODES:
        raise UsageError(f"unknown --quantize '{quantize}'; choose one of {', '.join(QUANTIZE_MODES)}",
                         None)
    runtime = get_runtime(runtime_id)
    board = get_board(board_id) if board_id else None
    kind = source_kind(src)
    out = Path(out) if out else src.with_suffix(".tflite") if kind == "keras" else \
        src.parent / (src.name.rstrip("/") + ".tflite")
    if out.suffix.lower() != ".tflite":
        raise UsageError(f"output {out} should end in .tflite", "pass -o NAME.tflite")
    if quantize == "int8" and calib is None:
        raise InputError("int8 quantization needs calibration data and none was given",
                         "pass --calib FILE.npy|FILE.npz|DIR with samples shaped like the model "
                         "input, or use --quantize float16/none")
    if samples < 1:
        raise UsageError(f"--samples must be at least 1 (got {samples})", None)
    check_output_file(out, "model")     # before TensorFlow's 20 s, not after
    if calib is not None:
        check_calibration(calib, samples)  # empty, NaN, absurd headers: before TensorFlow too

    try:
        workdir = Path(tempfile.mkdtemp(prefix="nanoml-convert-"))
    except OSError as e:
        raise os_error(e, Path(tempfile.gettempdir()) / "nanoml-convert-*", "create") from None
    try:
        tmp_out = workdir / "model.tflite"
        progress.report(f"converting with TensorFlow ({quantize})")
        result = run_worker({"source": str(src), "kind": kind, "output": str(tmp_out),
                             "quantize": quantize, "calib": str(calib) if calib else None,
                             "samples": samples}, workdir, show_log=debug)
        data = tmp_out.read_bytes()
        model = load_bytes(data, str(out))
        ops, bad, problems = check_converted(model, quantize, runtime, board)

        progress.report("measuring the quantization error")
        error = None
        ref_path = workdir / "reference.npz"
        if result.get("samples") and ref_path.exists():
            z = np.load(ref_path)
            ins = [z[f"in{i}"] for i in range(result["n_inputs"])]
            ref = [z[f"float{j}"] for j in range(result["n_outputs"])]
            try:
                got = run_tflm(data, ins, model)
                error = dict(error_stats(ref, got), engine="tflite_micro")
            except Exception as e:  # noqa: BLE001 - TFLM refuses the model: fall back
                if "tfl0" in z:
                    got = [z[f"tfl{j}"] for j in range(result["n_outputs"])]
                    error = dict(error_stats(ref, got), engine="tf.lite.Interpreter")
                problems.append({"level": "warning" if quantize == "float16" else "error",
                                 "message": f"host TFLite Micro could not run the converted model: "
                                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"})
        write_atomic(out, data, "model")
        params = result.get("params")
        return ConvertReport(
            source=str(src), output=str(out), quantize=quantize, runtime_id=runtime.id,
            bytes_before=_path_bytes(src), bytes_after=len(data), params=params,
            float_param_bytes=params * 4 if params is not None else None,
            inputs=[t.brief() for t in model.input_tensors],
            outputs=[t.brief() for t in model.output_tensors],
            ops=ops, unsupported=bad, error=error, problems=problems,
            tensorflow=result.get("tensorflow"))
    finally:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
