"""gradcalc: a command-line gradient calculator with PyTorch's autograd semantics.

The public API is `compute(...)` (api.compute), returning a `Result`, and `GradcalcError`.
This module imports nothing heavy: `compute` and `Result` are loaded on first use, numpy,
sympy and rich only when the work needs them, and the version is read from the installed
metadata only when asked for.
"""
from __future__ import annotations

from .errors import GradcalcError, Limits

__all__ = ["compute", "Result", "GradcalcError", "Limits", "__version__"]


def __getattr__(name: str):
    if name == "compute":           # gradcalc.compute is api.compute, loaded on first use
        from .api import compute
        globals()["compute"] = compute      # (later lookups find it without this hook)
        return compute
    if name == "Result":
        from .result import Result
        return Result
    if name == "__version__":       # one source: the installed package's metadata
        from importlib.metadata import version
        return version("gradcalc")
    raise AttributeError(name)
