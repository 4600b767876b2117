"""Append monitor records to a file, written through to the OS as soon as they
are decoded (one write() per read from the port, before the next read), so a
killed monitor loses nothing it already received.

- `.jsonl` (or `.json`, `.ndjson`): one JSON object per line, the same objects
  `nanoml monitor --json` prints.
- `.csv`: one row per record with the columns in CSV_COLUMNS; `out` and `q`
  are space-separated numbers; fields without a column go to `data` as JSON.

Text from the port cannot break either format: control characters in CSV
cells are written as \\xNN (`protocol.printable`), and JSON has no NaN or
Infinity tokens (a non-finite number is null; the raw line keeps its text).
A log that cannot be opened or written raises LogError (exit 2, one line).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from ..errors import UsageError
from .protocol import printable

CSV_COLUMNS = ["t", "type", "seq", "us", "top", "label", "out", "q", "frame", "sim", "text", "data"]
_JSONL = (".jsonl", ".json", ".ndjson")


def _json_default(o):
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    return str(o)


def _finite(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def dumps(rec: dict) -> str:
    """One record as strict JSON (non-finite numbers become null)."""
    try:
        return json.dumps(rec, default=_json_default, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(rec), default=_json_default, separators=(",", ":"),
                          allow_nan=False)


class LogError(UsageError):
    """The log file cannot be opened or written (missing folder, read-only or full disk)."""


class RecordLogger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix in _JSONL:
            self.format = "jsonl"
        elif suffix == ".csv":
            self.format = "csv"
        else:
            raise UsageError(f"--log {self.path}: unknown format '{suffix or '(none)'}'",
                             hint="use a .jsonl or .csv file name")
        try:
            # unbuffered binary file: every record is one write() to the OS
            self._f = open(self.path, "ab", buffering=0)
            new = os.fstat(self._f.fileno()).st_size == 0
        except OSError as e:
            raise LogError(f"--log {self.path}: cannot open for appending ({e.strerror})",
                           hint="give a file in an existing, writable folder") from None
        self.records = 0
        if self.format == "csv" and new:
            self._write_csv(CSV_COLUMNS)

    def write(self, rec: dict) -> None:
        self.write_many([rec])

    def write_many(self, recs: list[dict], json_lines: list[str] | None = None) -> None:
        """Append records with ONE write() to the OS (the file is unbuffered),
        so each call's records are in the file before it returns.
        `json_lines`: the records already serialised with `dumps` (reused)."""
        if not recs:
            return
        if self.format == "jsonl":
            lines = json_lines if json_lines is not None else [dumps(r) for r in recs]
            text = "\n".join(lines) + "\n"
        else:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            for r in recs:
                w.writerow(self._row(r))
            text = buf.getvalue()
        self._write_all(text.encode("utf-8"))
        self.records += len(recs)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = self._f.write(view)
                view = view[n:]
        except OSError as e:
            raise LogError(f"--log {self.path}: cannot write ({e.strerror or e})",
                           hint="free some space or log to another disk") from None

    def _write_csv(self, row: list) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        self._write_all(buf.getvalue().encode("utf-8"))

    @staticmethod
    def _row(rec: dict) -> list:
        row = []
        rest = {k: v for k, v in rec.items() if k not in CSV_COLUMNS}
        for c in CSV_COLUMNS:
            v = rec.get(c)
            if c in ("out", "q") and isinstance(v, list):
                v = " ".join(repr(x) if isinstance(x, float) else str(x) for x in v)
            elif c == "sim" and v is not None:
                v = int(bool(v))
            elif c == "text" and v is None:
                v = rec.get("message") or rec.get("msg")
            elif c == "data":
                v = dumps(rest) if rest else ""
            row.append("" if v is None else printable(v) if isinstance(v, str) else v)
        return row

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

