"""The second order's economies against its plain route (engine/higher.py).

The plain route of an elementwise program's Hessian is one plain backward of the whole traced
program per leaf (higher.diagonal_hessian); the economy records those backwards too and runs
the one program of every diagonal block by block (higher.traced_diagonals, with
economy.forward_blocked). The dense Hessian's economic Jacobian, a final program's output by
the lean forward over its cone, and a trace that computes values only when read
(traced.Builder.value) are held to plain.jacobian and plain.forward. All bit for bit: NaN
where NaN and the sign of every zero.
Inputs include 0, -0.0, inf and NaN.
"""
from __future__ import annotations

import numpy as np
import pytest

from gradcalc.compile import Compiler
from gradcalc.engine import forward_mode, higher, plain, traced
from gradcalc.errors import GradcalcError, Limits
from gradcalc.ops import OPS
from gradcalc.parser import parse_program

LIMITS = Limits()
SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, np.inf, -np.inf, np.nan, 1e-300, -3.0])
POINTWISE = [(name, k, s) for name in sorted(OPS) for k, s in enumerate(OPS[name].samples)
             if OPS[name].pointwise]
EXTRA = [("sin(a)*b + exp(-a*a)", {"a": (), "b": ()}, (-2.0, 2.0)),
         ("3*a + 2*b*b + log(c)", {"a": (), "b": (), "c": ()}, (0.5, 2.0)),
         ("maximum(x, y) * relu(x) + abs(y) ** 3", {"x": (), "y": ()}, (-2.0, 2.0))]


def values_at(shapes, domain, seed, special):
    """(rng, leaf values of the given shapes): uniform over `domain`, or drawn from SPECIAL;
    the generator goes on to draw what the test needs next."""
    rng = np.random.default_rng(seed)
    return rng, {v: rng.choice(SPECIAL, s) if special else rng.uniform(*domain, s)
                 for v, s in shapes.items()}


def compiled(text, vals, **kw):
    return Compiler(text, vals, limits=LIMITS, **kw).program(
        parse_program(text, LIMITS.max_depth))


def summed(expr, shapes, domain, n, seed, special):
    """sum(expr) with every leaf of shape (n,), at random or special values."""
    return compiled(f"sum({expr})", values_at({v: n for v in shapes}, domain, seed, special)[1])


def assert_same(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    assert np.array_equal(got, want, equal_nan=True), f"{what}: {got} != {want}"
    assert ((np.signbit(got) == np.signbit(want)) | np.isnan(want)).all(), f"{what}: zeros"


CASES = [s for _, _, s in POINTWISE] + EXTRA


@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=[c[0] for c in CASES])
def test_traced_diagonals_equal_the_plain_route(expr, shapes, domain):
    """Blocks of 1, 3 and 4 elements (the last often shorter) give the diagonals of one
    plain backward of the whole traced program per leaf, bit for bit: NaN where NaN and
    the sign of every zero."""
    compared = 0
    for seed, special in ((0, False), (1, True), (2, True)):
        g = summed(expr, shapes, domain, 7, seed, special)
        leaves = [n for n, i in g.leaves.items() if g.nodes[i].requires_grad]
        try:
            t = traced.Traced(g, LIMITS)
            grads = higher._grads_of(t, t.backward(np.ones(()), g.output), g, leaves)
        except traced.Untraceable:
            pytest.skip("not traceable")
        if higher.elementwise(t, grads) is None:
            continue
        want = higher.diagonal_hessian(t, grads, g)
        for block in (1, 3, 4):
            got = higher.traced_diagonals(t, grads, g, LIMITS, block)
            if got is None:
                continue
            compared += 1
            for a in want:
                for b in want[a]:
                    assert_same(got[a][b], want[a][b], f"{expr}: H[{a}][{b}] block {block}")
    if expr in [e[0] for e in EXTRA]:
        assert compared, "the blocked route was never taken"


def test_large_elementwise_hessian_takes_the_blocked_route(monkeypatch):
    """At BLOCK_MIN elements the Hessian comes from traced_diagonals (so the test above
    holds the route that runs), and equals the plain route's."""
    n = higher.economy.BLOCK_MIN
    g = summed("sin(a)*b + exp(-a*a)", {"a": (), "b": ()}, (-2.0, 2.0), n, 0, False)
    taken = []
    blocked = higher.traced_diagonals
    monkeypatch.setattr(higher, "traced_diagonals",
                        lambda *a, **k: taken.append(1) or blocked(*a, **k))
    got = higher.hessian(g, g.output, np.ones(()), ["a", "b"], LIMITS)
    assert taken
    monkeypatch.setattr(higher, "traced_diagonals", lambda *a, **k: None)
    want = higher.hessian(g, g.output, np.ones(()), ["a", "b"], LIMITS)
    for a in want:
        for b in want[a]:
            assert_same(got[a][b].diag, want[a][b].diag, f"H[{a}][{b}]")


@pytest.mark.parametrize("expr,shapes,domain", CASES[:40], ids=[c[0] for c in CASES[:40]])
def test_lazy_trace_values_are_the_plain_forward(expr, shapes, domain):
    """Every value of a traced gradient program, computed when read, is what plain.forward
    computes for the same program."""
    g = summed(expr, shapes, domain, 5, 1, True)
    try:
        t = traced.Traced(g, LIMITS)
        grads = t.backward(np.ones(()), g.output)
    except traced.Untraceable:
        pytest.skip("not traceable")
    for name, tr in grads.items():
        prog, values = t.program(t.b.lift(tr))
        want = plain.forward(prog)
        for i in range(prog.output + 1):
            assert_same(values[i], want[i], f"{expr}: node {i} of d/d{name}")


ALL = [s for name in sorted(OPS) for s in OPS[name].samples] + [
    ("logsumexp(W @ tanh(x))", {"W": (4, 4), "x": (4,)}, (-2.0, 2.0)),
    ("sum(tanh(A @ x) @ B)", {"A": (3, 4), "x": (4,), "B": (3, 2)}, (-2.0, 2.0))]


@pytest.mark.parametrize("expr,shapes,domain", ALL, ids=[c[0] for c in ALL])
def test_dense_hessian_economy_is_the_plain_jacobian(expr, shapes, domain):
    """The dense Hessian is the Jacobian of the traced gradient program; economy.jacobian
    (in-place sums, structure) and higher.dense_jacobian (the pointwise tail as diagonals, a
    product by a constant matrix as that matrix scaled) give plain.jacobian's numbers for
    it, bit for bit."""
    for seed, special in ((0, False), (1, True)):
        rng, vals = values_at(shapes, domain, seed, special)
        try:
            g = compiled(expr, vals)
            leaves = [n for n, i in g.leaves.items() if g.nodes[i].requires_grad]
            cot = rng.normal(size=g.nodes[g.output].shape)
            prog, values, layout = higher.gradient_program(g, g.output, cot, leaves, LIMITS)
        except (traced.Untraceable, GradcalcError):
            pytest.skip("not traceable, or refused at these values")
        if prog is None:
            continue
        ids = [prog.leaves[n] for n in layout]
        want = plain.jacobian(prog, values, prog.output, ids)
        got = higher.economy.jacobian(prog, values, prog.output, ids)
        tail = higher.dense_jacobian(prog, values, ids, LIMITS)
        for i in ids:
            assert_same(got[i], want[i], f"{expr}: Hessian rows of {prog.nodes[i].name}")
            assert_same(tail[i], want[i], f"{expr}: Hessian rows of {prog.nodes[i].name} "
                                          "(the pointwise tail as diagonals)")


@pytest.mark.parametrize("expr,shapes,domain", ALL, ids=[c[0] for c in ALL])
def test_lean_final_program_is_the_lazy_values(expr, shapes, domain, monkeypatch):
    """J·u (forward mode) and the transposed J·u that H·u takes, read from their final
    programs by the lean forward over the cone, at any size here (LEAN_MIN 0): the values
    the programs themselves give."""
    monkeypatch.setattr(higher.economy, "LEAN_MIN", 0)
    for seed, special in ((0, False), (1, True)):
        rng, vals = values_at(shapes, domain, seed, special)
        try:
            g = compiled(expr, vals)
            u = {n: rng.normal(size=g.nodes[i].shape) for n, i in g.leaves.items()
                 if g.nodes[i].requires_grad}
            fwd, fwd_values = forward_mode.jvp_program(g, g.output, u, LIMITS)
            got = higher.jvp(g, g.output, u, LIMITS)
            prog, values = higher.jvp_program(g, g.output, u, LIMITS, final=True)
            got_transposed = higher.final_output(prog, values)
        except (traced.Untraceable, GradcalcError):
            pytest.skip("not traceable, or refused at these values")
        assert_same(got, fwd_values[fwd.output], f"{expr}: J·u (forward mode)")
        assert_same(got_transposed, values[prog.output], f"{expr}: J·u (transposed, as H·u)")


def test_large_hvp_is_the_closed_form():
    """At LEAN_MIN elements (the lean final program) H·u of sum(sin(a)*b + exp(-a*a)) is
    H_aa u_a + H_ab u_b, H_ba u_a with H_aa = -sin(a) b + (4a² - 2) exp(-a²), H_ab = cos(a),
    H_bb = 0."""
    n = higher.economy.LEAN_MIN
    g = summed("sin(a)*b + exp(-a*a)", {"a": (), "b": ()}, (-2.0, 2.0), n, 0, False)
    rng = np.random.default_rng(3)
    u = {"a": rng.normal(size=n), "b": rng.normal(size=n)}
    got = higher.hvp(g, g.output, np.ones(()), u, ["a", "b"], LIMITS)
    x, y = (g.nodes[g.leaves[k]].value for k in "ab")
    want = {"a": (-np.sin(x) * y + (4 * x * x - 2) * np.exp(-x * x)) * u["a"]
            + np.cos(x) * u["b"], "b": np.cos(x) * u["a"]}
    for a in want:
        np.testing.assert_allclose(got[a], want[a], rtol=1e-10, atol=1e-12, err_msg=a)


MIXING = [("logsumexp(W @ tanh(x))", {"W": (6, 5), "x": (5,)}),
          ("sum(sin(W @ x) * 2) * sum(x)", {"W": (4, 5), "x": (5,)}),
          ("logsumexp(tanh(x) @ W) + sum(x * x)", {"W": (5, 3), "x": (5,)})]


@pytest.mark.parametrize("expr,shapes", MIXING, ids=[c[0] for c in MIXING])
def test_dense_hessian_tail_takes_a_constant_matrix_scaled(expr, shapes, monkeypatch):
    """With W a constant (only x requires grad), the gradient's product by W takes its
    diagonal seed as W scaled (higher._scaled): plain.jacobian's numbers, bit for bit, at
    random and special values (0, -0.0, inf and NaN in W or x: the scaled route refuses)."""
    taken = []
    real = higher._scaled
    monkeypatch.setattr(higher, "_scaled", lambda *a: taken.append(real(*a)) or taken[-1])
    for seed, special in ((0, False), (1, True), (2, True), (3, False)):
        vals = values_at(shapes, (-2, 2), seed, special)[1]
        if seed == 3:
            vals["W"][0, 0] = 0.0       # a zero term: -0.0 products come out +0.0
        g = compiled(expr, vals, wrt=["x"])
        prog, values, layout = higher.gradient_program(g, g.output, np.ones(()), ["x"], LIMITS)
        ids = [prog.leaves["x"]]
        want = plain.jacobian(prog, values, prog.output, ids)
        got = higher.dense_jacobian(prog, values, ids, LIMITS)
        assert_same(got[ids[0]], want[ids[0]], f"{expr} at seed {seed}")
    assert any(t is not None for t in taken), "the scaled route was never taken"


@pytest.mark.parametrize("expr,shapes,domain", ALL, ids=[c[0] for c in ALL])
def test_nested_taylor_is_the_plain_taylor_where_values_are_finite(expr, shapes, domain):
    """Taylor taken as torch's nested jacfwd (forward_mode.Nested: efficient zero tangents,
    the directions as leaves, auto_element_wise) differs from the plain route only where a
    zero meets a value that is not finite: at finite values, orders 1 to 3 agree (to
    rounding: a rule applied to the tangent and the rule transposed may round apart)."""
    rng, vals = values_at(shapes, domain, 0, False)
    try:
        g = compiled(expr, vals)
        u = {n: rng.normal(size=g.nodes[i].shape) for n, i in g.leaves.items()
             if g.nodes[i].requires_grad}
        plain_route = higher._taylor(g, g.output, u, 3, LIMITS, None)
    except (traced.Untraceable, GradcalcError):
        pytest.skip("not traceable, or refused at these values")
    if plain_route is None:
        pytest.skip("a value is not finite at these points")
    nested = higher._taylor(g, g.output, u, 3, LIMITS, forward_mode.Nested())
    for k, (a, b) in enumerate(zip(nested, plain_route), 1):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300, err_msg=f"{expr} order {k}")
