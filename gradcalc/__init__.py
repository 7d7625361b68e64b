"""gradcalc: a command-line gradient calculator with PyTorch's autograd semantics.

The public API is `compute(...)`, returning a `Result`, and `GradcalcError`. This module
imports nothing heavy: numpy, sympy and rich load only when the work needs them, and the
version is read from the installed metadata only when asked for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import GradcalcError, Limits

if TYPE_CHECKING:          # pragma: no cover
    from .result import Result

__all__ = ["compute", "Result", "GradcalcError", "Limits", "__version__"]
_run = None


def compute(text: str, *, grad: Any = None, wrt: list[str] | str | None = None,
            of: str | None = None, repeat: int | None = None, check: str | None = None,
            rtol: float | None = None, atol: float | None = None, jacobian: bool | None = None,
            dtype: str | None = None, seed: int | None = None,
            tangent: dict | None = None, hessian: bool | None = None, hvp: dict | None = None,
            taylor: int | None = None, steps: bool | None = None,
            limits: Limits | None = None, externs: dict | None = None,
            **vars: Any) -> "Result":
    """Evaluate `text` (an expression or a program), run backward with the cotangent `grad`,
    compute the Jacobian and the cross-checks. Variables are keyword arguments: numbers,
    nested lists, numpy arrays, or strings in VALUE syntax ("1,2,3", "linspace(-1, 1, 5)").
    `tangent` and `hvp` map leaf names to directions, `hessian` and `steps` are bools,
    `taylor` an order (SPEC 9); `externs` maps a name to a Python callable the text may call
    as an opaque function (SPEC 11). `Result.to_json()` is the object of SPEC section 4; a
    bad argument raises GradcalcError.

    >>> gradcalc.compute("3*a + 2*b*b + log(c)", a=[1, 2, 3], b=[3, 4, 5], c=[6, 7, 8],
    ...                  grad=[0.1, 1, 1e-4]).grads["a"]
    array([3.e-01, 3.e+00, 3.e-04])
    """
    global _run
    if _run is None:       # loaded on first use; an import statement per call costs a µs
        from .api import compute_call as _run
    return _run(text, grad, (wrt, of, repeat, check, rtol, atol, jacobian, dtype, seed, tangent,
                             hessian, hvp, taylor, steps), limits, externs, vars)


def __getattr__(name: str):
    if name == "Result":
        from .result import Result
        return Result
    if name == "__version__":       # one source: the installed package's metadata
        from importlib.metadata import version
        return version("gradcalc")
    raise AttributeError(name)
