"""`nanoml validate --inputs DIR` with a folder of labelled clips: DIR/<label>/*.wav.

    clips = load_labelled_clips(DIR, sim_model, labels=None)    # LabelledClips
    clips.samples          # tensor bytes per clip (one list per model input)
    report = class_report(clips, tops)                         # accuracy, confusion

Every clip goes through the model's audio pipeline on the host (the host twin
of the front end, `nanoml.pipeline.features.clip_features`: the clip's first
samples, zero-padded to the window) and the tensor is sent to the board (or
the virtual board) as an input frame. So this validates the model on the board
and the labelled accuracy of the host front end + model; it does not exercise
the board's own front end (its microphone cannot hear a file): that is checked
separately (the host build of the firmware's front end against the twin).

Labels: `labels`, else the model's pipeline labels, else its standard
metadata; every subfolder name must be one of them. Never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, UsageError
from ..pipeline.wav import WAV_SUFFIXES


@dataclass
class LabelledClips:
    labels: list[str]
    paths: list[Path]
    truth: list[int]                       # label index per clip
    samples: list[list[bytes]]             # tensor bytes per clip, one per model input
    fits: list[str] = field(default_factory=list)


def audio_pipeline(model, labels: list[str] | None):
    """The model's audio pipeline (stored, or the micro_speech preset) with labels."""
    from ..pipeline.store import read_pipeline, resolve
    stored = read_pipeline(model)
    if stored is not None and stored.source != "mic":
        raise UsageError(f"{model.path}: the model's pipeline reads the {stored.source}; a "
                         "folder of WAV clips needs an audio (mic) pipeline",
                         hint="validate IMU models with --inputs FILE.npy")
    pipe = resolve(model, labels=labels) if stored is not None else \
        resolve(model, frontend="micro_speech", labels=labels)
    if not pipe.labels:
        raise UsageError(f"{model.path}: the model has no labels to match the folder names with",
                         hint="pass --labels a,b,c (one per output) or store them: "
                              "nanoml pipeline MODEL --labels a,b,c --out OUT.tflite")
    return pipe


def load_labelled_clips(folder: Path, sim_model, labels: list[str] | None = None
                        ) -> LabelledClips:
    import numpy as np

    from ..pipeline.features import clip_features
    folder = Path(folder)
    pipe = audio_pipeline(sim_model.model, labels)
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subdirs:
        raise InputError(f"{folder}: no label subfolders (expected {folder}/<label>/*.wav)",
                         "put each label's clips in a subfolder named after the label")
    unknown = [d.name for d in subdirs if d.name not in pipe.labels]
    if unknown:
        raise InputError(f"{folder}: subfolder {unknown[0]!r} is not a label of the model "
                         f"({', '.join(pipe.labels)})",
                         "rename the folder, or give the labels with --labels a,b,c")
    paths, truth = [], []
    for d in subdirs:
        found = sorted(f for f in d.rglob("*") if f.suffix.lower() in WAV_SUFFIXES
                       and f.is_file())
        paths += found
        truth += [pipe.labels.index(d.name)] * len(found)
    if not paths:
        raise InputError(f"{folder}: no .wav file in its label subfolders",
                         "put each label's clips in DIR/<label>/*.wav")
    t = sim_model.inputs[0]
    if len(sim_model.inputs) != 1:
        raise UsageError("a folder of clips fills one input tensor; the model has "
                         f"{len(sim_model.inputs)}")
    fs = clip_features(paths, pipe, list(t.shape))        # every clip read and checked first
    dt = np.dtype(t.dtype).newbyteorder("<")
    samples = [[np.ascontiguousarray(a, dtype=dt).tobytes()] for a in fs.array]
    return LabelledClips(list(pipe.labels), paths, truth, samples, [c.fit for c in fs.clips])


def class_report(clips: LabelledClips, predicted: list[int]) -> dict:
    """accuracy (0..1), confusion (rows: true label, columns: predicted) and the
    per-file list, for the tops the board returned (one per clip)."""
    n = len(clips.labels)
    confusion = [[0] * n for _ in range(n)]
    files = []
    for path, true, pred, fit in zip(clips.paths, clips.truth, predicted, clips.fits):
        ok = 0 <= pred < n
        if ok:
            confusion[true][pred] += 1
        files.append({"path": str(path), "label": clips.labels[true],
                      "predicted": clips.labels[pred] if ok else str(pred),
                      "correct": pred == true, "fit": fit})
    total = len(files)
    right = sum(f["correct"] for f in files)
    return {"labels": list(clips.labels), "accuracy": right / total if total else 0.0,
            "correct": right, "clips": total, "confusion": confusion, "files": files}
