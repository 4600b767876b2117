"""Fail fast before a first PlatformIO build that cannot download its packages.

Offline, `pio run` spends about a minute retrying before it fails with a bare
`HTTPClientError:`. When the project's platform is not installed yet and is not a
local package, nanoml first tries to reach PlatformIO's registry (a TCP connect,
through HTTPS_PROXY when set) and, if that fails within a few seconds, gives the
network advice at once. Set NANOML_NO_PREFLIGHT=1 to always run PlatformIO.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

REGISTRY_HOST = "api.registry.platformio.org"
PREFLIGHT_TIMEOUT = 5.0

_PLATFORM_RE = re.compile(r"^\s*platform\s*=\s*(\S+)", re.M)


def core_dir() -> Path:
    return Path(os.environ.get("PLATFORMIO_CORE_DIR") or Path.home() / ".platformio")


def platform_spec(project_dir: Path) -> str | None:
    try:
        m = _PLATFORM_RE.search((project_dir / "platformio.ini").read_text())
    except OSError:
        return None
    return m.group(1) if m else None


def platform_installed(spec: str) -> bool:
    name = spec.split("@", 1)[0].split("/")[-1]
    d = core_dir() / "platforms"
    return d.is_dir() and any(p.name == name or p.name.startswith(name + "@") for p in d.iterdir())


def registry_reachable(timeout: float = PREFLIGHT_TIMEOUT) -> tuple[bool, str]:
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    if proxy and REGISTRY_HOST not in no_proxy:
        u = urlparse(proxy if "://" in proxy else "http://" + proxy)
        host, port, via = u.hostname or "", u.port or 80, f" via proxy {u.hostname}:{u.port or 80}"
    else:
        host, port, via = REGISTRY_HOST, 443, ""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as e:
        return False, f"cannot reach {REGISTRY_HOST}{via}: {e.strerror or e}"


def offline_reason(project_dir: Path) -> str | None:
    """Why a build would fail for want of the network, or None to go ahead."""
    if os.environ.get("NANOML_NO_PREFLIGHT"):
        return None
    spec = platform_spec(project_dir)
    if not spec or "://" in spec or platform_installed(spec):
        return None
    ok, why = registry_reachable()
    if ok:
        return None
    return f"platform {spec} is not installed yet and {why}"
