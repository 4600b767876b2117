"""User-facing errors: one line, an exit code, and what to do.

Domain code raises these; the CLI prints `error: <message>` (and the hint)
and exits with `exit_code`. Tracebacks only with --debug.
"""

from __future__ import annotations


class NanomlError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def to_json(self) -> dict:
        return {"error": self.message, "hint": self.hint, "exit_code": self.exit_code}


class UsageError(NanomlError):
    """Bad command-line input (unknown board, bad option value, unusable file)."""
    exit_code = 2


class InputError(NanomlError):
    """The input file cannot be used (missing, corrupt, wrong format)."""
    exit_code = 2


class BoardNotFound(NanomlError):
    exit_code = 3


class ToolError(NanomlError):
    """An external tool (PlatformIO, TensorFlow converter, compiler) failed."""
    exit_code = 4
