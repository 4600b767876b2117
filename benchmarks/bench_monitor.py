"""Monitor throughput: protocol lines streamed through a pseudo-terminal into
the monitor's parser, statistics and logger as fast as they can go.

Goal (issue 5): >= 1 MB/s sustained with zero lines lost.

Three figures:
  decode   in memory: StreamDecoder + stats + JSONL logger (no port)
  pty      a writer process floods a pty; the monitor engine (nanoml.serial.monitor,
           pyserial port, stats, JSONL log flushed per record) reads it
  cli      the same flood into the real `nanoml monitor --port P --json --log F`
           (a child process; its stdout is read and counted)
Each checks that every line arrived: results, foreign lines, no corrupt lines,
no gaps in seq, and the log holds every result.

Run:  .venv/bin/python benchmarks/bench_monitor.py [--mb 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nanoml.serial.log import RecordLogger  # noqa: E402
from nanoml.serial.monitor import Connector, Monitor, MonitorStats, to_record  # noqa: E402
from nanoml.serial.protocol import encode_line  # noqa: E402
from nanoml.serial.stream import StreamDecoder  # noqa: E402


def make_stream(megabytes: float) -> tuple[bytes, int, int]:
    """(bytes, results, foreign lines): res lines with 4..12 outputs like a
    classifier's, one foreign print every 10 lines."""
    parts, res, foreign, size, seq = [], 0, 0, 0, 0
    target = int(megabytes * 1e6)
    while size < target:
        if seq % 10 == 9:
            line = b"sketch: loop %d heap ok\r\n" % seq
            foreign += 1
        else:
            n = 4 + seq % 9
            out = [((seq * 7 + i * 13) % 256) / 256.0 for i in range(n)]
            q = [int(v * 256) - 128 for v in out]
            line = encode_line("res", {"seq": res, "us": 20000 + seq % 977, "out": out,
                                       "top": max(range(n), key=out.__getitem__), "q": q})
            res += 1
        parts.append(line)
        size += len(line)
        seq += 1
    return b"".join(parts), res, foreign


def _writer(master: int, data: bytes, go) -> None:
    go.wait()
    view = memoryview(data)
    while view:
        n = os.write(master, view[:65536])
        view = view[n:]


def bench_decode(data: bytes, results: int, foreign: int, tmp: Path) -> dict:
    log = RecordLogger(tmp / "decode.jsonl")
    dec, stats = StreamDecoder(), MonitorStats()
    t0 = time.perf_counter()
    for i in range(0, len(data), 4096):
        now = time.time()
        recs = []
        for p in dec.feed(data[i:i + 4096]):
            stats.update(p, now)
            recs.append(to_record(p, now))
        log.write_many(recs)
    dt = time.perf_counter() - t0
    log.close()
    return _figures("decode", len(data), dt, stats, results, foreign, tmp / "decode.jsonl")


def bench_pty(data: bytes, results: int, foreign: int, tmp: Path) -> dict:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    ctx = mp.get_context("fork")
    go = ctx.Event()
    w = ctx.Process(target=_writer, args=(master, data, go), daemon=True)
    w.start()
    logfile = tmp / "pty.jsonl"
    log = RecordLogger(logfile)
    mon = Monitor(Connector(port=path))
    t0 = None
    for batch in mon.batches(count=results):
        recs = [rec for rec, _ in batch]
        if recs[0]["type"] == "status" and recs[0]["event"] == "connected":
            go.set()                      # the port is open (and flushed): start the flood
            t0 = time.perf_counter()
            continue
        log.write_many(recs)
    dt = time.perf_counter() - t0
    log.close()
    w.join(10)
    os.close(master)
    os.close(slave)
    return _figures("pty", len(data), dt, mon.stats, results, foreign, logfile)


def bench_cli(data: bytes, results: int, foreign: int, tmp: Path) -> dict:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    logfile = tmp / "cli.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "nanoml", "monitor", "--port", path, "--json",
                             "--log", str(logfile), "--count", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()                   # {"type": "status", "event": "connected"}
    assert b'"connected"' in first, first
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    t0 = time.perf_counter()
    ctx = mp.get_context("fork")
    go = ctx.Event()
    w = ctx.Process(target=_writer, args=(master, data, go), daemon=True)
    w.start()
    go.set()
    rc = proc.wait(timeout=600)
    dt = time.perf_counter() - t0
    reader.join(10)
    w.join(10)
    os.close(master)
    os.close(slave)
    summary = json.loads(lines[-1])
    if rc != 0:
        raise SystemExit(f"monitor exited {rc}: {proc.stderr.read().decode()[-2000:]}")
    stats = MonitorStats(results=summary["results"], foreign=summary["foreign"],
                         corrupt=summary["corrupt"], invalid=summary["invalid"],
                         missed=summary["missed"])
    return _figures("cli", len(data), dt, stats, results, foreign, logfile)


def _figures(name, nbytes, dt, stats, results, foreign, logfile: Path) -> dict:
    logged = sum(1 for line in logfile.open() if line.startswith('{"type":"res"'))
    lost = (results - stats.results) + stats.missed
    ok = (lost == 0 and stats.corrupt == 0 and stats.invalid == 0 and logged == results
          and (name == "cli" or stats.foreign >= foreign - 1))
    return {"stage": name, "bytes": nbytes, "seconds": round(dt, 3),
            "mb_per_s": round(nbytes / dt / 1e6, 2), "lines_per_s": round((results + foreign) / dt),
            "results": stats.results, "expected": results, "lost": lost,
            "corrupt": stats.corrupt, "foreign": stats.foreign, "logged": logged, "ok": ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=20.0, help="megabytes to stream (default 20)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    data, results, foreign = make_stream(args.mb)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        figs = [bench_decode(data, results, foreign, tmp), bench_pty(data, results, foreign, tmp),
                bench_cli(data, results, foreign, tmp)]
    if args.json:
        print(json.dumps(figs, indent=1))
    else:
        print(f"{len(data) / 1e6:.1f} MB: {results} res lines (4-12 outputs) + {foreign} foreign lines")
        print(f"{'stage':8} {'MB/s':>7} {'lines/s':>9} {'seconds':>8} {'lost':>5} {'corrupt':>8} "
              f"{'logged':>8}  ok")
        for f in figs:
            print(f"{f['stage']:8} {f['mb_per_s']:7.2f} {f['lines_per_s']:9,d} {f['seconds']:8.2f} "
                  f"{f['lost']:5d} {f['corrupt']:8d} {f['logged']:8d}  {'yes' if f['ok'] else 'NO'}")
        print("goal: >= 1 MB/s sustained with zero lines lost (pty and cli stages)")
    return 0 if all(f["ok"] for f in figs) else 1


if __name__ == "__main__":
    sys.exit(main())
