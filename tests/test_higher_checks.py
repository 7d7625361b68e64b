"""The cross-checks of SPEC 9's answers (checks/second.py): both methods compare J·u, Taylor,
H·u and the Hessian, say how much they checked, report kinks, and fail (exit 1) when a
rule's second derivative is wrong while its first derivative is right.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradcalc
from gradcalc.engine import higher
from gradcalc.ops import OPS


def second(r, kind):
    return r.checks[kind]["second_order"]


def test_done_when_examples_pass_with_full_symbolic_coverage():
    r = gradcalc.compute("sin(x)*exp(x)", x=0.5, taylor=3, check="all")
    assert r.passed
    assert second(r, "symbolic")["taylor"] == {"entries_checked": 3, "entries_total": 3}
    assert second(r, "numeric")["taylor"] == {"entries_checked": 3, "entries_total": 3}
    r = gradcalc.compute("sum(x**3)", x=[1, 2], hessian=True, check="all")
    assert r.passed
    assert second(r, "symbolic")["hessian"] == {"entries_checked": 4, "entries_total": 4}
    num = second(r, "numeric")["hessian"]      # diagonal: one difference of the whole leaf
    assert num["entries_checked"] == 2 and num["entries_total"] == 4
    assert "elementwise" in num["not_checked"]
    np.testing.assert_array_equal(np.asarray(r.hessian["x"]["x"]), [[6, 0], [0, 12]])


def test_million_element_hessian_shown_as_its_diagonal(cli):
    args = ["sum(x*x*x)", "x=linspace(-1,1,1000000)", "--hessian", "--check", "none"]
    run = cli(args, isolate=True, timeout=120)
    assert run.status == 0, run.stderr
    assert "1,000,000×1,000,000 (diagonal, symmetric)" in run.stdout
    assert "diag H[x,x]" in run.stdout and "min -6, max 6" in run.stdout
    run = cli(args + ["--json"], isolate=True, timeout=120)
    assert run.status == 2
    assert "--hvp" in run.stderr and "Hessian is written densely" in run.stderr


def test_seed_example_every_answer_checked():
    r = gradcalc.compute("3*a + 2*b*b + log(c)", a=[1, 2, 3], b=[3, 4, 5], c=[6, 7, 8],
                         grad=[0.1, 1, 1e-4], tangent={"a": 1, "c": 2},
                         hvp={"b": [1, 2, 3]}, hessian=True, check="all")
    assert r.passed
    for kind in ("symbolic", "numeric"):
        so = second(r, kind)
        assert so["jvp"] == {"entries_checked": 3, "entries_total": 3}
        assert so["hvp"] == {"entries_checked": 9, "entries_total": 9}
    assert second(r, "symbolic")["hessian"] == {"entries_checked": 81, "entries_total": 81}
    assert second(r, "numeric")["hessian"]["entries_checked"] == 27     # the diagonals


def test_mixed_program_symbolic_and_numeric():
    r = gradcalc.compute("x @ W @ x", x=[0.1, 0.2], W=[[1, 2], [3, 4]], hessian=True,
                         hvp={"x": 1}, tangent={"x": 1}, taylor=3, check="all")
    assert r.passed
    so = second(r, "symbolic")
    assert so["taylor"] == {"entries_checked": 3, "entries_total": 3}
    assert so["hessian"] == {"entries_checked": 36, "entries_total": 36}


def test_sampled_mixed_program_says_what_it_left():
    x = np.linspace(0.1, 1, 100)
    r = gradcalc.compute("sum(sin(x)) * sum(x)", x=x, hvp={"x": 1}, check="symbolic")
    so = second(r, "symbolic")["hvp"]
    assert so["entries_checked"] == 0 and so["entries_total"] == 100
    assert "sample" in so["not_checked"]


def test_kink_is_reported_not_hidden():
    # (relu(x)*x)'' at 0: torch's 2*relu'(0) = 0, sympy's 2*Heaviside(0) + 0*DiracDelta(0)
    r = gradcalc.compute("relu(x)*x", x=[0, 1, -1], grad=1, hessian=True, check="symbolic")
    assert r.passed
    np.testing.assert_array_equal(np.diagonal(np.asarray(r.hessian["x"]["x"])), [0, 2, 0])
    points = [p for p in r.checks["symbolic"]["nondifferentiable"] if p.get("in") == "hessian"]
    assert points and points[0]["index"] == [0, 0] and points[0]["op"] == "relu"


def _value_only_sin(monkeypatch):
    """sin's rule with cos taken of the VALUE when traced: first order unchanged, the
    recorded backward loses its dependence on x, so sin'' comes out 0."""
    def rule(g, ans, x):
        return g * np.cos(getattr(x, "value", x))
    monkeypatch.setattr(OPS["sin"], "vjps", (rule,))


def test_wrong_second_derivative_fails_both_checks(monkeypatch, cli):
    _value_only_sin(monkeypatch)
    r = gradcalc.compute("sin(x)*exp(x)", x=0.5, taylor=3, check="all")
    sym = r.checks["symbolic"]
    assert sym["passed"] is False and sym["disagreements"][0]["in"] == "taylor"
    assert sym["disagreements"][0]["index"] == [2]
    assert r.grads["x"] == pytest.approx(np.exp(0.5) * (np.sin(0.5) + np.cos(0.5)))
    r = gradcalc.compute("sum(sin(x))", x=[1.0, 2.0], hvp={"x": 1}, hessian=True,
                         check="numeric")
    num = r.checks["numeric"]
    assert num["passed"] is False
    assert {d["in"] for d in num["disagreements"]} >= {"hvp"}
    run = cli(["sum(sin(x))", "x=1,2", "--hessian"])
    assert run.status == 1, run.stderr
    run = cli(["sin(x)*exp(x)", "x=0.5", "--taylor", "2", "--check", "numeric", "--json"])
    assert run.status == 1, run.stderr      # the second order's stencil sees sin'' = 0
    wrong = run.json()["checks"]["numeric"]["disagreements"]
    assert [(d["in"], d["index"]) for d in wrong] == [("taylor", [2])]


def test_wrong_engine_hvp_fails(monkeypatch, cli):
    real = higher.hvp
    monkeypatch.setattr(higher, "hvp", lambda *a, **k: {n: v * 1.001
                                                       for n, v in real(*a, **k).items()})
    run = cli(["sum(sin(a)*b + exp(-a*a))", "a=0.1,0.2", "b=1,2", "--hvp", "a=1"])
    assert run.status == 1
    assert "DISAGREES" in run.stdout


def test_jvp_alone_runs_its_checks(cli):
    run = cli(["x**3", "x=1,2,3", "--tangent", "x=1", "--check", "all", "--json"])
    assert run.status == 0, run.stderr
    import json
    obj = json.loads(run.stdout)
    for kind in ("symbolic", "numeric"):
        assert obj["checks"][kind]["passed"] is True
        assert obj["checks"][kind]["second_order"]["jvp"] == {"entries_checked": 3,
                                                              "entries_total": 3}
    np.testing.assert_allclose(obj["jvp"], [3, 12, 27])



def test_human_view_of_jvp_alone_says_what_ran(human):
    text = human(["x**3", "x=1,2,3", "--tangent", "x=1", "--check", "all"], columns=100)
    assert "none run" not in text
    assert "symbolic check: ✓ agrees" in text and "numeric check: ✓ agrees" in text
    assert text.count("J·u: 3 of 3 entries checked") == 2
    text = human(["x**3", "x=1,2,3", "--tangent", "x=1", "--check", "none"], columns=100)
    assert "checks: none run (--check none)" in text


def test_finite_difference_stencils():
    from gradcalc.checks.second import stencil
    for order, side, js, w in ((2, 0, [-1, 0, 1], [1, -2, 1]),
                               (3, 0, [-2, -1, 0, 1, 2], [-0.5, 1, 0, -1, 0.5]),
                               (4, 0, [-2, -1, 0, 1, 2], [1, -4, 6, -4, 1]),
                               (2, 1, [0, 1, 2], [1, -2, 1]),
                               (3, -1, [0, -1, -2, -3], [1, -3, 3, -1])):
        got_js, got_w = stencil(order, side)
        assert got_js.tolist() == js
        np.testing.assert_allclose(got_w, w, atol=1e-12)


def test_numeric_taylor_orders_two_to_four():
    """Orders 2..4 by central stencils; a kink of the third derivative (relu(x)**2 * x at 0:
    x**3 on the right, 0 on the left) is listed with both sides, and torch's 0 passes;
    orders past 4 are named as not checked."""
    r = gradcalc.compute("sin(x)*exp(x)", x=0.5, taylor=6, check="numeric")
    assert r.passed
    cov = second(r, "numeric")["taylor"]
    assert (cov["entries_checked"], cov["entries_total"]) == (4, 6)
    assert "orders 1 to 4 only" in cov["not_checked"]
    r = gradcalc.compute("relu(x)**2 * x", x=0.0, taylor=3, check="numeric")
    assert r.passed and r.taylor[2] == 0.0
    [point] = r.checks["numeric"]["nondifferentiable"]
    assert point["in"] == "taylor" and point["index"] == [3]
    assert point["range"] == pytest.approx([0.0, 6.0])
    # a step across sqrt's edge cannot settle: unverifiable, never a pass by a wide margin
    r = gradcalc.compute("sqrt(x)", x=1e-4, taylor=2, check="numeric")
    [u] = r.checks["numeric"]["unverifiable"]
    assert u["in"] == "taylor" and u["index"] == [2]


def test_a_wrong_forward_mode_rule_fails_the_symbolic_check(monkeypatch):
    # J·u and Taylor read the op's jvp rule (torch's forward formula) where it declares one:
    # doubled, the first-order and HVP numbers stay, the tangent and Taylor's orders do not
    # (y = x² past 1: J·u is 2x and the second order 2; with the doubled rule 3x and 4)
    real = OPS["maximum"].jvp
    monkeypatch.setattr(OPS["maximum"], "jvp", lambda *a, **k: 2.0 * real(*a, **k))
    r = gradcalc.compute("maximum(x, 1) * x", x=[2.0, 3.0], grad=[1, 1], tangent={"x": 1},
                         hvp={"x": 1}, taylor=2, check="symbolic")
    assert r.grads["x"] == pytest.approx([4.0, 6.0]) and r.hvp["x"] == pytest.approx([2.0, 2.0])
    assert r.jvp == pytest.approx([6.0, 9.0]) and r.taylor[1] == pytest.approx([4.0, 4.0])
    sym = r.checks["symbolic"]
    assert sym["passed"] is False and {d["in"] for d in sym["disagreements"]} >= {"jvp", "taylor"}
