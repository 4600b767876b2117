"""The measured arena, recorded in a firmware project for the next `nanoml build`.

`profile` writes ``<project>/.nanoml/arena.json``::

    {"model_sha256": "...", "runtime": "chirale_2.0.0", "board": "nano33ble_sense",
     "min_bytes": 81968, "used_bytes": 81200, "source": "device", "measured_at": "..."}

`read_recorded_arena(project, model_sha256, runtime)` returns it when it belongs
to that model and runtime (and, unless `accept_sim`, was measured on a board: the
virtual board runs TFLM's 64-bit host build, whose arena is larger).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ARENA_FILE = ".nanoml/arena.json"


def record_arena(project: Path, model_sha256: str, runtime: str, board: str,
                 min_bytes: int, used_bytes: int | None, source: str) -> Path:
    path = Path(project) / ARENA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"model_sha256": model_sha256, "runtime": runtime, "board": board,
            "min_bytes": int(min_bytes),
            "used_bytes": int(used_bytes) if used_bytes is not None else None,
            "source": source, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_recorded_arena(project: Path, model_sha256: str, runtime: str,
                        accept_sim: bool = False) -> dict | None:
    path = Path(project) / ARENA_FILE
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("model_sha256") != model_sha256 or d.get("runtime") != runtime:
        return None
    if d.get("source") != "device" and not accept_sim:
        return None
    if not isinstance(d.get("min_bytes"), int) or d["min_bytes"] <= 0:
        return None
    return d
