"""Points where the function is not differentiable, and PyTorch's convention at each.

KINKS names, for each op, where it has a kink or a singular point (relu at 0, a tie of
maximum, clamp at a bound, sqrt at 0, ...) and the derivative PyTorch 2.13 defines there.
Both checks use it to name the op behind a nondifferentiable point they found, and to know
where PyTorch's conventions may compose beyond what calculus gives. It decides nothing about
correctness on its own and never imports sympy.
"""
from __future__ import annotations

import numpy as np

from .checks import ancestors, sum_to


def _eq0(x, *rest, **_):
    return x == 0


def _extreme_ties(npf):
    def pred(x, dim=None, keepdim=False, **_):
        if x.size == 0:
            return False
        m = npf(x, axis=dim, keepdims=True)
        return np.sum(x == m, axis=dim, keepdims=keepdim) > 1
    return pred


def _norm_kinks(x, p=2.0, dim=None, keepdim=False, **_):
    a = np.abs(x)
    if a.size == 0 or p == 0:
        return False
    if np.isinf(p):
        m = (np.max if p > 0 else np.min)(a, axis=dim, keepdims=True)
        return (np.sum(a == m, axis=dim, keepdims=keepdim) > 1) | np.all(
            a == 0, axis=dim, keepdims=keepdim)
    if p > 1:                   # differentiable except at the zero vector
        return np.all(a == 0, axis=dim, keepdims=keepdim)
    return np.any(a == 0, axis=dim, keepdims=keepdim)


# op name -> (PyTorch's convention there, predicate(*input values, **params) -> mask that
# broadcasts to the op's output). Used to name the op behind a nondifferentiable point.
KINKS = {
    "relu": ("relu'(0) = 0 (threshold_backward passes the gradient where the result > 0)", _eq0),
    "abs": ("abs'(0) = 0 (grad * sgn(x))", _eq0),
    "sign": ("sign' = 0 everywhere, also at 0", _eq0),
    "sqrt": ("sqrt'(0) = +inf (grad / (2 * result))", _eq0),
    "log": ("log'(0) = +inf (grad / x)", _eq0),
    "log2": ("log2'(0) = +inf", _eq0),
    "log10": ("log10'(0) = +inf", _eq0),
    "log1p": ("log1p'(-1) = +inf", lambda x, **_: x == -1),
    "asin": ("asin'(+-1) = +inf ((1 - x^2).rsqrt())", lambda x, **_: np.abs(x) == 1),
    "acos": ("acos'(+-1) = -inf (-(1 - x^2).rsqrt())", lambda x, **_: np.abs(x) == 1),
    "pow": ("x**y at x = 0: the base's partial is 0 where y == 0, grad*y*x**(y-1) elsewhere; "
            "the exponent's partial is 0 where y >= 0", lambda x, y, **_: x == 0),
    "div": ("x / 0 in IEEE arithmetic: grad / y and -grad * x / y^2", lambda x, y, **_: y == 0),
    "maximum": ("a tie gives half the gradient to each side", lambda x, y, **_: x == y),
    "minimum": ("a tie gives half the gradient to each side", lambda x, y, **_: x == y),
    "clamp": ("clamp passes gradient 1 to x at its bounds",
              lambda x, lo, hi, **_: (x == lo) | (x == hi)),
    "atan2": ("both partials 0 at (0, 0)", lambda y, x, **_: (y == 0) & (x == 0)),
    "hypot": ("grad * x / result: NaN at (0, 0)", lambda x, y, **_: (x == 0) & (y == 0)),
    "softplus": ("gradient 1 where beta*x > threshold, sigmoid(beta*x) at and below it",
                 lambda x, beta=1.0, threshold=20.0, **_: x * beta == threshold),
    "max": ("a full max splits the gradient evenly over ties; max(dim=) gives it all to the "
            "first maximal index", _extreme_ties(np.max)),
    "min": ("a full min splits the gradient evenly over ties; min(dim=) gives it all to the "
            "first minimal index", _extreme_ties(np.min)),
    "norm": ("gradient 0 at the zero vector (sgn(x) at zeros for p <= 1; p=inf ties share it)",
             _norm_kinks),
    "binary_cross_entropy": ("log clamped at -100; backward divides by max((1 - x) * x, 1e-12)",
                             lambda x, t, **_: (x <= 0) | (x >= 1)),
}


# Sites where PyTorch's convention defines every derivative through the node, beyond the
# one-sided range: binary_cross_entropy's target grad is -logit(x), unclamped, while its
# forward clamps the log at -100; clamp with min == max == x passes gradient 1 to x
# although the function is constant. op name -> predicate like those of KINKS.
WHOLE_NODE = {
    "binary_cross_entropy": lambda x, t, **_: (x <= 0) | (x >= 1),
    "clamp": lambda x, lo, hi, **_: (x == lo) & (lo == hi),
}


def nan_may_arise(graph, vals, ids, sites):
    """True when autograd may legitimately produce NaN (0 * inf, inf - inf): a kink site
    on the path, or a non-finite value anywhere on it."""
    if sites:
        return True
    with np.errstate(all="ignore"):
        return not all(np.isfinite(np.asarray(vals[i], dtype=np.float64)).all() for i in ids)


def kink_sites(graph, vals, ids):
    """[(node, mask over the node's shape, whole)] for every op node on the path that sits
    at one of its kinks (KINKS) at the inputs; `whole` when it is a WHOLE_NODE site."""
    sites = []
    with np.errstate(all="ignore"):
        for i in ids:
            eq = graph.nodes[i]
            if eq.kind != "op" or eq.op.name not in KINKS:
                continue
            try:
                m = KINKS[eq.op.name][1](*[np.asarray(vals[j]) for j in eq.inputs],
                                         **eq.params)
            except Exception:           # a predicate that cannot run names nothing
                continue
            m = np.asarray(m, dtype=bool)
            try:
                m = np.broadcast_to(m, eq.shape)
            except ValueError:              # a mask over the inputs of a loss: the whole node
                m = np.broadcast_to(m.any(), eq.shape)
            if m.any():
                whole = eq.op.name in WHOLE_NODE and bool(np.any(WHOLE_NODE[eq.op.name](
                    *[np.asarray(vals[j]) for j in eq.inputs], **eq.params)))
                sites.append((eq, m, whole))
    return sites


class Labeller:
    """Names the op (and PyTorch's convention) behind a flagged leaf element. In an
    elementwise program a site's mask maps element by element to the leaf; otherwise the
    first op on the path that sits at a kink anywhere is named."""

    def __init__(self, graph, sites, out_shape, elementwise, fallback):
        self.sites, self.fallback = sites, fallback
        self.elementwise, self.out_shape = elementwise, out_shape
        self.per_leaf = {}
        # leaves upstream of a WHOLE_NODE site: every derivative of theirs is convention
        self.whole = set()
        for eq, _, whole in sites:
            if whole:
                self.whole.update(i for i in ancestors(graph, eq.id)
                                  if graph.nodes[i].kind == "leaf")

    def label(self, leaf_eq, flat_index):
        if not self.sites:
            return None, self.fallback
        if not self.elementwise:
            eq = self.sites[0][0]
            names = sorted({e.op.name for e, _, _ in self.sites})
            return ", ".join(names), KINKS[eq.op.name][0]
        if leaf_eq.id not in self.per_leaf:
            masks = []
            for eq, m, _ in self.sites:
                mo = np.broadcast_to(m, self.out_shape).astype(np.int64)
                masks.append((eq, sum_to(mo, leaf_eq.shape).reshape(-1) > 0))
            self.per_leaf[leaf_eq.id] = masks
        for eq, m in self.per_leaf[leaf_eq.id]:
            if m[flat_index]:
                return eq.op.name, KINKS[eq.op.name][0]
        return None, self.fallback


