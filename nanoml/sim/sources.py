"""The virtual board's sensors: a WAV file plays into its microphone, a CSV
file into its IMU (`nanoml sim --source FILE`), through the model's pipeline.

    src = open_source("words.wav", sim_model)       # FileSource (reads the whole file)
    for w in src.windows():                          # pipeline Windows, in stream order
        ...
    src.decide(inference, t_ms)                      # Detection or None (the recognizer)

The pipeline is the model's stored description (nanoml.pipeline.store.resolve);
a model without one gets the `micro_speech` front end for a WAV file and an
IMU pipeline shaped by its input (channels ax.. = the input's last dimension
above 1, windows back to back) for a CSV file. The audio is fed to the front
end one front-end step at a time, as the board's microphone delivers it.
Never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..pipeline.recognizer import Recognizer, score_u8
from ..pipeline.spec import IMU_CHANNELS, Pipeline

SOURCE_KINDS = {".wav": "mic", ".wave": "mic", ".csv": "imu"}


def source_kind(path: str | Path) -> str:
    kind = SOURCE_KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise UsageError(f"--source {path}: not a .wav (microphone) or .csv (IMU) file",
                         hint="give a 16-bit mono WAV file or a CSV file with a header row")
    return kind


def _default_imu_channels(model) -> list[str]:
    ins = model.input_tensors
    dims = [int(d) for d in ins[0].shape if int(d) > 1] if len(ins) == 1 else []
    c = dims[-1] if dims else 0
    if c not in (3, 6, 9):
        raise UsageError(f"{model.path}: input {ins[0].shape if ins else []} is not IMU "
                         "samples of 3, 6 or 9 channels",
                         hint="store an IMU pipeline: nanoml pipeline MODEL --imu ax,ay,az ...")
    return list(IMU_CHANNELS[:c])


def source_pipeline(model, kind: str, labels: list[str] | None = None) -> Pipeline:
    """The pipeline that turns a `kind` ("mic"/"imu") stream into `model`'s input
    (a loaded nanoml.model.tflite.Model), with `labels` overriding the stored ones."""
    from ..pipeline.store import read_pipeline, resolve
    stored = read_pipeline(model)
    if stored is not None and stored.source != kind:
        what = {"mic": "a WAV file", "imu": "a CSV file"}[stored.source]
        raise UsageError(f"{model.path}: the model's pipeline reads the {stored.source}; "
                         f"--source needs {what}", hint="give the source the pipeline reads")
    if stored is not None:
        return resolve(model, labels=labels)
    if kind == "mic":
        return resolve(model, frontend="micro_speech", labels=labels)
    return resolve(model, imu=_default_imu_channels(model), labels=labels)


@dataclass
class FileSource:
    path: str
    kind: str                     # "mic" or "imu"
    pipe: Pipeline
    data: object                  # np.int16 samples (mic) or float32 [rows, channels] (imu)
    input_dtype: str
    recognizer: Recognizer | None = None
    out_dtype: str = "float32"
    results: int = 0
    dets: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def duration_ms(self) -> int:
        return int(len(self.data) * 1000 // self.pipe.sample_rate)

    def windows(self):
        """The pipeline's windows over the whole file, in order (a generator)."""
        import numpy as np
        if self.kind == "mic":
            from ..pipeline.stream import AudioStream
            stream = AudioStream(self.pipe)
            step = self.pipe.step_samples
        else:
            from ..pipeline.imu import ImuStream
            stream = ImuStream(self.pipe)
            step = 1
        dtype = np.dtype(self.input_dtype).newbyteorder("<")
        for i in range(0, len(self.data), step):
            for w in stream.feed(self.data[i:i + step]):
                w.tensor = np.ascontiguousarray(w.tensor, dtype=dtype)
                yield w

    def decide(self, inference, t_ms: int):
        """The recognizer's detection for one inference, or None (no decision step)."""
        if self.recognizer is None:
            return None
        scores = score_u8(inference.q, inference.outputs, self.out_dtype)
        return self.recognizer.process(scores[:self.recognizer.n], t_ms)


def open_source(path: str | Path, sim_model, labels: list[str] | None = None) -> FileSource:
    """Read a sensor file for `sim_model` (a nanoml.sim.model.SimModel) and set up
    its pipeline and recognizer; one-line errors for a bad file or a mismatch."""
    kind = source_kind(path)
    model = sim_model.model
    pipe = source_pipeline(model, kind, labels)
    if kind == "mic":
        from ..pipeline.wav import read_wav
        data, _ = read_wav(path, expect_rate=int(pipe.frontend.params["sample_rate"]))
    else:
        from ..pipeline.imu import read_csv
        data = read_csv(path, pipe.imu.channels)
    out0 = sim_model.outputs[0] if sim_model.outputs else None
    n0 = int(out0.nbytes // max(1, _itemsize(out0.dtype))) if out0 else 0
    rec = None
    if pipe.decision is not None:
        rec = Recognizer(pipe.decision, pipe.labels[:n0] if pipe.labels and
                         len(sim_model.outputs) > 1 else pipe.labels, n0)
    return FileSource(str(path), kind, pipe, data, sim_model.inputs[0].dtype, rec,
                      out0.dtype if out0 else "float32")


def _itemsize(dtype: str) -> int:
    import numpy as np
    return np.dtype(dtype).itemsize
