"""Shape primitives: indexing and slicing, `.T`, reshape, stack, cat.

Indexing is basic only (integers and slices), so its VJP is a scatter into zeros with no
duplicate positions. Dims are normalised to negative axes so rules work under batch axes.
"""
from __future__ import annotations

import math

import numpy as np

from . import Op, call_error, norm_dim, register, traced
from ..errors import GradcalcError


def _view(shape):
    """A zero-byte array of `shape`, to let numpy check an index and give its result shape."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype=bool), shape=shape,
                                           strides=(0,) * len(shape))


def index_infer(shapes, params):
    (shape,) = shapes
    idx = params["idx"]
    if len(idx) > len(shape):
        raise GradcalcError("call", f"too many indices ({len(idx)}) for a {len(shape)}-D array "
                                    f"of shape {tuple(shape)}")
    for axis, (i, n) in enumerate(zip(idx, shape)):
        if isinstance(i, int) and not -n <= i < n:
            raise GradcalcError("call", f"index {i} is out of range for dimension {axis} "
                                        f"of size {n}")
        if isinstance(i, slice) and i.step is not None and i.step <= 0:
            # numpy would reverse; torch raises, so x[::-1] is refused, not reinterpreted
            raise GradcalcError("call", f"slice step must be greater than zero (got {i.step}; "
                                        "torch raises)")
    return _view(tuple(shape))[idx].shape, params


def index_vjp(g, ans, x, idx):
    nb = g.ndim - ans.ndim
    if traced(g):
        return scatter_composed(g, nb, x.shape, idx)
    out = np.zeros(g.shape[:nb] + x.shape, dtype=g.dtype)
    out[(slice(None),) * nb + idx] = g
    return out


def scatter_composed(g, nb, shape, idx):
    """index_vjp's scatter of `g` into zeros of `shape`, written as numpy calls the backward
    tracer can record (a traced array cannot be assigned into): the axes an integer removed
    come back with size 1, a step's gaps are filled with zeros, and pad places each range at
    its start. The same numbers as the assignment (tests/test_higher.py)."""
    full = idx + (slice(None),) * (len(shape) - len(idx))
    ranges = [range(n)[k] if isinstance(k, slice) else range(k % n, k % n + 1)
              for k, n in zip(full, shape)]
    out = np.reshape(g, g.shape[:nb] + tuple(len(r) for r in ranges))
    for a, r in enumerate(ranges):
        if r.step > 1 and len(r) > 1:
            axis = nb + a
            spaced = np.stack([out] + [np.zeros_like(out)] * (r.step - 1), axis=axis + 1)
            merged = np.reshape(spaced, out.shape[:axis] + (len(r) * r.step,) + out.shape[axis + 1:])
            out = merged[(slice(None),) * axis + (slice(0, (len(r) - 1) * r.step + 1),)]
    pads = [(0, 0)] * nb + [(r.start, n - r.start - out.shape[nb + a]) if len(r) else (0, n)
                            for a, (r, n) in enumerate(zip(ranges, shape))]
    return np.pad(out, pads)


register(Op("index", "x", lambda x, idx: x[idx], (index_vjp,), index_infer,
            lambda site: "SelectBackward0" if any(isinstance(i, int) for i in site.params["idx"])
            else "SliceBackward0", "shape", syntax="x[i]", named=False, keeps_zero=True,
            sympy=lambda sp, x, idx, **_: x[idx],
            samples=(("x[1]", {"x": (3,)}, (-2.0, 2.0)), ("M[:, 0]", {"M": (2, 3)}, (-2.0, 2.0)),
                     ("x[::2]", {"x": (5,)}, (-2.0, 2.0)), ("M[-1, 1:]", {"M": (2, 3)}, (-2.0, 2.0)))))


def transpose_vjp(g, ans, x):
    nb = g.ndim - ans.ndim
    return np.transpose(g, tuple(range(nb)) + tuple(nb + i for i in reversed(range(x.ndim))))


register(Op("transpose", "x", lambda x: x.T, (transpose_vjp,),
            lambda shapes, params: (tuple(reversed(shapes[0])), params),
            "PermuteBackward0", "shape", syntax="x.T", named=False, keeps_zero=True,
            sympy=lambda sp, x, **_: x.T,
            samples=(("M.T", {"M": (2, 3)}, (-2.0, 2.0)),)))


def reshape_infer(shapes, params):
    (shape,) = shapes
    new = list(params["shape"])
    if not new:
        raise GradcalcError("call", "reshape(x, *shape): give the new shape, e.g. reshape(x, 2, -1)")
    size = math.prod(shape)
    if new.count(-1) > 1:
        raise GradcalcError("call", "reshape(): only one dimension can be -1")
    if any(d < -1 for d in new):
        raise GradcalcError("call", f"reshape(): invalid dimension in {tuple(new)}")
    known = math.prod(d for d in new if d != -1)
    if -1 in new:
        if known == 0 or size % known:
            raise GradcalcError("shape", f"reshape(): cannot reshape {tuple(shape)} "
                                         f"into {tuple(new)}")
        new[new.index(-1)] = size // known
    elif known != size:
        raise GradcalcError("shape", f"reshape(): cannot reshape {tuple(shape)} ({size} elements) "
                                     f"into {tuple(new)} ({known} elements)")
    return tuple(new), dict(params, shape=tuple(new))


register(Op("reshape", "x, *shape:int", lambda x, shape: np.reshape(x, shape),
            (lambda g, ans, x, shape: g.reshape(g.shape[: g.ndim - ans.ndim] + x.shape),),
            reshape_infer, "ViewBackward0", "shape", keeps_zero=True,
            sympy=lambda sp, x, shape, **_: np.reshape(x, shape),
            samples=(("reshape(M, 3, -1)", {"M": (2, 3)}, (-2.0, 2.0)),)))


def _join_infer(name):
    def infer(shapes, params):
        if not shapes:
            raise GradcalcError("call", f"{name}(): needs at least one array")
        first = tuple(shapes[0])
        if name == "stack":
            if any(tuple(s) != first for s in shapes):
                raise GradcalcError("shape", "stack(): all arrays must have the same shape, got "
                                             + ", ".join(str(tuple(s)) for s in shapes))
            dim = norm_dim(name, params.get("dim", 0), len(first) + 1)
            axis = len(first) + 1 + dim
            return first[:axis] + (len(shapes),) + first[axis:], dict(params, dim=dim)
        if len(first) == 0:
            raise GradcalcError("shape", "cat(): zero-dimensional arrays cannot be concatenated; "
                                         "use stack()")
        dim = norm_dim(name, params.get("dim", 0), len(first))
        axis = len(first) + dim
        for s in shapes:
            s = tuple(s)
            if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
                raise GradcalcError("shape", "cat(): shapes must match except in dimension "
                                             f"{axis}, got " + ", ".join(str(tuple(t)) for t in shapes))
        total = sum(s[axis] for s in shapes)
        return first[:axis] + (total,) + first[axis + 1:], dict(params, dim=dim)
    return infer


def _stack_vjp(i):
    return lambda g, ans, *xs, dim=0: np.take(g, i, axis=dim)


def _cat_vjp(i):
    def rule(g, ans, *xs, dim=0):
        start = sum(x.shape[dim] for x in xs[:i])
        sl = [slice(None)] * (-dim)
        sl[0] = slice(start, start + xs[i].shape[dim])
        return g[(Ellipsis,) + tuple(sl)]
    return rule


register(Op("stack", "*xs, dim:int=0", lambda *xs, dim=0: np.stack(xs, axis=dim), _stack_vjp,
            _join_infer("stack"), "StackBackward0", "shape",
            sympy=lambda sp, *xs, dim=0, **_: np.stack(xs, axis=dim),
            samples=(("stack(x, y, dim=1)", {"x": (3,), "y": (3,)}, (-2.0, 2.0)),)))
register(Op("cat", "*xs, dim:int=0", lambda *xs, dim=0: np.concatenate(xs, axis=dim), _cat_vjp,
            _join_infer("cat"), "CatBackward0", "shape",
            sympy=lambda sp, *xs, dim=0, **_: np.concatenate(xs, axis=dim),
            samples=(("cat(x, y)", {"x": (3,), "y": (2,)}, (-2.0, 2.0)),
                     ("cat(M, N, dim=1)", {"M": (2, 3), "N": (2, 1)}, (-2.0, 2.0)))))
del call_error
