"""Spoken words for the audio tests, synthesised here (nothing big is committed):
espeak-ng speaks, sox converts to 16-bit mono PCM at the rate asked.

    require_speech()                             # skip (with the reason) when absent
    path = say("yes", tmp / "yes.wav", voice="en-us", speed=150)
    clips = say_many(words, voices, speeds, folder)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# espeak-ng's own voices (no mbrola) and variants of them: men, women, accents
VOICES = ("en-gb", "en-us", "en-gb-scotland+f3", "en-029+m3", "en-gb-x-rp+f5")
WORDS = ("yes", "no", "up", "down", "left", "right", "go", "stop", "on", "off")


def require_speech() -> None:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install espeak-ng sox)")


def say(text: str, path: Path, voice: str = "en-us", speed: int = 150,
        rate: int = 16000) -> Path:
    """`text` spoken into a 16-bit mono WAV file at `rate` Hz."""
    speak = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                           capture_output=True, check=True, timeout=60)
    subprocess.run(["sox", "-t", "wav", "-", "-r", str(rate), "-c", "1", "-b", "16",
                    "-e", "signed-integer", str(path)], input=speak.stdout,
                   capture_output=True, check=True, timeout=60)
    return path


def say_many(words, voices, speeds, folder: Path, rate: int = 16000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for voice in voices:
        for speed in speeds:
            for word in words:
                name = f"{word}_{voice.replace('+', '_')}_{speed}.wav"
                out.append(say(word, folder / name, voice, speed, rate))
    return out
