"""The dataset as Edge Impulse data-acquisition files (JSON), for users who
train there. Never prints.

    files = export_edge_impulse(Path("data"), Path("data/_export/edge-impulse"), hmac_key=None)

The format is Edge Impulse's documented "Data acquisition format"
(docs.edgeimpulse.com, reference / data ingestion / data acquisition format):

    {"protected": {"ver": "v1", "alg": "HS256" | "none", "iat": <seconds>},
     "signature": <64 hex digits>,
     "payload": {"device_type": ..., "interval_ms": ..., "sensors": [{"name", "units"}],
                 "values": [...]}}

Signed with an HMAC key as the documentation's examples do: the document is
JSON-encoded with the signature set to 64 zeros, HMAC-SHA256 of that text
(hex) becomes the signature, and the document is encoded again. Without a key
`alg` is "none" and the signature stays the 64 zeros. `device_name` is set
only when the board reported a serial number (the documentation: only a
globally unique id). One file per clean take, `<label>.<n>.json`: Edge
Impulse's uploader takes the label from the name up to the first dot. Audio
is one sensor `audio` in units `wav` with the samples as integers; IMU takes
have one sensor per channel (ax ... in g, dps, uT) and one row per sample.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

from ..errors import InputError, UsageError
from .manifest import clean, read_manifest

EMPTY_SIGNATURE = "0" * 64
FORMATS = ("edge-impulse",)


def ei_document(entry: dict, samples, hmac_key: str | None = None,
                iat: int | None = None) -> str:
    """The JSON text of one take in the data-acquisition format."""
    rate = float(entry["rate_hz"])
    if entry["sensor"] == "mic":
        sensors = [{"name": "audio", "units": "wav"}]
        values = [int(v) for v in samples.reshape(-1).tolist()]
    else:
        sensors = [{"name": c, "units": u} for c, u in zip(entry["channels"], entry["units"])]
        # each float32 as its shortest decimal (0.18905339, not 0.18905339390039444)
        values = [[float(str(v)) for v in row] for row in samples.astype("float32")]
    payload = {"device_type": entry.get("board") or "unknown",
               "interval_ms": 1000.0 / rate, "sensors": sensors, "values": values}
    if entry.get("serial_number"):
        payload = {"device_name": str(entry["serial_number"]), **payload}
    protected = {"ver": "v1", "alg": "HS256" if hmac_key else "none",
                 "iat": int(time.time()) if iat is None else int(iat)}
    doc = {"protected": protected, "signature": EMPTY_SIGNATURE, "payload": payload}
    text = json.dumps(doc)
    if hmac_key:
        doc["signature"] = hmac.new(hmac_key.encode(), text.encode(), hashlib.sha256).hexdigest()
        text = json.dumps(doc)
    return text


def load_take(out: Path, entry: dict):
    """The samples of a take's file: np.int16 [n] or np.float32 [n, channels]."""
    p = out / entry["file"]
    if entry["sensor"] == "mic":
        from ..pipeline.wav import read_wav
        return read_wav(p, expect_rate=int(entry["rate_hz"]))[0]
    from ..pipeline.imu import read_csv
    return read_csv(p, list(entry["channels"]))


def export_edge_impulse(out: Path, dest: Path, hmac_key: str | None = None,
                        include_gaps: bool = False, label: str | None = None) -> list[dict]:
    """Write one JSON file per take of the dataset `out` (of `label` only, when
    given) into `dest`; returns [{file, export}] (relative to `out` and `dest`)."""
    from .. import progress
    from ..atomic import write_atomic
    entries, _ = read_manifest(out)
    todo = [e for e in clean(entries, include_gaps) if label is None or e.get("label") == label]
    if not todo:
        which = f" labelled {label}" if label is not None else ""
        raise InputError(f"{out}: no take{which} in {out / 'manifest.jsonl'} to export",
                         hint="record takes first: nanoml capture --label NAME --out DIR ...")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"--export-to {dest} is a file, not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for i, e in enumerate(todo):
        progress.detail(f"take {i + 1} of {len(todo)}: {e['file']}")
        samples = load_take(out, e)
        name = Path(e["file"]).with_suffix(".json").name
        write_atomic(dest / name, ei_document(e, samples, hmac_key, _created(e)), "export")
        done.append({"file": e["file"], "export": name})
    return done


def _created(entry: dict) -> int | None:
    """The take's creation time (the manifest's `created`), seconds since the epoch."""
    import calendar
    try:
        return calendar.timegm(time.strptime(str(entry.get("created")), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None
