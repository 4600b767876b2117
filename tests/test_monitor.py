"""`nanoml monitor` end to end over real pseudo-terminals: against `nanoml sim`
(results checked against TFLM's host interpreter), against a pty the test
writes damaged and foreign lines into, across a sim killed and restarted,
with logs that survive a killed monitor, and in its live (rich) view."""

from __future__ import annotations

import csv
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime

from conftest import EXAMPLES
from nanoml.serial.monitor import MonitorStats, percentile
from nanoml.serial.protocol import Corrupt, Foreign, Message, encode_line
from nanoml.serial.stream import StreamDecoder
from nanoml.serial.synthetic import synthetic_inputs
from nanoml.sim.process import SimProcess

GESTURE = EXAMPLES / "gesture" / "gesture_int8.tflite"
LABELS = "idle,shake,punch,circle"


def nanoml(*args) -> list[str]:
    return [sys.executable, "-m", "nanoml", *map(str, args)]


class Reader:
    """Collect a child's stdout lines in a thread (JSON parsed when possible)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except json.JSONDecodeError:
                self.lines.append(line)

    def wait_for(self, pred, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(self.lines):
                return True
            if self.proc.poll() is not None and not self.t.is_alive():
                break
            time.sleep(0.05)
        return pred(self.lines)

    def of(self, kind):
        return [r for r in self.lines if isinstance(r, dict) and r.get("type") == kind]


class Reference:
    """Outputs of TFLM's host interpreter for the synthetic input of each seq."""

    def __init__(self, model: Path):
        self.ip = runtime.Interpreter.from_file(str(model), arena_size=256 * 1024)
        d = self.ip.get_input_details(0)
        self.shape, self.dtype = d["shape"], d["dtype"]
        self.nbytes = int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def q(self, seq: int) -> list[int]:
        data = synthetic_inputs(seq, [(self.nbytes, 9)])[0]
        self.ip.set_input(np.frombuffer(data, self.dtype).reshape(self.shape), 0)
        self.ip.invoke()
        return np.array(self.ip.get_output(0)).reshape(-1).tolist()


def check_results(results: list[dict], ref: Reference):
    for r in results:
        assert r["q"] == ref.q(r["seq"]), r
        assert r["out"] == pytest.approx([(q + 128) / 256 for q in r["q"]], rel=1e-5, abs=1e-7)
        assert r["top"] == int(np.argmax(r["q"])) and r["sim"] is True


# ---------------------------------------------------------------- end to end with the sim

def test_monitor_sim_count_50_json_matches_host_interpreter(tmp_path):
    r = subprocess.run(nanoml("monitor", "--sim", GESTURE, "--sim-rate", 100, "--count", 50,
                              "--json", "--labels", LABELS),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    res = [x for x in recs if x["type"] == "res"]
    assert len(res) == 50
    check_results(res, Reference(GESTURE))
    assert all(x["label"] == LABELS.split(",")[x["top"]] for x in res)
    summary = recs[-1]
    assert summary["type"] == "summary" and summary["exit"] == "count" and summary["results"] == 50
    assert summary["corrupt"] == 0 and summary["missed"] == 0 and summary["sim"] is True
    # the sim child is gone and its link removed
    assert not Path(summary["port"]).exists()


def test_monitor_port_on_a_running_sim_with_logs(tmp_path):
    sim = SimProcess.spawn(GESTURE, rate_hz=100, link=tmp_path / "board")
    try:
        jl, cv = tmp_path / "run.jsonl", tmp_path / "run.csv"
        for log in (jl, cv, cv):                  # the CSV twice: appends, one header
            r = subprocess.run(nanoml("monitor", "--port", sim.link, "--count", 20, "--json",
                                      "--log", log), capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        printed = [json.loads(x) for x in r.stdout.splitlines()]
        logged = [json.loads(x) for x in jl.read_text().splitlines()]
        assert sum(x["type"] == "res" for x in logged) == 20
        rows = list(csv.DictReader(cv.open()))
        assert sum(row["type"] == "res" for row in rows) == 40
        assert rows[0]["type"] == "status" and "type" not in [row["t"] for row in rows]
        last_res = [x for x in printed if x["type"] == "res"][-1]
        row = [row for row in rows if row["type"] == "res"][-1]
        assert int(row["seq"]) == last_res["seq"] and row["sim"] == "1"
        assert [float(v) for v in row["out"].split()] == pytest.approx(last_res["out"])
    finally:
        sim.stop()


def test_monitor_reconnects_when_the_sim_is_killed_and_restarted(tmp_path):
    link = tmp_path / "nanoml-sim"
    sim = SimProcess.spawn(GESTURE, rate_hz=50, link=link)
    mon = subprocess.Popen(nanoml("monitor", "--port", link, "--count", 120, "--json"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Reader(mon)
    sim2 = None
    try:
        assert out.wait_for(lambda ls: len(out.of("res")) >= 30)
        sim.kill()                                  # like pulling the cable: no cleanup
        assert out.wait_for(lambda ls: any(s["event"] == "disconnected" for s in out.of("status")),
                            timeout=10)
        time.sleep(0.5)                             # the monitor keeps waiting
        assert mon.poll() is None
        sim2 = SimProcess.spawn(GESTURE, rate_hz=50, link=link)   # same link, new pty
        assert mon.wait(timeout=60) == 0, mon.stderr.read()
        out.t.join(5)
    finally:
        if mon.poll() is None:
            mon.kill()
        for s in (sim, sim2):
            if s is not None:
                s.stop()
    events = [s["event"] for s in out.of("status")]
    assert events[0] == "connected" and "disconnected" in events and "reconnected" in events
    res = out.of("res")
    assert len(res) == 120
    summary = out.lines[-1]
    assert summary["exit"] == "count" and summary["reconnects"] >= 1 and summary["restarts"] >= 1
    check_results(res, Reference(GESTURE))          # both runs give the interpreter's outputs


def test_ctrl_c_is_clean_and_stops_the_sim(tmp_path):
    log = tmp_path / "log.jsonl"
    mon = subprocess.Popen(nanoml("monitor", "--sim", GESTURE, "--sim-rate", 50, "--json",
                                  "--log", log),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Reader(mon)
    assert out.wait_for(lambda ls: len(out.of("res")) >= 5)
    port = out.of("status")[0]["port"]
    mon.send_signal(signal.SIGINT)
    assert mon.wait(timeout=20) == 0
    out.t.join(5)
    assert "Traceback" not in mon.stderr.read()
    summary = out.lines[-1]
    assert summary["type"] == "summary" and summary["exit"] == "interrupt"
    assert not Path(port).exists()                  # the sim child stopped and cleaned up
    assert sum(json.loads(x)["type"] == "res" for x in log.read_text().splitlines()) \
        == summary["results"]


def test_killed_monitor_loses_nothing_already_logged(tmp_path):
    sim = SimProcess.spawn(GESTURE, rate_hz=100, link=tmp_path / "b")
    log = tmp_path / "log.jsonl"
    mon = subprocess.Popen(nanoml("monitor", "--port", sim.link, "--json", "--log", log),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Reader(mon)
    try:
        assert out.wait_for(lambda ls: len(out.of("res")) >= 25)
        mon.kill()                                  # SIGKILL: no cleanup at all
        mon.wait()
        out.t.join(5)
    finally:
        sim.stop()
    printed = out.of("res")
    logged = [json.loads(x) for x in log.read_text().splitlines()]     # every line whole
    logged_res = [x for x in logged if x["type"] == "res"]
    # each record is logged before it is printed: the log holds all that was printed
    assert len(logged_res) >= len(printed) >= 25
    assert [x["seq"] for x in logged_res[:len(printed)]] == [x["seq"] for x in printed]


def test_duration_exits_zero(tmp_path):
    sim = SimProcess.spawn(GESTURE, rate_hz=20, link=tmp_path / "b")
    try:
        t0 = time.monotonic()
        r = subprocess.run(nanoml("monitor", "--port", sim.link, "--duration", 1.5, "--json"),
                           capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
    finally:
        sim.stop()
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["exit"] == "duration" and summary["results"] >= 10
    assert took < 10


# ---------------------------------------------------------------- damaged and foreign lines

def test_corrupt_foreign_and_odd_lines_are_counted_not_fatal():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    mon = subprocess.Popen(nanoml("monitor", "--port", path, "--count", 10, "--json"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Reader(mon)
    try:
        assert out.wait_for(lambda ls: bool(out.of("status")))    # opened (and flushed) the port
        res = [encode_line("res", {"seq": i, "us": 100 + i, "out": [0.25, 0.75], "top": 1})
               for i in range(11)]
        bad = bytearray(res[3])
        bad[12] = ord("9") if bad[12] != ord("9") else ord("8")   # damaged in transit
        body = b"~nm res seq=x us=1 out=1 top=0"                  # checksum fine, content not
        from nanoml.serial.protocol import crc16
        invalid = b"%s*%04X\r\n" % (body, crc16(body))
        stream = b"".join([
            b"Sketch started\r\n", b"IMU ok\r\n",
            res[0], res[1], res[2], bytes(bad), res[4],
            b"~nm " + b"x" * 70000 + b"\r\n",                    # over-long line: cut, counted
            invalid,
            encode_line("temp", {"c": "21.5"}),                   # unknown type from newer firmware
            res[5], res[6], res[7], b"debug: no newline then ", res[8], res[9], res[10],
        ])
        for i in range(0, len(stream), 777):                      # arrives in pieces
            os.write(master, stream[i:i + 777])
            time.sleep(0.002)
        assert mon.wait(timeout=30) == 0, mon.stderr.read()
        out.t.join(5)
    finally:
        if mon.poll() is None:
            mon.kill()
        os.close(master)
        os.close(slave)
    s = out.lines[-1]
    assert s["type"] == "summary" and s["exit"] == "count" and s["results"] == 10
    assert s["corrupt"] == 2 and s["invalid"] == 1 and s["unknown"] == 1
    assert s["foreign"] == 3 and s["missed"] == 1
    foreign = [r["text"] for r in out.of("foreign")]
    assert foreign == ["Sketch started", "IMU ok", "debug: no newline then "]
    assert [r["reason"] for r in out.of("corrupt")] == ["crc", "overflow", "invalid"]
    assert [r["seq"] for r in out.of("res")] == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10]


# ---------------------------------------------------------------- live view

def test_live_view_renders_in_a_terminal(tmp_path):
    master, slave = os.openpty()
    env = dict(os.environ, COLUMNS="120", LINES="40", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    mon = subprocess.Popen(nanoml("monitor", "--sim", GESTURE, "--sim-rate", 50, "--count", 40,
                                  "--labels", LABELS),
                           stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    buf = b""
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            r, _, _ = select.select([master], [], [], 0.5)
            if not r:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:                 # EIO: the monitor exited, its end is closed
                break
            if not chunk:
                break
            buf += chunk
        assert mon.wait(timeout=30) == 0
    finally:
        if mon.poll() is None:
            mon.kill()
        os.close(master)
    text = buf.decode("utf-8", "replace")
    for word in ("nanoml monitor", "SIMULATED", "results", "p95", "circle", "shake", "raw",
                 "count: 40 results"):
        assert word in text, word
    assert "█" in text


# ---------------------------------------------------------------- units

def test_stream_decoder_handles_any_chunking():
    lines = [encode_line("res", {"seq": i, "us": 5, "out": [0.5], "top": 0}) for i in range(20)]
    stream = b"hello\r\n".join(lines)
    for size in (1, 2, 3, 10, 97, len(stream)):
        d = StreamDecoder()
        got = []
        for i in range(0, len(stream), size):
            got += d.feed(stream[i:i + size])
        assert [p.fields["seq"] for p in got if isinstance(p, Message)] == list(range(20))
        assert sum(isinstance(p, Foreign) for p in got) == 19


def test_stream_decoder_bounds_endless_lines():
    d = StreamDecoder(max_line=1000)
    got = d.feed(b"~nm " + b"a" * 5000)
    got += d.feed(b"b" * 5000)
    assert len(d._rest) <= 1000
    got += d.feed(b"tail\n" + encode_line("arena", {"min": 1, "used": 2}))
    assert [type(p).__name__ for p in got] == ["Corrupt", "Message"]
    assert got[0].reason == "overflow"
    assert isinstance(d.feed(b"x" * 3000)[0], Foreign)


def test_stats_percentiles_gaps_and_restarts():
    st = MonitorStats()
    t = 1000.0
    for seq in [0, 1, 2, 5, 6, 0, 1]:
        st.update(Message("res", {"seq": seq, "us": 10 * (seq + 1), "out": [1.0], "top": 0}), t)
        t += 0.1
    assert st.results == 7 and st.missed == 2 and st.restarts == 1
    lat = st.latency()
    assert lat["min"] == 10 and lat["max"] == 70 and lat["p50"] == 20
    assert st.rate() == pytest.approx(10.0)
    st.update(Corrupt("crc", "x"), t)
    st.update(Corrupt("invalid", "x"), t)
    assert (st.corrupt, st.invalid) == (1, 1)
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 50) is None


def test_sim_child_does_not_outlive_a_killed_monitor():
    mon = subprocess.Popen(nanoml("monitor", "--sim", GESTURE, "--sim-rate", 20, "--json"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Reader(mon)
    assert out.wait_for(lambda ls: len(out.of("res")) >= 2)
    link = Path(out.of("status")[0]["port"])
    target = os.readlink(link)
    assert processes_with(str(link))                  # the check below can see the sim
    mon.kill()                                        # no chance to stop its child
    mon.wait()
    end = time.monotonic() + 10
    while time.monotonic() < end and (link.exists() or processes_with(str(link))):
        time.sleep(0.1)
    assert not link.exists()                          # the orphaned sim noticed, cleaned up
    assert not [pid for pid in processes_with(str(link))], f"sim for {target} still running"


def processes_with(text: str) -> list[int]:
    """Pids whose command line contains `text` (Linux /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                pids.append(int(d.name))
    return pids


def test_usb_discovery_reconnect_through_bootloader():
    """Without --port the monitor finds the board by VID:PID again after a
    reset, and says when it sits in its bootloader. No board here: the USB
    listing is given to the Connector; the ports behind it are real ptys."""
    from types import SimpleNamespace

    from nanoml.serial.monitor import Connector, Monitor
    from nanoml.sim.board import start_virtual_board

    listing = []
    board1 = start_virtual_board(GESTURE, rate_hz=50, link=None)
    listing[:] = [SimpleNamespace(device=board1.port, vid=0x2341, pid=0x805A)]
    mon = Monitor(Connector("nano33ble_sense", None, ports_fn=lambda: list(listing)))
    events, board2 = [], None
    try:
        for rec in mon.records(count=30, duration=30, sleep=lambda s: time.sleep(0.05)):
            if rec["type"] == "status":
                events.append(rec["event"])
                if rec["event"] == "bootloader":
                    assert "press the reset button" in rec["message"]
                    board2 = start_virtual_board(GESTURE, rate_hz=50, link=None)   # "reset pressed"
                    listing[:] = [SimpleNamespace(device=board2.port, vid=0x2341, pid=0x805A)]
            elif rec["type"] == "res" and board2 is None and mon.stats.results == 10:
                # double-tap reset: the sketch's port vanishes, the bootloader's appears
                listing[:] = [SimpleNamespace(device="/dev/ttyACM9", vid=0x2341, pid=0x005A)]
                board1.stop()
    finally:
        board1.stop()
        if board2 is not None:
            board2.stop()
    assert events[:3] == ["connected", "disconnected", "bootloader"] and events[-1] == "reconnected"
    assert mon.exit_reason == "count" and mon.stats.reconnects == 1
    assert mon.connector.current == board2.port


def test_pipeline_real_time_accounting_is_in_the_summary_and_the_view():
    """`res fus=/drop=` from a pipeline firmware: the summary carries the front end's
    time per inference and the board's dropped-sample count (they were parsed but shown
    nowhere)."""
    from nanoml.serial import protocol as P
    from nanoml.serial.monitor import MonitorStats
    from nanoml.serial.stream import StreamDecoder
    st = MonitorStats()
    plain = MonitorStats()
    lines = [P.encode_line("res", {"seq": i, "us": 40_000, "out": [0.1, 0.9], "top": 1,
                                   "t_ms": 990 + 100 * i, "fus": fus, "drop": drop})
             for i, (fus, drop) in enumerate([(9_100, 0), (9_400, 0), (9_200, 320)])]
    for p in StreamDecoder().feed(b"".join(lines)):
        st.update(p, 1.0)
    for p in StreamDecoder().feed(P.encode_line("res", {"seq": 0, "us": 5, "out": [1.0], "top": 0})):
        plain.update(p, 1.0)
    s = st.summary()
    assert s["results"] == 3
    assert s["feature_us"] == {"last": 9_200, "max": 9_400} and s["dropped_samples"] == 320
    assert plain.summary()["feature_us"] is None and plain.summary()["dropped_samples"] is None
