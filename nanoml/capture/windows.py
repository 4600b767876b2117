"""`nanoml monitor --save DIR`: the raw window behind each detection, kept as a
take of the dataset, labelled with what the model said (so false triggers can
be listened to, relabelled and added to the training set). Never prints.

    saver = WindowSaver(Path("misses"), model="1a2b3c4d5e6f")
    for parsed in lines:                    # every Parsed line the monitor reads
        for entry in saver.feed(parsed):    # manifest entries written
            ...

The firmware (or `nanoml sim --source FILE.wav`), asked with `dwin on=1`, sends
after each `det` line the window it ran on as a take whose `cst` carries
`det=<seq>` (docs/protocol.md "Capture"). The file goes to
`DIR/<label>/<label>.<n>.wav` (or `DIR/_gaps/...` when frames were lost), the
manifest line adds `predicted` (the det's label as sent), `score`, `det_seq`,
`t_ms` and `model`. A label that is not a plain name (`_unknown_`) is made one
(`unknown_`): leading `_`/`.` dropped, other unsafe characters as `_`.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UsageError
from . import takes as T

MAX_DETS = 256                   # det lines remembered while their window arrives


def safe_label(text) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]", "_", str(text)).lstrip("._")[:T.MAX_LABEL]
    try:
        return T.check_label(s)
    except UsageError:
        return "unlabelled"


class WindowSaver:
    def __init__(self, out: Path, model: str | None = None, source: str | None = None,
                 port: str | None = None):
        from .link import TakeAssembler
        self.out = T.prepare_out(out, "--save")
        self.model = model
        self.source = source
        self.port = port
        self.assembler = TakeAssembler()
        self.dets: dict[int, dict] = {}
        self.saved: list[dict] = []
        self.with_gaps = 0
        self._start = None
        self._buf = None

    def feed(self, p) -> list[dict]:
        from ..serial.protocol import Message
        from .link import Block, TakeEnd, TakeStart
        if isinstance(p, Message) and p.type == "det" and p.known:
            self.dets[p.fields["seq"]] = dict(p.fields)
            while len(self.dets) > MAX_DETS:
                self.dets.pop(next(iter(self.dets)))
        written = []
        for ev in self.assembler.feed(p):
            if isinstance(ev, TakeStart):
                self._begin(ev)
            elif isinstance(ev, Block) and self._buf is not None:
                self._buf.add(ev.first, ev.t_us, ev.samples)
            elif isinstance(ev, TakeEnd) and self._buf is not None:
                written.append(self._commit(ev))
        return written

    def _begin(self, st) -> None:
        if st.det is None or st.samples <= 0:      # a plain take (not ours) or unbounded
            self._start = self._buf = None
            return
        names = ["audio"] if st.sensor == "mic" else list(st.names)
        self._start = st
        self._buf = T.TakeBuffer(st.samples, st.sensor, names, st.rate, first_index=0)

    def _commit(self, end) -> dict:
        from .session import CaptureRequest, commit_take
        st, buf = self._start, self._buf
        self._start = self._buf = None
        det = self.dets.pop(st.det, {})
        predicted = det.get("label")
        if predicted is None and det.get("i") is not None:
            predicted = f"class{det['i']}"
        label = safe_label(predicted if predicted is not None else "unlabelled")
        take = buf.finish(end.corrupt)
        if end.dropped:
            take.gaps += int(end.dropped)
            take.device_dropped = int(end.dropped)
        req = CaptureRequest(self.out, label, st.sensor, 1, st.samples, float(st.rate),
                             buf.channels, 0, source=self.source,
                             extra={"predicted": predicted, "score": det.get("score"),
                                    "det_seq": st.det, "t_ms": det.get("t_ms"),
                                    "model": self.model})
        entries, _ = _manifest(self.out)
        number = max(T.used_numbers(self.out, label, entries), default=0) + 1
        info = {"board": st.board, "revision": st.revision, "firmware": st.firmware,
                "sim": st.sim, "port": self.port, "serial_number": None}
        entry, _ = commit_take(req, take, number, info)
        self.saved.append(entry)
        self.with_gaps += 1 if entry["gaps"] else 0
        return entry


def _manifest(out: Path):
    from .manifest import read_manifest
    return read_manifest(out)
