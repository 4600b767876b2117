"""Drive a board (or `nanoml sim`) with input frames: send tensor bytes, get
the ack and the result back. For `validate`-style checks and tests.

    with BoardLink.open("/dev/ttyACM0") as link:
        hello = link.wait_hello(timeout=6)
        res = link.infer(payload)           # dict: the "res" record (frame=seq)
"""

from __future__ import annotations

import time

from ..errors import NanomlError
from .ports import open_port
from .protocol import Corrupt, Message, encode_frame
from .stream import StreamDecoder


class FrameRejected(NanomlError):
    def __init__(self, seq: int, why: str):
        super().__init__(f"the board rejected input frame {seq} (why={why})",
                         hint="check the payload length against the model's input size")
        self.seq = seq
        self.why = why


class BoardLink:
    def __init__(self, ser):
        self.ser = ser
        self.decoder = StreamDecoder()
        self.seq = 0
        self.hello: dict | None = None
        self.other: list = []           # results and lines seen while waiting for something else
        self.invalid = 0                    # valid-checksum lines whose values broke their bounds
        self.last_invalid: Corrupt | None = None

    @classmethod
    def open(cls, port: str, baud: int = 115200) -> "BoardLink":
        return cls(open_port(port, baud, timeout=0.05))

    def close(self) -> None:
        self.ser.close()

    def __enter__(self) -> "BoardLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def messages(self, timeout: float):
        """Yield parsed lines until `timeout` seconds pass without the caller stopping."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            data = self.ser.read(self.ser.in_waiting or 1)
            if not data:
                continue
            for p in self.decoder.feed(data):
                if isinstance(p, Message) and p.type == "hello":
                    self.hello = p.fields
                elif isinstance(p, Corrupt) and p.reason == "invalid":
                    self.invalid += 1
                    self.last_invalid = p
                yield p

    def wait_hello(self, timeout: float = 6.0) -> dict:
        for p in self.messages(timeout):
            if isinstance(p, Message) and p.type == "hello":
                return p.fields
        raise NanomlError(f"no hello from the board within {timeout:g} s{self._invalid_seen()}",
                          hint="is the nanoml firmware (or `nanoml sim`) running on that port?")

    def _invalid_seen(self) -> str:
        if not self.invalid:
            return ""
        return (f"; {self.invalid} invalid line(s) from the board, the last: "
                f"{self.last_invalid.detail}")

    def send(self, payload: bytes) -> int:
        """Send one frame (after a bare newline, which puts the device's parser
        back at a line start whatever came before); returns its seq."""
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        self.ser.write(b"\n" + encode_frame(self.seq, payload))
        self.ser.flush()
        return self.seq

    def infer(self, payload: bytes, timeout: float = 10.0) -> dict:
        """Send one frame; return its result's fields. Raises FrameRejected."""
        seq = self.send(payload)
        acked = False
        for p in self.messages(timeout):
            if not isinstance(p, Message):
                continue
            f = p.fields
            if p.type == "ack" and f.get("seq") == seq:
                if not f["ok"]:
                    raise FrameRejected(seq, f.get("why", "?"))
                acked = True
            elif p.type == "res" and f.get("frame") == seq:
                return f
            else:
                self.other.append(p)
        state = "acknowledged but no result" if acked else "no acknowledgement"
        raise NanomlError(f"input frame {seq}: {state} within {timeout:g} s{self._invalid_seen()}",
                          hint="is the firmware built with --input serial?")
