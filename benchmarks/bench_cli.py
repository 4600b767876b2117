"""CLI start-up and inspect speed.

Goals (issue 2): `nanoml --help` under 0.2 s and faster than `pio --help`;
`nanoml inspect person_detect.tflite` under 0.5 s.

Run:  .venv/bin/python benchmarks/bench_cli.py [--runs N]
Prints the median wall time of each command over N runs (default 10).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "models"


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    bindir = Path(sys.executable).parent
    nanoml = str(bindir / "nanoml") if (bindir / "nanoml").exists() else shutil.which("nanoml")
    pio = str(bindir / "pio") if (bindir / "pio").exists() else shutil.which("pio")
    rows = [("nanoml --help", [nanoml, "--help"])]
    if pio:
        rows.append(("pio --help", [pio, "--help"]))
    model = SHARED / "person_detect.tflite"
    if not model.exists():
        ex = sorted((ROOT / "examples").rglob("*.tflite"))
        model = ex[0] if ex else None
    if model:
        rows.append((f"nanoml inspect {model.name}", [nanoml, "inspect", str(model)]))
        rows.append((f"nanoml inspect {model.name} --json", [nanoml, "inspect", str(model), "--json"]))
    print(f"median wall time over {args.runs} runs ({os.cpu_count()} CPUs)")
    for name, cmd in rows:
        print(f"  {name:45s} {wall(cmd, args.runs) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
