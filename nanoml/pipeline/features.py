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
from .spec import (DEFAULT_AUDIO_STRIDE_MS, MICRO_SPEECH_FEATURE_SCALE, Pipeline, check_against,
                   check_frontend, conversion_for)

FEATURE_SCALES = {"micro_speech": MICRO_SPEECH_FEATURE_SCALE}


def preset_pipeline(model, kind: str = "micro_speech") -> Pipeline:
    """The pipeline of front-end preset `kind` shaped for `model`'s one input
    tensor: frames = input elements / channels, the conversion for its dtype
    and quantization."""
    frontend = check_frontend(kind, {})     # an unknown or planned kind: one line
    ins = model.input_tensors
    if len(ins) != 1:
        raise UsageError(f"{model.path}: the model has {len(ins)} input tensors; an audio "
                         "pipeline fills exactly one", hint="use a model with one audio input")
    t = ins[0]
    channels = int(frontend.params["num_channels"])
    if t.elements == 0 or t.elements % channels:
        raise UsageError(f"{model.path}: input {t.shape} is not audio features: its "
                         f"{t.elements} values are not frames of {channels} channels",
                         hint=f"the {kind} front end gives frames of {channels} channels")
    q = t.quant
    tensor = conversion_for(t.dtype, q.scale[0] if q else None, q.zero_point[0] if q else None,
                            FEATURE_SCALES[kind])
    pipe = Pipeline(source="mic", window={"frames": t.elements // channels,
                                          "stride_ms": DEFAULT_AUDIO_STRIDE_MS},
                    tensor=tensor, frontend=frontend)
    outputs = sum(o.elements for o in model.output_tensors)
    check_against(pipe, t.shape, t.dtype, outputs)
    return pipe


def model_pipeline(model, frontend: str | None = None) -> Pipeline:
    """The model's audio pipeline: the preset (`frontend`, default micro_speech)
    shaped for the model. (P1's `store.resolve` replaces this once it exists.)"""
    pipe = preset_pipeline(model, frontend or "micro_speech")
    if pipe.source != "mic" or pipe.frontend is None:
        raise UsageError(f"{model.path}: the model's pipeline is not an audio one",
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
