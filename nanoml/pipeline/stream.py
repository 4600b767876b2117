"""The host twin of the board's audio streaming: samples -> front-end frames ->
a sliding window of the latest N frames -> one model input every stride.

    s = AudioStream(pipeline)
    for w in s.feed(int16_chunk):          # chunks of any size, as the board's PDM gives
        w.t_ms, w.raw, w.tensor            # stream time, uint16 [N, C], model input values

The windowing (the board does exactly the same; docs/pipeline.md "Streaming"):

- front-end frame k (0-based) covers samples ``[k*step, k*step + size)`` and is
  complete once sample ``k*step + size - 1`` has arrived;
- the first window is frames ``0 .. N-1`` (no inference before N frames exist:
  the window never holds made-up frames); then one every `stride_frames`
  frames: an inference after frame k when ``k + 1 >= N`` and
  ``(k + 1 - N) % stride_frames == 0``, on frames ``k-N+1 .. k``;
- its time is the end of frame k in the stream:
  ``t_ms = (k*step + size) * 1000 // sample_rate``;
- the tensor is `frontend.to_tensor` (the spec's integer formula) of the
  window, reshaped to the model's input shape by the caller.

`feature_us` of a window is the host time spent in the front end since the
previous window (what the board reports as `fus`). Never prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import UsageError
from .spec import Pipeline


@dataclass
class Window:
    index: int             # window number, 0-based
    t_ms: int              # stream time of its last sample
    raw: object            # np.ndarray: uint16 [frames, channels] (audio) or float32 [samples, channels] (imu)
    tensor: object         # np.ndarray: the model's input values (flat, the tensor's dtype)
    feature_us: int = 0    # host microseconds spent computing its features since the last window


def window_end_ms(frame: int, step: int, size: int, rate: int) -> int:
    """Stream time (ms) at the end of front-end frame `frame`."""
    return (frame * step + size) * 1000 // rate


def is_inference_frame(frame: int, frames: int, stride: int) -> bool:
    """True when the window closes after front-end frame `frame` (0-based)."""
    done = frame + 1
    return done >= frames and (done - frames) % stride == 0


class AudioStream:
    """Streaming windows of an audio (mic) pipeline (see the module doc)."""

    def __init__(self, pipe: Pipeline):
        import numpy as np

        from .frontend import MicroFrontend
        if pipe.source != "mic" or pipe.frontend is None:
            raise UsageError("an audio stream needs a mic pipeline with a front end",
                             hint="set one with `nanoml pipeline MODEL --frontend micro_speech`")
        self.pipe = pipe
        self.fe = MicroFrontend(pipe.frontend)
        self.frames = pipe.frames
        self.stride = pipe.stride_frames
        self.channels = pipe.channels
        self.rate = int(pipe.frontend.params["sample_rate"])
        self._ring = np.zeros((self.frames, self.channels), dtype=np.uint16)
        self.reset()

    def reset(self) -> None:
        self.fe.reset()
        self._done = 0              # front-end frames made so far
        self._windows = 0
        self._feature_ns = 0

    @property
    def frames_done(self) -> int:
        return self._done

    def feed(self, samples) -> list[Window]:
        """Feed int16 samples; the windows they complete, in order."""
        import numpy as np

        from .frontend import to_tensor
        t0 = time.perf_counter_ns()
        new = self.fe.process(samples)
        self._feature_ns += time.perf_counter_ns() - t0
        out = []
        n = self.frames
        for row in new:
            k = self._done
            self._ring[k % n] = row
            self._done += 1
            if not is_inference_frame(k, n, self.stride):
                continue
            start = self._done % n                 # oldest frame of the window
            raw = np.concatenate([self._ring[start:], self._ring[:start]]) if start else \
                self._ring.copy()
            t1 = time.perf_counter_ns()
            tensor = to_tensor(raw, self.pipe.tensor).reshape(-1)
            self._feature_ns += time.perf_counter_ns() - t1
            out.append(Window(self._windows, window_end_ms(k, self.fe.step, self.fe.size,
                                                           self.rate),
                              raw, tensor, self._feature_ns // 1000))
            self._windows += 1
            self._feature_ns = 0
        return out


def run_windows(windows, run, recognizer=None, score_fn=None):
    """Run the model on each window and decide: yields (window, inference,
    detection or None). `run(tensor) -> Inference` (nanoml.sim.model);
    `score_fn(inference) -> list[int]` gives the recognizer's uint8 scores."""
    for w in windows:
        r = run(w.tensor)
        det = None
        if recognizer is not None:
            det = recognizer.process(score_fn(r), w.t_ms)
        yield w, r, det
