"""A capture dataset as training inputs: the clips of `DIR/manifest.jsonl` and
of the folder layout, each with its label (what `nanoml features` reads).
Never prints.

    clips, skipped = dataset_clips(Path("data"), sensor="mic")
    for c in clips: c.path, c.label, c.entry     # entry: the manifest line or None

Labels: a take listed in the manifest at its path has the manifest's label; a
file in `DIR/<label>/` that the manifest does not list at that path (a take
moved to another label by hand, a clip copied in) has its folder's name.
Skipped, and counted: takes with gaps (`_gaps/`), folders starting with `_`
(`_export/`), manifest lines whose file is gone, and other sensors' takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .manifest import read_manifest
from .takes import GAPS_DIR, MANIFEST

SUFFIXES = {"mic": (".wav", ".wave"), "imu": (".csv",)}


@dataclass
class DatasetClip:
    path: Path
    label: str
    entry: dict | None = None


@dataclass
class Skipped:
    gaps: int = 0
    missing: int = 0
    other_sensor: int = 0
    unreadable_lines: int = 0
    reasons: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"gaps": self.gaps, "missing": self.missing, "other_sensor": self.other_sensor,
                "unreadable_lines": self.unreadable_lines}


def is_dataset(folder: Path) -> bool:
    return Path(folder).is_dir() and (Path(folder) / MANIFEST).is_file()


def dataset_clips(folder: Path, sensor: str = "mic") -> tuple[list[DatasetClip], Skipped]:
    """Every clean take of `sensor` in the dataset `folder`, sorted by label
    folder, then take number (other files after the numbered ones)."""
    folder = Path(folder)
    entries, bad = read_manifest(folder)
    skipped = Skipped(unreadable_lines=bad)
    listed: dict[str, dict] = {}
    for e in entries:
        rel = str(e["file"])
        if rel.startswith(GAPS_DIR + "/") or e.get("gaps"):
            skipped.gaps += 1
            continue
        if e.get("sensor", "mic") != sensor:
            skipped.other_sensor += 1
            continue
        if not (folder / rel).is_file():
            skipped.missing += 1
            continue
        listed[Path(rel).as_posix()] = e
    clips = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name.startswith(("_", ".")):
            continue
        for f in sorted(sub.rglob("*"), key=_take_order):
            if not f.is_file() or f.suffix.lower() not in SUFFIXES[sensor]:
                continue
            rel = f.relative_to(folder).as_posix()
            e = listed.get(rel)
            label = e["label"] if e is not None and f.parent == sub else sub.name
            clips.append(DatasetClip(f, label, e))
    return clips, skipped


def _take_order(p: Path):
    """label.10.wav after label.9.wav (numbers compared as numbers); files not
    numbered that way after them, by name."""
    parts = p.name.split(".")
    numbered = len(parts) >= 3 and parts[-2].isdigit()
    return (str(p.parent), not numbered, int(parts[-2]) if numbered else 0, p.name)


def labelled_inputs(inputs) -> tuple[list[Path], list[str | None]]:
    """`nanoml features` inputs: a capture dataset (a folder with a manifest)
    gives its clean audio takes and their labels; other files and folders their
    WAV files (nanoml.pipeline.wav.find_wavs) without a label."""
    from ..errors import InputError
    from ..pipeline.wav import find_wavs
    paths: list[Path] = []
    labels: list[str | None] = []
    for item in inputs:
        if is_dataset(Path(item)):
            clips, skipped = dataset_clips(Path(item), "mic")
            if not clips:
                raise InputError(f"{item}: the dataset holds no clean audio take "
                                 f"({skipped.gaps} with gaps, {skipped.missing} missing, "
                                 f"{skipped.other_sensor} of the IMU)",
                                 "record some: nanoml capture --sensor mic --out DIR ...")
            paths += [c.path for c in clips]
            labels += [c.label for c in clips]
        else:
            found = find_wavs([item])
            paths += found
            labels += [None] * len(found)
    return paths, labels
