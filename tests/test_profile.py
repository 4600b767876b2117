"""`nanoml profile`: the sim path end to end, the device path up to the serial port
(a pseudo-terminal replaying a synthetic log in the profiling firmware's format:
tests/data/profile/README.md says how it was made), reports, arena
recording, the session reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest

from conftest import shared_model_names, shared_path

from nanoml.model.tflite import load
from nanoml.profile.record import read_recorded_arena, record_arena
from nanoml.profile.report import to_html, to_markdown
from nanoml.profile.result import percentile
from nanoml.profile.session import FdReader, RunTimeout, collect
from nanoml.serial.protocol import encode_line

NANOML = [sys.executable, "-m", "nanoml"]
DATA = Path(__file__).parent / "data"
VGG = DATA / "estimate" / "models" / "net_vgg.tflite"
# Not a recording: no board was attached. A log in the profiling firmware's line
# format, made by hand for these tests (tests/data/profile/README.md).
SYNTHETIC_LOG = DATA / "profile" / "net_vgg.synthetic.log"


def run(*args, rc=0, timeout=180, cwd=None):
    p = subprocess.run(NANOML + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, cwd=cwd)
    assert p.returncode == rc, (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    return p


# --- --sim end to end -------------------------------------------------------------

def test_profile_sim_person_detect(tmp_path):
    model = shared_path("models", "person_detect.tflite")
    proj = tmp_path / "proj"
    report = tmp_path / "r.md"
    d = json.loads(run("profile", model, "--sim", "--runs", "3", "--json", "--project", proj,
                       "--report", report).stdout)
    assert d["source"] == "sim"
    assert len(d["layers"]) == 31
    assert d["layers"][0]["op"] == "DEPTHWISE_CONV_2D" and d["layers"][0]["macs"] == 165888
    assert d["latency_ms"]["runs"] == 3
    assert abs(sum(layer["ms"] for layer in d["layers"]) - d["latency_ms"]["mean"]) < 1.0
    # the virtual board bisects the arena on the host interpreter (64-bit: above the board's)
    assert 60_000 < d["arena"]["min_bytes"] <= d["arena"]["used_bytes"] + 4096
    rec = json.loads((proj / ".nanoml" / "arena.json").read_text())
    assert rec["min_bytes"] == d["arena"]["min_bytes"] and rec["source"] == "sim"
    assert "## Time per operator" in report.read_text()


@pytest.mark.parametrize("name", shared_model_names())
def test_profile_sim_every_shared_model(name):
    """Stateful and recurrent models too: the host interpreter crashes on some too-small
    arenas, so the virtual board probes each arena size in a child process."""
    if name.startswith("mobilenet_v2"):
        pytest.skip("300 M MACs per host inference x ~20 arena probes: too slow for the suite "
                    "(does not fit the board's flash anyway; --estimate covers it)")
    d = json.loads(run("profile", shared_path("models", name), "--sim", "--runs", "1", "--json",
                       "--no-record", timeout=300).stdout)
    assert d["source"] == "sim" and d["latency_ms"]["runs"] == 1
    assert d["arena"]["min_bytes"] and d["arena"]["min_bytes"] > 0
    assert len(d["layers"]) == len(load(shared_path("models", name)).main.operators)


@pytest.mark.parametrize("name", ["net_vgg.tflite", "net_res2_f.tflite", "mlperf_kws_dscnn.tflite"])
def test_profile_sim_generated_models(tmp_path, name):
    model = DATA / "estimate" / "models" / name
    d = json.loads(run("profile", model, "--sim", "--runs", "2", "--json",
                       "--no-record").stdout)
    m = load(model)
    assert [layer["op"] for layer in d["layers"]] == [o.op for o in m.main.operators]
    assert d["arena"]["min_bytes"] > 0 and d["latency_ms"]["mean"] > 0
    assert abs(sum(layer["percent"] for layer in d["layers"]) - 100) < 0.5


def test_sim_arena_bisection_is_tight():
    from tflite_micro.python.tflite_micro import runtime
    from nanoml.profile.simboard import host_arena_bisect
    data = VGG.read_bytes()
    best = host_arena_bisect(data, 1 << 20)
    ip = runtime.Interpreter.from_bytes(data, arena_size=best)
    ip.invoke()
    with pytest.raises(RuntimeError):
        runtime.Interpreter.from_bytes(data, arena_size=best - 16).invoke()


# --- device path over a pseudo-terminal ----------------------------------------------

class Replayer:
    """A fake board on a pty: plays a log in the profiling firmware's format
    over and over (a board keeps printing; the host may open the port at any point,
    and opening it flushes what was already buffered)."""

    def __init__(self, data: bytes, chunk: int = 97, delay: float = 0.002):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.data, self.chunk, self.delay = data, chunk, delay
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import select
        while not self.stop.is_set():
            for i in range(0, len(self.data), self.chunk):
                if self.stop.is_set():
                    return
                _, w, _ = select.select([], [self.master], [], 0.1)
                if w:
                    try:
                        os.write(self.master, self.data[i:i + self.chunk])
                    except OSError:
                        return
                time.sleep(self.delay)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join(5)
        for fd in (self.master, self.slave):
            os.close(fd)


def test_profile_device_path_over_pty(tmp_path):
    proj = tmp_path / "fw"
    with Replayer(SYNTHETIC_LOG.read_bytes()) as fake:
        d = json.loads(run("profile", VGG, "--port", fake.port, "--no-flash", "--runs", "4",
                           "--json", "--project", proj, "--timeout", "30").stdout)
    assert d["source"] == "device"
    assert d["arena"] == {"min_bytes": 26880, "used_bytes": 26912}
    assert d["latency_ms"]["runs"] == 4
    lines = SYNTHETIC_LOG.read_bytes().decode().splitlines()
    # seq 2 has a corrupt op line (never counted); the others are complete
    cyc0 = [int(line.split("cyc=")[1].split()[0]) for line in lines
            if " op seq=" in line and " i=0 " in line and "seq=2 " not in line]
    assert min(cyc0) <= d["layers"][0]["cycles"] <= max(cyc0)
    assert abs(d["layers"][0]["ms"] - d["layers"][0]["cycles"] / 64e3) < 1e-3
    assert [layer["op"] for layer in d["layers"]] == [o.op for o in load(VGG).main.operators]
    # the log's cycles were made as 1.30-1.35 x the model's measured instructions
    cpi = [n for n in d["notes"] if "estimated instructions" in n]
    assert cpi and 1.28 < float(cpi[0].split("= ")[1].split()[0]) < 1.34
    rec = read_recorded_arena(proj, load(VGG).sha256, "chirale_2.0.0")
    assert rec is not None and rec["min_bytes"] == 26880 and rec["source"] == "device"


def test_device_running_another_model_is_refused():
    other = SYNTHETIC_LOG.read_bytes().replace(b"model=648cdef5964a", b"model=000000000000")
    # fix the CRC of the edited hello line so it is a valid line that names another model
    lines = []
    for line in other.split(b"\r\n"):
        if line.startswith(b"~nm hello"):
            body = line.rsplit(b"*", 1)[0]
            from nanoml.serial.protocol import crc16
            line = b"%s*%04X" % (body, crc16(body))
        lines.append(line)
    with Replayer(b"\r\n".join(lines)) as fake:
        p = run("profile", VGG, "--port", fake.port, "--no-flash", "--runs", "2", "--timeout",
                "20", "--no-record", rc=1)
    assert "another model" in p.stderr


def test_no_board_output_times_out():
    master, slave = os.openpty()
    try:
        with pytest.raises(RunTimeout, match="hello not seen"):
            collect(FdReader(master, 0.05), 3, 1, timeout=0.5)
    finally:
        os.close(master)
        os.close(slave)


def test_collect_from_log_bytes():
    class Src:
        def __init__(self, data):
            self.data = data

        def read(self, n):
            out, self.data = self.data[:n], self.data[n:]
            return out
    run_ = collect(Src(SYNTHETIC_LOG.read_bytes()), 9, 3, timeout=5, skip=0)
    assert [inf.seq for inf in run_.inferences] == [0, 1, 3]
    assert run_.incomplete == 1 and run_.corrupt == 1 and run_.foreign >= 1


def test_device_error_line_is_reported():
    data = encode_line("hello", {"proto": 1, "fw": "x", "model": "0" * 12, "board": "b",
                                 "runtime": "r", "arena": 1, "used": 1, "ops": ["A"], "in": [],
                                 "out": [], "input": "synthetic"})
    data += encode_line("err", {"code": "alloc", "msg": "AllocateTensors() failed"})

    class Src:
        def read(self, n, _d=[data]):
            out, _d[0] = _d[0][:n], _d[0][n:]
            return out
    from nanoml.errors import NanomlError
    with pytest.raises(NanomlError, match="alloc"):
        collect(Src(), 1, 1, timeout=5)


# --- estimate CLI, reports, recording ----------------------------------------------

def test_profile_estimate_cli_json():
    d = json.loads(run("profile", VGG, "--estimate", "--json").stdout)
    assert d["source"] == "estimate"
    assert d["instructions"] > 0 and d["cpi"] == d["build"]["cpi"] == 1.4
    ms = d["instructions"] * 1.4 / 64e6 * 1000
    assert abs(d["latency_ms"]["estimate"] - ms) < 1e-3 and "p50" not in d["latency_ms"]
    assert set(d["layers"][0]) >= {"index", "op", "macs", "instructions", "cycles", "ms"}


def test_profile_estimate_all_shared_models(shared_models):
    # exit 1: the audio front end's custom ops are unsupported, mobilenet_v2 does not fit
    cannot_run = ("audio_preprocessor_int8.tflite", "mobilenet_v2_quantized_1x3x224x224.tflite")
    for p in sorted(shared_models.glob("*.tflite")):
        d = json.loads(run("profile", p, "--estimate", "--json",
                           rc=1 if p.name in cannot_run else 0).stdout)
        assert d["instructions"] > 0 and d["can_run"] is (p.name not in cannot_run), p.name


def test_profile_usage_errors(tmp_path):
    p = run("profile", VGG, "--sim", "--estimate", rc=2)
    assert "choose one" in p.stderr
    run("profile", tmp_path / "missing.tflite", "--estimate", rc=2)
    p = run("profile", VGG, "--estimate", "--report", tmp_path / "r.pdf", rc=2)
    assert "report" in p.stderr
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    run("profile", bad, "--estimate", rc=2)


def test_reports_render(tmp_path):
    from nanoml.profile.estimate import estimate
    from nanoml.boards import get_board
    r = estimate(VGG, "chirale_2.0.0", get_board(None))
    md = to_markdown(r)
    assert md.count("\n| ") >= len(r.layers) + 2
    top = max(r.layers, key=lambda layer: layer.ms)
    assert f"{top.index} {top.op}" in md and "#" * 30 in md     # the longest bar is full width
    html = to_html(r)
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert "http" not in html and html.count("class=bar") == len(r.layers)


def test_arena_record_roundtrip(tmp_path):
    record_arena(tmp_path, "ab" * 32, "chirale_2.0.0", "nano33ble_sense", 1000, 990, "device")
    assert read_recorded_arena(tmp_path, "ab" * 32, "chirale_2.0.0")["min_bytes"] == 1000
    assert read_recorded_arena(tmp_path, "cd" * 32, "chirale_2.0.0") is None
    record_arena(tmp_path, "ab" * 32, "chirale_2.0.0", "nano33ble_sense", 1000, 990, "sim")
    assert read_recorded_arena(tmp_path, "ab" * 32, "chirale_2.0.0") is None
    assert read_recorded_arena(tmp_path, "ab" * 32, "chirale_2.0.0", accept_sim=True)


def test_percentile_matches_numpy():
    np = pytest.importorskip("numpy")
    xs = [5.0, 1.0, 9.5, 3.25, 7.0, 2.0]
    for q in (0, 50, 99, 100):
        assert abs(percentile(xs, q) - float(np.percentile(xs, q))) < 1e-12
