"""Property tests (hypothesis): random well-formed expressions over the op table.

A generator builds expressions of known shape from leaves a (), d (2,), b (3,), C (2, 3):
elementwise functions (inputs mapped into their domains: `sigmoid(t) + 0.5` before log and
sqrt, `0.9 * tanh(t)` before asin/acos/tan), broadcasting arithmetic, reductions with and
without dim, matmul/dot/outer/trace with compatible shapes, indexing and slicing, stack/cat/
reshape, losses. For each, autograd (the grads for a random cotangent v and the whole
Jacobian) must match central finite differences computed here in float64 by perturbing each
leaf element and re-running the forward pass. Points within 1e-3 of a kink (relu/abs at 0,
ties of max/maximum, clamp bounds) are skipped with `assume`, since there the one-sided
derivatives differ and no finite difference can stand in for PyTorch's convention (those
conventions are pinned by the torch reference suite instead).

A second generator builds scalar arithmetic with random precedence and redundant
parentheses, and checks the parse (an S-expression) and the value against an evaluator of
the generated tree written here.

Examples are derandomized, so CI sees the same cases every run.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gradcalc
from gradcalc.engine import plain
from gradcalc.parser import parse_program, sexpr

from gradcalc.errors import Limits as _Limits  # noqa: E402
LIMITS = _Limits()      # the edge: tests build the limits, the library takes them

SETTINGS = settings(max_examples=120, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

LEAVES = {"a": (), "d": (2,), "b": (3,), "C": (2, 3)}
SHAPES = list(LEAVES.values())


def pos(t):
    return f"(sigmoid({t}) + 0.5)"          # (0.5, 1.5): inside log, sqrt, a divisor, a base


def unit(t):
    return f"(0.9 * tanh({t}))"             # (-0.9, 0.9): inside asin, acos, tan


UNARY = {
    "exp": None, "expm1": None, "sin": None, "cos": None, "atan": None, "sinh": None,
    "cosh": None, "tanh": None, "sigmoid": None, "erf": None, "softplus": None, "abs": None,
    "sign": None, "relu": None,
    "log": pos, "log2": pos, "log10": pos, "sqrt": pos, "log1p": lambda t: f"sigmoid({t})",
    "asin": unit, "acos": unit, "tan": unit,
}
UNARY_NAMES = sorted(UNARY)


@st.composite
def expr_of(draw, shape, depth):
    """Text of a random expression whose value has `shape`."""
    if depth <= 0 or draw(st.integers(0, 5)) == 0:
        names = [n for n, s in LEAVES.items() if s == shape]
        if shape == () and draw(st.booleans()):
            return draw(st.sampled_from(["0.7", "1.5", "-2", "pi", "e"]))
        return draw(st.sampled_from(names))
    sub = lambda s: draw(expr_of(s, depth - 1))  # noqa: E731
    kind = draw(st.sampled_from(["unary", "binary", "binary", "function", "shape"]))
    if kind == "unary":
        f = draw(st.sampled_from(UNARY_NAMES + ["neg"]))
        if f == "neg":
            return f"-{sub(shape)}"
        wrap = UNARY[f]
        t = sub(shape)
        return f"{f}({wrap(t) if wrap else t})"
    if kind == "binary":
        op = draw(st.sampled_from(["+", "-", "*", "/", "**", "^"]))
        # the other operand: same shape or one that broadcasts to it
        other = draw(st.sampled_from([shape, ()] + ([(3,)] if shape == (2, 3) else [])))
        x, y = sub(shape), sub(other)
        if draw(st.booleans()) and op in "+-*":
            x, y = y, x
        if op == "/":
            return f"({x} / {pos(y)})"
        if op in ("**", "^"):
            if draw(st.booleans()):
                return f"({x}){op}{draw(st.sampled_from(['2', '3']))}"
            return f"{pos(x)}{op}{unit(y)}"
        return f"({x} {op} {y})"
    if kind == "function":
        f = draw(st.sampled_from(["pow", "atan2", "hypot", "maximum", "minimum", "clamp",
                                  "clamp_t", "softplus_b"]))
        other = draw(st.sampled_from([shape, ()]))
        x, y = sub(shape), sub(other)
        if f == "pow":
            return f"pow({pos(x)}, {unit(y)})"
        if f == "clamp":
            return f"clamp({x}, min=-0.5, max=0.5)"
        if f == "clamp_t":
            return f"clamp({x}, {y})"
        if f == "softplus_b":
            return f"softplus({x}, beta=2)"
        return f"{f}({x}, {y})"
    return draw(structural(shape, depth))


@st.composite
def structural(draw, shape, depth):
    """Reductions, linear algebra, indexing, joins and losses that produce `shape`."""
    sub = lambda s: draw(expr_of(s, depth - 1))  # noqa: E731
    red = draw(st.sampled_from(["sum", "mean", "prod", "max", "min", "logsumexp", "norm"]))
    if shape == ():
        choice = draw(st.integers(0, 10))
        src = draw(st.sampled_from([(2,), (3,), (2, 3)]))
        if choice <= 2:
            if red == "norm":
                p = draw(st.sampled_from(["", ", p=1", ", p=3", ", p=inf"]))
                return f"norm({sub(src)}{p})"
            return f"{red}({sub(src)})"
        if choice == 3:
            return f"({sub((3,))} @ {sub((3,))})"
        if choice == 4:
            return f"dot({sub((2,))}, {sub((2,))})"
        if choice == 5:
            return f"trace({sub((2, 3))} @ ({sub((2, 3))}).T)"
        if choice == 6:
            return f"({sub((3,))})[{draw(st.sampled_from(['0', '2', '-1']))}]"
        if choice == 7:
            s = draw(st.sampled_from([(3,), (2, 3)]))
            loss = draw(st.sampled_from(["mse_loss", "binary_cross_entropy_with_logits"]))
            return f"{loss}({sub(s)}, {sub(s)})"
        if choice == 8:
            return (f"binary_cross_entropy(sigmoid(tanh({sub((2, 3))})), "
                    f"sigmoid({sub((2, 3))}))")
        if choice == 9:
            target = draw(st.sampled_from(["[0, 2]", "[1, 1]", "softmax({})"]))
            if target.startswith("softmax"):
                target = f"softmax({sub((2, 3))})"
            return f"cross_entropy({sub((2, 3))}, {target})"
        return f"cross_entropy({sub((3,))}, 2)"
    if shape == (3,):
        choice = draw(st.integers(0, 7))
        if choice <= 1:
            if red == "norm":
                return f"norm({sub((2, 3))}, dim=0)"
            return f"{red}({sub((2, 3))}, dim={draw(st.sampled_from(['0', '-2']))})"
        if choice == 2:
            return f"{draw(st.sampled_from(['softmax', 'log_softmax']))}({sub((3,))})"
        if choice == 3:
            return f"({sub((2, 3))})[{draw(st.sampled_from(['0', '-1', '1, :']))}]"
        if choice == 4:
            return f"({sub((2,))} @ {sub((2, 3))})"
        if choice == 5:
            return f"({sub((3,))})[-3::1]"      # a negative step is refused, as in torch
        if choice == 6:
            return f"cat({sub((2,))}, ({sub((3,))})[1:2])"
        return f"reshape({sub((2, 3))}, 6)[::2]"
    if shape == (2,):
        choice = draw(st.integers(0, 5))
        if choice <= 1:
            if red == "norm":
                return f"norm({sub((2, 3))}, dim=1)"
            return f"{red}({sub((2, 3))}, dim=-1)"
        if choice == 2:
            return f"({sub((2, 3))} @ {sub((3,))})"
        if choice == 3:
            return f"({sub((2, 3))})[:, {draw(st.sampled_from(['0', '2']))}]"
        if choice == 4:
            return f"({sub((3,))})[1:]"
        return f"log_softmax({sub((2,))})"
    # (2, 3)
    choice = draw(st.integers(0, 8))
    if choice == 0:
        return f"outer({sub((2,))}, {sub((3,))})"
    if choice == 1:
        return f"stack({sub((3,))}, {sub((3,))})"
    if choice == 2:
        return f"cat(({sub((2, 3))})[:1], ({sub((2, 3))})[1:])"
    if choice == 3:
        return f"softmax({sub((2, 3))}, dim=0)"
    if choice == 4:
        return f"({sub((2, 3))}).T.T"
    if choice == 5:
        return f"reshape(outer({sub((3,))}, {sub((2,))}), 2, 3)"
    if choice == 6:
        t = sub((2, 3))
        return f"({t} - mean({t}, dim=1, keepdim=True))"
    if choice == 7:
        return f"({sub((2, 3))} * [1, 2, 3])"
    return f"(ones(2, 3) * {sub((3,))} + full(2, 3, value=0.5))"


# ---------------------------------------------------------------- kinks and finite differences
MARGIN = 1e-3


def _gap_top2(x, axis):
    """Smallest gap between the largest and second largest (and the smallest and second
    smallest) along `axis` (None: all elements)."""
    x = np.asarray(x, dtype=np.float64)
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    if x.shape[axis] < 2:
        return np.inf
    s = np.sort(x, axis=axis)
    top = np.take(s, -1, axis=axis) - np.take(s, -2, axis=axis)
    bottom = np.take(s, 1, axis=axis) - np.take(s, 0, axis=axis)
    return float(min(np.min(top), np.min(bottom)))


def kink_distance(graph, values) -> float:
    """How close any non-smooth op of the graph is to its kink at these values."""
    d = np.inf
    for eq in graph.nodes:
        if eq.kind != "op":
            continue
        name = eq.op.name
        xs = [np.asarray(values[i], dtype=np.float64) for i in eq.inputs]
        if name in ("relu", "abs", "sign"):
            d = min(d, float(np.min(np.abs(xs[0]))))
        elif name in ("maximum", "minimum"):
            d = min(d, float(np.min(np.abs(xs[0] - xs[1]))))
        elif name == "clamp":
            x, lo, hi = xs
            d = min(d, float(np.min(np.abs(x - lo))), float(np.min(np.abs(x - hi))))
        elif name in ("max", "min"):
            d = min(d, _gap_top2(xs[0], eq.params.get("dim")))
        elif name == "norm":
            p = eq.params.get("p", 2.0)
            if p == 1:
                d = min(d, float(np.min(np.abs(xs[0]))))
            elif math.isinf(p):
                d = min(d, _gap_top2(np.abs(xs[0]), eq.params.get("dim")),
                        float(np.min(np.abs(xs[0]))) if xs[0].size == 1 else np.inf)
            elif p == 3:
                d = min(d, float(np.min(np.abs(xs[0]))) ** 0.5)
            d = min(d, float(np.min(np.asarray(values[eq.id]))))
        elif name in ("atan2", "hypot"):
            d = min(d, float(np.min(xs[0] ** 2 + xs[1] ** 2)))
    return d


def finite_difference_jacobian(graph, output, leaf_id):
    """Central differences in float64: one column of the Jacobian per leaf element."""
    x0 = np.asarray(graph.nodes[leaf_id].value, dtype=np.float64)
    oshape = graph.nodes[output].shape
    cols = []
    for k in range(x0.size):
        h = 1e-6 * max(1.0, abs(float(x0.flat[k])))
        xp, xm = x0.copy(), x0.copy()
        xp.flat[k] += h
        xm.flat[k] -= h
        fp = plain.forward(graph, {leaf_id: xp}, upto=output)[output]
        fm = plain.forward(graph, {leaf_id: xm}, upto=output)[output]
        cols.append(np.ravel((fp - fm) / (2 * h)))
    J = np.array(cols).T if cols else np.zeros((math.prod(oshape), 0))
    return J.reshape(oshape + x0.shape)


def used_leaves(text):
    return [n for n in LEAVES if re.search(rf"\b{n}\b", text)]


def check_against_finite_differences(text, seed):
    rng = np.random.default_rng(seed)
    names = used_leaves(text)
    assume(names)
    vars = {n: rng.uniform(-1.5, 1.5, size=LEAVES[n]) for n in names}
    # the cotangent: random, of the output's shape (found by a first run with --grad 1)
    r0 = gradcalc.compute(text, grad=1.0, check="none", jacobian=False, **vars)
    v = rng.normal(size=r0.output.shape)
    r = gradcalc.compute(text, grad=v.tolist() if v.shape else float(v), check="none",
                         jacobian=True, **vars)
    values = r.values
    assume(all(np.all(np.abs(values[eq.id]) < 1e4) for eq in r.graph.nodes
               if eq.kind != "const" and values[eq.id] is not None))
    assume(kink_distance(r.graph, values) > MARGIN)
    graph, out = r.graph, r.output_id
    for n in names:
        leaf = graph.leaves[n]
        fd = finite_difference_jacobian(graph, out, leaf)
        J = r.jacobian[n]
        assert J.shape == fd.shape
        scale = 1.0 + float(np.max(np.abs(fd), initial=0.0))
        np.testing.assert_allclose(J, fd, rtol=1e-5, atol=1e-5 * scale,
                                   err_msg=f"Jacobian of {n} in {text}")
        vj = np.tensordot(v, fd, axes=v.ndim)
        gscale = 1.0 + float(np.max(np.abs(vj), initial=0.0))
        np.testing.assert_allclose(r.grads[n], vj, rtol=1e-5, atol=1e-5 * gscale,
                                   err_msg=f"grad of {n} in {text}")
    return r


@SETTINGS
@given(text=expr_of((), 3), seed=st.integers(0, 2**31))
def test_scalar_expressions_match_finite_differences(text, seed):
    check_against_finite_differences(text, seed)


@SETTINGS
@given(shape=st.sampled_from([(2,), (3,), (2, 3)]), data=st.data(), seed=st.integers(0, 2**31))
def test_array_expressions_match_finite_differences(shape, data, seed):
    text = data.draw(expr_of(shape, 3))
    r = check_against_finite_differences(text, seed)
    assert r.output.shape == shape


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=expr_of((), 2), seed=st.integers(0, 2**31))
def test_float32_agrees_with_float64(text, seed):
    """The same calculation in float32 (PyTorch's default tensors) differs from float64
    only by rounding."""
    rng = np.random.default_rng(seed)
    names = used_leaves(text)
    assume(names)
    vars = {n: rng.uniform(-1.5, 1.5, size=LEAVES[n]) for n in names}
    r64 = gradcalc.compute(text, check="none", jacobian=False, **vars)
    assume(all(np.all(np.abs(r64.values[eq.id]) < 1e3) for eq in r64.graph.nodes
               if eq.kind != "const" and r64.values[eq.id] is not None))
    assume(kink_distance(r64.graph, r64.values) > 0.05)
    r32 = gradcalc.compute(text, check="none", jacobian=False, dtype="float32", **vars)
    assert r32.output.dtype == np.float32
    for n in names:
        assert r32.grads[n].dtype == np.float32
        g64 = r64.grads[n]
        scale = 1.0 + float(np.max(np.abs(g64), initial=0.0))
        np.testing.assert_allclose(r32.grads[n], g64, rtol=1e-3, atol=1e-3 * scale,
                                   err_msg=f"{n} in {text}")


# ---------------------------------------------------------------- parse and value of arithmetic
PREC = {"+": 10, "-": 10, "*": 20, "/": 20, "**": 40, "^": 40}


@st.composite
def arith(draw, depth):
    """(text, sexpr, value, precedence) of random scalar arithmetic: numbers, unary minus,
    + - * / ** ^, parenthesised minimally (plus redundant parentheses at random)."""
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        n = draw(st.sampled_from(["1", "2", "3", "0.5", "1.5", "4"]))
        return n, n, float(n), 100
    kind = draw(st.sampled_from(["bin", "bin", "bin", "neg"]))
    if kind == "neg":
        t, s, v, p = draw(arith(depth - 1))
        if p < 30:                     # unary minus binds tighter than + - * /
            t = f"({t})"
        text = f"-{t}"
        if draw(st.booleans()):
            text = f"({text})"
            return text, f"(- {s})", -v, 100
        return text, f"(- {s})", -v, 30
    op = draw(st.sampled_from(list(PREC)))
    lt, ls, lv, lp = draw(arith(depth - 1))
    rt, rs, rv, rp = draw(arith(depth - 1))
    prec = PREC[op]
    right_assoc = op in ("**", "^")
    # left operand: needs parens if it binds looser, or equally for a right-assoc op;
    # a unary minus on the left of ** must be parenthesised ((-2)**2, not -2**2)
    if lp < prec or (right_assoc and lp <= prec) or (right_assoc and lp == 30):
        lt = f"({lt})"
    # right operand: parens if looser, or equally for a left-assoc op; the exponent of **
    # may be a bare unary minus, as in Python (2**-1)
    if (rp < prec and not (right_assoc and rp == 30)) or (not right_assoc and rp == prec):
        rt = f"({rt})"
    if draw(st.integers(0, 4)) == 0:
        lt = f"({lt})"
    sym = "**" if op == "^" else op
    with np.errstate(all="ignore"):
        a, b = np.float64(lv), np.float64(rv)
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "**": np.power(a, b),
                 "^": np.power(a, b)}[op]
    return f"{lt} {op} {rt}", f"({sym} {ls} {rs})", float(value), prec


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(arith(4))
def test_arithmetic_parses_and_evaluates_like_python_rules(t):
    text, expected_sexpr, value, _ = t
    (stmt,) = parse_program(text, LIMITS.max_depth)
    assert sexpr(stmt) == expected_sexpr, text
    assume(math.isfinite(value) and abs(value) < 1e12)
    r = gradcalc.compute(f"{text} + 0*x", x=1.0, check="none")
    assert float(r.output) == pytest.approx(value, rel=1e-12, abs=1e-12), text
