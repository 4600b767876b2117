"""Locate nanoml's data folders (boards/, runtimes/, sketches/).

In a checkout (or an editable install) they sit at the top of the repository;
in a wheel they are shipped as the packages nanoml._boards, nanoml._runtimes
and nanoml._sketches.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=None)
def data_dir(name: str) -> Path:
    """Path of the data folder `name` ("boards", "runtimes" or "sketches")."""
    local = _ROOT / name
    if local.is_dir() and (_ROOT / "pyproject.toml").exists():
        return local
    installed = Path(__file__).resolve().parent / f"_{name}"
    if installed.is_dir():
        return installed
    raise FileNotFoundError(f"nanoml data folder '{name}' is missing from this installation")
