"""Linear algebra: matmul (the `@` operator), dot, outer, trace.

Rules use `matmul` and `swapaxes(-1, -2)` so a batch of cotangents in front flows through
unchanged: backward with an identity batch yields the Jacobian in one pass.
"""
from __future__ import annotations

import numpy as np

from . import Op, register
from . import symforms as S
from ..errors import GradcalcError


def _t(a):
    return np.swapaxes(a, -1, -2)


def matmul_infer(shapes, params):
    a, b = shapes
    if len(a) == 0 or len(b) == 0:
        raise GradcalcError("shape", "matmul (@): both operands must be at least 1-D, got shapes "
                                     f"{tuple(a)} and {tuple(b)}")
    ka = a[-1]
    kb = b[0] if len(b) == 1 else b[-2]
    if ka != kb:
        raise GradcalcError("shape", f"matmul (@): shapes {tuple(a)} and {tuple(b)} do not line "
                                     f"up ({ka} != {kb})")
    try:
        batch = tuple(np.broadcast_shapes(a[:-2], b[:-2]))
    except ValueError:
        raise GradcalcError("shape", f"matmul (@): batch dimensions of {tuple(a)} and "
                                     f"{tuple(b)} cannot be broadcast")
    out = batch + (a[-2:-1] if len(a) >= 2 else ()) + (b[-1:] if len(b) >= 2 else ())
    return out, params


def matmul_vjp_a(g, ans, a, b):
    nb = g.ndim - ans.ndim
    if a.ndim == 1 and b.ndim == 1:        # dot: g is batch + ()
        return g[..., None] * b
    if a.ndim == 1 and b.ndim == 2:         # (k,) @ (k, n): a batch of g is one product
        return np.matmul(g, _t(b))
    if a.ndim == 1:                         # (k,) @ (..., k, n) -> (..., n)
        return np.matmul(g[..., None, :], _t(b))[..., 0, :]
    if b.ndim == 1:                         # (..., m, k) @ (k,) -> (..., m)
        return g[..., :, None] * b
    del nb
    return np.matmul(g, _t(b))


def matmul_vjp_b(g, ans, a, b):
    if a.ndim == 1 and b.ndim == 1:
        return g[..., None] * a
    if a.ndim == 1:                         # grad_b[..., k, n] = a[k] g[..., n]
        return a[:, None] * g[..., None, :]
    if b.ndim == 1 and a.ndim == 2:         # (m, k) @ (k,): a batch of g is one product
        return np.matmul(g, a)
    if b.ndim == 1:                         # grad_b[k] = sum_m a[..., m, k] g[..., m]
        return np.matmul(g[..., None, :], a)[..., 0, :]
    return np.matmul(_t(a), g)


def _matmul_torch(site):
    """torch 2.13's grad_fn of a @ b follows the operands' ranks: vector @ vector is a dot,
    matrix @ vector an mv, vector @ matrix an mm of a view squeezed back; batched products
    end in a view (UnsafeView), or a clone when a matrix meets a batch."""
    da, db = site.ranks
    return {(1, 1): "DotBackward0", (2, 1): "MvBackward0", (1, 2): "SqueezeBackward4",
            (2, 2): "MmBackward0"}.get((da, db), "CloneBackward0" if da == 2
                                       else "UnsafeViewBackward0")


def _contraction_cost(out_size, in_shapes):
    """A product's work: each output element sums over the contracted axis."""
    a = in_shapes[0]
    return max(1, out_size) * (a[-1] if a else 1)


register(Op("matmul", "a, b", np.matmul, (matmul_vjp_a, matmul_vjp_b), matmul_infer,
            _matmul_torch, "linalg", syntax="@", cost=_contraction_cost,
            sympy=lambda sp, a, b, **_: S.omatmul(sp, a, b),
            samples=(("A @ B", {"A": (2, 3), "B": (3, 4)}, (-2.0, 2.0)),
                     ("A @ v", {"A": (2, 3), "v": (3,)}, (-2.0, 2.0)),
                     ("v @ B", {"v": (3,), "B": (3, 4)}, (-2.0, 2.0)),
                     ("u @ v", {"u": (3,), "v": (3,)}, (-2.0, 2.0)),
                     ("matmul(A, B)", {"A": (2, 2, 3), "B": (3, 2)}, (-2.0, 2.0))),
            doc="numpy/PyTorch matmul rules, 1-D operands included; also the @ operator"))


def _vec_infer(name):
    def infer(shapes, params):
        if any(len(s) != 1 for s in shapes):
            raise GradcalcError("shape", f"{name}: expects 1-D arrays, got shapes "
                                         + " and ".join(str(tuple(s)) for s in shapes))
        if name == "dot":
            if shapes[0] != shapes[1]:
                raise GradcalcError("shape", f"dot: shapes {tuple(shapes[0])} and "
                                             f"{tuple(shapes[1])} differ")
            return (), params
        return (shapes[0][0], shapes[1][0]), params
    return infer


register(Op("dot", "a, b", lambda a, b: np.asarray(np.dot(a, b)),
            (lambda g, ans, a, b: g[..., None] * b, lambda g, ans, a, b: g[..., None] * a),
            _vec_infer("dot"), "DotBackward0", "linalg", cost=_contraction_cost,
            sympy=lambda sp, a, b, **_: S.omatmul(sp, a, b),
            samples=(("dot(u, v)", {"u": (3,), "v": (3,)}, (-2.0, 2.0)),)))
register(Op("outer", "a, b", np.outer,
            (lambda g, ans, a, b: np.matmul(g, b), lambda g, ans, a, b: np.matmul(a, g)),
            _vec_infer("outer"), "MulBackward0", "linalg",
            sympy=lambda sp, a, b, **_: a[:, None] * b[None, :],
            samples=(("outer(u, v)", {"u": (3,), "v": (2,)}, (-2.0, 2.0)),)))


def trace_infer(shapes, params):
    (s,) = shapes
    if len(s) != 2:
        raise GradcalcError("shape", f"trace: expects a 2-D array, got shape {tuple(s)}")
    return (), params


register(Op("trace", "x", lambda x: np.asarray(np.trace(x)),
            # trace_backward: grad filled into the diagonal of zeros (a select, so an
            # infinite grad leaves the off-diagonal entries 0, not inf * 0 = NaN)
            (lambda g, ans, x: np.where(np.eye(x.shape[0], x.shape[1], dtype=bool),
                                        g[..., None, None], 0.0),),
            trace_infer, "TraceBackward0", "linalg",
            sympy=lambda sp, x, **_: S.osum(sp, np.diagonal(x)),
            samples=(("trace(M)", {"M": (3, 3)}, (-2.0, 2.0)),
                     ("trace(M)", {"M": (2, 3)}, (-2.0, 2.0)))))
