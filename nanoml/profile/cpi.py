"""The CPI (cycles per instruction) an estimate uses, and where it comes from.

In order: `--cpi X`; else a CPI measured on the board by `profile --port` and recorded
in the firmware project (``<project>/.nanoml/cpi.json``, beside the recorded arena:
measured cycles of one Invoke() over the latency model's instructions for the same
model, runtime, board and optimization profile); else the latency table's `cpi` and
its `cpi_source` (docs/profile.md, "CPI").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

CPI_FILE = ".nanoml/cpi.json"


def record_cpi(project: Path, model_sha256: str, runtime: str, board: str, optimize: str,
               cycles: float, instructions: int) -> Path:
    """Write the board's measured CPI into the project (nanoml.atomic)."""
    from ..atomic import write_atomic
    path = Path(project) / CPI_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"model_sha256": model_sha256, "runtime": runtime, "board": board,
            "optimize": optimize, "cpi": round(cycles / instructions, 4),
            "cycles": int(round(cycles)), "instructions": int(instructions), "source": "device",
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return write_atomic(path, json.dumps(data, indent=1) + "\n", "CPI record")


def read_recorded_cpi(project: Path, model_sha256: str, runtime: str, board: str,
                      optimize: str) -> dict | None:
    """The record when it was measured on a board for this model, runtime, board and
    optimization profile, with a plausible CPI (0.5-20); else None."""
    try:
        d = json.loads((Path(project) / CPI_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("source") != "device":
        return None
    if (d.get("model_sha256"), d.get("runtime"), d.get("board"), d.get("optimize")) != \
            (model_sha256, runtime, board, optimize):
        return None
    cpi = d.get("cpi")
    if not isinstance(cpi, (int, float)) or isinstance(cpi, bool) or not 0.5 <= cpi <= 20:
        return None
    return d


def choose_cpi(cli_cpi: float | None, recorded: dict | None, table_cpi: float,
               table_source: str, recorded_path: Path | None = None) -> tuple[float, str]:
    """(cpi, where it comes from)."""
    if cli_cpi is not None:
        return float(cli_cpi), "--cpi"
    if recorded is not None:
        return float(recorded["cpi"]), (f"measured on the board by `profile --port` "
                                        f"({recorded_path or CPI_FILE}, {recorded['measured_at']})")
    return table_cpi, table_source or "the latency table's prior"
