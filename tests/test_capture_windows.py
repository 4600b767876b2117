"""monitor --save's window saver on the real protocol: lines built by the
protocol's encoder (as a firmware sends them after a `det`), decoded by the host's
stream decoder, assembled by the capture link's TakeAssembler, written as dataset
takes labelled with what the model said."""

from __future__ import annotations

import json

import numpy as np

from nanoml.capture.windows import WindowSaver, safe_label
from nanoml.serial.protocol import encode_line
from nanoml.serial.stream import StreamDecoder

SPF = 120


def window_lines(det_seq: int, label: str, score: int, samples: np.ndarray, take: int = 1,
                 drop_frames=(), corrupt_frames=()) -> bytes:
    out = [encode_line("det", {"seq": det_seq, "i": 1, "label": label, "score": score,
                               "t_ms": 990})]
    n = len(samples)
    out.append(encode_line("cst", {"take": take, "sensor": "mic", "rate": 16000, "ch": 1, "n": n,
                                   "fmt": "i16", "names": ["mic"], "units": ["pcm16"],
                                   "spf": SPF, "board": "nano33ble_sense", "rev": "rev1",
                                   "fw": "test-fw", "det": det_seq}))
    frames = 0
    for k, i in enumerate(range(0, n, SPF)):
        chunk = samples[i:i + SPF]
        line = encode_line("smp", {"take": take, "seq": k, "i": i, "n": len(chunk),
                                   "d": chunk.astype("<i2").tobytes()})
        frames += 1
        if k in drop_frames:
            continue
        if k in corrupt_frames:
            j = line.index(b" d=") + 4
            line = line[:j] + (b"B" if line[j:j + 1] == b"A" else b"A") + line[j + 1:]
        out.append(line)
    out.append(encode_line("cend", {"take": take, "samples": n, "frames": frames, "drop": 0,
                                    "why": "done"}))
    return b"".join(out)


def feed(saver, data: bytes) -> list[dict]:
    dec = StreamDecoder()
    written = []
    for p in dec.feed(data):
        written += saver.feed(p)
    return written


def test_a_detection_window_becomes_a_labelled_take(tmp_path):
    rng = np.random.default_rng(5)
    w = rng.integers(-20000, 20000, 15840).astype(np.int16)
    saver = WindowSaver(tmp_path / "misses", model="abcdef012345")
    got = feed(saver, window_lines(41, "yes", 207, w))
    assert len(got) == 1
    e = got[0]
    assert e["file"] == "yes/yes.1.wav" and e["label"] == "yes"
    assert (e["predicted"], e["score"], e["det_seq"], e["t_ms"]) == ("yes", 207, 41, 990)
    assert e["gaps"] == 0 and e["samples"] == 15840 and e["model"] == "abcdef012345"
    from nanoml.pipeline.wav import read_wav
    assert np.array_equal(read_wav(tmp_path / "misses" / e["file"])[0], w)
    lines = (tmp_path / "misses" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == got
    # the next window of the same label takes the next number
    got2 = feed(saver, window_lines(42, "yes", 190, w[::-1].copy(), take=2))
    assert got2[0]["file"] == "yes/yes.2.wav"


def test_a_window_with_lost_frames_is_kept_apart(tmp_path):
    w = np.arange(2400, dtype=np.int16)
    saver = WindowSaver(tmp_path / "m")
    e = feed(saver, window_lines(7, "_unknown_", 150, w, drop_frames=(2,),
                                 corrupt_frames=(5,)))[0]
    assert e["file"] == "_gaps/unknown_/unknown_.1.wav" and e["predicted"] == "_unknown_"
    assert e["gaps"] == 2 * SPF and e["gap_spans"] == [[2 * SPF, SPF], [5 * SPF, SPF]]
    assert e["corrupt_lines"] == 1 and e["kept_apart"] is True


def test_labels_from_the_board_are_made_plain_names():
    assert safe_label("_silence_") == "silence_"
    assert safe_label("../etc") == "etc"
    assert safe_label("a/b c") == "a_b_c"
    assert safe_label("") == "unlabelled"


def test_monitor_save_says_when_the_firmware_sends_no_windows(tmp_path):
    """A board that refuses `dwin` (cack why=window, as the firmware does today):
    one no-windows status, the monitor goes on, saved.refused says why."""
    from capture_fakes import start_fake_board
    from mutants import run_cli
    fake = start_fake_board("ok", sensor="mic")
    try:
        r = run_cli(["monitor", "--port", fake.port, "--json", "--duration", "2.5",
                     "--save", str(tmp_path / "m")], timeout=60)
    finally:
        fake.stop()
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    warn = [d for d in recs if d["type"] == "status" and d["event"] == "no-windows"]
    assert len(warn) == 1 and "why=window" in warn[0]["message"]
    assert recs[-1]["saved"] == {"dir": str(tmp_path / "m"), "windows": 0, "with_gaps": 0,
                                 "refused": "window"}
    from test_json_schema import check, schema
    check(recs[-1], schema("monitor/1 summary"), "monitor --save summary")


def test_take_buffer_places_frames_by_index_and_counts_what_is_wrong():
    from nanoml.capture.takes import TakeBuffer, level
    b = TakeBuffer(10, "mic", ["audio"], 16000, first_index=0)
    b.add(0, None, np.arange(4, dtype=np.int16))
    b.add(6, None, np.arange(6, 10, dtype=np.int16))
    b.add(2, None, np.array([2, 3], dtype=np.int16))          # repeated samples
    b.add(9, None, np.array([9, 10, 11], dtype=np.int16))      # runs past the end
    t = b.finish(corrupt=1)
    assert t.samples.tolist() == [0, 1, 2, 3, 0, 0, 6, 7, 8, 9]
    assert (t.gaps, t.gap_spans, t.duplicates, t.corrupt, t.clock) == (2, [[4, 2]], 5, 1, False)
    assert t.t_us.tolist() == [round(i * 1e6 / 16000) for i in range(10)]
    assert level(np.full(100, 32767, np.int16), "mic") > -0.01
    assert level(np.zeros(100, np.int16), "mic") == -96.0
    assert abs(level(np.array([[0.6, 0.0, 0.8]], np.float32), "imu") - 1.0) < 1e-6


def test_take_buffer_unwraps_the_board_clock():
    from nanoml.capture.takes import TakeBuffer
    b = TakeBuffer(4, "imu", ["ax", "ay", "az"], 100, first_index=0)
    b.add(0, 2**32 - 10000, np.zeros((2, 3), np.float32))     # micros() about to wrap
    b.add(2, 10000, np.zeros((2, 3), np.float32))
    t = b.finish()
    assert t.clock and np.diff(t.t_us).tolist() == [10000, 10000, 10000]


def test_monitor_save_to_a_file_is_refused_before_anything_runs(tmp_path):
    from mutants import run_cli
    (tmp_path / "f").write_text("x")
    r = run_cli(["monitor", "--port", str(tmp_path / "no-port"), "--save", str(tmp_path / "f")],
                timeout=30)
    assert r.exit_code == 2 and not r.traceback, r.stderr
    errs = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errs) == 1 and f"--save {tmp_path / 'f'} is a file" in errs[0]
