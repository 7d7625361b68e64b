"""The backward pass as a program (engine/traced.py) and the derivatives built on it.

Every sample of the op table: the traced backward program evaluates to the direct backward's
numbers bit for bit. Properties: HVP == Hessian·u, symmetric Hessians, JVP == J·u from the
batched Jacobian, Taylor order 1 == JVP, and the issue's examples with numbers by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from gradcalc.compile import Compiler
from gradcalc.engine import higher, plain, traced
from gradcalc.errors import GradcalcError
from gradcalc.ops import OPS
from gradcalc.parser import parse_program

from gradcalc.errors import Limits as _Limits  # noqa: E402
LIMITS = _Limits()      # the edge: tests build the limits, the library takes them

SAMPLES = [(name, s) for name, op in sorted(OPS.items()) for s in op.samples]
UNTRACEABLE: set = set()      # samples whose rules the tracer cannot record (none today)


def comp(expr, **bindings):
    return Compiler(expr, {k: np.asarray(v, float) for k, v in bindings.items()}, limits=LIMITS).program(
        parse_program(expr, LIMITS.max_depth))


def sample_graph(sample, seed=0):
    expr, shapes, (lo, hi) = sample
    rng = np.random.default_rng(seed)
    b = {n: rng.uniform(lo, hi, size=s) for n, s in shapes.items()}
    return Compiler(expr, b, limits=LIMITS).program(parse_program(expr, LIMITS.max_depth))


@pytest.mark.parametrize("name,sample", SAMPLES, ids=[s[0] for _, s in SAMPLES])
def test_traced_backward_is_the_direct_backward(name, sample):
    g = sample_graph(sample)
    values = plain.forward(g)
    ct = np.linspace(-1.0, 2.0, g.nodes[g.output].size).reshape(g.nodes[g.output].shape)
    want = plain.backward(g, values, ct)
    if sample[0] in UNTRACEABLE:
        with pytest.raises(GradcalcError, match="not available"):
            traced.Traced(g, LIMITS).backward(ct)
        return
    t = traced.Traced(g, LIMITS)
    grads = t.backward(ct)
    for i, w in want.items():
        got = t.b.lift(grads[g.nodes[i].name])
        assert np.array_equal(got.value, w, equal_nan=True)
        # and the recorded program, run again by the plain engine, gives them too
        prog, _ = t.program(got)
        assert np.array_equal(plain.forward(prog)[prog.output], w, equal_nan=True)


def _smooth(name, sample):
    op = OPS[name]
    return op.family != "constructor" and sample[0] not in UNTRACEABLE and not any(
        k in sample[0] for k in ("<", ">", "==", "!=", "where(c"))


@pytest.mark.parametrize("name,sample", [ns for ns in SAMPLES if _smooth(*ns)],
                         ids=[s[0] for n, s in SAMPLES if _smooth(n, s)])
def test_hessian_properties(name, sample):
    g = sample_graph(sample, seed=1)
    leaves = list(g.leaves)
    out = g.nodes[g.output]
    rng = np.random.default_rng(2)
    v = rng.normal(size=out.shape)
    u = {n: rng.normal(size=g.nodes[i].shape) for n, i in g.leaves.items()}
    H = {a: {b: np.asarray(h) for b, h in row.items()}       # a DiagonalBlock, densely
         for a, row in higher.hessian(g, g.output, v, leaves, LIMITS).items()}
    hu = higher.hvp(g, g.output, v, u, leaves, LIMITS)
    for a in leaves:
        sa = g.nodes[g.leaves[a]].shape
        na = math.prod(sa)
        want = sum(H[a][b].reshape(na, -1) @ u[b].reshape(-1) for b in leaves)
        np.testing.assert_allclose(hu[a].reshape(-1), want, rtol=1e-9, atol=1e-9)
        for b in leaves:
            sb = g.nodes[g.leaves[b]].shape
            np.testing.assert_allclose(H[a][b].reshape(na, -1),
                                       H[b][a].reshape(-1, na).T, rtol=1e-7, atol=1e-9)
            assert H[a][b].shape == sa + sb
    # the HVP is the derivative of the gradient along u (central differences), except
    # through detach: torch's double backward sees a constant there, differences do not
    if name == "detach":
        assert all(not np.any(hu[a]) for a in leaves)
        return
    h = 1e-6
    grads = []
    for sgn in (1, -1):
        vals = {i: g.nodes[i].value + sgn * h * u[n] for n, i in g.leaves.items()}
        fv = plain.forward(g, vals)
        grads.append(plain.backward(g, fv, v))
    for a, i in g.leaves.items():
        fd = (grads[0].get(i, 0.0) - grads[1].get(i, 0.0)) / (2 * h)
        np.testing.assert_allclose(hu[a], fd, rtol=1e-4, atol=1e-5)
    # J·u from the batched Jacobian, and Taylor's first order is that J·u
    values = plain.forward(g)
    J = plain.jacobian(g, values, g.output, list(g.leaves.values()))
    ju = sum(J[i].reshape(out.size, -1) @ u[n].reshape(-1) for n, i in g.leaves.items())
    got = higher.jvp(g, g.output, u, LIMITS)
    np.testing.assert_allclose(got.reshape(-1), ju, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(higher.taylor(g, g.output, u, 1, LIMITS)[0], got)


def test_taylor_of_sin_exp_to_order_8():
    # y = sin(x) e^x: y^(k) = 2^(k/2) e^x sin(x + k pi/4)
    g = comp("sin(x)*exp(x)", x=0.5)
    got = higher.taylor(g, g.output, {"x": np.ones(())}, 8, LIMITS)
    want = [2 ** (k / 2) * math.exp(0.5) * math.sin(0.5 + k * math.pi / 4) for k in range(1, 9)]
    np.testing.assert_allclose([float(v) for v in got], want, rtol=1e-12)


def test_taylor_of_a_number_over_zero_is_torchs_reciprocal_times_the_number():
    # torch 2.13's nested jacfwd of 2/x (reciprocal(x) * 2) along u = [1, -0.5, 2] at
    # x = [0, 2, -0.5]: reciprocal's tangent -u * (r * r) negates u by a real op, so at 0
    # the zeros of the next order meet r * r = inf: NaN from order 2 (gradcalc's transposed
    # div gave +-inf there)
    g = comp("2/x", x=[0.0, 2.0, -0.5])
    got = higher.taylor(g, g.output, {"x": np.array([1.0, -0.5, 2.0])}, 4, LIMITS)
    want = [[-math.inf, 0.25, -16.0], [math.nan, 0.125, -128.0],
            [math.nan, 0.09375, -1536.0], [math.nan, 0.09375, -24576.0]]
    for k, (a, b) in enumerate(zip(got, want), 1):
        np.testing.assert_array_equal(a, b, err_msg=f"order {k}")


def test_hessian_of_sum_cubes():
    g = comp("sum(x**3)", x=[1, 2])
    H = higher.hessian(g, g.output, np.ones(()), ["x"], LIMITS)
    np.testing.assert_array_equal(H["x"]["x"], [[6.0, 0.0], [0.0, 12.0]])


def test_hessian_rows_never_visit_another_leafs_gradient():
    """torch's hessian takes each row as the gradient of one element of one leaf's gradient:
    x's rows never reach y's gradient 0.5/sqrt(y), infinite at y = 0, so H[x, y] is 0 (a
    shared backward would send x's rows a zero cotangent through it: 0 * inf = NaN).
    torch 2.13: hessian(lambda x, y: (x*x).sum() + y.sqrt(), ([1.5, -2.0], 0.0))."""
    g = comp("sum(x*x) + sqrt(y)", x=[1.5, -2.0], y=0.0)
    H = higher.hessian(g, g.output, np.ones(()), ["x", "y"], LIMITS)
    np.testing.assert_array_equal(H["x"]["x"], [[2.0, 0.0], [0.0, 2.0]])
    np.testing.assert_array_equal(H["x"]["y"], [0.0, 0.0])
    np.testing.assert_array_equal(H["y"]["x"], [0.0, 0.0])
    assert H["y"]["y"] == -np.inf


def test_seed_example_tangent_and_hvp():
    g = comp("3*a + 2*b*b + log(c)", a=[1, 2, 3], b=[3, 4, 5], c=[6, 7, 8])
    ones = {n: np.ones(3) for n in "abc"}
    # J·u with u = 1 everywhere: 3 + 4b + 1/c
    np.testing.assert_allclose(higher.jvp(g, g.output, ones, LIMITS),
                               [3 + 12 + 1 / 6, 3 + 16 + 1 / 7, 3 + 20 + 1 / 8], rtol=1e-15)
    v = np.array([0.1, 1.0, 1e-4])
    hu = higher.hvp(g, g.output, v, ones, list("abc"), LIMITS)
    np.testing.assert_array_equal(hu["a"], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(hu["b"], 4 * v, rtol=1e-15)
    np.testing.assert_allclose(hu["c"], -v / np.array([36.0, 49.0, 64.0]), rtol=1e-15)


@pytest.mark.parametrize("expr,x,want", [
    # torch's double backward at kinks: relu'' = 0, abs'' = 0, clamp'' = 0 (selects, not
    # products, in the first derivative's rule)
    ("sum(relu(x)**2)", [-1.0, 0.0, 2.0], [0.0, 0.0, 2.0]),
    ("sum(abs(x)*x)", [-1.0, 0.0, 2.0], [-2.0, 0.0, 2.0]),
    ("sum(clamp(x, -1, 1)**3)", [-2.0, 0.5, 1.0], [0.0, 3.0, 6.0]),
    ("sum(where(x > 0, x**3, -x))", [-1.0, 0.0, 2.0], [0.0, 0.0, 12.0]),
])
def test_second_derivative_at_kinks(expr, x, want):
    g = comp(expr, x=x)
    H = higher.hessian(g, g.output, np.ones(()), ["x"], LIMITS)
    np.testing.assert_array_equal(np.diagonal(H["x"]["x"]), want)


def test_hessian_over_the_memory_limit_is_refused_before_allocating():
    from gradcalc.errors import Limits
    g = comp("sum(x)*sum(x)", x=np.ones(1000))       # dense: 8 MB
    with pytest.raises(GradcalcError, match="dense Hessian needs.*--hvp") as exc:
        higher.hessian(g, g.output, np.ones(()), ["x"], Limits(max_memory=1_000_000))
    assert exc.value.kind == "limit"


def test_elementwise_hessian_is_its_diagonals_within_the_memory_it_allocates():
    from gradcalc.errors import Limits
    x = np.linspace(-1, 1, 10**6)
    g = comp("sum(x*x*x)", x=x)         # dense it would be 8 TB; the diagonal is 8 MB
    H = higher.hessian(g, g.output, np.ones(()), ["x"], Limits(max_memory=512 * 2**20))
    block = H["x"]["x"]
    assert isinstance(block, higher.DiagonalBlock)
    assert block.shape == (10**6, 10**6) and block.size == 10**12
    np.testing.assert_allclose(block.diag, 6 * x, rtol=1e-15)
    g = comp("sum(x**3)", x=[1, 2])
    small = higher.hessian(g, g.output, np.ones(()), ["x"], LIMITS)
    np.testing.assert_array_equal(np.asarray(small["x"]["x"]), [[6.0, 0.0], [0.0, 12.0]])


# ---------------------------------------------------------------- through real processes
def gradcalc(*args, stdin=""):
    """A real `python -m gradcalc` (the shared runner): status, stdout (parsed with --json),
    stderr."""
    import json
    from clirun import cli
    r = cli(list(args), stdin, isolate=True, timeout=120)
    r.assert_clean()
    return r.status, (json.loads(r.stdout) if "--json" in args else r.stdout), r.stderr


SEED = ["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1,1e-4"]


def test_cli_done_when_examples():
    rc, out, _ = gradcalc("sin(x)*exp(x)", "x=0.5", "--taylor", "3", "--json")
    assert rc == 0
    e = math.exp(0.5)
    want = [e * (math.sin(0.5) + math.cos(0.5)), 2 * e * math.cos(0.5),
            2 * e * (math.cos(0.5) - math.sin(0.5))]
    np.testing.assert_allclose(out["taylor"], want, rtol=1e-14)
    rc, out, _ = gradcalc("sum(x**3)", "x=1,2", "--hessian", "--json")
    assert rc == 0 and out["hessian"] == {"x": {"x": [[6.0, 0.0], [0.0, 12.0]]}}
    rc, out, _ = gradcalc(*SEED, "-t", "a=1", "-t", "b=1", "--tangent", "c=1", "--hvp", "b=1",
                          "--hvp", "c=2", "--json")
    assert rc == 0
    np.testing.assert_allclose(out["jvp"], [3 + 12 + 1 / 6, 3 + 16 + 1 / 7, 3 + 20 + 1 / 8])
    # H·u of vᵀy: b gets 4·v·u_b, c gets -v·u_c/c², a nothing
    assert out["hvp"]["a"] == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(out["hvp"]["b"], [0.4, 4.0, 4e-4])
    np.testing.assert_allclose(out["hvp"]["c"], [-0.2 / 36, -2 / 49, -2e-4 / 64])


def test_cli_tangent_alone_needs_no_grad_and_the_human_view_explains():
    rc, out, _ = gradcalc("3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-t", "c=1")
    assert rc == 0
    assert "how fast y moves" in out and "0.166667" in out
    rc, out, _ = gradcalc("sum(x**3)", "x=1,2", "--hessian")
    assert "(diagonal, symmetric)" in out and "x[1]" in out


def test_program_lines_and_json_lines():
    program = "#: --hessian --hvp x=1,0 -t x=0,1\ny = sum(x**3)\n"
    rc, out, _ = gradcalc("-f", "-", "x=1,2", "--json", stdin=program)
    assert rc == 0
    assert out["hessian"]["x"]["x"] == [[6.0, 0.0], [0.0, 12.0]]
    assert out["hvp"] == {"x": [6.0, 0.0]} and out["jvp"] == 12.0
    import json
    req = {"id": 1, "expr": "sum(where(x > 0, x**3, -x))", "vars": {"x": [-1, 2]},
           "hessian": True, "hvp": {"x": [1, 1]}, "tangent": {"x": [1, 1]}, "taylor": 2}
    rc, out, _ = gradcalc("-", stdin=json.dumps(req) + "\n")
    line = json.loads(out.splitlines()[0])
    assert line["hessian"] == {"x": {"x": [[0.0, 0.0], [0.0, 12.0]]}}
    assert line["hvp"] == {"x": [0.0, 12.0]} and line["jvp"] == 11.0
    assert line["taylor"] == [11.0, 12.0]


@pytest.mark.parametrize("args,words", [
    (["sum(x)", "x=1,2", "--taylor", "0"], "--taylor takes an order from 1"),
    (["sum(x)", "x=1,2", "--tangent", "q=1"], "no leaf is named 'q'"),
    (["sum(x)", "x=1,2", "--hvp", "x"], "--hvp takes NAME=VALUE"),
    (["sum(x)", "x=1,2", "--tangent", "x=1,2,3"], "has shape (3,)"),
    (["sum(x*y)", "x=1,2", "y=1,2", "--taylor", "2"], "--taylor needs a direction"),
])
def test_cli_refusals(args, words):
    rc, _, err = gradcalc(*args)
    assert rc == 2 and words in err and "Traceback" not in err


def test_prod_over_a_zero_has_its_exact_hvp_at_any_size():
    # H_ik = product of x_j for j not in {i, k}: with x = [0, 2, 1, ..., 1] and u = 1, row 0
    # sums 1 + 2 (n - 2), row 1 sums 1, every other row 2. The traced exclusive products
    # stay O(n log n) per order (an (n, n) stack per order would refuse n = 400: n^4; torch's
    # two cumprods, whose GradMode backward takes n slices of omitted products, O(n^2))
    n = 400
    x = np.ones(n)
    x[:2] = [0.0, 2.0]
    g = comp("prod(x)", x=x)
    hu = higher.hvp(g, g.output, np.ones(()), {"x": np.ones(n)}, ["x"], LIMITS)["x"]
    assert hu[0] == 1 + 2 * (n - 2) and hu[1] == 1 and np.all(hu[2:] == 2)


def test_a_rule_the_tracer_cannot_record_is_refused_by_name(monkeypatch):
    # every rule of the table records today; one calling numpy's diff, which no table op
    # computes, could not
    monkeypatch.setattr(OPS["exp"], "vjps", (lambda g, ans, x: g * np.diff(ans, prepend=0.0),))
    g = comp("exp(x)", x=[2.0, 0.0, 3.0])
    with pytest.raises(GradcalcError, match="diff") as exc:
        higher.hessian(g, g.output, np.ones(()), ["x"], LIMITS)
    assert exc.value.kind == "call"


@pytest.mark.parametrize("shape,idx", [((5,), (1,)), ((5,), (slice(None, None, 2),)),
                                       ((2, 3), (slice(None), 0)), ((2, 3), (-1, slice(1, None))),
                                       ((7, 4), (slice(1, 6, 3), slice(0, 0))),
                                       ((6, 5), (slice(1, None, 2), slice(None, None, 4)))])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_composed_scatter_is_the_assignment(shape, idx, batch):
    from gradcalc.ops.shape import index_vjp, scatter_composed
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    ans = x[idx]
    g = rng.normal(size=batch + ans.shape)
    want = index_vjp(g, ans, x, idx)
    got = scatter_composed(g, len(batch), shape, idx)
    assert got.shape == want.shape and np.array_equal(got, want)


def test_steps_show_the_chain_rule_of_the_seed_example():
    rc, out, _ = gradcalc(*SEED, "--steps", "--json", "--check", "none")
    assert rc == 0
    steps = {s["formula"]: s["value"] for s in out["steps"]}
    bar = "g\u0305_"
    assert out["steps"][0] == {"target": bar + "y", "formula": bar + "y = v",
                               "value": [0.1, 1.0, 0.0001]}
    # log's rule applied to the incoming cotangent: ḡ_c = v ⊙ (1/c)
    np.testing.assert_allclose(steps[f"{bar}c += {bar}t5 / c"], [0.1 / 6, 1 / 7, 1e-4 / 8])
    np.testing.assert_allclose(steps[f"{bar}a += {bar}t1 * 3"], [0.3, 3.0, 3e-4])
    # b is reached twice (b*b): two steps, whose sum is b's grad
    np.testing.assert_allclose(steps[f"{bar}b += {bar}t3 * t2"], [0.6, 8.0, 1e-3])
    np.testing.assert_allclose(steps[f"{bar}b += {bar}t2 * 2"], [0.6, 8.0, 1e-3])
    rc, text, _ = gradcalc(*SEED, "--steps")
    assert "t5 = log(c)" in text and f"{bar}c += {bar}t5 / c" in text
