"""`nanoml validate`: the virtual board end to end, the device path up to the serial
port (a pty answering input frames the way the firmware does), tolerances and exit
codes, input loading."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tty
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path
from mutants import run_cli

from nanoml.errors import InputError
from nanoml.validate.inputs import load_inputs
from nanoml.serial.frames import FrameParser
from nanoml.serial.protocol import encode_line
from nanoml.sim.model import SimModel

NANOML = [sys.executable, "-m", "nanoml"]
MODELS = Path(__file__).parent / "data" / "estimate" / "models"
VGG = MODELS / "net_vgg.tflite"              # int8 in/out, 28x28x1 -> 10


def run(*args, rc=0, timeout=180):
    p = subprocess.run(NANOML + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == rc, (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    return p


@pytest.fixture
def vgg_inputs(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.random.default_rng(0).uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32))
    return p


# --- virtual board ------------------------------------------------------------------

def test_validate_sim_int8_model(vgg_inputs):
    d = json.loads(run("validate", VGG, "--inputs", vgg_inputs, "--sim", "--json").stdout)
    assert d["source"] == "sim" and d["samples"] == 6 and d["passed"]
    assert d["top1_agreement"] == 1.0 and d["max_lsb"] == 0
    assert d["compared"] == "q" and d["max_abs_error"] == 0.0   # the quantized values agree


def test_validate_sim_float_model(tmp_path):
    model = MODELS / "net_vgg_f.tflite"
    x = tmp_path / "xf.npy"
    np.save(x, np.random.default_rng(1).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32))
    d = json.loads(run("validate", model, "--inputs", x, "--sim", "--json").stdout)
    assert d["passed"] and d["max_lsb"] is None and d["tolerances"]["atol"] == 1e-4
    assert d["compared"] == "text" and d["max_abs_error"] == 0.0


def test_compare_on_text_and_on_quantized_values():
    from types import SimpleNamespace

    from nanoml.validate.result import ValidateResult, compare
    ref = SimpleNamespace(outputs=[0.123456789, float("nan"), 1e30], q=None, top=0)
    s = compare(0, [0.123457, float("nan"), 1e30], None, 0, ref)          # the same, as text
    assert (s.compared, s.max_abs_error, s.max_lsb) == ("text", 0.0, None)
    s = compare(0, [0.123457, 0.0, 1e30], None, 0, ref)                   # a nan on one side
    assert s.max_abs_error == float("inf")
    s = compare(0, [0.123457, float("nan")], None, 0, ref)                # an output missing
    assert s.max_abs_error == float("inf")
    res = ValidateResult("device", "m", [s], atol=1.0, min_top1=0.0, output_scale=None)
    assert not res.passed and res.to_json()["max_abs_error"] is None       # no Infinity token
    ref = SimpleNamespace(outputs=[0.5, -0.25], q=[5, -3], top=0)
    s = compare(0, [0.5, -0.2], [5, -1], 0, ref, scales=[0.1, 0.125])    # out= text ignored
    assert (s.compared, s.max_lsb, s.max_abs_error) == ("q", 2, 0.25)


def test_validate_sim_shared_person_detect(tmp_path):
    model = shared_path("models", "person_detect.tflite")
    x = tmp_path / "p.npy"
    np.save(x, np.random.default_rng(2).integers(-128, 128, (2, 1, 96, 96, 1)).astype(np.int8))
    d = json.loads(run("validate", model, "--inputs", x, "--sim", "--json").stdout)
    assert d["samples"] == 2 and d["passed"]


@pytest.mark.parametrize("model", ["net_vgg.tflite", "net_vgg_f.tflite"])
def test_validate_sim_zero_tolerance_passes_on_identical_outputs(vgg_inputs, model):
    """The virtual board runs the same interpreter: `--atol 0` must PASS (it printed
    FAIL with a worst difference of 0 LSB when the 6-digit text was compared)."""
    p = run("validate", MODELS / model, "--inputs", vgg_inputs, "--sim", "--atol", "0")
    assert "PASS" in p.stdout and "FAIL" not in p.stdout


# --- device path over a pseudo-terminal ---------------------------------------------

class FakeBoard:
    """Answers `in` frames on a pty like the serial-input firmware: hello now and
    then, and for each frame an ack, then a res whose outputs are the reference
    outputs shifted by `delta` LSB."""

    def __init__(self, model: Path, delta: int = 0, reject: str | None = None,
                 input_source: str = "serial"):
        self.sim = SimModel(model)
        self.delta, self.reject, self.input_source = delta, reject, input_source
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _hello(self) -> bytes:
        m = self.sim
        return encode_line("hello", {
            "proto": 1, "fw": "0.1.0", "model": m.sha256[:12], "board": "nano33ble_sense",
            "runtime": "chirale_2.0.0", "arena": 30000, "used": 29000, "ops": m.ops,
            "in": [t.spec() for t in m.inputs], "out": [t.spec() for t in m.outputs],
            "input": self.input_source})

    def _run(self):
        import select
        import time
        parser = FrameParser(self.sim.input_bytes)
        seq = 0
        last_hello = 0.0
        while not self.stop.is_set():
            if time.monotonic() - last_hello > 0.5:    # the firmware: on connect + every 5 s
                os.write(self.master, self._hello())
                last_hello = time.monotonic()
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            for ev in parser.feed(data):
                if self.reject or not ev.ok:
                    os.write(self.master, encode_line("ack", {"seq": ev.seq, "ok": False,
                                                              "why": self.reject or ev.reason}))
                    continue
                os.write(self.master, encode_line("ack", {"seq": ev.seq, "ok": True}))
                r_ = self.sim.run(self.sim.split_payload(ev.payload))
                t = self.sim.outputs[0]
                q = [max(-128, min(127, v + self.delta)) for v in r_.q]
                out = [(v - t.zero_point) * t.scale for v in q]
                os.write(self.master, b"log line from the sketch\r\n")
                os.write(self.master, encode_line("res", {
                    "seq": seq, "us": 51234, "out": out, "top": int(np.argmax(q)), "q": q,
                    "frame": ev.seq}))
                seq += 1

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join(5)
        os.close(self.master)
        os.close(self.slave)


def test_validate_device_path_within_one_lsb(vgg_inputs):
    with FakeBoard(VGG, delta=1) as fake:
        d = json.loads(run("validate", VGG, "--inputs", vgg_inputs, "--port", fake.port,
                           "--json", "--timeout", "10").stdout)
    assert d["source"] == "device" and d["samples"] == 6
    assert d["max_lsb"] == 1 and d["passed"]
    assert d["latency"]["ms"] == 51.234 and d["latency"]["runs"] == 6
    assert d["schema"] == "validate/1" and d["model"]["sha256"] == SimModel(VGG).sha256
    assert _shape(d) == _shape(_documented_json()), "docs/validate.md's JSON is not the output's"


def _documented_json() -> dict:
    text = (Path(__file__).parent.parent / "docs" / "validate.md").read_text()
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    return json.loads(re.sub(r"//[^\n]*", "", block))


def _shape(v):
    """Keys of a JSON value, nested (a list by its first item)."""
    if isinstance(v, dict):
        return {k: _shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_shape(v[0])] if v else []
    return None
    assert abs(d["max_abs_error"] - d["output_scale"]) < 1e-4


def test_validate_device_path_outside_tolerance(vgg_inputs):
    with FakeBoard(VGG, delta=3) as fake:
        p = run("validate", VGG, "--inputs", vgg_inputs, "--port", fake.port, "--json",
                "--timeout", "10", rc=1)
    d = json.loads(p.stdout)
    assert d["max_lsb"] == 3 and not d["passed"] and d["exit_code"] == 1


def test_validate_device_path_zero_tolerance(vgg_inputs):
    """The board's `out` text is not the reference's float32 (it dequantizes in its
    own arithmetic): identical quantized values PASS `--atol 0`, one LSB FAILs it."""
    with FakeBoard(VGG, delta=0) as fake:
        d = json.loads(run("validate", VGG, "--inputs", vgg_inputs, "--port", fake.port,
                           "--json", "--timeout", "10", "--atol", "0").stdout)
    assert d["passed"] and d["max_abs_error"] == 0.0 and d["max_lsb"] == 0
    with FakeBoard(VGG, delta=1) as fake:
        p = run("validate", VGG, "--inputs", vgg_inputs, "--port", fake.port, "--timeout", "10",
                "--atol", "0", rc=1)
    assert "FAIL" in p.stdout and "1 LSB" in p.stdout


def test_validate_device_rejects_frames(vgg_inputs):
    with FakeBoard(VGG, reject="len") as fake:
        p = run("validate", VGG, "--inputs", vgg_inputs, "--port", fake.port, "--timeout", "10",
                rc=1)
    assert "rejected" in p.stderr and "len" in p.stderr


def test_validate_device_with_synthetic_firmware_is_refused(vgg_inputs):
    with FakeBoard(VGG, input_source="synthetic") as fake:
        p = run("validate", VGG, "--inputs", vgg_inputs, "--port", fake.port, "--timeout", "10",
                rc=1)
    assert "not serial" in p.stderr and "--input serial" in p.stderr


# --- inputs --------------------------------------------------------------------------

def test_inputs_float_are_quantized_like_the_input_tensor(tmp_path):
    sim = SimModel(VGG)
    t = sim.inputs[0]
    x = np.linspace(-1, 1, 28 * 28, dtype=np.float32).reshape(1, 28, 28, 1)
    np.save(tmp_path / "a.npy", x)
    (sample,) = load_inputs(tmp_path / "a.npy", sim)
    q = np.frombuffer(sample[0], dtype=np.int8)
    expect = np.clip(np.round(x.reshape(-1) / t.scale + t.zero_point), -128, 127)
    assert (q == expect).all()
    np.save(tmp_path / "b.npy", np.zeros((4, 784), dtype=np.int8))     # flat samples reshape
    assert len(load_inputs(tmp_path / "b.npy", sim)) == 4


def test_inputs_with_wrong_shape_or_dtype(tmp_path):
    sim = SimModel(VGG)
    np.save(tmp_path / "s.npy", np.zeros((2, 27, 27, 1), dtype=np.float32))
    with pytest.raises(InputError, match="does not fit"):
        load_inputs(tmp_path / "s.npy", sim)
    np.save(tmp_path / "d.npy", np.zeros((2, 28, 28, 1), dtype=np.int32))
    with pytest.raises(InputError, match="int32"):
        load_inputs(tmp_path / "d.npy", sim)
    (tmp_path / "c.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match="NumPy"):
        load_inputs(tmp_path / "c.npy", sim)
    x = np.zeros((2, 28, 28, 1), dtype=np.float32)
    x[1, 3, 4, 0] = np.nan                  # would be cast to an arbitrary int8
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(InputError, match="NaN or infinite"):
        load_inputs(tmp_path / "n.npy", sim)


def test_validate_usage_errors(tmp_path, vgg_inputs):
    run("validate", VGG, "--inputs", tmp_path / "none.npy", "--sim", rc=2)
    run("validate", VGG, "--inputs", vgg_inputs, "--sim", "--port", "/dev/null", rc=2)
    run("validate", VGG, "--inputs", vgg_inputs, "--sim", "--min-top1", "2", rc=2)
    run("validate", tmp_path / "m.tflite", "--inputs", vgg_inputs, "--sim", rc=2)


@pytest.mark.parametrize("args", [["--atol", "nan"], ["--atol", "inf"], ["--atol", "-1"],
                                  ["--min-top1", "nan"], ["--board", "nope"]],
                         ids=["atol-nan", "atol-inf", "atol-negative", "min-top1-nan",
                              "unknown-board"])
def test_validate_bad_option_values_are_usage_errors(vgg_inputs, args):
    r = run_cli(["validate", str(VGG), "--inputs", str(vgg_inputs), "--sim", *args])
    assert r.exit_code == 2 and not r.traceback, (r.exit_code, r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and args[1] in r.stderr


# --- hostile input files: refused before they are read ------------------------------

def _npy_header(shape, descr="<f4") -> bytes:
    import io
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": False,
                                             "shape": shape})
    return b.getvalue()


def _hostile_inputs(tmp_path: Path) -> dict[str, Path]:
    import zipfile
    files = {}
    # a .npy header alone asking for 64 TiB of float32 (the file is 192 bytes)
    files["npy-header-64TiB"] = tmp_path / "huge.npy"
    files["npy-header-64TiB"].write_bytes(_npy_header((1 << 22, 1 << 22)) + b"\0" * 64)
    # a small .npz whose member's header asks for 6 GiB
    files["npz-header-6GiB"] = tmp_path / "huge.npz"
    with zipfile.ZipFile(files["npz-header-6GiB"], "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _npy_header((6, 1 << 28)) + bytes(4096))
    # a .npz whose central directory claims a member of 3.9 GB (deflate bomb size)
    files["npz-claims-3.9GB"] = tmp_path / "claims.npz"
    with zipfile.ZipFile(files["npz-claims-3.9GB"], "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _npy_header((6, 28, 28, 1)) + bytes(6 * 784 * 4))
    raw = bytearray(files["npz-claims-3.9GB"].read_bytes())
    cd = raw.rindex(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = (0xF0000000).to_bytes(4, "little")     # uncompressed size
    files["npz-claims-3.9GB"].write_bytes(bytes(raw))
    # shape x itemsize above what follows the header (a truncated file)
    files["npy-truncated"] = tmp_path / "short.npy"
    files["npy-truncated"].write_bytes(_npy_header((6, 28, 28, 1)) + bytes(100))
    files["npy-negative-dim"] = tmp_path / "neg.npy"
    files["npy-negative-dim"].write_bytes(_npy_header((-6, 28, 28, 1)))
    files["npy-object"] = tmp_path / "obj.npy"
    files["npy-object"].write_bytes(_npy_header((1,), "|O") + bytes(8))
    files["fifo"] = tmp_path / "fifo.npy"
    os.mkfifo(files["fifo"])
    files["directory"] = tmp_path / "dir.npy"
    files["directory"].mkdir()
    files["device"] = Path("/dev/zero")
    return files


HOSTILE = ["npy-header-64TiB", "npz-header-6GiB", "npz-claims-3.9GB", "npy-truncated",
           "npy-negative-dim", "npy-object", "fifo", "directory", "device"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_validate_refuses_hostile_input_files(tmp_path, kind):
    """Exit 2 with one line, within 20 s and 2 GiB: no allocation of what a header
    asks for, no blocking on a FIFO, no reading a device."""
    path = _hostile_inputs(tmp_path)[kind]
    r = run_cli(["validate", str(VGG), "--inputs", str(path), "--sim"], timeout=20, mem_mb=2048)
    assert not r.timed_out and r.signal is None, (kind, r.stderr)
    assert r.exit_code == 2 and not r.traceback, (kind, r.exit_code, r.stderr)
    assert r.stderr.startswith("error: ") and len(r.stderr.splitlines()) <= 2, r.stderr
