"""The cross-checks of autograd's grads and Jacobian: `run(kind, context)` is the one entry.

Two methods feed one verdict (verdict.py): symbolic (symbolic.py, mixed.py, evaluator.py:
sympy differentiates the op table's forward forms, independent of the VJP rules) and
numeric (numeric.py: central finite differences); kinks.py names the points where the
function is not differentiable, from the op entries' `kinks`. The caller builds the
`Context` (context.py). A check reports {"passed", "max_abs_error", "max_rel_error", ...} as
plain JSON-safe data and never raises for a disagreement (exit status 1 is the caller's
decision); at nondifferentiable points PyTorch's value is excused only when it lies between
the one-sided values, or a method's value is undefined there; where a method's own
reference cannot be trusted (float64 overflow in sympy's formula, a finite difference lost at
the float range's edge) a differing value is listed as "unverifiable", not as a
disagreement. The answers of SPEC 9 (J·u, Taylor, H·u, the Hessian; `Context.higher`) are
checked by both methods too (second.py), each with its coverage under "second_order".
Nothing here imports sympy until a symbolic check runs, nor the numeric check's or the
second order's modules until one runs (issue 15: the first check of a process pays them).
"""
from __future__ import annotations

from . import symbolic
from .context import Context, Higher

__all__ = ["Context", "Higher", "run"]


def run(kind: str, context: Context) -> dict:
    """The report of check `kind` ("symbolic" or "numeric") on the calculation `context`."""
    if kind == "numeric":
        from . import numeric               # (a symbolic check alone never loads it)
        try:
            return numeric.check(context, _numeric_second)
        except MemoryError:
            return {"passed": None, "skipped": "the numeric check ran out of memory"}
        except Exception as exc:    # a check that cannot run must not cost the user the grads
            return {"passed": None, "skipped": f"the numeric check failed "
                                               f"({type(exc).__name__}: {str(exc)[:200]}); "
                                               "please report it"}
    opaque = _opaque(context)
    if opaque:          # an extern: a program sympy cannot see into has no formula
        return {"passed": None, "skipped": f"the program calls the opaque extern "
                f"{', '.join(opaque)}: sympy cannot see into it, so there is no formula to "
                "differentiate; --check numeric covers it"}
    return symbolic.check(context)


def _opaque(context: Context) -> list:
    """Names of the ops on the path without a sympy form (externs), once per compiled
    program (its memo is shared by every rebinding to new values)."""
    memo, key = context.graph.memo, ("check: opaque ops", context.output_id)
    hit = memo.get(key)
    if hit is None:
        nodes = context.graph.nodes
        hit = memo[key] = sorted({nodes[i].op.name for i in context.ids
                                  if nodes[i].kind == "op" and nodes[i].op.sympy is None})
    return hit


def _numeric_second(context: Context, verdict) -> dict:
    from . import second
    cov = second.Coverage(context)
    second.numeric(context, verdict, cov)
    return cov.report()
