"""`nanoml monitor --sim MODEL --source FILE.wav --save DIR` end to end: the
virtual board plays speech into a real keyword model, and the raw window behind
each detection is kept as a dataset take (docs/monitor.md "Saving what the model
detected")."""

from __future__ import annotations

import json

import numpy as np
from test_stream import LABELS, stream_wav  # noqa: F401 - the speech fixture (words at known times)


def test_monitor_save_keeps_the_window_behind_each_detection(tmp_path, stream_wav):
    """The virtual board plays speech into the model; every `det` gets its raw window
    saved, labelled with what the model said, bit-identical to the source's samples
    the front end ran on (the window ends at the det's t_ms)."""
    from conftest import shared_path
    from mutants import run_cli

    from nanoml.pipeline.wav import read_wav
    model = shared_path("models", "micro_speech_quantized.tflite")
    path, x = stream_wav
    out = tmp_path / "misses"
    r = run_cli(["monitor", "--sim", str(model), "--source", str(path), "--json", "--fast",
                 "--labels", ",".join(LABELS), "--save", str(out)], timeout=180)
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    dets = [d for d in recs if d["type"] == "det"]
    saved = [d for d in recs if d["type"] == "saved"]
    assert len(dets) >= 2 and not [d for d in recs if d["type"] in ("cst", "smp", "cend")]
    summary = recs[-1]
    assert summary["saved"] == {"dir": str(out), "windows": len(dets), "with_gaps": 0,
                                "refused": None}
    entries = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [e["file"] for e in entries] == [s["file"] for s in saved]
    assert [(e["predicted"], e["score"], e["det_seq"]) for e in entries] == \
        [(d["label"], d["score"], d["seq"]) for d in dets]
    for e, d in zip(entries, dets):
        assert e["label"] == d["label"] and e["gaps"] == 0 and e["t_ms"] == d["t_ms"]
        w = read_wav(out / e["file"])[0]
        end = d["t_ms"] * 16
        assert np.array_equal(w, x[end - len(w):end]), e["file"]
        assert len(w) == 15840                         # 49 frames of 30 ms every 20 ms
