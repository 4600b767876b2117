"""Append monitor records to a file, written through to the OS as soon as they
are decoded (one write() per read from the port, before the next read), so a
killed monitor loses nothing it already received.

- `.jsonl` (or `.json`, `.ndjson`): one JSON object per line, the same objects
  `nanoml monitor --json` prints.
- `.csv`: one row per record with the columns in CSV_COLUMNS; `out` and `q`
  are space-separated numbers; fields without a column go to `data` as JSON.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import UsageError

CSV_COLUMNS = ["t", "type", "seq", "us", "top", "label", "out", "q", "frame", "sim", "text", "data"]
_JSONL = (".jsonl", ".json", ".ndjson")


def _json_default(o):
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    return str(o)


def dumps(rec: dict) -> str:
    return json.dumps(rec, default=_json_default, separators=(",", ":"))


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
            new = not self.path.exists() or self.path.stat().st_size == 0
            # unbuffered binary file: every record is one write() to the OS
            self._f = open(self.path, "ab", buffering=0)
        except OSError as e:
            raise UsageError(f"--log {self.path}: cannot open for appending ({e.strerror})") from None
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
        while view:
            n = self._f.write(view)
            view = view[n:]

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
            row.append("" if v is None else v)
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

