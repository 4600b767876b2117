"""WAV clips -> the model's input tensors through its audio pipeline (what
`nanoml features` writes, so training uses exactly the board's features).

    pipe = model_pipeline(model)                     # the model's audio pipeline
    res = clip_features(paths, pipe, raw=False)      # FeatureSet (never prints)

One tensor per clip, as TFLM's speech-commands training makes them
(`input_data.py`: ``decode_wav(desired_samples=...)`` then the front end): the
clip's first `clip_samples` samples (the fewest that give the model's `frames`
frames), zero-padded at the end when the clip is shorter, the rest ignored when
it is longer; the front end starts fresh for every clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, UsageError
from .spec import Pipeline


def model_pipeline(model, frontend: str | None = None) -> Pipeline:
    """The model's audio pipeline: the one stored in it (`nanoml pipeline`), else
    the `frontend` preset (default micro_speech) shaped for its input tensor
    (store.resolve: checked against the model's tensors)."""
    from .store import resolve
    pipe = resolve(model, frontend=frontend) or resolve(model, frontend="micro_speech")
    if pipe.source != "mic" or pipe.frontend is None:
        raise UsageError(f"{model.path}: the model's pipeline reads the {pipe.source}, not audio",
                         hint="features are computed for models with an audio (mic) pipeline")
    return pipe


def clip_samples(pipe: Pipeline) -> int:
    """Samples that give exactly the pipeline's frames."""
    return (pipe.frames - 1) * pipe.step_samples + pipe.window_samples


@dataclass
class Clip:
    path: str
    samples: int          # in the file
    fit: str              # "exact", "padded" (zeros at the end) or "cut" (the rest ignored)

    def to_json(self) -> dict:
        return {"path": self.path, "samples": self.samples, "fit": self.fit}


@dataclass
class FeatureSet:
    array: object                       # np.ndarray [N, *input shape] or [N, frames, channels]
    clips: list[Clip] = field(default_factory=list)
    raw: bool = False


def clip_features(paths: list[Path], pipe: Pipeline, input_shape: list[int],
                  raw: bool = False) -> FeatureSet:
    """Front-end output (`raw`) or model input tensors of every clip in `paths`."""
    import numpy as np

    from .. import progress
    from .frontend import MicroFrontend, to_tensor
    from .wav import read_wav
    if not paths:
        raise InputError("no WAV file given", "give WAV files or folders that hold them")
    fe = MicroFrontend(pipe.frontend)
    need = clip_samples(pipe)
    rate = int(pipe.frontend.params["sample_rate"])
    shape = (pipe.frames, pipe.channels) if raw else tuple(int(d) for d in input_shape)
    dtype = np.uint16 if raw else {"int8": np.int8, "uint8": np.uint8, "int16": np.int16,
                                   "float32": np.float32}[pipe.tensor.dtype]
    out = np.empty((len(paths), *shape), dtype=dtype)
    clips = []
    progress.report(f"computing features of {len(paths)} clip(s)")
    for i, p in enumerate(paths):
        progress.detail(f"clip {i + 1} of {len(paths)}: {p}")
        samples, _ = read_wav(p, expect_rate=rate)
        n = len(samples)
        fit = "exact" if n == need else "padded" if n < need else "cut"
        x = np.zeros(need, dtype=np.int16)
        x[:min(n, need)] = samples[:need]
        fe.reset()
        frames = fe.process(x)
        out[i] = frames if raw else to_tensor(frames, pipe.tensor).reshape(shape)
        clips.append(Clip(str(p), n, fit))
    return FeatureSet(out, clips, raw)
