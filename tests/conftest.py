"""Shared fixtures. ../shared/ (real TFLM models and truth figures) is optional:
tests that need it skip cleanly on a user's clone where it is absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NANOML_SHARED", ROOT.parent / "shared"))
EXAMPLES = ROOT / "examples"


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (../shared/ is only beside the project checkout)")
    return p


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def shared_models() -> Path:
    return shared_path("models")


def shared_truth(name: str) -> dict:
    return json.loads(shared_path("truth", name).read_text())


def shared_model_names() -> list[str]:
    """Model file names in ../shared/models (empty when absent: parametrized tests
    then collect nothing for it, so pair them with a test that always runs)."""
    d = SHARED / "models"
    return sorted(p.name for p in d.glob("*.tflite")) if d.is_dir() else []


def sigint_default() -> None:
    """Popen(preexec_fn=...): the child takes SIGINT's default disposition even when the
    suite itself runs with SIGINT ignored (a background `nohup ... &` job), so a test that
    sends Ctrl-C reaches Python's KeyboardInterrupt as it does from a terminal."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)
