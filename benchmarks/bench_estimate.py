"""Latency estimate against measured instruction counts and published figures.

Prints, for every model of ../shared/truth/instructions_cortex_m4.json and the
held-out models of tests/data/estimate/holdout.json: measured vs estimated
instructions (total and worst operator with >= 5% of the model), then the estimate
in ms at 64 MHz next to the published latencies of reference/board.md, and the
time the estimate takes.

Run: python benchmarks/bench_estimate.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("NANOML_SHARED", ROOT.parent / "shared"))

from nanoml.model.tflite import load  # noqa: E402
from nanoml.profile.estimate import estimate_layers  # noqa: E402

RUNTIME, CLOCK, CPI = "chirale_2.0.0", 64_000_000, None     # None: the table's CPI (1.4)


def compare(title: str, measured: dict, model_dir: Path, optimize: str | None = None,
            float_abi: str | None = None) -> None:
    print(f"\n{title}")
    print(f"{'model':40s} {'measured':>12s} {'estimate':>12s} {'error':>8s} {'worst op >=5%':>22s}")
    for name, m in sorted(measured.items()):
        path = model_dir / name
        if not path.exists():
            continue
        layers, total, _, _ = estimate_layers(load(path), RUNTIME, CLOCK, CPI, optimize,
                                              float_abi)
        t = m["total_instructions"]
        worst, wop = 0.0, "-"
        for rec in m["ops"]:
            est = layers[rec["index"]].instructions
            if rec["instructions"] >= 0.05 * t and est is not None:
                e = est / rec["instructions"] - 1
                if abs(e) >= abs(worst):
                    worst, wop = e, f"{rec['index']}:{rec['op'][:12]} {e:+.1%}"
        missing = sum(1 for layer in layers if not layer.estimated)
        flag = f"  INCOMPLETE: {missing} ops not estimated (lower bound)" if missing else ""
        print(f"{name:40s} {t:12,d} {total:12,d} {total / t - 1:+8.1%} {wop:>22s}{flag}")


def published() -> None:
    print("\nPublished latencies (reference/board.md) next to the estimate at 64 MHz, CPI 1.4")
    rows = [("person_detect.tflite", "person detection, Nano 33 BLE Sense, 2021 library",
             "about 1200 ms"),
            ("person_detect.tflite", "person detection, Nano 33 BLE, guberti/tvm-arduino-profiling",
             "653.0 ms"),
            ("micro_speech_quantized.tflite", "micro_speech, Nano 33 BLE, "
             "guberti/tvm-arduino-profiling", "53.65 ms")]
    for name, what, fig in rows:
        p = SHARED / "models" / name
        if p.exists():
            _, total, _, _ = estimate_layers(load(p), RUNTIME, CLOCK, CPI)
            print(f"  {what}: published {fig}; estimate {total * 1.4 / CLOCK * 1000:.0f} ms "
                  f"({total:,} instructions)")
    print("  MLPerf Tiny v0.5 reference (TFLM, Cortex-M4 at 120 MHz): KWS 181.9 ms, VWW 600.6 ms, "
          "IC 704.2 ms, AD 10.05 ms;\n  the same cycles at 64 MHz would be x1.875: KWS 341 ms, "
          "VWW 1126 ms, IC 1320 ms, AD 18.8 ms (models not in ../shared; see docs/profile.md).")


def builds() -> None:
    """Each measured build (tests/data/estimate/<runtime>.<build>.*.json) against its own
    estimate, then the speed build against the -Os one, measured, with its flash cost."""
    from nanoml.profile.costmodel import has_cost_model
    data = ROOT / "tests" / "data" / "estimate"
    for build, opt, abi in (("speed", "speed", None), ("soft", "size", "soft")):
        if not has_cost_model(RUNTIME, opt, abi or "softfp"):
            print(f"\nno latency table of the {build} build: skipped")
            continue
        for part, d in (("shared", SHARED / "models"), ("holdout", data / "models")):
            f = data / f"{RUNTIME}.{build}.{part}.json"
            if f.exists():
                compare(f"{build} build, {part} models", json.loads(f.read_text())["models"],
                        d, opt, abi)
    side_by_side(data)


def side_by_side(data: Path) -> None:
    """-Os, -O2 (whole library) and the speed build (as nanoml generates it) measured, next
    to the speed build's estimate and the flash its flags add, for the shared models and the
    named held-out networks."""
    from nanoml.boards import get_board
    from nanoml.footprint import for_profile
    from nanoml.memory import predict_arena
    from nanoml.model.verdict import firmware_arena_bytes
    from nanoml.runtimes import get_runtime
    rt, board = get_runtime(RUNTIME), get_board(None)
    print("\n| model | -Os measured | -O2 measured | -O2 vs -Os | speed measured | speed vs -Os "
          "| speed estimate | vs speed measured | speed flash + B | default |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for part, d in (("shared", SHARED / "models"), ("holdout", data / "models")):
        fs = [data / f"{RUNTIME}.{b}.{part}.json" for b in ("Os", "O2", "speed")]
        if not all(f.exists() for f in fs) or not d.exists():
            continue
        os_, o2, spm = (json.loads(f.read_text())["models"] for f in fs)
        for n in sorted(set(os_) & set(o2) & set(spm)):
            if part == "holdout" and not n.startswith(("mlperf", "net_", "k_")):
                continue
            model = load(d / n)
            _, sp, _, _ = estimate_layers(model, RUNTIME, CLOCK, None, "speed", per_kernel_abi=True)
            arena = firmware_arena_bytes(int(predict_arena(model, runtime_id=RUNTIME)
                                             .to_json()["min_bytes"]))
            plan, _, fps = for_profile(None, board, rt, model, arena)
            extra = fps["speed"].flash_parts["tflm_ops_speed"] if "speed" in fps else 0
            a, b = os_[n]["total_instructions"], o2[n]["total_instructions"]
            c = spm[n]["total_instructions"]
            print(f"| {n[:-7]} | {a:,} | {b:,} | {b / a - 1:+.1%} | {c:,} | {c / a - 1:+.1%} "
                  f"| {sp:,} | {sp / c - 1:+.1%} | {extra:,} | {plan.profile} |")


def unmeasured() -> None:
    """Kernel paths the coefficients were never fitted on (int16, float LSTM, ...) are
    reported as not estimated, never as a number: per built model, which ops and why."""
    sys.path.insert(0, str(ROOT / "tests"))
    import tempfile
    from test_estimate import HUGE, UNMEASURED  # the models the tests build
    print("\nKernels never measured (models built by tests/test_estimate.py): no figure")
    with tempfile.TemporaryDirectory() as d:
        for name, (make, _, _) in sorted(UNMEASURED.items()):
            p = Path(d) / f"{name}.tflite"
            p.write_bytes(make())
            layers, total, _, _ = estimate_layers(load(p), RUNTIME, CLOCK, CPI)
            miss = [f"{x.index}:{x.op} {x.dtype} ({x.kernel})" for x in layers if not x.estimated]
            print(f"  {name:22s} not estimated: {', '.join(miss) or '-'}")
        print("\nHuge shapes (closed-form counts): time per estimate")
        for name, make in sorted(HUGE.items()):
            p = Path(d) / "huge.tflite"
            p.write_bytes(make())
            t0 = time.perf_counter()
            try:
                layers, _, _, _ = estimate_layers(load(p), RUNTIME, CLOCK, CPI)
                what = ", ".join(x.basis for x in layers)
            except Exception as e:  # noqa: BLE001 - the reader refuses some: say so
                what = f"refused: {type(e).__name__}"
            print(f"  {name:22s} {(time.perf_counter() - t0) * 1000:8.1f} ms  {what}")


def main() -> int:
    truth = SHARED / "truth" / "instructions_cortex_m4.json"
    if truth.exists():
        compare("Shared truth (Chirale 2.0.0, Cortex-M4, instructions per Invoke)",
                json.loads(truth.read_text())["models"], SHARED / "models")
    else:
        print("../shared not present: shared comparison skipped")
    data = ROOT / "tests" / "data" / "estimate"
    compare("Held-out generated models (never used for fitting)",
            json.loads((data / "holdout.json").read_text())["models"], data / "models")
    builds()
    published()
    unmeasured()
    models = sorted((SHARED / "models").glob("*.tflite")) if (SHARED / "models").exists() else []
    if models:
        t0 = time.perf_counter()
        for p in models:
            estimate_layers(load(p), RUNTIME, CLOCK, CPI)
        dt = time.perf_counter() - t0
        print(f"\nestimate time: {dt * 1000 / len(models):.1f} ms per model over {len(models)} models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
