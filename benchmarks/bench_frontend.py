"""Speed of the host micro front end (nanoml.pipeline.frontend) in times real
time: a whole clip at once (what `nanoml features` does per clip), 1 s clips
one after another (features of a folder), and a stream fed in chunks (what the
virtual board does: 20 ms = one frame per call, 100 ms = one inference stride).

The audio is synthesised here (noise with tone bursts, 16 kHz int16).
Each figure is the best of `--repeat` runs (default 3): the machine is shared.

Usage: python benchmarks/bench_frontend.py [SECONDS=60] [--repeat N]
"""

from __future__ import annotations

import sys
import time


def _audio(seconds: float, rate: int = 16000):
    import numpy as np
    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = rng.standard_normal(n) * 800 + 6000 * np.sin(2 * np.pi * 700 * t) * (np.sin(t) > 0)
    return np.clip(x, -32768, 32767).astype(np.int16)


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    from nanoml.pipeline.frontend import MicroFrontend
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3
    if "--repeat" in sys.argv:
        args.remove(str(repeat))
    seconds = float(args[0]) if args else 60.0
    x = _audio(seconds)
    fe = MicroFrontend()
    rate = 16000

    def whole():
        fe.reset()
        fe.process(x)

    def clips():
        for i in range(0, len(x), rate):
            fe.reset()
            fe.process(x[i:i + rate])

    def chunks(size, secs):
        part = x[:int(secs * rate)]

        def run():
            fe.reset()
            for i in range(0, len(part), size):
                fe.process(part[i:i + size])
        return run

    short = min(seconds, 10.0)      # the slow one-frame-per-call case on a shorter stretch
    print(f"micro_speech front end, {seconds:g} s of 16 kHz audio, best of {repeat}")
    for name, fn, secs in (("whole clip", whole, seconds), ("1 s clips", clips, seconds),
                           ("100 ms chunks", chunks(1600, seconds), seconds),
                           ("20 ms chunks", chunks(320, short), short)):
        dt = _best(fn, repeat)
        print(f"  {name:14s} {dt:8.3f} s   {secs / dt:7.1f} x real time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
