"""`nanoml convert`: real conversions with TensorFlow (in nanoml's child process),
checked with nanoml's own .tflite reader and host TFLite Micro."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nanoml.errors import InputError, UsageError
from nanoml.model.convert import InputSpec, load_calibration
from nanoml.model.tflite import load

HAVE_TF = importlib.util.find_spec("tensorflow") is not None
needs_tf = pytest.mark.skipif(not HAVE_TF, reason="TensorFlow not installed (pip install 'nanoml[convert]')")
DYNAMIC = {"SHAPE", "STRIDED_SLICE", "PACK"}


def nanoml(*args, env=None, timeout=600):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "nanoml", *map(str, args)],
                          capture_output=True, text=True, env=e, timeout=timeout)


def _error_lines(p) -> list[str]:
    return [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small CNN with Flatten (Keras file + SavedModel) and calibration data."""
    if not HAVE_TF:
        pytest.skip("TensorFlow not installed")
    import keras
    d = tmp_path_factory.mktemp("convert")
    keras.utils.set_random_seed(1)
    m = keras.Sequential([
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
        keras.layers.Softmax(),
    ])
    m.save(d / "cnn.keras")
    m.export(str(d / "cnn_saved"), format="tf_saved_model", verbose=False)
    x = np.random.RandomState(0).rand(24, 12, 12, 1).astype("float32")
    np.save(d / "calib.npy", x)
    ref = np.asarray(m(x, training=False))
    return {"dir": d, "keras": d / "cnn.keras", "saved": d / "cnn_saved",
            "calib": d / "calib.npy", "x": x, "ref": ref}


@pytest.fixture(scope="module")
def int8_result(models):
    out = models["dir"] / "cnn_int8.tflite"
    p = nanoml("convert", models["keras"], "-o", out, "--calib", models["calib"],
               "--samples", 20, "--json")
    return p, out


@pytest.mark.tf
@needs_tf
def test_int8_conversion(int8_result, models):
    p, out = int8_result
    assert p.returncode == 0, p.stderr + p.stdout
    r = json.loads(p.stdout)
    assert r["quantize"] == "int8" and r["output"] == str(out)
    assert r["bytes_after"] == out.stat().st_size
    assert r["bytes_after"] < r["bytes_before"]
    assert r["params"] == 4 * 9 + 4 + 100 * 3 + 3
    assert r["unsupported"] == [] and all(o["supported"] for o in r["ops"])
    assert r["error"]["samples"] == 20 and r["error"]["engine"] == "tflite_micro"
    # softmax outputs in [0, 1]; int8 output step is 1/256
    assert 0 < r["error"]["max_abs"] < 0.05
    assert r["error"]["rmse"] <= r["error"]["max_abs"]
    # what the file really holds (read back without TensorFlow)
    m = load(out)
    names = {o.op for o in m.operators}
    assert not names & DYNAMIC, names
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= names
    assert [t.dtype for t in m.input_tensors] == ["int8"]
    assert [t.dtype for t in m.output_tensors] == ["int8"]
    assert m.input_tensors[0].shape == [1, 12, 12, 1]
    assert not any(d < 0 for t in m.input_tensors for d in (t.shape_signature or []))
    assert {o["name"] for o in r["ops"]} == names


@pytest.mark.tf
@needs_tf
def test_int8_output_matches_float_model_in_host_tflm(int8_result, models):
    """The error the report gives is the real one: recompute it independently."""
    from nanoml.model.convert import run_tflm
    p, out = int8_result
    got = run_tflm(out.read_bytes(), [models["x"][:20]])[0]
    assert got.shape == (20, 3)
    err = np.abs(got - models["ref"][:20]).max()
    assert err == pytest.approx(json.loads(p.stdout)["error"]["max_abs"], abs=1e-6)
    assert (got.argmax(1) == models["ref"][:20].argmax(1)).mean() >= 0.9


@pytest.mark.tf
@needs_tf
def test_saved_model_float_no_dynamic_shape_ops(models):
    out = models["dir"] / "cnn_float.tflite"
    p = nanoml("convert", models["saved"], "-o", out, "--quantize", "none",
               "--calib", models["calib"], "--samples", 5, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    m = load(out)
    assert not {o.op for o in m.operators} & DYNAMIC
    assert m.input_tensors[0].dtype == "float32" and m.input_tensors[0].shape == [1, 12, 12, 1]
    assert r["error"]["max_abs"] < 1e-4         # float32 all the way


@pytest.mark.tf
@needs_tf
def test_float16_is_flagged_for_the_board(models):
    out = models["dir"] / "cnn_f16.tflite"
    p = nanoml("convert", models["keras"], "-o", out, "--quantize", "float16", "--json")
    r = json.loads(p.stdout)
    assert p.returncode == 1, p.stderr     # written, but TFLM cannot take float16 tensors
    assert out.exists()
    assert any("float16" in x["message"] and x["level"] == "error" for x in r["problems"])
    assert r["error"] is None              # no --calib: nothing to measure


def test_missing_calibration_is_one_line(tmp_path):
    src = tmp_path / "m.keras"
    src.write_bytes(b"not read before the check")
    p = nanoml("convert", src, "-o", tmp_path / "m.tflite")
    assert p.returncode == 2
    errs = _error_lines(p)
    assert len(errs) == 1 and "calibration" in errs[0]
    assert "--calib" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "m.tflite").exists()


def test_unknown_source_format(tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(b"x")
    p = nanoml("convert", src, "--quantize", "none")
    assert p.returncode == 2 and "unknown model format" in p.stderr


@pytest.mark.tf
@needs_tf
def test_calibration_shape_mismatch(models, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 12, 11, 1), np.float32))
    p = nanoml("convert", models["keras"], "-o", tmp_path / "x.tflite", "--calib", bad)
    assert p.returncode == 2, p.stderr
    errs = _error_lines(p)
    assert len(errs) == 1 and "[4, 12, 11, 1]" in errs[0] and "[12, 12, 1]" in errs[0]


@pytest.mark.tf
@needs_tf
def test_converter_crash_signal_is_reported(models, tmp_path):
    """The worker really dies of SIGSEGV (test hook), nanoml reports it in one line."""
    out = tmp_path / "x.tflite"
    p = nanoml("convert", models["keras"], "-o", out, "--calib", models["calib"],
               env={"NANOML_TEST_CONVERTER_CRASH": "SIGSEGV"})
    assert p.returncode == 4, p.stderr
    errs = _error_lines(p)
    assert len(errs) == 1
    assert "the TensorFlow converter crashed (SIGSEGV, signal 11) while converting cnn.keras" in errs[0]
    assert "--quantize float16/none" in p.stderr and "Traceback" not in p.stderr
    assert not out.exists()
    pj = nanoml("convert", models["keras"], "-o", out, "--calib", models["calib"], "--json",
                env={"NANOML_TEST_CONVERTER_CRASH": "SIGSEGV"})
    assert pj.returncode == 4 and json.loads(pj.stdout)["exit_code"] == 4


@pytest.mark.tf
@needs_tf
def test_lstm_int8_does_not_kill_nanoml(tmp_path):
    """TensorFlow 2.21's converter segfaults on a Keras LSTM to int8 (no test hook here).
    Whatever the installed TensorFlow does, nanoml ends cleanly: a .tflite or one line."""
    import keras
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((10, 4)), keras.layers.LSTM(8), keras.layers.Dense(3)])
    m.save(tmp_path / "lstm.keras")
    np.save(tmp_path / "c.npy", np.random.RandomState(0).rand(8, 10, 4).astype("float32"))
    out = tmp_path / "lstm.tflite"
    p = nanoml("convert", tmp_path / "lstm.keras", "-o", out, "--calib", tmp_path / "c.npy")
    assert "Traceback" not in p.stderr
    if p.returncode == 4:
        errs = _error_lines(p)
        assert len(errs) == 1 and "while converting lstm.keras to int8" in errs[0], p.stderr
        assert not out.exists()
    else:
        assert p.returncode in (0, 1), p.stderr
        assert load(out).operators


@pytest.mark.tf
@needs_tf
def test_missing_tensorflow_in_worker(models, tmp_path):
    """A `tensorflow` package that fails to import, first on the path: real ImportError."""
    fake = tmp_path / "shadow" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named tensorflow')\n")
    pp = os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])
    p = nanoml("convert", models["keras"], "-o", tmp_path / "x.tflite", "--calib", models["calib"],
               env={"PYTHONPATH": pp})
    assert p.returncode == 4, p.stderr
    errs = _error_lines(p)
    assert len(errs) == 1 and "TensorFlow is not installed" in errs[0]
    assert "pip install 'nanoml[convert]'" in p.stderr


# ------------------------------------------------ calibration loading (numpy only)

SPEC = [InputSpec("x", (4, 3))]


def test_calib_npy_and_samples(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(10 * 12, dtype=np.float64).reshape(10, 4, 3))
    (a,) = load_calibration(tmp_path / "a.npy", SPEC, samples=7)
    assert a.shape == (7, 4, 3) and a.dtype == np.float32


def test_calib_single_sample_gets_batch(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((4, 3)))
    assert load_calibration(tmp_path / "a.npy", SPEC)[0].shape == (1, 4, 3)


def test_calib_npz_by_name_and_first(tmp_path):
    np.savez(tmp_path / "a.npz", other=np.zeros((2, 4, 3)), x=np.ones((3, 4, 3)))
    assert load_calibration(tmp_path / "a.npz", SPEC)[0].shape == (3, 4, 3)
    np.savez(tmp_path / "b.npz", first=np.zeros((2, 4, 3)))
    assert load_calibration(tmp_path / "b.npz", SPEC)[0].shape == (2, 4, 3)
    two = [InputSpec("a", (2,)), InputSpec("b", (3,))]
    np.savez(tmp_path / "c.npz", b=np.zeros((5, 3)), a=np.ones((5, 2)))
    a, b = load_calibration(tmp_path / "c.npz", two)
    assert a.shape == (5, 2) and b.shape == (5, 3) and a[0, 0] == 1


def test_calib_dir(tmp_path):
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", np.full((4, 3), i))
    np.save(tmp_path / "s3.npy", np.zeros((2, 4, 3)))      # a batch file is fine too
    (a,) = load_calibration(tmp_path, SPEC)
    assert a.shape == (5, 4, 3) and a[2, 0, 0] == 2


def test_calib_unknown_dims_taken_from_data(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 9, 3)))
    assert load_calibration(tmp_path / "a.npy", [InputSpec("x", (None, 3))])[0].shape == (2, 9, 3)


@pytest.mark.parametrize("arr,msg", [
    (np.zeros((5, 3, 4)), "does not match model input 'x' [4, 3]"),
    (np.array([[["a"] * 3] * 4]), "not numbers"),
    (np.full((2, 4, 3), np.nan), "NaN"),
])
def test_calib_errors(tmp_path, arr, msg):
    np.save(tmp_path / "a.npy", arr)
    with pytest.raises(InputError) as e:
        load_calibration(tmp_path / "a.npy", SPEC)
    assert msg in e.value.message and "\n" not in e.value.message


def test_calib_misc_errors(tmp_path):
    with pytest.raises(InputError):
        load_calibration(tmp_path / "missing.npy", SPEC)
    with pytest.raises(InputError):
        load_calibration(tmp_path, SPEC)                     # empty dir
    with pytest.raises(UsageError):
        load_calibration(tmp_path, SPEC, samples=0)
    np.save(tmp_path / "a.npy", np.zeros((2, 4, 3)))
    with pytest.raises(InputError) as e:
        load_calibration(tmp_path / "a.npy", [InputSpec("a", (4, 3)), InputSpec("b", (1,))])
    assert ".npz" in e.value.hint


# ------------------------------------------------ the committed example models (no TensorFlow)

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def _huge_header_npy(path: Path, shape=(1 << 40, 3)) -> Path:
    """A valid .npy header asking for TiBs, followed by 12 bytes."""
    from numpy.lib import format as npf
    with open(path, "wb") as f:
        npf.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(b"\0" * 12)
    return path


def _calib_cases(tmp_path: Path) -> list[tuple[Path, str]]:
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 3), np.float32))
    np.save(tmp_path / "empty1d.npy", np.zeros((0,), np.float32))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 4, 3), np.float32))
    (tmp_path / "emptydir").mkdir()
    np.save(tmp_path / "emptydir" / "s0.npy", np.zeros((0, 3)))
    np.save(tmp_path / "nan.npy", np.full((2, 4, 3), np.nan, np.float32))
    np.save(tmp_path / "inf.npy", np.full((2, 4, 3), np.inf))
    np.save(tmp_path / "complex.npy", np.zeros((2, 4, 3), np.complex64))
    np.save(tmp_path / "text.npy", np.array([["a"] * 3] * 4))
    np.save(tmp_path / "object.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "nomembers.npz")
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "nan.npy").read_bytes()[:-8])
    return [(tmp_path / "empty.npy", "is empty"), (tmp_path / "empty1d.npy", "is empty"),
            (tmp_path / "empty.npz", "is empty"), (tmp_path / "emptydir", "is empty"),
            (tmp_path / "nan.npy", "NaN"), (tmp_path / "inf.npy", "infinity"),
            (tmp_path / "complex.npy", "numbers expected"),
            (tmp_path / "text.npy", "not numbers"), (tmp_path / "object.npy", "not numbers"),
            (tmp_path / "nomembers.npz", "holds no arrays"),
            (tmp_path / "trunc.npy", "truncated or corrupt"),
            (_huge_header_npy(tmp_path / "huge.npy"), "TiB")]


def test_degenerate_calibration_is_refused_before_tensorflow_starts(tmp_path):
    """`--calib` with an empty array silently wrote a float model; NaN, non-numbers and
    headers asking for TiBs are refused too: one line, exit 2, before TensorFlow."""
    import time
    from mutants import run_cli
    src = tmp_path / "m.keras"
    src.write_bytes(b"never read: the calibration check comes first")
    for calib, msg in _calib_cases(tmp_path):
        t0 = time.monotonic()
        r = run_cli(["convert", str(src), "-o", str(tmp_path / "m.tflite"), "--calib",
                     str(calib), "--json"], timeout=60, mem_mb=1024)
        assert r.exit_code == 2 and not r.traceback and r.signal is None, (calib, r.stdout, r.stderr)
        err = json.loads(r.stdout)["error"]
        assert msg in err and "\n" not in err, (calib, err)
        assert time.monotonic() - t0 < 10, calib       # TensorFlow takes ~20 s to start
        assert not (tmp_path / "m.tflite").exists()


def test_load_calibration_refuses_empty_and_huge(tmp_path):
    """The worker's own reader refuses the same (it runs with TensorFlow loaded)."""
    np.save(tmp_path / "e.npy", np.zeros((0, 4, 3)))
    with pytest.raises(InputError, match="is empty"):
        load_calibration(tmp_path / "e.npy", SPEC)
    with pytest.raises(InputError, match="TiB"):
        load_calibration(_huge_header_npy(tmp_path / "h.npy"), SPEC)
    np.save(tmp_path / "late_nan.npy", np.concatenate([np.zeros((3, 4, 3)),
                                                       np.full((1, 4, 3), np.nan)]))
    assert load_calibration(tmp_path / "late_nan.npy", SPEC, samples=3)[0].shape == (3, 4, 3)


@pytest.mark.parametrize("name", ["gesture", "sine"])
def test_example_models(name):
    from nanoml.runtimes import all_runtimes
    d = EXAMPLES_DIR / name
    m = load(d / f"{name}_int8.tflite")
    assert (d / f"{name}_int8.tflite").stat().st_size < 50_000
    assert [t.dtype for t in m.input_tensors + m.output_tensors] == ["int8", "int8"]
    assert m.input_tensors[0].shape[0] == 1
    assert not {o.op for o in m.operators} & DYNAMIC
    for rt in all_runtimes().values():
        for o in m.operators:
            assert rt.support(o.op, o.version)[0], (rt.id, o.op, o.version)
    x = np.load(d / "inputs.npy")
    assert x.dtype == np.float32 and list(x.shape[1:]) == m.input_tensors[0].shape[1:]
    info = json.loads((d / "info.json").read_text())
    assert info["tflite_bytes"] == (d / f"{name}_int8.tflite").stat().st_size


def test_gesture_example_classifies_its_inputs():
    from nanoml.model.convert import run_tflm
    d = EXAMPLES_DIR / "gesture"
    x, y = np.load(d / "inputs.npy"), np.load(d / "labels.npy")
    probs = run_tflm((d / "gesture_int8.tflite").read_bytes(), [x])[0]
    assert probs.shape == (len(y), 4)
    assert (probs.argmax(1) == y).mean() >= 0.9
    assert set(y.tolist()) == {0, 1, 2, 3}


def test_sine_example_follows_sine():
    from nanoml.model.convert import run_tflm
    d = EXAMPLES_DIR / "sine"
    x, y = np.load(d / "inputs.npy"), np.load(d / "labels.npy")
    got = run_tflm((d / "sine_int8.tflite").read_bytes(), [x])[0]
    err = np.abs(got - y)
    assert err.mean() < 0.05 and err.max() < 0.25      # worst at the ends of [0, 2 pi]
