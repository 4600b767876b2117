"""Per-runtime allocation facts (profiles.json), keyed by runtime id."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from ..errors import UsageError


@lru_cache(maxsize=1)
def _raw() -> dict:
    return json.loads(resources.files("nanoml.memory").joinpath("profiles.json").read_text())


def profile_ids() -> list[str]:
    return sorted(k for k in _raw() if not k.startswith("_"))


@lru_cache(maxsize=None)
def get_profile(runtime_id: str) -> dict:
    raw = _raw()
    if runtime_id not in raw or runtime_id.startswith("_"):
        raise UsageError(f"no arena model for runtime '{runtime_id}'",
                         hint=f"known runtimes: {', '.join(profile_ids())}")
    p = dict(raw[runtime_id])
    base_id = p.pop("inherits", None)
    if base_id:
        base = get_profile(base_id)
        merged = {k: v for k, v in base.items()}
        for k, v in p.items():
            if isinstance(v, dict) and isinstance(merged.get(k), dict):
                d = dict(merged[k])
                d.update(v)
                merged[k] = d
            else:
                merged[k] = v
        p = merged
    return p
