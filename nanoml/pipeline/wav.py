"""PCM WAV files for the audio front end: 16-bit mono at the pipeline's rate.

    samples, rate = read_wav("yes.wav", expect_rate=16000)    # np.int16 [n], 16000

Read with the standard library's `wave` module. Anything else (8/24/32-bit,
float, stereo, another rate, a compressed format) is refused with one line
saying how to convert it with sox; nothing is resampled. The file must be a
regular file of at most MAX_WAV_BYTES, and its header must promise no more
sample data than the file holds (a truncated file is refused, not padded).
Never prints.
"""

from __future__ import annotations

import wave
from pathlib import Path

from ..arrays import regular_file_size
from ..errors import InputError

MAX_WAV_BYTES = 1 << 30          # 1 GiB: about 9 hours of 16 kHz 16-bit mono
WAV_SUFFIXES = (".wav", ".wave")


def _convert_hint(path, rate) -> str:
    r = f" -r {int(rate)}" if rate else ""
    return f"convert it: sox {path} -b 16 -c 1{r} -e signed-integer out.wav"


def read_wav(path: str | Path, expect_rate: int | float | None = None):
    """(samples np.int16 [n], sample rate) of a 16-bit mono PCM WAV file."""
    import numpy as np
    p = Path(path)
    size = regular_file_size(p, "WAV file", _convert_hint(p, expect_rate))
    if size > MAX_WAV_BYTES:
        raise InputError(f"{p}: {size:,} bytes is more than the {MAX_WAV_BYTES:,} a WAV file "
                         "may have here", "split it into shorter files (sox ... trim)")
    try:
        with open(p, "rb") as fh, wave.open(fh, "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.getnframes()
            if width != 2 or channels != 1:
                bits = f"{8 * width}-bit" if width else "unknown width"
                chan = "mono" if channels == 1 else f"{channels} channels"
                raise InputError(f"{p}: {bits} {chan} audio; the front end takes 16-bit mono",
                                 _convert_hint(p, expect_rate or rate))
            if expect_rate is not None and rate != int(expect_rate):
                raise InputError(f"{p}: sample rate {rate} Hz; the pipeline needs "
                                 f"{int(expect_rate)} Hz (nanoml does not resample)",
                                 _convert_hint(p, expect_rate))
            if frames * 2 > size:
                raise InputError(f"{p}: the header promises {frames:,} samples, more than the "
                                 f"file's {size:,} bytes hold", "re-export or re-record the file")
            data = w.readframes(frames)
    except InputError:
        raise
    except (wave.Error, EOFError) as e:
        raise InputError(f"{p}: not a PCM WAV file ({e})", _convert_hint(p, expect_rate)) from None
    except OSError as e:
        raise InputError(f"{p}: cannot read the WAV file ({e.strerror or e})") from None
    if len(data) != frames * 2:
        raise InputError(f"{p}: truncated: {len(data) // 2:,} of the {frames:,} samples its "
                         "header promises", "re-export or re-record the file")
    return np.frombuffer(data, dtype="<i2").astype(np.int16), rate


def find_wavs(inputs) -> list[Path]:
    """WAV files of `inputs` (files, or folders searched recursively), each
    folder's files sorted by path. A folder without any WAV file is an error."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*")
                           if f.suffix.lower() in WAV_SUFFIXES and f.is_file())
            if not found:
                raise InputError(f"{p}: no .wav file in this folder (searched recursively)",
                                 "give WAV files or folders that hold them")
            out += found
        else:
            out.append(p)
    return out
