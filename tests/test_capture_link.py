"""The raw sample link (nanoml.capture.link) against the virtual sensor board
and the fake boards of tests/capture_fakes.py, all on real pseudo-terminals:
bit-exact takes, gaps found by frame number and checksum, a board that goes
away, sensors a board does not have."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest

from capture_fakes import start_fake_board
from nanoml.capture.link import (BoardGone, CaptureError, SensorAbsent, TakeAssembler,
                                 TakeEnd, TakeStart, open_link)
from nanoml.errors import UsageError
from nanoml.serial.protocol import encode_line, parse_line

IMU9 = ["ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz"]


def _wav(path, samples: np.ndarray, rate: int = 16000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def minute_wav(tmp_path_factory):
    """60 s of int16 noise over the whole range (every bit pattern matters)."""
    rng = np.random.default_rng(12)
    s = rng.integers(-32768, 32768, size=60 * 16000, dtype=np.int64).astype(np.int16)
    s[:4] = [-32768, 32767, 0, -1]
    return _wav(tmp_path_factory.mktemp("wav") / "minute.wav", s), s


@pytest.fixture(scope="module")
def imu_csv(tmp_path_factory):
    rng = np.random.default_rng(5)
    v = (rng.normal(size=(3000, 9)) * [1, 1, 1, 250, 250, 250, 50, 50, 50]).astype(np.float32)
    v[0, 0], v[0, 1] = np.float32(1e-38), np.float32(-3.4e38)
    p = tmp_path_factory.mktemp("csv") / "imu.csv"
    with open(p, "w") as f:
        f.write("t_ms," + ",".join(IMU9) + "\n")
        for k, row in enumerate(v):
            f.write(f"{k * 10}," + ",".join(repr(float(x)) for x in row) + "\n")
    return p, v


def test_sixty_seconds_of_audio_are_bit_identical_takes(minute_wav):
    path, src = minute_wav
    with open_link(sim=True, source=path, fast=True) as link:
        assert link.info.sensors == ["mic"] and link.info.sim
        t0 = time.monotonic()
        for k in range(6):
            take = link.record("mic", samples=160000)
            assert take.end.complete and take.end.gaps == [] and take.end.why == "done"
            assert take.start.rate == 16000 and take.start.fmt == "i16"
            got = take.samples()
            assert got.dtype == np.int16
            assert np.array_equal(got, src[k * 160000:(k + 1) * 160000]), k
        # at least twice real time through the pty (benchmarks/bench_capture.py: ~19x)
        assert time.monotonic() - t0 < 30.0
        # the file is used up: the next take ends at once, marked so
        take = link.record("mic", samples=16000)
        assert take.end.why == "end" and take.end.samples == 0 and link.source_ended


def test_imu_csv_at_100_hz_9_channels_round_trips_float32(imu_csv):
    path, src = imu_csv
    with open_link(sim=True, source=path, fast=True) as link:
        starts = []
        for k in range(3):
            take = link.record("imu", rate=100, channels=9, samples=1000)
            starts.append(take.start)
            assert take.end.complete
            got = take.samples()
            assert got.dtype == np.float32 and got.shape == (1000, 9)
            assert got.tobytes() == src[k * 1000:(k + 1) * 1000].tobytes()
            t_us = [b.t_us for b in take.blocks]
            assert t_us == [b.index * 10_000 for b in take.blocks]
    assert starts[0].names == IMU9 and starts[0].units == ["g"] * 3 + ["dps"] * 3 + ["uT"] * 3
    assert [s.take for s in starts] == [1, 2, 3]


@pytest.mark.parametrize("channels", [3, 6])
def test_fewer_imu_channels_are_the_first_columns(imu_csv, channels):
    path, src = imu_csv
    with open_link(sim=True, source=path, fast=True) as link:
        got = link.record("imu", rate=50, channels=channels, samples=77).samples()
    assert got.tobytes() == src[:77, :channels].tobytes()


def test_breaking_out_of_a_take_reads_it_to_its_end_before_the_next(minute_wav):
    path, src = minute_wav
    with open_link(sim=True, source=path, fast=True) as link:
        for chunk in link.take("mic", samples=1000):
            assert chunk.index == 0
            break
        take = link.record("mic", samples=500)
        assert take.start.take == 2 and np.array_equal(take.samples(), src[1000:1500])


@pytest.mark.parametrize("kind", ["drop", "corrupt"])
def test_lost_and_garbled_frames_are_gaps_never_joined(minute_wav, kind):
    path, src = minute_wav
    fake = start_fake_board(kind, path, after_takes=1, lines=(3, 7))
    try:
        with open_link(port=fake.port, timeout=5) as link:
            assert link.info.firmware == "fake-board"
            first = link.record("mic", samples=8000)
            assert first.end.complete
            second = link.record("mic", samples=8000)
    finally:
        fake.stop()
    end = second.end
    assert not end.complete and fake.faults == 2
    assert [(g.first, g.missing, g.frames) for g in end.gaps] == [(360, 120, 1), (840, 120, 1)]
    assert end.received == 8000 - 240 and end.samples == 8000
    assert end.corrupt == (2 if kind == "corrupt" else 0)
    # every block is where the board put it: the samples around the gaps are the source's
    for b in second.blocks:
        assert np.array_equal(b.data, src[8000 + b.index:8000 + b.index + b.n])
    with pytest.raises(CaptureError, match="gap"):
        second.samples()


def test_a_board_that_vanishes_mid_take(minute_wav):
    path, src = minute_wav
    fake = start_fake_board("vanish", path, after_takes=2, lines=(5,))
    kept = []
    with open_link(port=fake.port, timeout=5) as link:
        kept.append(link.record("mic", samples=4000))
        kept.append(link.record("mic", samples=4000))
        with pytest.raises(BoardGone, match="during take 3"):
            link.record("mic", samples=4000)
    fake.stop()
    assert [t.end.complete for t in kept] == [True, True]
    assert np.array_equal(np.concatenate([t.samples() for t in kept]), src[:8000])


def test_mic_on_the_plain_nano33ble_is_refused_before_anything_runs(minute_wav):
    with pytest.raises(SensorAbsent, match="no microphone"):
        open_link(sim=True, source=minute_wav[0], board="nano33ble")


def test_a_sensor_the_firmware_does_not_capture_is_refused_by_the_board(minute_wav):
    fake = start_fake_board("ok", minute_wav[0])          # a mic firmware
    try:
        with open_link(port=fake.port, timeout=5) as link:
            with pytest.raises(SensorAbsent, match="imu"):
                link.record("imu", samples=10)
            assert link.record("mic", samples=10).end.complete   # the link still works
    finally:
        fake.stop()


@pytest.mark.parametrize("sensor,rate,ch,msg", [
    ("mic", 8000, None, "16000"), ("imu", 500, 9, "1 .. 119"), ("imu", 100, 4, "3 .. acc"),
    ("baro", None, None, "unknown sensor")])
def test_bad_requests_are_one_line_usage_errors(sensor, rate, ch, msg):
    with open_link(sim=True, fast=True) as link:
        with pytest.raises(UsageError) as e:
            link.record(sensor, rate=rate, channels=ch, samples=10)
    assert msg.split(" .. ")[0] in str(e.value) and "\n" not in str(e.value)


def test_synthetic_source_feeds_both_sensors_deterministically():
    with open_link(sim=True, fast=True) as a, open_link(sim=True, fast=True) as b:
        x = a.record("mic", samples=1000).samples()
        y = b.record("mic", samples=1000).samples()
        m = a.record("imu", rate=100, channels=6, samples=30).samples()
    assert np.array_equal(x, y) and x.std() > 1000 and m.shape == (30, 6)


def _line(t, **f):
    return parse_line(encode_line(t, f))


def _cst(take=1):
    return _line("cst", take=take, sensor="mic", rate=16000, ch=1, n=6, fmt="i16", names=["mic"],
                 units=["pcm16"], spf=2, board="b", rev="rev1", fw="f")


def _smp(seq, i, vals, take=1):
    return _line("smp", take=take, seq=seq, i=i, n=len(vals),
                 d=np.array(vals, "<i2").tobytes())


def test_assembler_counts_repeats_and_reorders_as_corrupt_not_data():
    a = TakeAssembler()
    evs = []
    for p in [_cst(), _smp(0, 0, [1, 2]), _smp(0, 0, [1, 2]), _smp(2, 4, [5, 6]),
              _smp(1, 2, [3, 4]), _smp(0, 0, [9], take=7),
              _line("cend", take=1, samples=6, frames=3, drop=0, why="done")]:
        evs += a.feed(p)
    assert isinstance(evs[0], TakeStart)
    end = evs[-1]
    assert isinstance(end, TakeEnd) and end.received == 4 and end.corrupt == 2
    assert [(g.first, g.missing) for g in end.gaps] == [(2, 2)] and a.stray == 1


def test_assembler_reports_missing_tail_frames_and_a_lost_end():
    a = TakeAssembler()
    for p in [_cst(), _smp(0, 0, [1, 2])]:
        a.feed(p)
    end = a.feed(_line("cend", take=1, samples=6, frames=3, drop=1, why="done"))[0]
    assert [(g.first, g.missing, g.reason) for g in end.gaps] == [(2, 4, "end")]
    assert end.dropped == 1 and not end.complete
    a.feed(_cst(2))
    assert a.lost().why == "error" and not a.active


KEYWORD = Path(__file__).resolve().parents[1] / "examples" / "keyword" / "keyword_int8.tflite"


@pytest.fixture(scope="module")
def eager_keyword(tmp_path_factory):
    """The keyword example with a decision that fires on (nearly) every result."""
    from mutants import run_cli
    out = tmp_path_factory.mktemp("kw") / "k.tflite"
    r = run_cli(["pipeline", str(KEYWORD), "--frontend", "micro_speech", "--labels", "a,b,c,d",
                 "--stride-ms", "200", "--threshold", "1", "--minimum-count", "1",
                 "--suppression-ms", "0", "--out", str(out)], timeout=120)
    assert r.exit_code == 0, r.stderr
    return out


def _board_lines(vb, send: bytes, until: bytes, timeout: float = 60.0) -> list:
    import serial
    from nanoml.serial.stream import StreamDecoder
    dec, out = StreamDecoder(), []
    with serial.Serial(vb.port, 115200, timeout=0.1) as port:
        port.write(send)
        end = time.monotonic() + timeout
        while time.monotonic() < end and not any(
                getattr(p, "type", None) == until.decode() for p in out):
            out += dec.feed(port.read(8192))
    return out


def test_the_virtual_board_sends_the_raw_window_behind_each_detection(eager_keyword, tmp_path):
    from nanoml.sim.board import VirtualBoard
    rng = np.random.default_rng(3)
    src = rng.integers(-3000, 3000, size=3 * 16000).astype(np.int16)
    wav = _wav(tmp_path / "noise.wav", src)
    vb = VirtualBoard(eager_keyword, source=wav, fast=True).start()
    try:
        lines = _board_lines(vb, b"\n" + encode_line("dwin", {"seq": 1, "on": True}) +
                             encode_line("cap", {"seq": 2, "sensor": "mic", "rate": 16000,
                                                 "ch": 1, "n": 10}) + b"~nm foo*0000\r\n",
                             until=b"end")
    finally:
        vb.stop()
    msgs = [p for p in lines if hasattr(p, "fields")]
    acks = [(m.fields["seq"], m.fields["ok"], m.fields.get("why")) for m in msgs
            if m.type == "cack"]
    assert acks == [(1, True, None), (2, False, "sensor")]       # no takes on a model's board
    assert [m.fields["why"] for m in msgs if m.type == "ack"] == ["type"]
    a, res_t, windows = TakeAssembler(), {}, []
    for m in msgs:
        if m.type == "res":
            res_t[m.fields["seq"]] = m.fields["t_ms"]
        for ev in a.feed(m):
            if isinstance(ev, TakeStart):
                start, blocks = ev, []
            elif isinstance(ev, TakeEnd):
                assert ev.complete
                windows.append((start.det, np.concatenate([b.data for b in blocks])))
            elif hasattr(ev, "data"):
                blocks.append(ev)
    dets = [m.fields["seq"] for m in msgs if m.type == "det"]
    assert len(dets) >= 5 and [d for d, _ in windows] == dets
    n = (49 - 1) * 320 + 480                        # the 49 frames the front end saw
    for det, w in windows:
        end = res_t[det] * 16                       # t_ms = end * 1000 // 16000, exact here
        assert len(w) == n and np.array_equal(w, src[end - n:end]), det


def test_dwin_is_refused_by_a_board_without_detections():
    with open_link(sim=True, fast=True) as link:
        with pytest.raises(CaptureError, match="why=window"):
            link.set_detection_windows(True)


def test_a_take_aborted_by_the_host_does_not_block_the_next(minute_wav):
    """Ctrl-C: abort() sends stop and forgets the take; if the stop is lost the
    board still streams it, answers the next cap with busy, and the link ends
    that take (stop) before asking again."""
    path, src = minute_wav
    with open_link(sim=True, source=path, fast=False) as link:
        for chunk in link.take("mic", samples=0):         # until stopped
            break
        link.assembler.lost("stop")                        # as if abort()'s stop was lost
        assert link.board.engine.active                    # the board still streams take 1
        take = link.record("mic", samples=100)
    assert take.end.complete and take.start.take == 2
