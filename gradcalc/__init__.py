"""gradcalc: a command-line gradient calculator with PyTorch's autograd semantics.

The public API is `compute(...)`, returning a `Result`, and `GradcalcError`. This module
imports nothing heavy: numpy, sympy and rich load only when the work needs them.
"""
__version__ = "0.1.0"

from .errors import GradcalcError, Limits  # noqa: E402

__all__ = ["compute", "Result", "GradcalcError", "Limits", "__version__"]


def compute(*args, **kwargs):
    from .api import compute as _compute
    return _compute(*args, **kwargs)


compute.__doc__ = """compute(text, *, grad=None, wrt=None, of=None, repeat=None, check=None,
rtol=None, atol=None, jacobian=None, dtype=None, seed=None, limits=None, **vars) -> Result

Evaluate an expression or program, run backward with the cotangent `grad`, compute the
Jacobian and the cross-checks. `Result.to_json()` is the object of SPEC section 4."""


def __getattr__(name):
    if name == "Result":
        from .api import Result
        return Result
    raise AttributeError(name)
