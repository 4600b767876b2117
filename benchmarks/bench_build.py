"""Time `nanoml build --no-compile` (check, predict the arena, render, write) per model,
and a second run into the same folder (nothing to write).

    python benchmarks/bench_build.py            # ../shared/models and examples/*

Prints one line per model: file size, first and second run in ms, model_data.cpp bytes.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nanoml.errors import NanomlError  # noqa: E402
from nanoml.firmware.build import BuildOptions, generate  # noqa: E402


def models() -> list[Path]:
    found = sorted((ROOT.parent / "shared" / "models").glob("*.tflite"))
    found += sorted((ROOT / "examples").glob("*/*.tflite"))
    return found


def main() -> None:
    print(f"{'model':44s} {'bytes':>9s} {'first ms':>9s} {'again ms':>9s} {'model_data.cpp':>15s}")
    with tempfile.TemporaryDirectory() as tmp:
        for m in models():
            out = Path(tmp) / m.stem
            opts = BuildOptions(model=m, out=out, input="synthetic", compile=False)
            try:
                t0 = time.perf_counter()
                res = generate(opts)
                t1 = time.perf_counter()
                generate(opts)
                t2 = time.perf_counter()
            except NanomlError as e:
                print(f"{m.name:44s} {m.stat().st_size:9,d}  refused: {e.message[:60]}")
                continue
            size = (res.project_dir / "src" / "model_data.cpp").stat().st_size
            print(f"{m.name:44s} {m.stat().st_size:9,d} {1e3 * (t1 - t0):9.1f} "
                  f"{1e3 * (t2 - t1):9.1f} {size:15,d}")


if __name__ == "__main__":
    main()
