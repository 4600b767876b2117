"""Scores -> decisions: the command recognizer of TFLM's micro_speech example
(`RecognizeCommands`), in integer arithmetic so the firmware's C++ twin gives
identical detections for identical scores.

    rec = Recognizer(pipeline.decision, labels)
    det = rec.process(scores_u8, t_ms)       # Detection or None

Per inference (scores: one uint8 0..255 per label; `score_u8` makes them from
a model's outputs), at stream time `t_ms` (non-decreasing):

1. the result joins a queue; results older than ``t_ms - average_window_ms``
   leave it;
2. fewer than `minimum_count` results, or the queue spanning less than
   ``average_window_ms // 4`` ms: no decision;
3. average score per label = integer sum // count; the top label is the first
   with the largest average (a top average of 0 gives label 0);
4. a detection when the top average is above `threshold` and either the label
   differs from the previous detection's or more than `suppression_ms` passed
   since it (a previous detection of label 0, or none yet, counts as long ago);
   the detection then becomes "the previous detection";
5. a detection whose label is in the decision's `ignore` list (silence,
   unknown, ...) updates that state but is not reported.

The queue holds at most MAX_RESULTS results (TFLM's kMaxResults, 50); when it
is full the oldest leaves first. Never prints.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..errors import UsageError
from .spec import Decision

MAX_RESULTS = 50
INT32_MAX = (1 << 31) - 1


@dataclass(frozen=True)
class Detection:
    index: int          # label index
    label: str          # label name (the index as text when the model has no labels)
    score: int          # the label's average score, 0..255
    t_ms: int           # stream time of the inference that decided it

    def to_json(self) -> dict:
        return {"index": self.index, "label": self.label, "score": self.score,
                "t_ms": self.t_ms}


def score_u8(q: list[int] | None, dequantized: list[float], dtype: str,
             zero_point: int | None = None) -> list[int]:
    """The recognizer's uint8 scores of one output tensor: int8 outputs
    ``q + 128`` (as TFLM's recognizer), uint8 ``q``, other types
    ``clamp(floor(p * 256), 0, 255)`` of the dequantized value in float32."""
    if dtype == "int8" and q is not None:
        return [min(255, max(0, int(v) + 128)) for v in q]
    if dtype == "uint8" and q is not None:
        return [min(255, max(0, int(v))) for v in q]
    import numpy as np
    p = np.asarray(dequantized, dtype=np.float32) * np.float32(256.0)
    return [int(v) for v in np.clip(np.floor(p), 0, 255)]


class Recognizer:
    """TFLM micro_speech's RecognizeCommands (see the module doc)."""

    def __init__(self, decision: Decision | None, labels: list[str] | None, n_scores: int):
        d = decision or Decision()
        if labels is not None and len(labels) != n_scores:
            raise UsageError(f"{len(labels)} labels for a model with {n_scores} outputs",
                             hint="give one label per output (--labels a,b,c)")
        if n_scores < 1:
            raise UsageError("the recognizer needs at least one score per inference")
        self.decision = d
        self.labels = list(labels) if labels is not None else None
        self.n = n_scores
        self.ignore = set(d.ignore or [])
        self.reset()

    def reset(self) -> None:
        self._queue: deque[tuple[int, list[int]]] = deque()
        self._prev_index = 0
        self._prev_time: int | None = None      # None: TFLM's INT32_MIN (never)

    def label(self, i: int) -> str:
        return self.labels[i] if self.labels is not None else str(i)

    def process(self, scores: list[int], t_ms: int) -> Detection | None:
        """Feed one inference's uint8 scores at stream time `t_ms`; the new
        detection it makes, or None."""
        d = self.decision
        if len(scores) != self.n:
            raise UsageError(f"{len(scores)} scores for a recognizer of {self.n} labels")
        t_ms = int(t_ms)
        if self._queue and t_ms < self._queue[-1][0]:
            raise UsageError(f"results must come in time order ({t_ms} ms after "
                             f"{self._queue[-1][0]} ms)")
        if len(self._queue) >= MAX_RESULTS:
            self._queue.popleft()
        self._queue.append((t_ms, [int(s) for s in scores]))
        limit = t_ms - int(d.average_window_ms)
        while self._queue and self._queue[0][0] < limit:
            self._queue.popleft()
        count = len(self._queue)
        if count < int(d.minimum_count) or \
                t_ms - self._queue[0][0] < int(d.average_window_ms) // 4:
            return None
        sums = [0] * self.n
        for _, s in self._queue:
            for i, v in enumerate(s):
                sums[i] += v
        top, top_score = 0, 0
        for i, total in enumerate(sums):
            avg = total // count
            if avg > top_score:
                top, top_score = i, avg
        if self._prev_index == 0 or self._prev_time is None:
            since = INT32_MAX
        else:
            since = t_ms - self._prev_time
        if top_score > int(d.threshold) and (top != self._prev_index
                                             or since > int(d.suppression_ms)):
            self._prev_index, self._prev_time = top, t_ms
            name = self.label(top)
            if name in self.ignore:
                return None
            return Detection(top, name, top_score, t_ms)
        return None
