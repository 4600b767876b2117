"""The layer-dump link (issue 13), device path: a recorded frame stream
replayed over a pseudo-terminal by a fake board, clean and with faults.

The recording (tests/data/layers/gesture_frame1.nmlog, how and when: its
README.md) is of the VIRTUAL board, `nanoml sim --input serial --layers`,
read through its pty: no board was available. The tests check it against a
fresh run of TFLM's host interpreter, then replay it as a board would send
it: a dump larger than one line is chunked and reassembled; a corrupted,
altered or missing chunk, or a lost header, is detected and the frame
re-sent; what stays broken is a one-line error, never a returned tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layer_fakes import (ReplayBoard, corrupt_chunk, drop_chunk, drop_header, load_recording,
                         split_recording, tensor_crc_mismatch)
from nanoml.serial import protocol as P
from nanoml.serial.layers import (LayerAssembler, chunk_count, LayerDumpError, LayersNotSupported,
                                  request_layers, supports_layers, unreadable_outputs)
from nanoml.serial.link import BoardLink
from nanoml.serial.stream import StreamDecoder

ROOT = Path(__file__).resolve().parent.parent
RECORDING, META = load_recording()
PAYLOAD = bytes.fromhex(META["payload_hex"])


def recorded_dumps() -> dict:
    asm = LayerAssembler(META["frame"])
    for p in StreamDecoder().feed(RECORDING):
        asm.feed(p)
    good, problems = asm.dumps()
    assert problems == []
    return good


def test_recording_is_what_the_host_interpreter_computes():
    """Every recorded layer equals the same operator's output in a fresh TFLM
    host interpreter (all tensors preserved) on the recorded input."""
    from nanoml.sim.layers import layer_plan
    from nanoml.sim.model import SimModel
    good = recorded_dumps()
    m = SimModel(ROOT / META["model"], preserve=True)
    try:
        assert m.sha256 == META["sha256"]
        m.run([PAYLOAD])
        plan = layer_plan(m.model)
        assert [(i, o) for i, o, _, _ in plan] == sorted(good)
        want = m.tensors([t for _, _, _, t in plan])
    finally:
        m.close()
    for (i, o, name, t), w in zip(plan, want):
        d = good[(i, o)]
        assert (d.name, d.tensor, d.dtype, d.shape) == (name, t, str(w.dtype), w.shape)
        np.testing.assert_array_equal(d.data, w)


def test_recording_has_a_chunked_dump():
    good = recorded_dumps()
    big = [d for d in good.values() if len(d.raw) > P.LAYER_CHUNK_BYTES]
    assert big, "the recording has no tensor larger than one chunk"
    lines = [ln for ln in RECORDING.split(b"\n") if ln.startswith(b"~nm lch frame=1 i=0 ")]
    assert len(lines) == -(-len(good[(0, 0)].raw) // P.LAYER_CHUNK_BYTES) > 1
    layer_lines = [ln for ln in RECORDING.split(b"\n") if ln[:8] in (b"~nm lay ", b"~nm lch ")]
    assert max(len(ln) + 1 for ln in layer_lines) <= P.MAX_LINE_LENGTH


def _request(fake, **kw):
    with BoardLink.open(fake.port) as link:
        hello = link.wait_hello(timeout=5)
        return hello, request_layers(link, PAYLOAD, timeout=3, **kw)


def test_clean_replay_reassembles_every_layer():
    with ReplayBoard(RECORDING, PAYLOAD) as fake:
        hello, run = _request(fake)
    assert supports_layers(hello)
    good = recorded_dumps()
    assert [(d.op, d.output) for d in run] == sorted(good)
    assert all(d.raw == good[(d.op, d.output)].raw for d in run)
    assert run.retries == 0 and run.corrupt_lines == 0 and fake.attempts == 1
    assert run.ops == 9 and run.nested == 0 and run.result["frame"] == run.frame
    _, after = split_recording(RECORDING)
    assert run.link_bytes == sum(len(ln) for ln in after if not ln.startswith(b"~nm res"))


@pytest.mark.parametrize("fault,lines", [
    (corrupt_chunk(0, 5), lambda good: 1),        # the line's CRC-16 fails: a corrupt line
    (tensor_crc_mismatch(2, 1), lambda good: 0),  # the line passes, the tensor's CRC-32 fails
    (drop_chunk(0, 17), lambda good: 0),          # the last chunk of a chunked tensor lost
    (drop_header(3), lambda good: chunk_count(len(good[(3, 0)].raw))),  # its chunks orphaned
])
def test_a_damaged_dump_is_detected_and_the_frame_resent(fault, lines):
    with ReplayBoard(RECORDING, PAYLOAD, faults=[fault]) as fake:
        _, run = _request(fake)
    good = recorded_dumps()
    assert run.retries == 1 and fake.attempts == 2
    assert run.corrupt_lines == lines(good)
    assert [(d.op, d.output) for d in run] == sorted(good)
    assert all(d.raw == good[(d.op, d.output)].raw for d in run)


def test_damage_on_every_attempt_is_one_line_error_not_data():
    with ReplayBoard(RECORDING, PAYLOAD, faults=[tensor_crc_mismatch(2, 1)] * 3) as fake:
        with pytest.raises(LayerDumpError) as e:
            _request(fake, retries=2)
    assert fake.attempts == 3
    msg = str(e.value)
    assert "\n" not in msg and "operator 2" in msg and "CRC-32" in msg


def test_a_firmware_without_the_layer_dump_build_is_told_what_to_do():
    hello, _ = split_recording(RECORDING)
    plain = P.encode_line("hello", {**P.parse_line(hello[0]).fields, "layers": False})
    assert b"layers=" in plain and b"layers=1" not in plain
    with ReplayBoard(RECORDING, PAYLOAD, hello=plain) as fake:
        with pytest.raises(LayersNotSupported) as e:
            _request(fake)
    assert fake.attempts == 0
    assert e.value.exit_code == 2 and "--layers" in e.value.hint


def test_layer_lines_are_bounded():
    too_long = P.encode_line("lch", {"frame": 1, "i": 0, "o": 0, "k": 0,
                                     "hex": bytes(P.LAYER_CHUNK_BYTES + 1)})
    assert P.parse_line(too_long).reason == "invalid"
    longest = P.encode_line("lch", {"frame": P.UINT_MAX, "i": P.UINT_MAX, "o": P.UINT_MAX,
                                    "k": P.UINT_MAX, "hex": bytes(P.LAYER_CHUNK_BYTES)})
    assert len(longest) <= P.MAX_LINE_LENGTH
    assert P.parse_line(P.encode_line("lay", {"frame": 1, "i": 0, "o": 0, "op": "X", "t": 0,
                                              "dtype": "int8", "shape": list(range(9)),
                                              "bytes": 0, "chunks": 0, "crc": 0})).reason == "invalid"


def test_outputs_without_values_are_named_from_the_model():
    from nanoml.model.tflite import load
    assert unreadable_outputs(load(ROOT / META["model"])) == []


def test_any_port_that_speaks_the_protocol_the_sims_link_included(tmp_path):
    """`nanoml sim MODEL --input serial --layers --link L` in its own process,
    read through the link L like a board's port: the recorded layers again."""
    from nanoml.sim.process import SimProcess
    link_path = tmp_path / "board"
    sim = SimProcess.spawn(ROOT / META["model"], input="serial", rate_hz=0, link=link_path,
                           extra_args=["--layers"])
    try:
        with BoardLink.open(str(link_path)) as link:
            link.wait_hello(timeout=10)
            run = request_layers(link, PAYLOAD, timeout=10)
    finally:
        sim.stop()
    good = recorded_dumps()
    assert [(d.op, d.output) for d in run] == sorted(good)
    assert all(d.raw == good[(d.op, d.output)].raw for d in run)
    assert run.retries == 0 and run.result["sim"] is True


@pytest.mark.parametrize("name", ["keyword_scrambled.tflite", "trained_lstm_int8.tflite"])
def test_stateful_models_dump_the_same_layers_for_the_same_frame(name):
    """The sim resets the interpreter before each dumped frame (as the firmware
    does), so a re-sent frame (what recovers a damaged dump) gives the same
    bytes for SVDF and LSTM models, whose variable tensors change every invoke."""
    from conftest import shared_path
    from nanoml.sim.board import start_virtual_board
    board = start_virtual_board(shared_path("models", name), input="serial", rate_hz=0,
                                layers=True)
    try:
        with BoardLink.open(board.port) as link:
            link.wait_hello(timeout=10)
            rng = np.random.default_rng(1)
            payload = rng.integers(0, 256, board.model.input_bytes, dtype=np.uint8).tobytes()
            first = request_layers(link, payload, timeout=10)
            second = request_layers(link, payload, timeout=10)
    finally:
        board.stop()
    assert first.frame != second.frame and len(first) == len(board.model.model.main.operators)
    assert [d.raw for d in first] == [d.raw for d in second]
    assert all(d.readable for d in first)


def test_sim_layers_needs_serial_input():
    from mutants import run_cli
    r = run_cli(["sim", str(ROOT / META["model"]), "--layers", "--no-link", "--count", "1"],
                timeout=120)
    assert r.exit_code == 2 and "--input serial" in r.stderr and "Traceback" not in r.stderr
