"""The virtual board: a model in TFLM's host interpreter behind a real
pseudo-terminal, speaking the firmware's protocol. Models: the committed
examples/ (always) and ../shared/models (skipped when absent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime

from conftest import EXAMPLES, shared_model_names, shared_path
from nanoml.errors import NanomlError
from nanoml.serial.link import BoardLink, FrameRejected
from nanoml.serial.protocol import encode_frame
from nanoml.serial.synthetic import synthetic_inputs
from nanoml.sim.board import start_virtual_board
from nanoml.sim.model import SimModel
from nanoml.sim.process import SimProcess

GESTURE = EXAMPLES / "gesture" / "gesture_int8.tflite"
SINE = EXAMPLES / "sine" / "sine_int8.tflite"


def reference_outputs(model: Path, inputs: list[bytes]) -> list[np.ndarray]:
    """What TFLM's host interpreter gives for these input bytes, used directly."""
    ip = runtime.Interpreter.from_file(str(model), arena_size=256 * 1024)
    for i, data in enumerate(inputs):
        d = ip.get_input_details(i)
        ip.set_input(np.frombuffer(data, d["dtype"]).reshape(d["shape"]), i)
    ip.invoke()
    n = 0
    outs = []
    while True:
        try:
            outs.append(np.array(ip.get_output(n)))
        except (IndexError, RuntimeError, ValueError):
            break
        n += 1
        if n >= 16:
            break
    return outs


def dequantize(model: Path, raw: list[np.ndarray]) -> list[float]:
    ip = runtime.Interpreter.from_file(str(model), arena_size=256 * 1024)
    out = []
    for i, arr in enumerate(raw):
        q = ip.get_output_details(i)["quantization_parameters"]
        if len(q["scales"]):
            out += (((arr.astype(np.float64) - q["zero_points"][0]) * q["scales"][0])
                    .astype(np.float32).reshape(-1).tolist())
        else:
            out += arr.astype(np.float32).reshape(-1).tolist()
    return out


def test_example_models_are_present():
    assert GESTURE.exists() and SINE.exists()


def test_sim_model_describes_and_runs_gesture():
    m = SimModel(GESTURE)
    assert [t.spec() for t in m.inputs] == [{"dtype": "int8", "shape": [1, 64, 3, 1]}]
    assert [t.spec() for t in m.outputs] == [{"dtype": "int8", "shape": [1, 4]}]
    assert m.ops[0] == "CONV_2D" and "SOFTMAX" in m.ops
    assert m.arena_used and 0 < m.arena_used < m.arena_size
    for seq in (0, 1, 77):
        inputs = m.synthetic(seq)
        r = m.run(inputs)
        raw = reference_outputs(GESTURE, inputs)
        assert r.q == raw[0].reshape(-1).tolist()
        assert r.outputs == dequantize(GESTURE, raw)
        assert r.top == int(np.argmax(raw[0])) and r.us >= 0
        assert sum(r.outputs) == pytest.approx(1.0, abs=0.02)       # softmax


def test_virtual_board_hello_and_synthetic_results():
    with start_virtual_board(GESTURE, rate_hz=100, link=None) as board, \
            BoardLink.open(board.port) as link:
        hello = link.wait_hello(timeout=3)       # sent when the host opens the port
        m = board.model
        assert hello["proto"] == 1 and hello["sim"] is True and hello["input"] == "synthetic"
        assert hello["model"] == m.sha256[:12]
        assert hello["ops"] == m.ops and hello["in"] == [t.spec() for t in m.inputs]
        assert hello["used"] == m.arena_used and hello["arena"] == m.arena_size
        got = {}
        for p in link.messages(5):
            if getattr(p, "type", None) == "res":
                got[p.fields["seq"]] = p.fields
                if len(got) >= 10:
                    break
        assert len(got) >= 10
        for seq, f in got.items():
            raw = reference_outputs(GESTURE, synthetic_inputs(seq, [(192, 9)]))
            assert f["q"] == raw[0].reshape(-1).tolist(), seq
            assert f["out"] == pytest.approx(dequantize(GESTURE, raw), rel=1e-5, abs=1e-7)
            assert f["sim"] is True and "frame" not in f


def test_input_frames_come_back_as_results():
    rng = np.random.default_rng(0)
    with start_virtual_board(GESTURE, input="serial", link=None) as board, \
            BoardLink.open(board.port) as link:
        for _ in range(5):
            payload = rng.integers(-128, 128, 192, dtype=np.int8).tobytes()
            res = link.infer(payload, timeout=5)
            raw = reference_outputs(GESTURE, [payload])
            assert res["frame"] == link.seq
            assert res["q"] == raw[0].reshape(-1).tolist()
        # a frame of the wrong length and a damaged frame are rejected with the reason
        with pytest.raises(FrameRejected) as e:
            link.infer(b"\x00" * 191, timeout=5)
        assert e.value.why == "len"
        bad = bytearray(encode_frame(99, b"\x01" * 192))
        bad[30] ^= 0x01 if bad[30] != ord("*") else 0
        link.ser.write(bytes(bad))
        acks = [p.fields for p in link.messages(2) if getattr(p, "type", None) == "ack"]
        assert acks and acks[0]["ok"] is False and acks[0]["why"] in ("crc", "syntax")
        assert board.stats.frames_ok == 5 and board.stats.frames_rejected == 2
        # only the accepted frames produced results: serial mode runs nothing on its own
        assert board.stats.results == 5


def test_frame_larger_than_the_input_is_rejected_early():
    with start_virtual_board(SINE, input="serial", link=None) as board, \
            BoardLink.open(board.port) as link:
        link.ser.write(b"~nm in seq=1 len=100000 hex=" + b"00" * 1000)
        acks = [p.fields for p in link.messages(2) if getattr(p, "type", None) == "ack"]
        assert acks == [{"seq": 1, "ok": False, "why": "len"}]
        res = link.infer(b"\x10")
        assert res["frame"] == link.seq and len(res["out"]) == 1


def test_profile_request_is_refused_with_a_reason():
    from nanoml.sim.board import VirtualBoard
    with pytest.raises(NanomlError, match="per-operator profiling"):
        VirtualBoard(SINE, profile=True)


def test_sim_command_prints_port_first_and_cleans_its_link(tmp_path):
    link = tmp_path / "board"
    proc = subprocess.Popen([sys.executable, "-m", "nanoml", "sim", str(SINE), "--link", str(link)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("/dev/pts/") and os.readlink(link) == first
        rest = proc.stdout.readline()
        assert "host time" in rest
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert not link.exists() and "stopped:" in err


def test_sim_command_json_and_bad_model(tmp_path):
    sim = SimProcess.spawn(SINE, rate_hz=50, link=tmp_path / "l", count=5)
    try:
        assert sim.info["sim"] is True and sim.info["model"]["sha256"]
        assert sim.proc.wait(timeout=20) == 0        # --count reached
        summary = json.loads(sim.proc.stdout.readline())
        assert summary["type"] == "summary" and summary["results"] == 5
    finally:
        sim.stop()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(NanomlError, match="did not start"):
        SimProcess.spawn(bad, link=tmp_path / "l2")
    r = subprocess.run([sys.executable, "-m", "nanoml", "sim", str(bad), "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and json.loads(r.stdout)["error"]


@pytest.mark.parametrize("name", ["hello_world_int8.tflite", "micro_speech_quantized.tflite",
                                  "person_detect.tflite"])
def test_shared_models_on_the_virtual_board(name):
    if name not in shared_model_names():
        shared_path("models", name)              # skips with the reason
    path = shared_path("models", name)
    with start_virtual_board(path, rate_hz=50, link=None) as board, \
            BoardLink.open(board.port) as link:
        link.wait_hello(timeout=3)
        for p in link.messages(10):
            if getattr(p, "type", None) == "res":
                seq = p.fields["seq"]
                inputs = board.model.synthetic(seq)
                raw = reference_outputs(path, inputs)
                assert p.fields["q"] == np.concatenate([r.reshape(-1) for r in raw]).tolist()
                break
        else:
            pytest.fail("no result")
