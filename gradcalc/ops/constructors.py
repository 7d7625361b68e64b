"""Constructors: constant arrays built from numbers. They are never leaves of their own and
have no gradient rules; their shape is checked against the limits before anything is
allocated (`ones(1e12)` is a limit error, not an out-of-memory kill).
"""
from __future__ import annotations

import math

import numpy as np

from . import Op, register
from .symforms import constant
from ..errors import GradcalcError


def _shape_infer(name):
    def infer(shapes, params):
        shape = tuple(params["shape"])
        if any(d < 0 for d in shape):
            raise GradcalcError("call", f"{name}(): negative dimension in {shape}")
        return shape, params
    return infer


def _const(name, sig, forward, infer, samples=(), doc="", random=False):
    # the sympy form of a constant is its numbers (the compiler folds every constructor into
    # a constant, so the symbolic check sees those; rand/randn would draw again)
    register(Op(name, sig, forward, (), infer, "", "constructor",
                sympy=lambda sp, **params: constant(forward(**params)),
                samples=samples, doc=doc, random=random))


_const("ones", "*shape:int", lambda shape, _dtype=np.float64: np.ones(shape, _dtype),
       _shape_infer("ones"), (("x * ones(2, 3)", {"x": (3,)}, (-2.0, 2.0)),))
_const("zeros", "*shape:int", lambda shape, _dtype=np.float64: np.zeros(shape, _dtype),
       _shape_infer("zeros"), (("x + zeros(2, 3)", {"x": (3,)}, (-2.0, 2.0)),))
_const("full", "*shape:int, value:number=None",
       lambda shape, value, _dtype=np.float64: np.full(shape, value, _dtype),
       lambda shapes, params: (_shape_infer("full")(shapes, params)[0],
                               _need(params, "value", "full(2, 3, value=7)")),
       (("x * full(3, value=2)", {"x": (3,)}, (-2.0, 2.0)),))


def _need(params, key, example):
    if params.get(key) is None:
        raise GradcalcError("call", f"missing '{key}': e.g. {example}")
    return params


def eye_infer(shapes, params):
    n, m = params["n"], params.get("m")
    m = n if m is None else m
    if n < 0 or m < 0:
        raise GradcalcError("call", f"eye(): negative size {n}, {m}")
    return (n, m), dict(params, m=m)


_const("eye", "n:int, m:int?=None", lambda n, m, _dtype=np.float64: np.eye(n, m, dtype=_dtype),
       eye_infer, (("(eye(3) + 1) * x", {"x": (3,)}, (-2.0, 2.0)),))


def linspace_infer(shapes, params):
    steps = params.get("steps")
    if steps is None or steps < 0:
        raise GradcalcError("call", "linspace(start, end, steps): steps must be a whole number >= 0")
    return (steps,), params


_const("linspace", "start:number, end:number, steps:int",
       lambda start, end, steps, _dtype=np.float64: np.linspace(start, end, steps, dtype=_dtype),
       linspace_infer, (("x * linspace(-1, 1, 3)", {"x": (3,)}, (-2.0, 2.0)),))


def arange_infer(shapes, params):
    a, b, s = params["start"], params.get("end"), params.get("step")
    if b is None:
        a, b = 0.0, a
    s = 1.0 if s is None else s
    if s == 0 or not all(math.isfinite(v) for v in (a, b, s)):
        raise GradcalcError("call", "arange(start, end, step): finite numbers and a nonzero step")
    n = max(0, math.ceil((b - a) / s))
    return (n,), dict(params, start=a, end=b, step=s)


_const("arange", "start:number, end:number?=None, step:number?=None",
       lambda start, end, step, _dtype=np.float64: np.arange(start, end, step, dtype=_dtype),
       arange_infer, (("x * arange(3)", {"x": (3,)}, (-2.0, 2.0)),),
       doc="always floating point; arange(end), arange(start, end), arange(start, end, step)")
_const("rand", "*shape:int", lambda shape, _rng=None, _dtype=np.float64:
       _rng.random(shape).astype(_dtype, copy=False),
       _shape_infer("rand"), (("x * rand(2, 3)", {"x": (3,)}, (-2.0, 2.0)),),
       doc="uniform on [0, 1), seeded by --seed", random=True)
_const("randn", "*shape:int", lambda shape, _rng=None, _dtype=np.float64:
       _rng.standard_normal(shape).astype(_dtype, copy=False),
       _shape_infer("randn"), (("x * randn(2, 3)", {"x": (3,)}, (-2.0, 2.0)),),
       doc="standard normal, seeded by --seed", random=True)
