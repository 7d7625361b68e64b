"""Helpers for the sympy forms of the non-elementwise ops, over numpy object arrays.

An entry of such an array is either a Python float (a constant at the check's point: an
element no sampled symbol reaches) or a sympy expression. numpy's own reductions on object
arrays would turn every addition after the first symbolic entry into a sympy `Add` (seconds
for a large array); these helpers keep the float part in float arithmetic and build one sympy
node per output entry. Nothing here imports sympy: callers pass the module as `sp`, so
`import gradcalc` stays light.
"""
from __future__ import annotations

import math

import numpy as np


def obj(a):
    return np.asarray(a, dtype=object)


def is_sym(a) -> np.ndarray:
    """Mask of the entries that are sympy expressions (anything but a Python number)."""
    a = obj(a)
    if a.size == 0:
        return np.zeros(a.shape, dtype=bool)
    types = np.fromiter(map(type, a.reshape(-1).tolist()), dtype=object, count=a.size)
    return ((types != float) & (types != int)).reshape(a.shape)


def floats(a, mask, fill=0.0) -> np.ndarray:
    """The float entries of `a`, `fill` where an entry is symbolic."""
    out = np.full(a.shape, fill, dtype=np.float64)
    keep = ~mask
    if keep.any():
        out[keep] = a[keep].astype(np.float64)
    return out


def _axes(ndim, axis):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis)) if ndim else ()


def _rows(a, axes):
    """`a` with the reduced `axes` moved last and flattened: (kept entries, reduced entries)."""
    keep = [i for i in range(a.ndim) if i not in axes]
    k = math.prod(a.shape[i] for i in axes)
    return np.transpose(a, keep + list(axes)).reshape(-1, k)


def _reduce(sp, a, axis, keepdims, fill, npf, combine):
    a = obj(a)
    axes = _axes(a.ndim, axis)
    mask = is_sym(a)
    with np.errstate(all="ignore"):
        num = npf(floats(a, mask, fill), axis=axes, keepdims=keepdims)
    out = np.asarray(num, dtype=np.float64).astype(object, order="C")
    if mask.any():
        flat = out.reshape(-1)
        rows, mrows = _rows(a, axes), _rows(mask, axes)
        for r in np.flatnonzero(mrows.any(axis=1)):
            terms = list(rows[r][mrows[r]])
            flat[r] = combine(float(num.flat[r]), terms, bool(mrows[r].all()))
        out = flat.reshape(out.shape)
    return out


def osum(sp, a, axis=None, keepdims=False):
    """Sum over `axis` (None: all): floats summed in float, one `Add` per symbolic entry."""
    return _reduce(sp, a, axis, keepdims, 0.0, np.sum,
                   lambda n, terms, _: sp.Add(*terms) if n == 0.0 else sp.Add(n, *terms))


def oprod(sp, a, axis=None, keepdims=False):
    return _reduce(sp, a, axis, keepdims, 1.0, np.prod,
                   lambda n, terms, _: sp.Mul(*terms) if n == 1.0 else sp.Mul(n, *terms))


def omax(sp, a, axis=None, keepdims=False):
    """Max over `axis`; the float part enters as one number (a tie with it is a kink the
    derivative shows as Heaviside(0))."""
    def combine(n, terms, all_sym):
        if math.isnan(n):
            return n
        return sp.Max(*terms) if all_sym else sp.Max(n, *terms)
    return _reduce(sp, a, axis, keepdims, -np.inf, np.max, combine)


def omin(sp, a, axis=None, keepdims=False):
    def combine(n, terms, all_sym):
        if math.isnan(n):
            return n
        return sp.Min(*terms) if all_sym else sp.Min(n, *terms)
    return _reduce(sp, a, axis, keepdims, np.inf, np.min, combine)


def omap(fsym, fnum, *arrays):
    """An elementwise function over broadcast object arrays: `fnum` (numpy) on the float
    entries, `fsym` (sympy) where any argument is symbolic."""
    arrs = np.broadcast_arrays(*[obj(a) for a in arrays])
    masks = [is_sym(a) for a in arrs]
    shape = arrs[0].shape if arrs else ()
    anym = np.zeros(shape, dtype=bool)
    for m in masks:
        anym |= m
    with np.errstate(all="ignore"):
        num = np.asarray(fnum(*[floats(a, m) for a, m in zip(arrs, masks)]), dtype=np.float64)
    out = np.broadcast_to(num, shape).astype(object)
    for pos in np.argwhere(anym):
        pos = tuple(pos)
        out[pos] = fsym(*[a[pos] for a in arrs])
    return out


def omatmul(sp, a, b):
    """numpy/PyTorch matmul (1-D operands and batch broadcasting included) on object arrays:
    the float part as a float matmul, each symbolic entry adding its row or column."""
    a, b = obj(a), obj(b)
    va, vb = a.ndim == 1, b.ndim == 1
    A = a[None, :] if va else a
    B = b[:, None] if vb else b
    batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    A = np.broadcast_to(A, batch + A.shape[-2:])
    B = np.broadcast_to(B, batch + B.shape[-2:])
    ma, mb = is_sym(A), is_sym(B)
    fa = floats(A, ma)
    with np.errstate(all="ignore"):
        num = np.matmul(fa, floats(B, mb))
    out = num.astype(object)
    if ma.any() or mb.any():
        m, n = A.shape[-2], B.shape[-1]
        terms: dict = {}
        for pos in zip(*np.nonzero(ma)):          # a symbolic a[.., i, k] meets row k of B
            *bi, i, k = pos
            bi = tuple(bi)
            for j in range(n):
                v = B[bi + (k, j)]
                if isinstance(v, (float, int)) and v == 0.0:
                    continue
                terms.setdefault(bi + (i, j), []).append(A[pos] * v)
        for pos in zip(*np.nonzero(mb)):          # a symbolic b[.., k, j] meets column k of
            *bi, k, j = pos                       # A's float part (symbolic a's counted above)
            bi = tuple(bi)
            for i in range(m):
                if ma[bi + (i, k)] or fa[bi + (i, k)] == 0.0:
                    continue
                terms.setdefault(bi + (i, j), []).append(fa[bi + (i, k)] * B[pos])
        for key, ts in terms.items():
            n0 = float(num[key])
            out[key] = sp.Add(*ts) if n0 == 0.0 else sp.Add(n0, *ts)
    if va:
        out = out[..., 0, :]
    if vb:
        out = out[..., 0]
    return out


def constant(value):
    """A numeric array as an object array of Python floats (no symbol reaches it)."""
    return np.asarray(value, dtype=np.float64).astype(object)
