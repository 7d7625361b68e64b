"""The symbolic check at scale (issue 15 item 3): a wide sum, many leaves and a long chain are
checked, not refused; and each shortcut that makes them affordable is held to the plain
path's results:

- a chain of sums is built in one sympy `Add` call: the same expression as one `+` at a time;
- a sum's derivative taken over only the terms holding the symbol is sympy's `diff` of it;
- a program cut into pieces (forms nested deeper than CUT_DEPTH) gives, by the chain rule
  over the pieces, the verdict, kinks and coverage of the whole form's derivative, and
  numbers equal to rounding;
- the verdict's tally (issue 15 item 2): the blocked all-close comparison gives agree()'s
  numbers, and an elementwise Jacobian compared on its pattern gives the dense comparison's
  report (every test of test_checks.py runs through both shortcuts as well).
No time is asserted: the behaviour is that these programs are checked, within the default
budget, and say what they covered.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradcalc
from gradcalc.checks import Context, symbolic
from gradcalc.errors import Limits


def _context(r):
    return Context(graph=r.graph, values=r.values, output_id=r.output_id,
                   cotangent=r.cotangent, wrt=tuple(r.wrt), grads=dict(r.grads),
                   jacobian=r.jacobian, dtype=r.dtype, limits=Limits())


def _session():
    import sympy
    budget = symbolic.Budget(100)
    budget.begin()
    return symbolic.Session(sympy, budget)


def _derived(text, vars, grad):
    """(context, session, elementwise derivation) of a program computed unchecked."""
    context = _context(gradcalc.compute(text, check="none", grad=grad, **vars))
    session = _session()
    return context, session, symbolic.derive_elementwise(session, context)


# ---------------------------------------------------------------- checked, not refused
def test_wide_sum_of_ten_thousand_terms_is_checked():
    text = " + ".join("x" if k % 2 else "y" for k in range(10_000))
    r = gradcalc.compute(text, x=0.5, y=[1.0, 2.0], grad=[1.0, 1.0])
    sym = r.checks["symbolic"]
    assert sym["passed"] is True, sym
    assert sym["derivatives"] == {"x": "5000", "y": "5000"}
    assert sym["elements_checked"] == sym["elements_total"] == 3
    assert r.grads["x"] == 10_000.0 and list(r.grads["y"]) == [5000.0, 5000.0]


def test_a_thousand_leaves_are_checked_within_the_default_budget():
    k = 1000
    text = " + ".join(f"x{i}*x{i}" for i in range(k))
    vals = {f"x{i}": 0.25 + i / 1000 for i in range(k)}
    r = gradcalc.compute(text, **vals)
    sym = r.checks["symbolic"]
    assert sym["passed"] is True, sym
    assert sym["elements_checked"] == sym["elements_total"] == k
    assert sym["derivatives"]["x0"] == "2*x0" and sym["derivatives"]["x999"] == "2*x999"
    assert r.grads["x999"] == 2 * vals["x999"]


def test_a_thousand_op_chain_is_checked():
    lines = ["y = x"] + [("y = sin(y)" if i % 2 else "y = y*1.01") for i in range(1000)]
    r = gradcalc.compute("\n".join(lines), x=[0.3, -0.7], grad=[1.0, 1.0])
    value, grad = np.array([0.3, -0.7]), np.ones(2)          # the chain rule by hand
    for i in range(1000):
        if i % 2:
            grad, value = grad * np.cos(value), np.sin(value)
        else:
            grad, value = grad * 1.01, value * 1.01
    np.testing.assert_allclose(r.grads["x"], grad, rtol=1e-12)
    sym = r.checks["symbolic"]
    assert sym["passed"] is True, sym
    assert sym["method"] == "elementwise" and sym["elements_checked"] == 2
    assert sym["derivatives"] == {"x": None}               # too long to print
    assert sym["max_rel_error"] < 1e-12


def test_a_chain_that_disagrees_still_fails(monkeypatch):
    """The pieces' composition is a check, not an echo: a wrong sin rule deep in a cut
    chain is found."""
    from gradcalc.ops import OPS
    real = OPS["sin"].vjps
    monkeypatch.setattr(OPS["sin"], "vjps", (lambda g, ans, x: real[0](g, ans, x) * 1.001,))
    lines = ["y = x"] + [("y = sin(y)" if i % 2 else "y = y*1.01") for i in range(100)]
    r = gradcalc.compute("\n".join(lines), x=0.3, check="symbolic")
    sym = r.checks["symbolic"]
    assert sym["passed"] is False
    assert sym["disagreements"][0]["leaf"] == "x"


# ---------------------------------------------------------------- shortcuts = plain path
PROGRAMS = [             # (text, values, grad): sums feeding sums, shared sums, x - sum
    ("3*a + 2*b*b + log(c)", dict(a=[1.0, 2.0], b=[3.0, 4.0], c=[6.0, 7.0]), [1.0, 1.0]),
    ("a - (b - c) + (a + b) - -c + relu(a - b)", dict(a=[1.0, 2.0], b=[1.0, 4.0], c=0.5),
     [1.0, 0.5]),
    ("s = a + b\nt = s + c\nt*s + s - t", dict(a=1.5, b=[0.5, 2.0], c=3.0), [1.0, 2.0]),
    ("sum1 = a + a\nsum1 + detach(b + b) + b", dict(a=[0.5, 1.0], b=2.0), [1.0, 1.0]),
    ("x + y + x*y + 1", dict(x=0.5, y=3.0), None),
]


def _plain_form(session, context):
    """The output's form built the plain way: each op's own sympy form, one at a time."""
    sp, graph, vals = session.sp, context.graph, context.vals
    names = {i: n for n, i in graph.leaves.items()}
    exprs, syms = {}, {}
    for i in context.ids:
        eq = graph.nodes[i]
        if eq.kind == "leaf" and i in names:
            exprs[i] = syms[i] = sp.Dummy(f"x{i}", real=True)
            continue
        if eq.kind != "op":
            v = np.asarray(vals[i], dtype=np.float64)
            exprs[i] = symbolic._number(sp, v.flat[0])
            continue
        args = [exprs[j] if eq.op.vjp(k) is not None else
                symbolic._number(sp, np.asarray(vals[j]).flat[0])
                for k, j in enumerate(eq.inputs)]
        exprs[i] = eq.op.sympy(sp, *args, **eq.params)
    return exprs[context.output_id], syms


@pytest.mark.parametrize("text,vars,grad", PROGRAMS)
def test_gathered_sums_are_the_plain_forms(text, vars, grad):
    context, session, derived = _derived(text, vars, grad)
    plain, syms = _plain_form(session, context)
    mine = derived.exprs[context.output_id].xreplace(
        {derived.leaf_sym[i]: s for i, s in syms.items()})
    assert mine == plain
    assert not derived.cuts


@pytest.mark.parametrize("text,vars,grad", PROGRAMS)
def test_a_sums_derivative_over_its_terms_is_sympys_diff(text, vars, grad):
    from gradcalc.checks.chain import Terms
    context, session, derived = _derived(text, vars, grad)
    out = derived.exprs[context.output_id]
    terms = Terms(session, {})
    for s in derived.leaf_sym.values():
        assert terms.diff(out, s) == session.sp.diff(out, s)


CUT_PROGRAMS = [
    # a chain deeper than the cut depth (but shallow enough for sympy's whole diff)
    ("\n".join(["y = x"] + [("y = sin(y)" if i % 2 else "y = y*1.01 + x") for i in range(40)]),
     dict(x=[0.3, -0.7, 1.2])),
    # kinks deep in the chain: relu and abs at 0 (x = 0), a max tie
    ("\n".join(["y = x"] + [("y = relu(y)*1.5" if i % 3 == 0 else "y = abs(y) + y"
                             if i % 3 == 1 else "y = maximum(y, x) - x*0.5")
                            for i in range(30)]),
     dict(x=[0.0, 0.25, -0.5])),
    # shared forms (each line doubles the tree) and two leaves
    ("\n".join(["y = x"] + ["y = sin(y)*y + z" for _ in range(12)]),
     dict(x=[0.1, 0.2], z=0.05)),
]


@pytest.mark.parametrize("text,vars", CUT_PROGRAMS)
def test_a_program_cut_into_pieces_checks_as_the_whole_form(text, vars, monkeypatch):
    r = gradcalc.compute(text, check="none", grad=1.0 if np.ndim(vars["x"]) == 0 else
                         [1.0] * len(vars["x"]), **vars)
    context = _context(r)
    assert symbolic.derive_elementwise(_session(), context).cuts   # it is cut

    def report(cut):
        monkeypatch.setattr(symbolic, "CUT_DEPTH", cut)
        r.graph.memo.clear()
        return symbolic.run_here(_context(r), symbolic.Budget(100))
    pieces, whole = report(symbolic.CUT_DEPTH), report(10**9)
    assert "skipped" not in pieces and "skipped" not in whole, (pieces, whole)
    for key in ("passed", "method", "elements_checked", "elements_total",
                "disagreements"):
        assert pieces.get(key) == whole.get(key), key

    def points(rep):
        return [(p["leaf"], p["index"], p["op"], p["convention"], p["pytorch"])
                for p in rep.get("nondifferentiable", [])]
    assert points(pieces) == points(whole)
    for p, w in zip(pieces.get("nondifferentiable", []), whole.get("nondifferentiable", [])):
        assert (p["range"] is None) == (w["range"] is None)
        if p["range"] is not None:
            np.testing.assert_allclose(p["range"], w["range"], rtol=1e-12)
    assert math.isclose(pieces["max_abs_error"], whole["max_abs_error"], rel_tol=1e-6,
                        abs_tol=1e-12)


def test_the_default_budget_is_what_the_scale_tests_run_under():
    assert Limits().symbolic_timeout in (None, symbolic.DEFAULT_TIMEOUT)


# ---------------------------------------------------------------- the tally's shortcuts
def _agree_plain(e, a, rtol, atol, slack):
    from gradcalc.checks.verdict import agree
    ok, diff, rel = agree(e, a, rtol, atol, None, slack)
    if not ok.all():
        return None
    return (float(diff.max()), float(rel.max())) if diff.size else (0.0, 0.0)


@pytest.mark.parametrize("case", ["equal", "close", "far", "nan", "inf", "zeros", "slack",
                                  "empty", "tiny"])
def test_blocked_all_close_is_agree(case):
    from gradcalc.checks.verdict import _all_close
    rng = np.random.default_rng(7)
    n = 200_003                                    # several blocks and a ragged last one
    e = rng.standard_normal(n) * 10.0 ** rng.integers(-5, 5, n)
    a = e.copy()
    slack = None
    if case == "close":
        a = e * (1 + 1e-9 * rng.standard_normal(n))
    elif case == "far":
        a[123_456] *= 1.001
    elif case == "nan":
        a[5] = e[5] = np.nan
    elif case == "inf":
        a[70_000] = e[70_000] = np.inf
    elif case == "zeros":
        e[:1000] = a[:1000] = 0.0
        a[1000:] = e[1000:] + 1e-12
    elif case == "slack":
        a = e + 1e-6
        slack = np.full(n, 2e-6)
    elif case == "empty":
        e, a = e[:0], a[:0]
    elif case == "tiny":
        e, a = e[:3], a[:3] * (1 + 1e-12)
    got = _all_close(e, a, 1e-7, 1e-10, slack, block=1 << 16)
    plain = _agree_plain(e, a, 1e-7, 1e-10, slack)
    if got is None:     # handed to the full comparison: a disagreement, or a non-finite value
        assert plain is None or not (np.isfinite(e).all() and np.isfinite(a).all())
    else:
        assert got == plain
    assert (got is None) == (case in ("far", "nan", "inf"))


JACOBIAN_PROGRAMS = [          # elementwise programs whose Jacobians are compared
    (["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1.0,0.0001"]),
    (["relu(x) + abs(y) * x", "x=-1,0,2", "y=0", "-g", "1,1,1"]),          # kinks, broadcast
    (["sqrt(x) + log(x)", "x=0,1,-1", "-g", "1,1,1"]),                      # inf, NaN
    (["maximum(x, y) * exp(x)", "x=[[1,2],[3,4]]", "y=2", "-g", "ones(2,2)"]),
    (["x * 1e200 * y", "x=1e200,1", "y=1e200,2", "-g", "1,1"]),             # overflow
    (["tanh(x)", "x=0.5,1.5", "-g", "1,1", "--dtype", "float32"]),
]


@pytest.mark.parametrize("argv", JACOBIAN_PROGRAMS)
@pytest.mark.parametrize("broken", [False, True])
def test_jacobian_on_its_pattern_reports_as_the_dense_one(argv, broken, monkeypatch):
    from clirun import cli
    from gradcalc.checks import verdict
    from gradcalc.ops import OPS
    if broken:           # a wrong rule: disagreements are listed the same way too
        for name in ("add", "mul", "tanh", "relu", "sqrt"):
            rules = OPS[name].vjps
            monkeypatch.setattr(OPS[name], "vjps", tuple(
                (lambda r: lambda g, *rest, **kw: r(g, *rest, **kw) * 1.5)(r)
                for r in rules))

    def report():
        r = cli(argv + ["--json", "--jacobian", "--check", "symbolic"])
        return r.json()["checks"]["symbolic"]
    fast = report()
    monkeypatch.setattr(verdict, "off_pattern_zero", lambda J, on: False)
    assert report() == fast


# ---------------------------------------------------------------- where the check runs
def test_a_check_with_its_derivatives_at_hand_reports_as_in_the_worker(monkeypatch):
    """The second check of one program finds every derivative in the program's memo and
    runs in the caller's thread: the same report as the first, which derived them in the
    worker thread; its budget still ends it (reported as such)."""
    import threading
    kw = dict(a=[1.0, 2.0, 3.0], b=[3.0, 4.0, 5.0], c=[6.0, 0.0, -8.0], grad=[0.1, 1.0, 1e-4])
    text = "3*a + 2*b*b + log(c) + relu(a - 2)"
    where = []
    real = symbolic.run_here

    def spy(context, budget):
        where.append(threading.current_thread() is threading.main_thread())
        return real(context, budget)
    monkeypatch.setattr(symbolic, "run_here", spy)
    first = gradcalc.compute(text, **kw).checks["symbolic"]
    second = gradcalc.compute(text, **kw).checks["symbolic"]
    assert where == [False, True]
    assert second == first
    assert first["nondifferentiable"] and first["passed"] is True
    r = gradcalc.compute(text, check="none", **kw)
    late = symbolic.check(Context(graph=r.graph, values=r.values, output_id=r.output_id,
                                  cotangent=r.cotangent, wrt=tuple(r.wrt),
                                  grads=dict(r.grads), jacobian=r.jacobian, dtype=r.dtype,
                                  limits=Limits(symbolic_timeout=1e-9)))
    assert where[-1] is True
    assert late == {
        "passed": None, "skipped": "the symbolic check ran out of its time budget of 1e-09 s "
                                   "(--symbolic-timeout)"}


def _child_check(q):
    r = gradcalc.compute("sin(x)*x + 2", x=[1.0, 2.0], grad=1)
    q.put(r.checks["symbolic"]["passed"])


@pytest.mark.skipif(not hasattr(__import__("os"), "register_at_fork"), reason="no fork")
def test_a_forked_child_does_not_wait_for_its_parents_worker():
    """The worker thread kept for the next check exists in the parent only: a child forked
    while it idles starts its own (it would wait forever for a thread that is not there)."""
    import multiprocessing
    gradcalc.compute("exp(x)*x + 3", x=[1.0, 2.0], grad=1)   # derived in a worker, now idle
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_check, args=(q,))
    p.start()
    p.join(120)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive and q.get(timeout=5) is True
