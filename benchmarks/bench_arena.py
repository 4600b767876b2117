"""Time the arena prediction for person_detect (target: under 0.5 s) and print
the figure. Usage: python benchmarks/bench_arena.py [model.tflite] [runtime_id]"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nanoml.memory import predict_arena
from nanoml.model.tflite import load

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "models" / "person_detect.tflite"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    runtime_id = sys.argv[2] if len(sys.argv) > 2 else "chirale_2.0.0"
    if not path.exists():
        print(f"{path} not found (pass a .tflite path)")
        return 2
    t0 = time.perf_counter()
    model = load(path)
    t1 = time.perf_counter()
    pred = predict_arena(model, runtime_id=runtime_id)
    t2 = time.perf_counter()
    runs = 20
    for _ in range(runs):
        predict_arena(model, runtime_id=runtime_id)
    t3 = time.perf_counter()
    print(f"model            {path.name}")
    print(f"runtime          {runtime_id} (static memory)")
    print(f"min_bytes        {pred.min_bytes}")
    print(f"used_bytes       {pred.used_bytes}")
    print(f"exact            {pred.exact}")
    print(f"load             {t1 - t0:.3f} s")
    print(f"predict (first)  {t2 - t1:.3f} s")
    print(f"predict (mean)   {(t3 - t2) / runs:.3f} s over {runs} runs")
    print(f"load+predict     {t2 - t0:.3f} s  (target < 0.5 s: {'OK' if t2 - t0 < 0.5 else 'SLOW'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
