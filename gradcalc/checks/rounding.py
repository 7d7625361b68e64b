"""How far autograd's own rounding can move a grad: the reach a disagreement is held against.

A VJP rule that cancels (sigmoid's `y * (1 - y)` where y rounds to 1) can give a value far
from the exact derivative although it is exactly what PyTorch computes: the rule is right,
its arithmetic is not. So where a method's reference disagrees with autograd, the backward
runs again (the plain engine, never a cache) with the value of every smooth pointwise op
moved by a few units in the last place, up, down and in two seeded mixed patterns; a reference inside the
span of those grads is within autograd's rounding and is reported as unverifiable, not as a
disagreement. A wrong rule moves a grad by far more than a few ulps of its inputs, so it
still fails. This never changes a grad, and runs only when something disagrees.
"""
from __future__ import annotations

import numpy as np

from .. import engine

PROBE_ULPS = 4                  # how far each intermediate value is moved, in its own ulps
ROUNDING = ("autograd's value is its rounding here: moving its intermediate values by "
            f"{PROBE_ULPS} ulps moves this entry across the reference (a rule that cancels, "
            "as PyTorch's does)")


def _smooth(eq) -> bool:
    """A pointwise op without kinks: nothing downstream compares its value for equality (max's
    rule finds its argmax by `x == ans`; moving that ans would move the rule, not round it)."""
    return eq.kind == "op" and eq.op.pointwise and not eq.op.kinks


def _moved(context, sign):
    """Every smooth op's value scaled by (1 + sign * PROBE_ULPS * eps); the rest kept."""
    graph, values = context.graph, context.values
    out = []
    for eq in graph.nodes[: context.output_id + 1]:
        v = values[eq.id]
        if not _smooth(eq) or not np.issubdtype(np.asarray(v).dtype, np.floating):
            out.append(v)
            continue
        v = np.asarray(v)
        s = sign(v.shape) if callable(sign) else sign
        out.append((v * (1 + s * PROBE_ULPS * np.finfo(v.dtype).eps)).astype(v.dtype))
    return out


def reach(context) -> dict:
    """{(leaf name, "grad" | "jacobian"): (lo, hi)}: the least and greatest value of each
    entry over the moved backward passes and the real one."""
    graph, out = context.graph, context.output_id
    rng = np.random.default_rng(0)
    signs = [1.0, -1.0] + [lambda shape: rng.choice((-1.0, 1.0), size=shape)] * 2
    ids = {n: graph.leaves[n] for n in context.wrt}
    cot = np.asarray(context.cotangent, dtype=graph.dtype)
    spans: dict = {}

    def widen(key, value):
        value = np.asarray(value, dtype=np.float64)
        lo, hi = spans.get(key, (value, value))
        with np.errstate(invalid="ignore"):
            spans[key] = (np.fmin(lo, value), np.fmax(hi, value))

    for n, leaf in ((n, context.grads.get(n)) for n in context.wrt):
        if leaf is not None:
            widen((n, "grad"), leaf)
        if context.jacobian is not None and context.jacobian.get(n) is not None:
            widen((n, "jacobian"), context.jacobian[n])
    for sign in signs:
        values = _moved(context, sign)
        grads = engine.backward(graph, values, cot, out)
        jacs = (engine.jacobian(graph, values, out, list(ids.values()))
                if context.jacobian is not None else {})
        for n, i in ids.items():
            if i in grads:
                widen((n, "grad"), grads[i])
            if i in jacs:
                widen((n, "jacobian"), jacs[i])
    return spans
