"""A board (or anything on the port) can send anything: `nanoml monitor` on a
real pseudo-terminal that plays a hostile board, and the parser under it.

Every out-of-bounds value with a valid checksum is one invalid line, never the
end of the monitor; every valid line is kept (after over-long or glued foreign
text too); seq wraps and resets are not counted as billions of missed results;
logs and the live view stay whole whatever text arrives; a closed stdout and a
full disk end the monitor with a normal exit code."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import random
import select
import subprocess
import sys
import threading
import time
import tty

import pytest

from nanoml.serial import protocol as P
from nanoml.serial.monitor import MonitorStats
from nanoml.serial.stream import StreamDecoder


def nanoml(*args) -> list[str]:
    return [sys.executable, "-m", "nanoml", *map(str, args)]


def frame(body: bytes) -> bytes:
    """A line with a correct checksum, whatever its body says."""
    return b"%s*%04X\r\n" % (body, P.crc16(body))


def res(seq: int, out=(0.25, 0.75), top: int = 1) -> bytes:
    return P.encode_line("res", {"seq": seq, "us": 100 + seq % 1000, "out": list(out), "top": top})


def strict_json(line: str):
    def refuse(token):
        raise ValueError(f"bare {token} token in JSON")
    return json.loads(line, parse_constant=refuse)


class PtyBoard:
    """The master side of a raw pty: what the test writes is what the monitor reads."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        fcntl.fcntl(self.master, fcntl.F_SETFL, fcntl.fcntl(self.master, fcntl.F_GETFL) | os.O_NONBLOCK)

    def write(self, data: bytes, alive=lambda: True, timeout: float = 60.0, chunk: int = 777) -> None:
        """Write all of `data` (in pieces), unless the reader stops reading."""
        view = memoryview(data)
        end = time.monotonic() + timeout
        while view and time.monotonic() < end and alive():
            _, w, _ = select.select([], [self.master], [], 0.2)
            if not w:
                continue
            try:
                n = os.write(self.master, view[:chunk])
            except BlockingIOError:
                continue
            view = view[n:]
        assert not view, f"the monitor stopped reading with {len(view)} bytes unsent"

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class Child:
    """`nanoml monitor` reading a PtyBoard; its stdout drained by a thread (a
    full pipe would stop the monitor from reading the port)."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(nanoml("monitor", *args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.buf = bytearray()
        self.closed = False
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()

    def _drain(self) -> None:
        fd = self.proc.stdout.fileno()
        while not self.closed:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return
                self.buf += chunk

    def read_lines(self, want: int, timeout: float = 30.0) -> list[str]:
        end = time.monotonic() + timeout
        while self.buf.count(b"\n") < want and time.monotonic() < end and (self.alive() or self.t.is_alive()):
            time.sleep(0.02)
        return bytes(self.buf).decode("utf-8", "replace").splitlines()

    def close_stdout(self) -> None:
        """Like `| head` exiting: the read end goes away."""
        self.closed = True
        self.t.join(5)
        self.proc.stdout.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float = 60.0) -> tuple[int, list[str], str]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.t.join(10)
        err = self.proc.stderr.read().decode("utf-8", "replace")
        return self.proc.returncode, bytes(self.buf).decode("utf-8", "replace").splitlines(), err


def monitor_on(stream: bytes, *args, wait_connected: bool = True) -> tuple[int, list[dict], str]:
    """Run `nanoml monitor -p PTY --json ARGS`, write `stream` once it has
    opened the port; its exit code, JSON lines (strict) and stderr."""
    board = PtyBoard()
    child = Child("--port", board.path, "--json", *args)
    try:
        if wait_connected:
            first = child.read_lines(1)
            assert first and strict_json(first[0])["event"] == "connected", (first, child.proc.stderr)
        board.write(stream, alive=child.alive)
        rc, lines, err = child.finish()
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
        board.close()
    return rc, [strict_json(x) for x in lines], err


def of(recs: list[dict], kind: str) -> list[dict]:
    return [r for r in recs if r.get("type") == kind]


# ---------------------------------------------------------------- 1, 2: bounded fields

HUGE = b"9" * 5000
OUT_OF_BOUNDS = {
    "us 5000 digits": b"~nm res seq=1 us=" + HUGE + b" out=0.5 top=0",
    "seq 5000 digits": b"~nm res seq=" + HUGE + b" us=1 out=0.5 top=0",
    "seq 30 digits": b"~nm res seq=" + b"1" * 30 + b" us=1 out=0.5 top=0",
    "seq 2^32": b"~nm res seq=4294967296 us=1 out=0.5 top=0",
    "top 5000 digits": b"~nm res seq=1 us=1 out=0.5 top=-" + HUGE,
    "top above int32": b"~nm res seq=1 us=1 out=0.5 top=2147483648",
    "q item 5000 digits": b"~nm res seq=1 us=1 out=0.5 top=0 q=1," + HUGE,
    "out beyond double": b"~nm res seq=1 us=1 out=1e999 top=0",
    "out 5000 digits": b"~nm res seq=1 us=1 out=" + HUGE + b" top=0",
    "out 20000 items": b"~nm res seq=1 us=1 out=" + b",".join([b"0"] * 20000) + b" top=0",
    "out python-only syntax": b"~nm res seq=1 us=1 out=1_0 top=0",
    "frame 5000 digits": b"~nm res seq=1 us=1 out=0.5 top=0 frame=" + HUGE,
    "hello arena 5000 digits": b"~nm hello proto=1 fw=x model=0123456789ab board=b runtime=r arena="
                               + HUGE + b" used=1 ops=A in=int8:1 out=int8:1 input=serial",
    "hello dim 5000 digits": b"~nm hello proto=1 fw=x model=0123456789ab board=b runtime=r arena=1 "
                             b"used=1 ops=A in=int8:1x" + HUGE + b" out=int8:1 input=serial",
    "hello 9 dims": b"~nm hello proto=1 fw=x model=0123456789ab board=b runtime=r arena=1 used=1 "
                    b"ops=A in=int8:1x1x1x1x1x1x1x1x1 out=int8:1 input=serial",
    "hello 300 ops": b"~nm hello proto=1 fw=x model=0123456789ab board=b runtime=r arena=1 used=1 "
                     b"ops=" + b",".join([b"OP"] * 300) + b" in=int8:1 out=int8:1 input=serial",
    "hello fw 5000 chars": b"~nm hello proto=1 fw=" + b"f" * 5000 + b" model=0123456789ab board=b "
                           b"runtime=r arena=1 used=1 ops=A in=int8:1 out=int8:1 input=serial",
    "err msg 2000 chars": b"~nm err code=x msg=" + b"%41" * 2000,
    "op cyc 2^32": b"~nm op seq=1 i=0 op=CONV_2D cyc=4294967296 us=1",
    "arena min negative": b"~nm arena min=-1 used=2",
    "ack seq 11 digits": b"~nm ack seq=00000000001 ok=1",
    "control byte in a number": b"~nm res seq=1\x01 us=1 out=0.5 top=0",
    "non-ASCII body": b"~nm err code=x msg=\xff\xfe",
}


@pytest.mark.parametrize("name", list(OUT_OF_BOUNDS))
def test_each_out_of_bounds_value_is_one_invalid_line(name):
    t0 = time.monotonic()
    p = P.parse_line(frame(OUT_OF_BOUNDS[name]))
    assert isinstance(p, P.Corrupt) and p.reason == "invalid", p
    assert len(p.detail) < 200 and time.monotonic() - t0 < 0.5


def test_values_at_their_bounds_are_kept():
    line = frame(b"~nm res seq=4294967295 us=4294967295 out=-3.40282e+38,nan,inf,-inf,1e-45 "
                 b"top=-2147483648 q=2147483647,-2147483648 frame=0")
    m = P.parse_line(line)
    assert isinstance(m, P.Message), m
    assert m.fields["seq"] == P.UINT_MAX and m.fields["q"] == [P.INT_MAX, P.INT_MIN]
    assert m.fields["out"][2] == float("inf") and m.fields["out"][1] != m.fields["out"][1]
    ops = b",".join([b"OP"] * P.MAX_LIST_ITEMS)
    hello = frame(b"~nm hello proto=1 fw=" + b"f" * 64 + b" model=0123456789ab board=b runtime=r "
                  b"arena=4294967295 used=0 ops=" + ops + b" in=int8:1x2x3x4x5x6x7x2147483647 "
                  b"out=float32: input=serial")
    m = P.parse_line(hello)
    assert isinstance(m, P.Message) and len(m.fields["ops"]) == P.MAX_LIST_ITEMS, m
    assert m.fields["out"] == [{"dtype": "float32", "shape": []}]


def test_monitor_counts_out_of_bounds_lines_and_keeps_every_result():
    """One valid-CRC line with a 5,000-digit integer used to end the monitor
    (exit 70, no summary); a 30-digit seq made `missed` 1.1e29."""
    bad = list(OUT_OF_BOUNDS.values())
    stream = b"".join(res(i) + frame(b) for i, b in enumerate(bad)) + res(len(bad))
    stream += res(len(bad) + 1, out=(float("inf"), float("nan")), top=0)
    rc, recs, err = monitor_on(stream, "--count", len(bad) + 2)
    assert rc == 0, err
    assert "Traceback" not in err
    s = recs[-1]
    assert s["type"] == "summary" and s["exit"] == "count" and s["results"] == len(bad) + 2
    assert s["invalid"] == len(bad) and s["missed"] == 0 and s["restarts"] == 0
    assert [r["seq"] for r in of(recs, "res")] == list(range(len(bad) + 2))
    assert of(recs, "res")[-1]["out"] == [None, None]        # nan / inf: null, not a bare token
    assert all(len(r["detail"]) < 200 for r in of(recs, "corrupt"))


# ---------------------------------------------------------------- 2: seq wrap, reset, jumps

def stats_after(seqs: list[int], dt: float = 0.01) -> MonitorStats:
    st = MonitorStats()
    t = 1000.0
    for seq in seqs:
        st.update(P.Message("res", {"seq": seq, "us": 10, "out": [1.0], "top": 0}), t)
        t += dt
    return st


def test_seq_wraps_at_2_32_without_a_restart():
    st = stats_after([0xFFFFFFFD, 0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 3])
    assert (st.missed, st.restarts) == (1, 0)


def test_a_reset_is_a_restart_not_4_billion_missed():
    st = stats_after([10, 11, 12, 0, 1, 2])                  # reset: counts again from 0
    assert (st.missed, st.restarts) == (0, 1)
    st = stats_after([5, 4_000_000_000, 4_000_000_001])     # "back" by 2^32 - 4e9
    assert (st.missed, st.restarts) == (0, 1)


def test_an_impossible_forward_jump_is_a_restart_a_plausible_gap_is_missed():
    st = stats_after([0, 2_000_000_000, 2_000_000_001], dt=0.01)
    assert (st.missed, st.restarts) == (0, 1)
    st = stats_after([0, 3, 100_000], dt=10.0)               # 10 s away: 99,996 results is possible
    assert (st.missed, st.restarts) == (2 + 99_996, 0)


# ---------------------------------------------------------------- 3: frames after long foreign text

def long_foreign_stream() -> tuple[bytes, int]:
    parts = [
        res(0),
        b"x" * 70_000 + res(1),                               # a print without newline, then a frame
        b"y" * 200_000 + b"\r\n" + res(2),
        b"~nm " + b"z" * 70_000 + res(3),                     # an over-long nanoml-looking line
        b"w" * 65_535 + res(4),                               # just below the limit, glued
        b"v" * 70_000 + b"~n",                                # a prefix split over two reads
        b"m " + P.encode_line("arena", {"min": 1, "used": 2}) + res(5),
    ]
    return b"".join(parts), 6


@pytest.mark.parametrize("size", [1, 5, 777, 4096, 65536, 1 << 20])
def test_decoder_keeps_the_line_after_long_foreign_text(size):
    stream, n = long_foreign_stream()
    d = StreamDecoder()
    got = []
    for i in range(0, len(stream), size):
        got += d.feed(stream[i:i + size])
    got += d.flush()
    msgs = [p for p in got if isinstance(p, P.Message)]
    assert [m.fields.get("seq") for m in msgs if m.type == "res"] == list(range(n))
    assert [m.type for m in msgs].count("arena") == 1
    assert len(d._rest) <= d.max_line


def test_monitor_keeps_the_frame_after_a_64k_foreign_print():
    stream, n = long_foreign_stream()
    rc, recs, err = monitor_on(stream, "--count", n, "--duration", 30)
    assert rc == 0, err
    assert [r["seq"] for r in of(recs, "res")] == list(range(n))
    assert recs[-1]["exit"] == "count"


# ---------------------------------------------------------------- 4: logs stay whole

CONTROL_TEXT = [b"bare\rCR", b"esc \x1b[31mred\x1b[0m", b"nul\x00 del\x7f", b"bad utf-8 \xff\xfe",
                b"line\xe2\x80\xa8sep"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_control_characters_cannot_break_the_log(tmp_path, suffix):
    log = tmp_path / f"run{suffix}"
    stream = b"".join(t + b"\r\n" + res(i) for i, t in enumerate(CONTROL_TEXT))
    stream += P.encode_line("err", {"code": "x", "msg": "two\r\nlines\x1b"}) + res(len(CONTROL_TEXT))
    rc, recs, err = monitor_on(stream, "--count", len(CONTROL_TEXT) + 1, "--log", log)
    assert rc == 0, err
    logged = [r for r in recs if r["type"] != "summary"]
    if suffix == ".csv":
        with log.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["type"] for r in rows] == [r["type"] for r in logged]   # one row per record
        cells = [c for r in rows for c in r.values()]
    else:
        rows = [strict_json(x) for x in log.read_bytes().decode("utf-8").split("\n") if x]
        assert rows == logged
        cells = [r.get("text", "") for r in rows]
    assert not any(ch in c for c in cells for ch in "\r\n\x1b\x00\x7f\u2028")
    foreign = [r["text"] for r in rows if r["type"] == "foreign"]
    assert foreign[0] == "bare\\x0dCR" and "\\x1b[31mred" in foreign[1]


# ---------------------------------------------------------------- 5: the live view

def test_live_view_draws_nan_inf_and_markup_from_the_board():
    """out=inf used to kill rich's refresh thread (traceback on the screen);
    board text is drawn as text, never parsed as markup."""
    board = PtyBoard()
    term_m, term_s = os.openpty()
    env = dict(os.environ, COLUMNS="120", LINES="50", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(nanoml("monitor", "--port", board.path, "--count", 4, "--labels", "[/bold],b"),
                            stdin=term_s, stdout=term_s, stderr=term_s, env=env)
    os.close(term_s)
    screen = b""

    def pump(seconds, until=None):
        nonlocal screen
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until in screen):
            r, _, _ = select.select([term_m], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(term_m, 65536)
                except OSError:                     # EIO: the monitor exited
                    return False
                if not chunk:
                    return False
                screen += chunk
        return True

    try:
        pump(30, until=b"connected to")             # started, port open
        hello = P.encode_line("hello", {"proto": 1, "fw": "[/bold]fw", "model": "0123456789ab",
                                        "board": "[red]b", "runtime": "r", "arena": 10, "used": 5,
                                        "ops": ["[/]"], "in": "int8:1", "out": "int8:2",
                                        "input": "synthetic"})
        board.write(hello + b"[/bold] foreign [link=x]y\r\n"
                    + P.encode_line("err", {"code": "[/]", "msg": "[bold]boom"})
                    + res(0, out=(float("inf"), 0.5), top=0), alive=lambda: proc.poll() is None)
        pump(1.5)                                   # several refreshes with out=inf on screen
        board.write(res(1, out=(float("nan"), float("-inf")), top=1) + res(2, out=(1e30, -1e30))
                    + res(3), alive=lambda: proc.poll() is None)
        while pump(1) and proc.poll() is None:
            pass
        pump(0.5)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(term_m)
        board.close()
    text = screen.decode("utf-8", "replace")
    assert "Traceback" not in text and "Exception" not in text and "cannot draw" not in text
    for literal in ("[/bold]fw", "[red]b", "[/bold] foreign [link=x]y", "[/]: [bold]boom", "inf"):
        assert literal in text, literal
    assert "count: 4 results" in text


# ---------------------------------------------------------------- 6: ends and options

@pytest.mark.parametrize("mode", ["--json", "--raw"])
def test_closed_stdout_ends_the_monitor_quietly(mode):
    """`nanoml monitor ... | head -2`"""
    board = PtyBoard()
    child = Child("--port", board.path, mode)
    try:
        i, end = 0, time.monotonic() + 30
        while len(child.read_lines(2, timeout=0.1)) < 2 and time.monotonic() < end:
            board.write(res(i), alive=child.alive)  # until the monitor has the port and prints
            i += 1
        assert len(child.read_lines(2, timeout=0)) >= 2
        child.close_stdout()                        # head has what it wanted
        for i in range(i, i + 200):                 # the board keeps talking
            if not child.alive():
                break
            board.write(res(i), alive=child.alive)
            time.sleep(0.01)
        rc, _, err = child.finish(timeout=30)
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
        board.close()
    assert rc == 0, err
    assert "Traceback" not in err and "error" not in err.lower(), err


def test_a_full_disk_ends_the_monitor_with_exit_2_after_its_summary(tmp_path):
    log = tmp_path / "full.jsonl"
    log.symlink_to("/dev/full")                     # every write: ENOSPC
    board = PtyBoard()
    child = Child("--port", board.path, "--raw", "--count", 5, "--log", log)
    try:
        i, end = 0, time.monotonic() + 30
        while child.alive() and time.monotonic() < end:     # until it has the port and stops
            board.write(res(i), alive=child.alive)
            i += 1
            time.sleep(0.05)
        rc, _, err = child.finish()
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
        board.close()
    assert rc == 2, err
    assert "Traceback" not in err
    assert f"error: --log {log}: cannot write (No space left on device)" in err.splitlines()
    assert any(line.startswith("log-error: ") for line in err.splitlines())     # the summary


@pytest.mark.parametrize("where", ["missing/folder/x.jsonl", "afile/x.csv", "/sys/nanoml-test.jsonl"],
                         ids=["missing-folder", "below-a-file", "unwritable"])
def test_an_unusable_log_path_is_exit_2_before_connecting(tmp_path, where):
    if where.startswith("/sys") and not os.path.isdir("/sys"):
        pytest.skip("no sysfs (a folder even root cannot create files in)")
    (tmp_path / "afile").write_text("a file, not a folder")
    log = tmp_path / where
    r = subprocess.run(nanoml("monitor", "--port", "/dev/ttyNOPE9", "--log", log),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr                     # not 3: the port was never opened
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"error: --log {log}: cannot open") and len(lines) == 2


def test_short_options_p_and_b():
    r = subprocess.run(nanoml("monitor", "-b", "nano33ble", "-p", "/dev/ttyNOPE9", "--count", 1),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr                        # got as far as opening the port
    assert r.stderr.startswith("error: serial port /dev/ttyNOPE9 ")
    r = subprocess.run(nanoml("monitor", "-b", "nope", "-p", "/dev/ttyNOPE9"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown board 'nope'" in r.stderr


# ---------------------------------------------------------------- 8: fuzz

BAD_VALUES = {
    "uint": [b"9" * 11, b"4294967296", b"-1", b"1.5", b"", b"0x10", b"9" * 5000, b"1\x01"],
    "int": [b"-2147483649", b"2147483648", b"--1", b"9" * 5000, b"1e3"],
    "bool": [b"2", b"", b"true"],
    "floats": [b"1e999", b"1_0", b"0x1p3", b"nan(1)", b"1,,2", b",".join([b"1"] * 16385), b"9" * 40],
    "ints": [b"1,2147483648", b"9" * 11, b"1,,2", b",".join([b"1"] * 16385)],
    "text": [b"%41" * 1100, b"t" * 1100],
    "list": [b",".join([b"A"] * 257), b"B" * 65],
    "hex12": [b"0123456789a", b"0123456789abc", b"0123456789ag"],
    "tensors": [b"int8", b"int8:1x-1", b"INT8:1", b"int8:1x" + b"9" * 11, b"int8:" + b"x".join([b"1"] * 9),
                b",".join([b"int8:1"] * 65), b"int8:2147483648"],
    "b64": [b"A", b"AAA=", b"AA-A", b"A" * 1100],     # a lone char, padding, bad char, too long
}


def random_text(rng: random.Random, n: int) -> bytes:
    alphabet = [bytes([c]) for c in range(256) if c != 0x0A] + ["é".encode(), "\u2028".encode(),
                                                               b"\r", b"\x1b[2J", b"[/bold]", b"%"]
    return b"".join(rng.choice(alphabet) for _ in range(n))


def valid_line(rng: random.Random, seq: int) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return P.encode_line("hello", {
            "proto": 1, "fw": random_text(rng, 10).decode("utf-8", "replace"), "model": "%012x" % seq,
            "board": "nano33ble_sense", "runtime": "chirale_2.0.0", "arena": rng.getrandbits(32),
            "used": rng.getrandbits(20), "ops": ["CONV_2D", "A b,c"],
            "in": [("int8", [1, rng.randrange(1, 1000)])], "out": [("float32", [])],
            "input": "synthetic", "sim": rng.random() < 0.5})
    if kind == 1:
        return P.encode_line("op", {"seq": seq, "i": rng.randrange(100), "op": "FULLY_CONNECTED",
                                    "cyc": rng.getrandbits(32), "us": rng.getrandbits(32)})
    if kind == 2:
        return P.encode_line("err", {"code": "invoke", "msg": random_text(rng, 50).decode("utf-8", "replace")})
    if kind == 3:
        return P.encode_line("ack", {"seq": rng.getrandbits(32), "ok": False, "why": "crc"})
    n = rng.choice([1, 4, 12, 300])
    outs = [rng.choice([rng.uniform(-1e6, 1e6), 0.0, float("inf"), float("nan"), 3.4e38])
            for _ in range(n)]
    return P.encode_line("res", {"seq": seq, "us": rng.getrandbits(32), "out": outs,
                                 "top": rng.randrange(-1, n), "q": [rng.randrange(-2**31, 2**31)
                                                                   for _ in range(n)]})


def garbage_line(rng: random.Random) -> bytes:
    """A line with a valid checksum and one value out of its bounds (or non-ASCII)."""
    if rng.random() < 0.1:
        return frame(b"~nm res seq=1 us=1 out=" + random_text(rng, 20).replace(b" ", b"") + b"\xff top=0")
    spec = rng.choice([m for m in P.MESSAGES.values() if m.direction == "device"])
    f = rng.choice([f for f in spec.fields if f.kind in BAD_VALUES])
    sample = {"uint": b"1", "int": b"-1", "bool": b"1", "floats": b"0.5", "ints": b"1", "text": b"t",
              "list": b"A,B", "hex12": b"0123456789ab", "tensors": b"int8:1x2",
              "hexbytes": b"00", "b64": b"AAAA", "float": b"0.5"}
    parts = [b"~nm " + spec.type.encode()]
    for g in spec.fields:
        value = rng.choice(BAD_VALUES[g.kind]) if g is f else sample[g.kind]
        parts.append(g.key.encode() + b"=" + value)
    return frame(b" ".join(parts))


def damaged(rng: random.Random, line: bytes) -> bytes:
    b = bytearray(line)
    i = rng.randrange(line.rfind(b"*"))             # in the body: the checksum cannot match
    b[i] = rng.choice([c for c in range(256) if c not in (b[i], 0x0A)])
    return bytes(b)


def fuzz_stream(seed: int, n: int, long_every: int = 50) -> tuple[bytes, list[bytes], int]:
    """(stream, the valid lines in order, how many valid-CRC out-of-bounds lines)."""
    rng = random.Random(seed)
    parts, valid, garbage, seq = [], [], 0, 0
    for k in range(n):
        r = rng.random()
        if r < 0.3:
            line = valid_line(rng, seq)
            seq += 1
            glue = rng.random()
            if glue < 0.2:                            # foreign text without newline before it
                parts.append(random_text(rng, rng.randrange(1, 80)).replace(b"~nm ", b"~nm_")
                             + rng.choice([b"", b"~nm ", b"~nm res "]))
            elif glue < 0.25 or k % long_every == 0:  # an over-long print before it
                parts.append(rng.choice([b"L", b"~nm L"]) * rng.randrange(65_537, 140_000)
                             + rng.choice([b"", b"\r\n"]))
            parts.append(line)
            valid.append(line[:-2])
        elif r < 0.5:
            parts.append(garbage_line(rng))
            garbage += 1
        elif r < 0.7:
            parts.append(damaged(rng, valid_line(rng, 0)))
        elif r < 0.85:
            parts.append(random_text(rng, rng.randrange(0, 200)) + b"\n")
        else:
            parts.append(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 100)))
                         .replace(b"\n", b"") + b"\r\n")
    return b"".join(parts), valid, garbage


def test_fuzz_decoder_keeps_every_valid_line_and_raises_nothing():
    stream, valid, garbage = fuzz_stream(seed=9, n=5000)
    rng = random.Random(1)
    d = StreamDecoder()
    got, i = [], 0
    while i < len(stream):
        n = rng.choice([1, 7, 100, 4096, 70_000])
        got += d.feed(stream[i:i + n])
        i += n
    got += d.flush()
    msgs = [p for p in got if isinstance(p, P.Message)]
    assert [m.raw.encode("ascii") for m in msgs] == valid
    assert all(m.known for m in msgs)
    assert sum(isinstance(p, P.Corrupt) and p.reason == "invalid" for p in got) == garbage
    assert len(valid) > 1200 and garbage > 800


def test_fuzz_monitor_on_a_pty_keeps_every_result():
    stream, valid, garbage = fuzz_stream(seed=10, n=2500, long_every=200)
    last = res(10**6)                               # the monitor stops at it: every line before is read
    stream += last
    valid.append(last[:-2])
    results = sum(line.startswith(b"~nm res ") for line in valid)
    rc, recs, err = monitor_on(stream, "--count", results, "--duration", 120)
    assert rc == 0, err
    assert "Traceback" not in err
    s = recs[-1]
    assert s["exit"] == "count" and s["results"] == results
    assert s["invalid"] == garbage
    assert [r["seq"] for r in of(recs, "res")] == [
        P.parse_line(v).fields["seq"] for v in valid if v.startswith(b"~nm res ")]
    assert len(of(recs, "hello")) + len(of(recs, "op")) + len(of(recs, "err")) + len(of(recs, "ack")) \
        == len(valid) - results


def test_board_link_names_the_invalid_result_instead_of_failing():
    """`validate`'s link: a result with a 5,000-digit field is an invalid line
    (the timeout error says so), not an exception from int()."""
    from nanoml.errors import NanomlError
    from nanoml.serial.link import BoardLink

    board = PtyBoard()

    def answer():                                   # the board: read a frame, send its result
        got, end = b"", time.monotonic() + 10
        while not (b"~nm in " in got and got.endswith(b"\r\n")) and time.monotonic() < end:
            r, _, _ = select.select([board.master], [], [], 0.2)
            if r:
                got += os.read(board.master, 4096)
        seq = int(got.split(b"seq=")[1].split(b" ")[0])
        board.write(P.encode_line("ack", {"seq": seq, "ok": True})
                    + frame(b"~nm res seq=1 us=" + HUGE + b" out=0.5 top=0 frame=%d" % seq))

    t = threading.Thread(target=answer, daemon=True)
    try:
        with BoardLink.open(board.path) as link:
            t.start()
            with pytest.raises(NanomlError) as e:
                link.infer(b"\x01\x02", timeout=3)
        t.join(5)
    finally:
        board.close()
    assert "invalid line(s) from the board" in e.value.message and "us: " in e.value.message


def test_a_dead_sims_link_to_a_reused_pty_is_not_reconnected(tmp_path):
    """A killed sim leaves its link; when another program gets the same pty
    number, the monitor must not read that program's board (seen in a busy
    test run: results of another model after a reconnect). It waits instead,
    until a sim makes the link again."""
    from nanoml.errors import BoardNotFound
    from nanoml.serial.monitor import Connector

    other = PtyBoard()                              # another program's pty, made after the link
    link = tmp_path / "nanoml-sim"
    try:
        link.symlink_to(other.path)
        made = os.stat(other.path).st_ctime
        os.utime(link, (made - 60, made - 60), follow_symlinks=False)
        with pytest.raises(BoardNotFound, match="newer than the link"):
            Connector("nano33ble_sense", str(link)).connect()
        r = subprocess.run(nanoml("monitor", "--port", link, "--count", 1), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 3 and "newer than the link" in r.stderr.splitlines()[0]
        link.unlink()
        link.symlink_to(other.path)                 # a sim made its link after its pty: fine
        Connector("nano33ble_sense", str(link)).connect().close()
    finally:
        other.close()
