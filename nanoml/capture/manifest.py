"""`DIR/manifest.jsonl`: one JSON object per take, appended after the take's
file is in place (docs/capture.md "Manifest" lists the keys). Never prints.

    entries, bad = read_manifest(Path("data"))       # [dict], lines that are not JSON
    append_entry(Path("data"), entry)                 # one line, one write(2)

A line cut short (a crash while writing it) is skipped by readers and
counted; the next append starts on a fresh line.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import InputError
from .takes import GAPS_DIR, MANIFEST

MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 256 << 20


def read_manifest(out: Path) -> tuple[list[dict], int]:
    """(entries, unreadable lines) of `out`'s manifest; ([], 0) when it has none."""
    p = Path(out) / MANIFEST
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return [], 0
    except OSError as e:
        raise InputError(f"cannot read {p}: {e.strerror or e}") from None
    if size > MAX_MANIFEST_BYTES:
        raise InputError(f"{p}: {size:,} bytes is more than a manifest may have here "
                         f"({MAX_MANIFEST_BYTES:,})")
    entries, bad = [], 0
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"cannot read {p}: {e.strerror or e}") from None
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(e, dict) and isinstance(e.get("file"), str):
            entries.append(e)
        else:
            bad += 1
    return entries, bad


def append_entry(out: Path, entry: dict) -> None:
    """Append one line to the manifest (created when missing) in one write."""
    from ..atomic import os_error
    p = Path(out) / MANIFEST
    line = json.dumps(entry, allow_nan=False, separators=(", ", ": ")) + "\n"
    try:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            if os.fstat(fd).st_size and not _ends_with_newline(p):
                line = "\n" + line             # the last line was cut short: start fresh
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise os_error(e, p) from None


def _ends_with_newline(p: Path) -> bool:
    with open(p, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clean(entries: list[dict], include_gaps: bool = False) -> list[dict]:
    """The entries of takes without gaps (all with `include_gaps`)."""
    return [e for e in entries
            if include_gaps or not (e.get("gaps") or str(e["file"]).startswith(GAPS_DIR + "/"))]
