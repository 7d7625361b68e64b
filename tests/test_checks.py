"""The cross-checks (issue 4): symbolic (sympy differentiates the op table's forward forms)
and numeric (central differences) against autograd's grads and Jacobian.

- every sample of every op in the table passes both checks, in float64 and float32;
- a wrong VJP rule (monkeypatched) makes both checks fail, and the CLI exit with status 1:
  the checks can fail;
- at kinks (relu at 0, ties, clamp at a bound, sqrt at 0, ...) the point is reported with
  PyTorch's value and each method's, and the check passes; a value outside the one-sided
  range there still fails;
- the seed example shows the derivatives 3, 4*b, 1/c; tolerances, the time budget and the
  caps behave as documented; sympy is imported only when a symbolic check runs.
"""
from __future__ import annotations

import math

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from clirun import cli as run_cli

import gradcalc
from gradcalc.checks import mixed
from gradcalc.compile import Compiler
from gradcalc.errors import Limits
from gradcalc.ops import OPS
from gradcalc.parser import parse_program

from gradcalc.errors import Limits as _Limits  # noqa: E402
LIMITS = _Limits()      # the edge: tests build the limits, the library takes them

SEED = ["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1.0,0.0001"]


def strict_json(text):
    def reject(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=reject)


def cli(*argv):
    """`gradcalc ARGV --json` in-process, through the shared runner (tests/clirun.py): (exit
    status, parsed JSON). In-process, so that a monkeypatched rule is the one that runs."""
    r = run_cli([str(a) for a in argv] + ["--json"])
    return r.status, r.json()


def sample_inputs(expr, shapes, domain, seed=1):
    rng = np.random.default_rng(seed)
    lo, hi = domain
    vars = {n: rng.uniform(lo, hi, size=s) for n, s in shapes.items()}
    graph = Compiler(expr, vars, limits=LIMITS).program(parse_program(expr, LIMITS.max_depth))
    oshape = graph.nodes[graph.output].shape
    grad = rng.uniform(-1.0, 1.0, size=oshape) if oshape else None
    return vars, grad


SAMPLES = [(name, s) for name, op in sorted(OPS.items()) for s in op.samples]


# ---------------------------------------------------------------- every op, both checks
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,sample", SAMPLES, ids=[f"{n}:{s[0]}" for n, s in SAMPLES])
def test_every_op_sample_passes_both_checks(name, sample, dtype):
    expr, shapes, domain = sample
    vars, grad = sample_inputs(expr, shapes, domain)
    r = gradcalc.compute(expr, grad=grad, check="all", dtype=dtype, **vars)
    sym, num = r.checks["symbolic"], r.checks["numeric"]
    assert sym["passed"] is True, sym
    assert num["passed"] is True, num
    # inside the sample domains nothing is at a kink, and every element was checked
    assert "nondifferentiable" not in sym and "nondifferentiable" not in num
    assert sym["elements_checked"] == sym["elements_total"] > 0
    assert sym["jacobian_entries_checked"] == sym["jacobian_entries_total"]
    assert sym["max_rel_error"] <= sym["rtol"] or sym["max_abs_error"] <= sym["atol"] * 10


# ---------------------------------------------------------------- checks can fail
def _broken(rule):
    def wrong(g, ans, *args, **params):
        v = rule(g, ans, *args, **params)
        return None if v is None else 1.5 * np.asarray(v)
    return wrong


# ops whose sample cannot show a scaled rule: sign's rule is 0 everywhere
_UNBREAKABLE = {"sign"}
BREAKABLE = [(n, s) for n, s in SAMPLES
             if OPS[n].family != "constructor" and n not in _UNBREAKABLE
             and OPS[n].vjp(0) is not None and s == OPS[n].samples[0]]


@pytest.mark.parametrize("name,sample", BREAKABLE, ids=[n for n, _ in BREAKABLE])
def test_a_wrong_rule_fails_both_checks(name, sample, monkeypatch):
    """The rule of the op's first input, scaled by 1.5, must be caught by each check."""
    op = OPS[name]
    if callable(op.vjps):
        factory = op.vjps
        monkeypatch.setattr(op, "vjps", lambda i: _broken(factory(i)) if i == 0 else factory(i))
    else:
        monkeypatch.setattr(op, "vjps", (_broken(op.vjps[0]),) + tuple(op.vjps[1:]))
    expr, shapes, domain = sample
    vars, grad = sample_inputs(expr, shapes, domain)
    r = gradcalc.compute(expr, grad=grad, check="all", **vars)
    for kind in ("symbolic", "numeric"):
        c = r.checks[kind]
        assert c["passed"] is False, (kind, c)
        assert c["disagreements"], c
    assert r.passed is False


def test_a_wrong_rule_exits_1_through_the_cli(monkeypatch):
    rule = OPS["mul"].vjps
    monkeypatch.setattr(OPS["mul"], "vjps", (_broken(rule[0]), rule[1]))
    code, obj = cli(*SEED, "--check", "all")
    assert code == 1
    sym, num = obj["checks"]["symbolic"], obj["checks"]["numeric"]
    assert sym["passed"] is False and num["passed"] is False
    # 3*a is mul(3, a): a's grad goes through the intact second rule; 2*b*b is
    # mul(mul(2, b), b): the path through the first input is 1.5 times too large, so b's
    # grad is (1.5*2 + 2) * b * v = 5*b*v instead of 4*b*v: 1.5 instead of 1.2 at b = 3
    bad = {(d["leaf"], tuple(d["index"])): d for d in sym["disagreements"] if d["in"] == "grad"}
    assert {leaf for leaf, _ in bad} == {"b"}
    assert bad[("b", (0,))]["autograd"] == pytest.approx(1.5)
    assert bad[("b", (0,))]["symbolic"] == pytest.approx(1.2)
    # the default check is the symbolic one: it alone already fails the run
    code, obj = cli(*SEED)
    assert code == 1 and list(obj["checks"]) == ["symbolic"]


def test_a_wrong_rule_in_a_program_that_mixes_elements(monkeypatch):
    rule = OPS["matmul"].vjps
    monkeypatch.setattr(OPS["matmul"], "vjps", (rule[0], _broken(rule[1])))
    code, obj = cli("-f", "samples/chinese_logistic_layer.grad", "--check", "all")
    assert code == 1
    for kind in ("symbolic", "numeric"):
        c = obj["checks"][kind]
        assert c["passed"] is False
        assert {d["leaf"] for d in c["disagreements"]} == {"w"}


def test_tolerances_are_honoured(monkeypatch):
    """A rule off by one part in a million fails the default symbolic tolerance (1e-7) and
    passes with --rtol 1e-5; the numeric check's default (1e-5) lets it through."""
    rule = OPS["log"].vjps[0]
    monkeypatch.setattr(OPS["log"], "vjps",
                        (lambda g, ans, x: rule(g, ans, x) * (1 + 1e-6),))
    code, obj = cli(*SEED, "--check", "all")
    assert code == 1
    assert obj["checks"]["symbolic"]["passed"] is False
    assert obj["checks"]["numeric"]["passed"] is True
    assert obj["checks"]["symbolic"]["max_rel_error"] == pytest.approx(1e-6, rel=1e-3)
    code, obj = cli(*SEED, "--check", "symbolic", "--rtol", "1e-5")
    assert code == 0 and obj["checks"]["symbolic"]["rtol"] == 1e-5
    # --atol alone: the largest error is 1e-6 / 6 ~ 1.7e-7, in the Jacobian entry dy0/dc0
    code, obj = cli(*SEED, "--check", "symbolic", "--rtol", "0", "--atol", "1e-6")
    assert code == 0, obj["checks"]
    code, obj = cli(*SEED, "--check", "symbolic", "--rtol", "0", "--atol", "1e-8")
    assert code == 1


# ---------------------------------------------------------------- the seed example
def test_seed_example_derivatives_and_verdict():
    code, obj = cli(*SEED)
    assert code == 0
    sym = obj["checks"]["symbolic"]
    assert sym["passed"] is True
    assert sym["derivatives"] == {"a": "3", "b": "4*b", "c": "1/c"}
    assert sym["method"] == "elementwise"
    assert sym["max_abs_error"] <= 1e-15
    assert sym["elements_checked"] == sym["elements_total"] == 9
    assert sym["jacobian_entries_checked"] == 27


def test_every_sample_passes_its_checks_and_the_symbolic_one():
    """Each sample as it stands (the default check is symbolic; a sample's #: line may ask
    for another) and with the symbolic check: all pass, every element checked."""
    import glob
    for path in sorted(glob.glob("samples/*.grad")):
        code, obj = cli("-f", path)
        assert code == 0, path
        assert all(c["passed"] is True for c in obj["checks"].values()), (path, obj["checks"])
        if "--check" not in open(path).read():
            assert list(obj["checks"]) == ["symbolic"], path
        code, obj = cli("-f", path, "--check", "symbolic")
        sym = obj["checks"]["symbolic"]
        assert code == 0 and sym["passed"] is True, (path, sym)
        assert sym["elements_checked"] == sym["elements_total"], path


@pytest.mark.parametrize("expr,vars,grad,expected", [
    ("sin(x)*y", {"x": 0.5, "y": 2.0}, None, {"x": "y*cos(x)", "y": "sin(x)"}),
    ("relu(x)", {"x": [1.0, 2.0]}, 1, {"x": "Heaviside(x)"}),
    ("log10(x)", {"x": [1.0, 2.0]}, 1, {"x": "1/(x*log(10))"}),
    ("x * 0.1", {"x": [1.0, 2.0]}, 1, {"x": "0.1"}),
    ("softplus(x, beta=2)", {"x": [1.0]}, 1,
     {"x": "Piecewise((1, x > 10), (exp(2*x)/(exp(2*x) + 1), True))"}),
    # a leaf the output does not reach: its derivative is 0
    ("y = 2*x; y", {"x": 1.0, "z": 3.0}, None, {"x": "2", "z": "0"}),
    # a leaf named like a sympy constant is still the user's variable
    ("E*E + I", {"E": 3.0, "I": 1.0}, None, {"E": "2*E", "I": "1"}),
    # per-element, every element a symbol, scalar output and leaf: one formula
    ("sum(x ** y)", {"x": [1.0, 2.0], "y": 3.0}, None,
     {"x": None, "y": "x[0]**y*log(x[0]) + x[1]**y*log(x[1])"}),
])
def test_derivative_formulas(expr, vars, grad, expected):
    r = gradcalc.compute(expr, grad=grad, **vars)
    sym = r.checks["symbolic"]
    assert sym["passed"] is True, sym
    assert sym["derivatives"] == expected


def test_derivative_of_a_detached_input_is_not_taken():
    """detach(x) is a constant to both checks, as to autograd: d(detach(x)*x)/dx = x."""
    r = gradcalc.compute("detach(x) * x", x=[1.5, -2.0], grad=1, check="all")
    assert r.grads["x"].tolist() == [1.5, -2.0]
    assert r.checks["symbolic"]["passed"] is True
    assert r.checks["numeric"]["passed"] is True
    assert r.checks["symbolic"]["derivatives"] == {"x": None}   # involves the array constant


# ---------------------------------------------------------------- kinks
def _entries(check):
    return {(e["leaf"], tuple(e["index"])): e for e in check.get("nondifferentiable", [])}


@pytest.mark.parametrize("expr,vars,grad,leaf,index,op,pytorch,sym", [
    # relu'(0) = 0 in PyTorch; sympy's Heaviside(0) = 1/2
    ("relu(x)", {"x": [-1.0, 0.0, 1.0]}, 1, "x", (1,), "relu", 0.0, 0.5),
    # abs'(0) = 0 = sign(0)
    ("abs(x)", {"x": [-1.0, 0.0, 1.0]}, 1, "x", (1,), "abs", 0.0, 0.0),
    # a full max splits the gradient evenly over ties
    ("max(x)", {"x": [1.0, 3.0, 3.0]}, None, "x", (2,), "max", 0.5, 0.5),
    ("min(x)", {"x": [2.0, 2.0, 2.0]}, None, "x", (0,), "min", 1 / 3, 0.5),
    # max(dim=) gives all of it to the first maximal index
    ("max(x, dim=0)", {"x": [1.0, 3.0, 3.0]}, None, "x", (1,), "max", 1.0, 0.5),
    # maximum/minimum ties: half to each side
    ("maximum(x, y)", {"x": [1.0, 2.0], "y": [1.0, 3.0]}, 1, "y", (0,), "maximum", 0.5, 0.5),
    # clamp passes gradient 1 at its bounds
    ("clamp(x, min=0, max=1)", {"x": [0.0, 0.5, 1.0]}, 1, "x", (2,), "clamp", 1.0, 0.5),
    # sqrt'(0) = +inf in both
    ("sqrt(x)", {"x": [0.0, 1.0]}, 1, "x", (0,), "sqrt", "Infinity", "Infinity"),
    # x**y at (0, 0): both partials 0 in PyTorch; sympy's y*x**y/x is NaN there
    ("pow(x, y)", {"x": 0.0, "y": 0.0}, None, "x", (), "pow", 0.0, "NaN"),
    ("pow(x, y)", {"x": 0.0, "y": 0.0}, None, "y", (), "pow", 0.0, "-Infinity"),
    # norm at the zero vector: gradient 0; x/sqrt(sum x^2) is 0/0
    ("norm(x)", {"x": [0.0, 0.0]}, None, "x", (0,), "norm", 0.0, "NaN"),
    ("atan2(y, x)", {"x": 0.0, "y": 0.0}, None, "y", (), "atan2", 0.0, "NaN"),
    # sign' = 0 everywhere; sympy's 2*DiracDelta(0) is undefined
    ("sign(x)", {"x": [0.0, 1.0]}, 1, "x", (0,), "sign", 0.0, "NaN"),
    # in a program that mixes elements
    ("sum(relu(x))", {"x": [0.0, 1.0]}, None, "x", (0,), "relu", 0.0, 0.5),
    ("norm(x, p=1)", {"x": [0.0, 1.0]}, None, "x", (0,), "norm", 0.0, 0.0),
    # the two ops added as one table entry each: their conventions come from the entry
    ("leaky_relu(x, negative_slope=0.2)", {"x": [0.0, 1.0]}, 1, "x", (0,), "leaky_relu", 0.2, 0.2),
    ("elu(x, alpha=0.5)", {"x": [0.0, -1.0]}, 1, "x", (0,), "elu", 0.5, 0.5),
])
def test_kinks_are_reported_and_pass(expr, vars, grad, leaf, index, op, pytorch, sym):
    r = gradcalc.compute(expr, grad=grad, check="all", **vars)
    obj = json.loads(json.dumps(r.to_json(), allow_nan=False))
    for kind in ("symbolic", "numeric"):
        c = obj["checks"][kind]
        assert c["passed"] is True, (kind, c)
        assert "disagreements" not in c
    entry = _entries(obj["checks"]["symbolic"])[(leaf, index)]
    assert entry["op"] == op
    assert entry["convention"]
    assert entry["pytorch"] == (pytest.approx(pytorch) if isinstance(pytorch, float) else pytorch)
    assert entry["symbolic"] == (pytest.approx(sym) if isinstance(sym, float) else sym)
    assert r.passed


def test_a_kink_is_named_only_for_the_leaves_on_its_path():
    """Output element 0 sits at a kink of both leaky_relu (x = 0) and elu (y = 0): each leaf's
    entry names the op on its own path, with that op's convention."""
    r = gradcalc.compute("leaky_relu(x, negative_slope=0.2) + elu(y, alpha=0.5)",
                         x=[0.0, 1.0], y=[0.0, -1.0], grad=1, check="symbolic")
    entries = _entries(r.checks["symbolic"])
    assert entries[("x", (0,))]["op"] == "leaky_relu"
    assert entries[("y", (0,))]["op"] == "elu"
    assert entries[("y", (0,))]["convention"].startswith("elu'(0) = alpha")


def test_kink_ranges_are_the_one_sided_values():
    r = gradcalc.compute("relu(x)", x=[0.0], grad=1, check="all")
    sym = _entries(r.checks["symbolic"])[("x", (0,))]
    num = _entries(r.checks["numeric"])[("x", (0,))]
    assert sym["range"] == [0.0, 1.0]
    assert num["range"] == [pytest.approx(0.0), pytest.approx(1.0)]
    assert num["numeric"] == pytest.approx(0.5)      # the central difference


def test_a_wrong_value_at_a_kink_is_not_excused(monkeypatch):
    """relu's rule giving 2 at 0 is outside [0, 1], the one-sided range: both checks fail,
    and only the kink entry disagrees."""
    monkeypatch.setattr(OPS["relu"], "vjps",
                        (lambda g, ans, x: g * np.where(x == 0, 2.0, (ans > 0) * 1.0),))
    code, obj = cli("relu(x)", "x=-1,0,1", "-g", "1", "--check", "all")
    assert code == 1
    for kind in ("symbolic", "numeric"):
        c = obj["checks"][kind]
        assert c["passed"] is False
        assert {(d["leaf"], tuple(d["index"])) for d in c["disagreements"]
                if d["in"] == "grad"} == {("x", (1,))}


def test_no_kink_is_reported_off_the_kinks():
    r = gradcalc.compute("relu(x) + abs(x) + maximum(x, 0.5)", x=[-1.0, 0.25, 2.0], grad=1,
                         check="all")
    for c in r.checks.values():
        assert c["passed"] is True and "nondifferentiable" not in c


def test_a_jacobian_row_may_carry_zero_times_inf():
    """Rows of the Jacobian are VJPs with basis vectors: with sqrt'(0) = inf, the entry
    J[1, 0] is 0 * inf = NaN, as torch.autograd.functional.jacobian gives; both checks
    accept it (the derivative is 0 there, the product is IEEE's)."""
    r = gradcalc.compute("sqrt(x)", x=[0.0, 1.0], grad=1, check="all")
    J = r.jacobian["x"]
    assert np.isinf(J[0, 0]) and np.isnan(J[1, 0])
    assert r.checks["symbolic"]["passed"] is True and r.checks["numeric"]["passed"] is True


@pytest.mark.parametrize("expr,vars,grad,expected_grads", [
    # a transpose inside a program that mixes elements keeps its symbolic entries
    ("sum(M.T @ v)", {"M": [[1.0, 2.0], [3.0, 4.0]], "v": [1.0, -1.0]}, None,
     {"M": [[1.0, 1.0], [-1.0, -1.0]], "v": [3.0, 7.0]}),
    # three identical entries tie in a max: the function is that entry, d/dx_i = 1
    ("max(x * 0 + sum(x))", {"x": [1.0, 2.0, 3.0]}, None, {"x": [1.0, 1.0, 1.0]}),
    # PyTorch's conventions compose at stacked kinks: 0.75 where the function is x
    ("minimum(x, maximum(relu(x), x))", {"x": [0.0, 1.0]}, 1, {"x": [0.75, 1.0]}),
    # the function is NaN where log's argument is negative: no derivative to compare there
    ("exp(tanh(log(x)))", {"x": [-1.0, 2.0]}, 1, None),
    # detach(z) * sqrt(z) at z = 0: autograd's 0 * inf is NaN, as PyTorch's
    ("detach(x) * sqrt(z)", {"x": [0.0, 1.0], "z": [0.0, 4.0]}, 1, None),
    # sympy cannot differentiate sign(u) for u it cannot prove real; sign's form is
    # H(u) - H(-u)
    ("sign(log(x))", {"x": [0.5, 2.0]}, 1, {"x": [0.0, 0.0]}),
    # an infinite intermediate (a clamp bound of -inf) is no tie
    ("clamp(erf(x), mean(log(z)), 1)", {"x": [0.0, 0.5], "z": [0.0, 1.0]}, 1, None),
])
def test_points_found_by_fuzzing_pass(expr, vars, grad, expected_grads):
    r = gradcalc.compute(expr, grad=grad, check="all", **vars)
    for kind, c in r.checks.items():
        assert c["passed"] is True, (kind, c)
    for name, g in (expected_grads or {}).items():
        assert r.grads[name].tolist() == g


# ---------------------------------------------------------------- budget, scale, imports
def test_timeout_reports_skipped_and_never_hangs():
    # each of 600 terms costs sympy milliseconds (sin's assumptions): about 2 s in all.
    # (40 lines of y = sin(y)*y + y, each doubling the tree, were beyond any budget until
    # the check cut deep forms into pieces: tests/test_symbolic_scale.py checks them)
    text = "x = [0.1, 0.2]\ny = " + " + ".join(f"sin({k}*x)" for k in range(1, 601)) + "\n"
    t = time.monotonic()
    r = gradcalc.compute(text, grad=1, limits=Limits(symbolic_timeout=0.5))
    elapsed = time.monotonic() - t
    sym = r.checks["symbolic"]
    assert sym["passed"] is None
    assert "time budget of 0.5 s" in sym["skipped"]
    assert elapsed < 20                              # the budget ends it (a hang would not)
    assert r.passed is True                       # skipped is not a disagreement


def test_timeout_through_the_cli_keeps_exit_status_0():
    code, obj = cli(*SEED, "--symbolic-timeout", "0.000001")
    assert code == 0
    assert obj["checks"]["symbolic"] == {
        "passed": None,
        "skipped": "the symbolic check ran out of its time budget of 1e-06 s "
                   "(--symbolic-timeout)"}


def test_only_a_tick_ends_the_symbolic_check(monkeypatch):
    """Issue 14 item 8: nothing is thrown into the check's thread. A sympy form that spins
    for 1.5 s of CPU without a tick, under a budget of 0.2 s: the caller stops waiting and
    reports the check skipped, while the form runs to its end undisturbed and the thread
    then ends at its next tick, with nothing escaping it (an asynchronous exception would
    cut the loop short, or land after it)."""
    import threading
    state = {"done": False, "at_return": None}
    real = OPS["exp"].sympy

    def slow(sp, x):
        t = time.thread_time()
        while time.thread_time() - t < 1.5:
            pass
        state["done"] = True
        return real(sp, x)
    monkeypatch.setattr(OPS["exp"], "sympy", slow)
    escaped = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    r = gradcalc.compute("exp(x)", x=[1.0, 2.0], grad=1, limits=Limits(symbolic_timeout=0.2))
    state["at_return"] = state["done"]
    sym = r.checks["symbolic"]
    assert sym == {"passed": None, "skipped": "the symbolic check ran out of its time budget "
                                              "of 0.2 s (--symbolic-timeout)"}
    assert state["at_return"] is False            # the caller did not wait for the loop
    for t in threading.enumerate():
        if t.name == "gradcalc-symbolic":
            t.join(30)
            assert not t.is_alive()
    assert state["done"] is True and escaped == []


def test_symbolic_budget_counts_the_checks_own_cpu_time_not_the_load():
    """Issue 14 item 9: the budget is the check's own CPU time from when sympy is ready, so
    six checks at once beside two busy processes on this 2-core machine still pass within
    a budget of 1 s, though they take longer than that by the wall clock (a wall-clock
    budget counting sympy's import said "skipped" here). Four checks were enough load until
    a checked one-liner got faster: they then finished in 0.98 s."""
    hog = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(2)]
    try:
        t = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "gradcalc", *SEED, "--json",
                                   "--symbolic-timeout", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(6)]
        outs = [p.communicate(timeout=120) for p in procs]
        elapsed = time.monotonic() - t
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert elapsed > 1.0                          # the load is real
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and err == b"", err
        sym = strict_json(out.decode())["checks"]["symbolic"]
        assert sym["passed"] is True, sym
        assert sym["derivatives"] == {"a": "3", "b": "4*b", "c": "1/c"}


def test_sympy_is_imported_only_for_a_symbolic_check():
    code = ("import sys, gradcalc\n"
            "assert 'sympy' not in sys.modules\n"
            "r = gradcalc.compute('3*a + log(b)', a=[1, 2], b=[3, 4], grad=1, check='numeric')\n"
            "assert r.checks['numeric']['passed'] is True\n"
            "r = gradcalc.compute('3*a + log(b)', a=[1, 2], b=[3, 4], grad=1, check='none')\n"
            "assert 'sympy' not in sys.modules, 'imported'\n"
            "r = gradcalc.compute('3*a + log(b)', a=[1, 2], b=[3, 4], grad=1)\n"
            "assert 'sympy' in sys.modules and r.checks['symbolic']['passed'] is True\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_elementwise_programs_are_checked_in_full_at_any_size():
    n = 200_000
    rng = np.random.default_rng(0)
    a, b, c = (rng.uniform(0.5, 2.0, n) for _ in range(3))
    r = gradcalc.compute("3*a + 2*b*b + log(c)", a=a, b=b, c=c, grad=rng.uniform(-1, 1, n))
    sym = r.checks["symbolic"]
    assert sym["passed"] is True
    assert sym["method"] == "elementwise"
    assert sym["elements_checked"] == sym["elements_total"] == 3 * n
    assert sym["derivatives"] == {"a": "3", "b": "4*b", "c": "1/c"}
    assert sym["jacobian_entries_checked"] is None          # the Jacobian is too big to compute


def test_broadcast_leaf_is_checked_in_full():
    r = gradcalc.compute("x * b + b", x=np.ones((400, 3)), b=[1.0, 2.0, 3.0], grad=1)
    sym = r.checks["symbolic"]
    assert sym["passed"] is True and sym["derivatives"] == {"x": "b", "b": "x + 1"}
    assert r.grads["b"].tolist() == [800.0, 800.0, 800.0]


def test_per_element_path_samples_and_says_how_many():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (300, 20))
    w = rng.uniform(-1, 1, (20, 3))
    r = gradcalc.compute("mse_loss(x @ w, zeros(300, 3))", x=x, w=w)
    sym = r.checks["symbolic"]
    assert sym["passed"] is True
    assert sym["method"] == "per-element"
    assert 0 < sym["elements_checked"] < sym["elements_total"] == x.size + w.size
    assert sym["derivatives_taken"] <= mixed.MAX_DERIVATIVES
    assert sym["derivatives"] == {"x": None, "w": None}


def test_per_element_path_too_large_is_skipped_with_a_reason():
    r = gradcalc.compute("sum(softmax(x))", x=np.linspace(-1, 1, 5000))
    sym = r.checks["symbolic"]
    assert sym["passed"] is None
    assert "too large for the per-element symbolic check" in sym["skipped"]
    assert "--check numeric" in sym["skipped"]


def test_small_programs_that_mix_elements_are_checked_exactly():
    r = gradcalc.compute("softmax(x)", x=[1.0, 2.0, 3.0, 4.0], grad=[1, 0, 0, 0], check="all")
    sym = r.checks["symbolic"]
    assert sym["passed"] is True and sym["method"] == "per-element"
    assert sym["elements_checked"] == sym["elements_total"] == 4
    assert sym["jacobian_entries_checked"] == 16
    assert r.checks["numeric"]["passed"] is True


# ---------------------------------------------------------------- numeric specifics
def test_numeric_perturbs_a_whole_leaf_at_once_in_elementwise_programs():
    n = 100_000
    x = np.linspace(0.1, 2.0, n)
    r = gradcalc.compute("x * exp(x)", x=x, grad=1, check="numeric")
    num = r.checks["numeric"]
    assert num["passed"] is True
    assert num["elements_checked"] == n


def test_numeric_samples_elements_in_programs_that_mix_them():
    x = np.linspace(-1, 1, 5000)
    r = gradcalc.compute("sum(softmax(x) * x)", x=x, check="numeric")
    num = r.checks["numeric"]
    assert num["passed"] is True
    assert 0 < num["elements_checked"] < num["elements_total"] == 5000


def test_numeric_check_in_float32_uses_float64_differences():
    r = gradcalc.compute("sum(exp(x))", x=[1.0, 2.0], check="numeric", dtype="float32")
    num = r.checks["numeric"]
    assert num["passed"] is True and "nondifferentiable" not in num
    assert num["max_rel_error"] < 1e-6


def test_class_index_targets_are_not_perturbed_into_fractions():
    r = gradcalc.compute("cross_entropy(x, t)", x=[[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]],
                         t=[2.0, 0.0], check="all")
    assert r.checks["symbolic"]["passed"] is True
    num = r.checks["numeric"]
    assert num["passed"] is True
    assert [s["leaf"] for s in num["leaves_not_checked"]] == ["t"]


def test_reports_are_strict_json_even_with_infinite_errors(monkeypatch):
    monkeypatch.setattr(OPS["exp"], "vjps", (lambda g, ans, x: g * np.inf,))
    code, obj = cli("exp(x)", "x=1,2", "-g", "1", "--check", "all")
    assert code == 1
    assert obj["checks"]["symbolic"]["max_abs_error"] == "Infinity"
    assert obj["checks"]["numeric"]["max_abs_error"] == "Infinity"


# ---------------------------------------------------------------- references that round
OVERFLOW = ("float64 overflows in the derivative's formula here: the exact value (mpmath) "
            "and a float64 implementation's may differ")


def test_an_overflow_in_sympys_float_formula_is_refined_not_a_disagreement(monkeypatch):
    """Issue 14 item 13: `hypot(x, 3)` at 1e300: sympy's x/sqrt(x**2 + 9) is 0 in float64
    (x**2 overflows); refined in mpmath it is 1, torch's and autograd's value: verified. A
    rule off by 1.5 fails where float64 holds (x = 2); at 1e300 it is unverifiable."""
    code, obj = cli("hypot(x, 3)", "x=1e300")
    sym = obj["checks"]["symbolic"]
    assert code == 0 and sym["passed"] is True, sym
    assert obj["grads"]["x"] == 1.0 and sym["max_abs_error"] == 0.0
    assert "unverifiable" not in sym                 # the refined value agrees
    rule = OPS["hypot"].vjps
    monkeypatch.setattr(OPS["hypot"], "vjps", (_broken(rule[0]), rule[1]))
    code, obj = cli("hypot(x, 3)", "x=1e300,2", "-g", "1")
    sym = obj["checks"]["symbolic"]
    assert code == 1
    assert sym["disagreements"][0] == {"leaf": "x", "in": "grad", "index": [1],
                                       "autograd": pytest.approx(1.5 * 2 / 13 ** 0.5),
                                       "symbolic": pytest.approx(2 / 13 ** 0.5)}
    assert sym["unverifiable"] == [{"leaf": "x", "index": [0], "reason": OVERFLOW,
                                    "pytorch": 1.5, "symbolic": 1.0}]


def test_a_rule_that_cancels_as_torchs_does_is_unverifiable_not_a_disagreement(monkeypatch):
    """Issue 14 item 13's last false alarm: `sigmoid(x) * 1e300` at x = 40. torch's rule
    g * y * (1 - y) gives 0 (y rounds to 1); the exact derivative is 1e300 * e^-40 / (1 +
    e^-40)^2 = 4.25e282. Moving y by 4 ulps moves autograd's grad across it, so the entry is
    unverifiable, not a disagreement; a rule off by 1.5 still fails at x = 1."""
    from gradcalc.checks.rounding import ROUNDING
    code, obj = cli("sigmoid(x) * 1e300", "x=40")
    sym = obj["checks"]["symbolic"]
    assert code == 0 and sym["passed"] is True, sym
    assert obj["grads"]["x"] == 0.0
    assert sym["unverifiable"] == [{"leaf": "x", "index": [], "reason": ROUNDING, "pytorch": 0.0,
                                    "symbolic": pytest.approx(1e300 * math.exp(-40))}]
    monkeypatch.setattr(OPS["sigmoid"], "vjps", (_broken(OPS["sigmoid"].vjps[0]),))
    code, obj = cli("sigmoid(x) * 1e300", "x=40,1", "-g", "1,1")
    sym = obj["checks"]["symbolic"]
    assert code == 1
    assert [(d["in"], d["index"]) for d in sym["disagreements"]] == [("grad", [1]),
                                                                 ("jacobian", [1, 1])]


def test_logsumexp_at_the_largest_floats_is_unverifiable_not_a_disagreement(monkeypatch):
    """`logsumexp(x)` at [1e308, 1e308]: torch's grad exp(x - result) is [1, 1] (the result
    1e308 + log 2 rounds to 1e308); the exact derivative is [1/2, 1/2]. sympy's float
    formula overflows there, so the point is unverifiable. A wrong rule still fails at
    ordinary points of the same leaf."""
    code, obj = cli("logsumexp(x)", "x=1e308,1e308")
    sym = obj["checks"]["symbolic"]
    assert code == 0 and sym["passed"] is True, sym
    assert obj["grads"]["x"] == [1.0, 1.0]
    if "unverifiable" in sym:
        assert sym["unverifiable"] == [
            {"leaf": "x", "index": [k], "reason": OVERFLOW, "pytorch": 1.0, "symbolic": 0.5}
            for k in (0, 1)]
    else:           # sympy 1.12 evaluates the derivative there as NaN: listed, not failed
        assert [(e["index"], e["symbolic"]) for e in sym["nondifferentiable"]] == [
            ([0], "NaN"), ([1], "NaN")]
    monkeypatch.setattr(OPS["logsumexp"], "vjps",
                        tuple(_broken(r) for r in OPS["logsumexp"].vjps))
    code, obj = cli("logsumexp(x)", "x=1,2")
    sym = obj["checks"]["symbolic"]
    assert code == 1 and "unverifiable" not in sym
    assert {tuple(d["index"]) for d in sym["disagreements"] if d["in"] == "grad"} == {(0,), (1,)}


LOST = ("the finite difference is lost here: the input is not finite, or the function's "
        "rounding near the largest float hides the step")


def test_a_finite_difference_lost_near_the_largest_float_is_unverifiable(monkeypatch):
    """`1e308 + s`: f(s +- h) is 1e308 whatever h, so the difference says 0 for a slope of 1;
    the point is listed as unverifiable, and the check passes. A wrong add rule still fails
    where the difference can be taken (element 1)."""
    code, obj = cli("1e308 + s", "s=0.5", "--check", "numeric")
    num = obj["checks"]["numeric"]
    assert code == 0 and num["passed"] is True, num
    assert num["unverifiable"] == [{"leaf": "s", "index": [], "reason": LOST,
                                    "pytorch": 1.0, "numeric": 0.0}]
    monkeypatch.setattr(OPS["add"], "vjps", (_broken(OPS["add"].vjps[0]), OPS["add"].vjps[1]))
    code, obj = cli("c + s", "c=1e308,1", "s=0.5,0.5", "--check", "numeric", "-g", "1")
    num = obj["checks"]["numeric"]
    assert code == 1 and num["passed"] is False
    assert [(d["leaf"], d["in"], d["index"]) for d in num["disagreements"]] == [
        ("c", "grad", [1]), ("c", "jacobian", [1, 1])]
    assert [(u["leaf"], u["index"]) for u in num["unverifiable"]] == [("c", [0]), ("s", [0])]


def test_a_finite_difference_at_a_nan_input_is_unverifiable(monkeypatch):
    """`sign(x)` at NaN: torch's sign is 0 there and its gradient 0; no step can be taken
    from NaN, so the point is unverifiable, not a disagreement. A rule giving 1 still fails
    at the finite point."""
    code, obj = cli("sign(x)", "x=nan", "--check", "numeric")
    num = obj["checks"]["numeric"]
    assert code == 0 and num["passed"] is True, num
    assert num["unverifiable"] == [{"leaf": "x", "index": [], "reason": LOST,
                                    "pytorch": 0.0, "numeric": "NaN"}]
    monkeypatch.setattr(OPS["sign"], "vjps", (lambda g, ans, x: g * np.ones_like(x),))
    code, obj = cli("sign(x)", "x=nan,1", "--check", "numeric", "-g", "1")
    num = obj["checks"]["numeric"]
    assert code == 1
    assert [(d["in"], d["index"]) for d in num["disagreements"]] == [
        ("grad", [1]), ("jacobian", [1, 1])]
    assert [u["index"] for u in num["unverifiable"]] == [[0]]
