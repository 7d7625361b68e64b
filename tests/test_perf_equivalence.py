"""Every economy of the engine (issue 6) against the plain path, on every op of the table.

The plain path is the engine's plain interpreter (gradcalc/engine/plain.py), as the engine
had it before any optimisation: a forward that keeps every value, a backward that adds
cotangents into fresh arrays, a Jacobian that pushes the whole identity through every rule.
The economies (gradcalc/engine/economy.py) are compared with it directly: the lean forward
(dead intermediates dropped, ufuncs writing into dead buffers), the scheduled forward, the
in-place accumulation, the backward that frees values, and the structured Jacobians
(diagonal for elementwise programs, the matrix itself for an identity batch through a
product) must give the same numbers bit for bit: NaN where NaN, the sign of every zero, the
dtype. Inputs include 0, -0.0, inf and NaN, where a zero cotangent times an infinite
derivative makes NaN off the diagonal.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from gradcalc import engine
from gradcalc.compile import Compiler
from gradcalc.engine import economy, plain
from gradcalc.errors import GradcalcError
from gradcalc.ops import OPS
from gradcalc.parser import parse_program

from gradcalc.errors import Limits as _Limits  # noqa: E402
LIMITS = _Limits()      # the edge: tests build the limits, the library takes them


# ---------------------------------------------------------------- the plain path
# the engine's own plain interpreter (gradcalc/engine/plain.py) is the definition: a forward
# that keeps every value, a backward that adds cotangents into fresh arrays, a Jacobian that
# pushes the whole identity through every rule
def plain_forward(graph, upto):
    return plain.forward(graph, upto=upto)


plain_backward = plain.backward
plain_jacobian = plain.jacobian


def assert_same(got, want, what):
    """Shape, dtype, values, NaN positions and the sign of every zero: all that JSON can
    show (a NaN's sign bit is not: it is "NaN" either way, and numpy's loops differ in it)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    assert np.array_equal(got, want, equal_nan=True), f"{what}: {got} != {want}"
    signs = np.signbit(got) == np.signbit(want)
    assert (signs | np.isnan(want)).all(), f"{what}: signs of zeros differ"


# ---------------------------------------------------------------- inputs
SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, np.inf, -np.inf, np.nan, 1e-300, -3.0])


def sample_inputs(shapes, domain, seed, special):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if special:
            out[name] = rng.choice(SPECIAL, size=shape)
        else:
            out[name] = rng.uniform(*domain, size=shape)
    return out


def compile_with(expr, bindings, dtype="float64"):
    return Compiler(expr, bindings, dtype=np.dtype(dtype), limits=LIMITS).program(parse_program(expr, LIMITS.max_depth))


SAMPLES = [(name, k, s) for name in sorted(OPS) for k, s in enumerate(OPS[name].samples)]
IDS = [f"{n}-{k}" for n, k, _ in SAMPLES]
# beyond the table: fan-out, chains that let the lean forward reuse buffers, views of dead
# values, a program with an unused statement, the figures of the benchmark
EXTRA = [
    ("3*a + 2*b*b + log(c)", {"a": (5,), "b": (5,), "c": (5,)}, (0.5, 2.0)),
    ("sin(a)*b + a**2", {"a": (6,), "b": (6,)}, (-2.0, 2.0)),
    ("exp(x) * exp(x) + x * x * x", {"x": (2, 3)}, (-2.0, 2.0)),
    ("sqrt(x) + abs(x) * sign(x) - relu(x) / (x + 1)", {"x": (7,)}, (-2.0, 2.0)),
    ("(x * 2).T[0] * 3 + y", {"x": (3, 2), "y": (3,)}, (-2.0, 2.0)),
    ("reshape(x * x, 6) + 1", {"x": (2, 3)}, (-2.0, 2.0)),
    ("u = x * x\nw = u + 1\nsum(w * x)", {"x": (4,)}, (-2.0, 2.0)),
    ("W @ tanh(a)", {"W": (4, 3), "a": (3,)}, (-2.0, 2.0)),
    ("tanh(a) @ W", {"W": (3, 4), "a": (3,)}, (-2.0, 2.0)),
    ("A @ exp(B)", {"A": (2, 3), "B": (3, 4)}, (-2.0, 2.0)),
    ("detach(x) * x + x", {"x": (5,)}, (-2.0, 2.0)),
    ("maximum(x, y) + minimum(x, y) * clamp(x, -1, 1)", {"x": (5,), "y": (5,)}, (-2.0, 2.0)),
    ("pow(x, y) + atan2(x, y) + hypot(x, y)", {"x": (5,), "y": (5,)}, (0.5, 2.0)),
    # no step pops the output's cotangent (a leaf; an op without grad), which backward
    # drops by the remembered list of such ids instead of testing every entry's kind
    ("x", {"x": (3,)}, (-2.0, 2.0)),
    ("detach(x) * 2", {"x": (3,)}, (-2.0, 2.0)),
]
EXTRA_IDS = [e[0].replace("\n", ";") for e in EXTRA]
CASES = [(expr, shapes, domain) for _, _, (expr, shapes, domain) in SAMPLES] + EXTRA
CASE_IDS = IDS + EXTRA_IDS


def refused(graph) -> bool:
    """Inputs the op refuses, as torch does (binary_cross_entropy outside [0, 1]): the lean
    forward refuses them with the same error as the plain path, and there is nothing more
    to compare."""
    try:
        plain_forward(graph, graph.output)
    except GradcalcError as err:
        with pytest.raises(GradcalcError) as lean:
            economy.forward_lean(graph, graph.output)
        assert (lean.value.kind, lean.value.message) == (err.kind, err.message)
        return True
    return False


def graphs_of(expr, shapes, domain, dtype):
    for seed in (0, 1):
        for special in (False, True):
            graph = compile_with(expr, sample_inputs(shapes, domain, seed, special), dtype)
            if not (special and refused(graph)):
                yield graph, seed


# ---------------------------------------------------------------- forward and backward
@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lean_forward_and_freeing_backward_equal_the_plain_path(expr, shapes, domain, dtype):
    for graph, seed in graphs_of(expr, shapes, domain, dtype):
        out = graph.output
        want = plain_forward(graph, out)
        lean = economy.forward_lean(graph, out)
        assert_same(lean[out], want[out], f"{expr}: output")
        p = economy.plan(graph, out)
        for eq in graph.nodes[: out + 1]:
            if lean[eq.id] is not None:
                assert_same(lean[eq.id], want[eq.id], f"{expr}: value of node {eq.id}")
            else:   # dropped: only an intermediate that backward will not read
                assert eq.kind == "op" and eq.id != out and eq.id not in p.needed
        cot = np.random.default_rng(seed).normal(size=graph.nodes[out].shape).astype(dtype)
        ref = plain_backward(graph, want, cot, out)
        for free in (False, True):
            got = economy.backward(graph, lean, cot, out, free=free)
            assert sorted(got) == sorted(ref), expr
            for i in ref:
                assert_same(got[i], ref[i], f"{expr}: grad of {graph.nodes[i].name}")
        # the scheduled forward keeps every value, as the plain one does
        with np.errstate(all="ignore"):
            scheduled = economy._forward(economy._schedule(graph, out), graph, out)
        for eq in graph.nodes[: out + 1]:
            assert_same(scheduled[eq.id], want[eq.id], f"{expr}: scheduled value {eq.id}")
        # the full-values backward (no lean forward) too: in-place accumulation alone
        got = economy.backward(graph, scheduled, cot, out)
        for i in ref:
            assert_same(got[i], ref[i], f"{expr}: grad of {graph.nodes[i].name} (full values)")


def test_lean_forward_drops_and_reuses():
    """The economies are real: the seed expression keeps only what backward reads (2*b for
    the grad of b, and the output) and writes a later ufunc into a dead buffer."""
    n = 5
    graph = compile_with("3*a + 2*b*b + log(c)", {k: np.full(n, 2.0) for k in "abc"})
    values = economy.forward_lean(graph, graph.output)
    kept = [eq for eq in graph.nodes if eq.kind == "op" and values[eq.id] is not None]
    assert [(eq.op.name, eq.id == graph.output) for eq in kept] == [("mul", False),
                                                                      ("add", True)]
    ids = {id(v) for v in values if v is not None}
    full = plain_forward(graph, graph.output)
    assert len(ids) < len({id(v) for v in full if v is not None})


# ---------------------------------------------------------------- what rules read
def _rule_cases():
    for name, k, (expr, shapes, domain) in SAMPLES:
        op = OPS[name]
        if op.family == "constructor":
            continue
        yield name, k, expr, shapes, domain


@pytest.mark.parametrize("name,k,expr,shapes,domain", list(_rule_cases()),
                         ids=[f"{c[0]}-{c[1]}" for c in _rule_cases()])
def test_rule_reads_only_what_its_code_says(name, k, expr, shapes, domain):
    """Hand every rule None in place of each value its code does not read: it must give the
    same result (the lean forward drops exactly those values)."""
    graph = compile_with(expr, sample_inputs(shapes, domain, 0, False))
    values = plain_forward(graph, graph.output)
    for eq in graph.nodes:
        if eq.kind != "op" or eq.op.name != name:
            continue
        for j in range(len(eq.inputs)):
            rule = eq.op.vjp(j)
            if rule is None:
                continue
            reads = economy.rule_reads(rule)
            if reads is None:
                continue
            ans, args = values[eq.id], [values[i] for i in eq.inputs]
            for batch in ((), (2,)):
                g = np.ones(batch + np.shape(ans))
                with np.errstate(all="ignore"):
                    want = rule(g, ans, *args, **eq.params)
                    poisoned = [a if 2 + m in reads else None for m, a in enumerate(args)]
                    got = rule(g, ans if 1 in reads else None, *poisoned, **eq.params)
                if want is None:
                    assert got is None
                else:
                    assert_same(np.broadcast_to(got, np.shape(want)), want, f"{name} rule {j}")


def test_rule_reads_sees_through_closures_and_helpers():
    def helper(x):
        return x

    def rule(g, ans, x, y, dim=None):
        return g * helper(y)

    assert economy.rule_reads(rule) == frozenset({0, 3})
    assert economy.rule_reads(lambda g, ans, x: (lambda: g * x)()) == frozenset({0, 2})
    assert economy.rule_reads(lambda g, ans, *xs: g) is None        # variadic: keep all


# ---------------------------------------------------------------- structured Jacobians
@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_structured_jacobian_equals_the_dense_batched_one(expr, shapes, domain, dtype):
    for graph, _ in graphs_of(expr, shapes, domain, dtype):
        out = graph.output
        values = plain_forward(graph, out)
        leaf_ids = sorted(graph.leaves.values())
        want = plain_jacobian(graph, values, out, leaf_ids)
        for structure in (False, True):
            got = economy.jacobian(graph, values, out, leaf_ids, structure=structure)
            for i in leaf_ids:
                assert_same(got[i], want[i], f"{expr}: J of {graph.nodes[i].name} "
                                             f"(structure={structure})")


ELEMENTWISE = [(n, k, s) for n, k, s in SAMPLES
               if OPS[n].pointwise]


@pytest.mark.parametrize("name,k,sample", ELEMENTWISE, ids=[f"{n}-{k}" for n, k, _ in ELEMENTWISE])
def test_elementwise_programs_take_the_diagonal_path(name, k, sample):
    """Each elementwise op on leaves of the output's shape is seen as diagonal (so the test
    above compares the diagonal path, not a silent fallback), and the diagonal path gives
    the dense Jacobian at special values, where 0*inf makes NaN off the diagonal."""
    expr, shapes, domain = sample
    n = 4
    same = {v: (n,) for v in shapes}
    graph = compile_with(expr, sample_inputs(same, domain, 0, False))
    if graph.nodes[graph.output].shape != (n,):
        pytest.skip("a constant operand changes the output's shape")
    assert economy.elementwise_path(graph, graph.output), expr
    for seed in range(3):
        graph = compile_with(expr, sample_inputs(same, domain, seed, True))
        values = plain_forward(graph, graph.output)
        leaf_ids = sorted(graph.leaves.values())
        want = plain_jacobian(graph, values, graph.output, leaf_ids)
        got = economy.jacobian(graph, values, graph.output, leaf_ids, structure=True)
        for i in leaf_ids:
            assert_same(got[i], want[i], f"{expr} at {graph.nodes[i].value}")


def test_diagonal_path_off_diagonal_nan_and_negative_zero():
    def J(expr, x):
        graph = compile_with(expr, {"x": np.array(x)})
        values = plain_forward(graph, graph.output)
        (leaf,) = graph.leaves.values()
        got = economy.jacobian(graph, values, graph.output, [leaf], structure=True)[leaf]
        assert_same(got, plain_jacobian(graph, values, graph.output, [leaf])[leaf], expr)
        return got

    # sqrt'(0) = inf: a zero cotangent at x_j = 0 gives 0 / (2 * 0) = NaN in column j
    j = J("sqrt(x)", [0.0, 1.0, 4.0])
    assert np.isinf(j[0, 0]) and np.isnan(j[1:, 0]).all() and (j[0, 1:] == 0).all()
    # cos' = -sin: a zero cotangent times -sin(x) < 0 is -0.0 off the diagonal
    j = J("cos(x)", [1.0, 2.0])
    assert np.signbit(j[0, 1]) and np.signbit(j[1, 0])


MATMUL = [
    ("W @ tanh(a)", {"W": (4, 3), "a": (3,)}, ["a"]),
    ("tanh(a) @ W", {"W": (3, 4), "a": (3,)}, ["a"]),
    ("A @ B", {"A": (2, 3), "B": (3, 4)}, ["A", "B"]),
    ("A @ B", {"A": (2, 3), "B": (3, 4)}, ["B"]),
    ("A @ exp(B)", {"A": (3, 3), "B": (3, 2)}, ["A"]),
]


@pytest.mark.parametrize("expr,shapes,wrt", MATMUL, ids=[f"{e}-{w}" for e, _, w in MATMUL])
@pytest.mark.parametrize("matrix", ["finite", "zeros", "negative-zero", "inf", "nan",
                                    "negative-column", "inf-at-zero", "zero-vector"])
def test_identity_through_a_product_is_the_matrix(expr, shapes, wrt, matrix):
    rng = np.random.default_rng(5)
    bindings = {k: rng.uniform(-2, 2, size=s) for k, s in shapes.items()}
    const = next(k for k in shapes if k not in wrt) if len(wrt) < len(shapes) else wrt[0]
    M = bindings[const]
    if matrix == "zeros":
        M[0, ...] = 0.0
    elif matrix == "negative-zero":
        M[0, ...] = -0.0
    elif matrix in ("inf", "nan"):
        M.flat[1] = np.inf if matrix == "inf" else np.nan
    elif matrix == "negative-column":       # every term of a column's sums is -0.0 or < 0
        M[...] = -np.abs(M)
        M[0, ...] = -0.0
    elif matrix in ("inf-at-zero", "zero-vector"):
        # the product's other operand is 0 where the matrix is infinite: the forward value
        # is NaN there (0 * inf), or the operand has a zero and the matrix must be scanned
        M.flat[0] = np.inf if matrix == "inf-at-zero" else M.flat[0]
        for k in shapes:
            if k != const and len(shapes[k]) == 1:
                bindings[k][0] = 0.0
    graph = Compiler(expr, bindings, wrt=wrt, limits=LIMITS).program(parse_program(expr, LIMITS.max_depth))
    values = plain_forward(graph, graph.output)
    if matrix == "finite":
        assert economy.identity_seeds(graph, values, graph.output) is not None
    leaf_ids = [graph.leaves[w] for w in wrt]
    want = plain_jacobian(graph, values, graph.output, leaf_ids)
    got = economy.jacobian(graph, values, graph.output, leaf_ids, structure=True)
    for i in leaf_ids:
        assert_same(got[i], want[i], f"{expr} wrt {graph.nodes[i].name} ({matrix})")


@pytest.mark.parametrize("name,k,sample", ELEMENTWISE, ids=[f"{n}-{k}" for n, k, _ in ELEMENTWISE])
@pytest.mark.parametrize("rows,m", [(12, 5), (9, 7), (40, 37)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_product_of_pointwise_rules_goes_as_wide_rows(name, k, sample, rows, m, dtype,
                                                        monkeypatch):
    """W @ op(x): the identity batch through the product is W, pulled back through op's
    rules as wide rows (k rows of the batch in one, the vectors the rules read repeated k
    times; WIDE lowered so these sizes take it, with m not a multiple of any SIMD width).
    The Jacobian is the plain one, at special values too, with -0.0 in W."""
    expr, shapes, domain = sample
    monkeypatch.setattr(economy, "WIDE", 2 * m)
    taken = []
    wide_rows = economy._wide_rows
    monkeypatch.setattr(economy, "_wide_rows",
                        lambda *a: taken.append(wide_rows(*a)) or taken[-1])
    for seed in range(3):
        bindings = sample_inputs({v: (m,) for v in shapes}, domain, seed, seed > 0)
        W = np.random.default_rng(seed).uniform(-2, 2, (rows, m))
        W[0, ::2] = -0.0
        bindings["W"] = W
        text = f"W @ ({expr})"
        try:
            graph = Compiler(text, bindings, dtype=np.dtype(dtype), wrt=sorted(shapes),
                             limits=LIMITS).program(parse_program(text, LIMITS.max_depth))
        except GradcalcError:
            pytest.skip("a constant operand changes the vector's shape")
        values = plain_forward(graph, graph.output)
        leaf_ids = [graph.leaves[v] for v in sorted(shapes)]
        want = plain_jacobian(graph, values, graph.output, leaf_ids)
        got = economy.jacobian(graph, values, graph.output, leaf_ids, structure=True)
        for i in leaf_ids:
            assert_same(got[i], want[i], f"{text} wrt {graph.nodes[i].name}")
        vector = graph.nodes[graph.nodes[graph.output].inputs[1]]
        assert taken[-1] is not None or not vector.requires_grad, text   # (x == y: none)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_has_negative_zero_is_a_zero_with_its_sign_bit(dtype):
    rng = np.random.default_rng(6)
    cases = [np.zeros(0), SPECIAL, -np.abs(SPECIAL[SPECIAL != -0.0]), np.array([-0.0]),
             np.array([0.0, -np.inf, np.nan, -1e-320]), rng.uniform(-1, 1, (7, 5)).T]
    for a in cases:
        a = np.asarray(a, dtype=dtype)
        want = bool(((a == 0) & np.signbit(a)).any())
        assert economy.has_negative_zero(a) == want, a
    assert economy.has_negative_zero(np.array([[1.0, 2.0], [-0.0, 3.0]], dtype=dtype).T)


def test_all_finite_is_isfinite_all():
    """At every size its three ways serve (a few as Python floats, up to 4,096 by the largest
    magnitude, more by the sum), with an overflowing sum, a NaN, an inf, in float64 and
    float32, 0-d arrays, numbers and integers."""
    cases = [np.zeros(0), np.array(np.inf), np.array(2.0), np.arange(5), 1.5, float("nan")]
    for n in (10, 33, 4095, 5000):
        for dtype in (np.float64, np.float32):
            top = np.finfo(dtype).max
            cases += [np.full(n, top / 2, dtype),  # the sum overflows, the values do not
                      np.linspace(-1, 1, n).astype(dtype).reshape(-1, 1)]
            for bad in (np.nan, np.inf, -np.inf):
                a = np.full(n, top / 2, dtype)
                a[n // 2] = bad
                cases.append(a)
    for a in cases:
        assert economy.all_finite(a) == bool(np.isfinite(a).all()), a


@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_pass_grads_and_jacobian_equal_two_passes(expr, shapes, domain, dtype):
    """An elementwise program's grads and Jacobian from one batched pass [v, ones, zeros]
    are the separate passes' numbers; other programs are refused (None)."""
    for graph, seed in graphs_of(expr, shapes, domain, dtype):
        out = graph.output
        values = plain_forward(graph, out)
        leaf_ids = sorted(graph.leaves.values())
        cot = np.random.default_rng(seed).normal(size=graph.nodes[out].shape).astype(dtype)
        both = economy.vjp_and_jacobian(graph, values, cot, out, leaf_ids)
        if not economy.elementwise_path(graph, out):
            assert both is None
            continue
        grads, J = both
        ref = plain_backward(graph, values, cot, out)
        assert sorted(grads) == sorted(ref)
        for i in ref:
            assert_same(grads[i], ref[i], f"{expr}: grad of {graph.nodes[i].name}")
        want = plain_jacobian(graph, values, out, leaf_ids)
        for i in leaf_ids:
            assert_same(J[i], want[i], f"{expr}: J of {graph.nodes[i].name}")


def assert_run_is_plain(graph, cot, leaf_ids, what):
    """economy.run, with and without the Jacobian, gives the plain path's values, grads
    and Jacobians: at the program's first run (the walk) and at the later ones (its whole
    tape, recorded at the second)."""
    out = graph.output
    want = plain_forward(graph, out)
    ref = plain_backward(graph, want, cot, out)
    ref_jac = plain_jacobian(graph, want, out, leaf_ids)
    for jacobian in (False, True, False, True):
        values, grads, jac = economy.run(engine.Request(graph, out, cot, leaf_ids,
                                                        jacobian=jacobian, drop_values=True))
        for i in range(out + 1):
            assert_same(values[i], want[i], f"{what}: value of node {i}")
        assert sorted(grads) == sorted(ref), what
        for i in ref:
            assert_same(grads[i], ref[i], f"{what}: grad of {graph.nodes[i].name}")
        if jacobian:
            for i in leaf_ids:
                assert_same(jac[i], ref_jac[i], f"{what}: J of {graph.nodes[i].name}")


@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_whole_tape_run_equals_the_plain_path(expr, shapes, domain, dtype):
    """A small pointwise program with a 1-D output replays its recorded ufunc calls once on
    whole arrays (economy.run, issue 15): values, grads and Jacobians (the batch of
    cotangents through the same calls, dense below STRUCTURE_MIN elements, [v, ones,
    zeros] from it) are the plain path's, bit for bit."""
    for graph, seed in graphs_of(expr, shapes, domain, dtype):
        out = graph.output
        if economy._whole_tape(graph, out) is None:
            continue
        cot = np.random.default_rng(seed).normal(size=graph.nodes[out].shape).astype(dtype)
        assert_run_is_plain(graph, cot, tuple(sorted(graph.leaves.values())), expr)


@pytest.mark.parametrize("name,k,sample", ELEMENTWISE, ids=[f"{n}-{k}" for n, k, _ in ELEMENTWISE])
@pytest.mark.parametrize("n", [1, 5, 70])
def test_pointwise_programs_take_the_whole_tape(name, k, sample, n):
    """Each pointwise op that the fused recording takes, on leaves of a 1-D output's shape,
    has a whole tape (so the test above compares it, not a silent refusal), and gives the
    plain path's numbers at special values and a zero, a -0.0 and an infinity in the
    cotangent, with the dense Jacobian (n < STRUCTURE_MIN) and the diagonal one."""
    expr, shapes, domain = sample
    same = {v: (n,) for v in shapes}
    for seed, special in ((0, False), (1, True), (2, True)):
        graph = compile_with(expr, sample_inputs(same, domain, seed, special))
        if graph.nodes[graph.output].shape != (n,):
            pytest.skip("a constant operand changes the output's shape")
        progs = economy.fused_programs(graph, graph.output, n, n, np.dtype("float64"))
        assert (economy._whole_tape(graph, graph.output) is None) == (progs is None), expr
        cot = np.random.default_rng(seed).normal(size=n)
        cot[:3] = (0.0, -0.0, np.inf)[:n]
        assert_run_is_plain(graph, cot, tuple(sorted(graph.leaves.values())), expr)


def test_small_pointwise_programs_take_the_whole_tape(monkeypatch):
    """The seed expression and API_CASES' small pointwise programs replay a whole tape (so
    the API test compares it with the plain path, not a silent refusal), from their second
    run on (the first, perhaps the only one, does not pay for the recording)."""
    graph = compile_with("3*a + 2*b*b + log(c)", {v: np.linspace(0.5, 2, 3) for v in "abc"})
    taped = []
    real = economy._run_taped
    monkeypatch.setattr(economy, "_run_taped", lambda *a: taped.append(1) or real(*a))
    request = engine.Request(graph, graph.output, np.ones(3), (1, 4, 8), jacobian=True)
    for _ in range(3):
        economy.run(request)
    assert len(taped) == 2
    graph = compile_with("tanh(x) * x + sigmoid(x) - exp(x) * exp(x)", {"x": np.ones(40)})
    assert economy._whole_tape(graph, graph.output) is not None
    wide = compile_with("3*a + 2*b*b + log(c)", {v: np.linspace(0.5, 2, economy.TAPE_MAX)
                                                  for v in "abc"})
    assert economy._whole_tape(wide, wide.output) is None      # walked, or blocked


@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_replayed_run_equals_the_plain_path(expr, shapes, domain, dtype, monkeypatch):
    """A pointwise program of TAPE_MAX elements or more (here 2) below BLOCK_MIN, asked with
    values that may be dropped, replays its recorded calls as one block into kept buffers
    from its second run on (economy.run, issue 15): values (the dropped ones filled in when
    read), grads and Jacobians (these walk) are the plain path's, bit for bit, and so are a
    later run's on other values, through the same kept buffers."""
    monkeypatch.setattr(economy, "TAPE_MAX", 2)
    replayed = []
    real = economy.run_blocked
    monkeypatch.setattr(economy, "run_blocked", lambda *a, **k: replayed.append(1) or
                        real(*a, **k))
    for graph, seed in graphs_of(expr, shapes, domain, dtype):
        out = graph.output
        cot = np.random.default_rng(seed).normal(size=graph.nodes[out].shape).astype(dtype)
        assert_run_is_plain(graph, cot, tuple(sorted(graph.leaves.values())), expr)
        if economy.blockable(graph, out) and graph.nodes[out].size >= 2:
            assert replayed, expr
        replayed.clear()


def test_replayed_runs_reuse_their_buffers(monkeypatch):
    """A program's second replay writes into the first one's block buffers (and result
    block, once its results are dropped), and gives the plain path's numbers for its own
    values; a replay of another program makes its own buffers."""
    monkeypatch.setattr(economy, "_BUFFERS", [])
    n = economy.TAPE_MAX + 3
    shapes = {v: (n,) for v in "abc"}
    graph = compile_with("3*a + 2*b*b + log(c)", sample_inputs(shapes, (0.5, 2.0), 0, False))
    other = compile_with("sin(a) * b - a / c", sample_inputs(shapes, (0.5, 2.0), 2, False))
    seen = []
    for graph, seed in ((graph, None), (graph, 1), (other, None)):
        if seed is not None:            # the same program on other values
            for name, v in sample_inputs(shapes, (-2.0, 2.0), seed, True).items():
                graph.nodes[graph.leaves[name]].value[...] = v
        cot = np.linspace(-1, 1, n)
        for _ in range(2):
            values, grads, _ = economy.run(engine.Request(
                graph, graph.output, cot, tuple(graph.leaves.values()), drop_values=True))
        assert economy._BUFFERS, "the replay kept its buffers"
        seen.append(economy._BUFFERS[0][1][n])
        want = plain_forward(graph, graph.output)
        ref = plain_backward(graph, want, cot, graph.output)
        assert_same(values[graph.output], want[graph.output], "output")
        for i in ref:
            assert_same(grads[i], ref[i], f"grad of {graph.nodes[i].name}")
        del values, grads
    assert all(a is b for a, b in zip(seen[0], seen[1]))
    assert not any(a is b for a, b in zip(seen[1], seen[2]))


# ---------------------------------------------------------------- block by block
def assert_blocked_is_plain(graph, cot, block, what):
    out = graph.output
    want = plain_forward(graph, out)
    ref = plain_backward(graph, want, cot, out)
    values, grads = economy.run_blocked(graph, out, cot, block)
    assert_same(values[out], want[out], f"{what}: output (block {block})")
    assert sorted(grads) == sorted(ref), what
    for i in ref:
        assert_same(grads[i], ref[i], f"{what}: grad of {graph.nodes[i].name} (block {block})")


def unfused(monkeypatch, fuse: bool):
    """With fuse False, the blocked path runs the rules on each block itself (what it does
    when a rule cannot be recorded)."""
    if not fuse:
        monkeypatch.setattr(economy, "fused_programs", lambda *a: None)


@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fuse", [True, False])
def test_blocked_run_equals_the_plain_path(expr, shapes, domain, dtype, fuse, monkeypatch):
    """A pointwise program run block by block (blocks of 1, 2 and 4 elements, so the last
    block is often shorter) gives the plain path's output and grads bit for bit, replaying
    its recorded ufunc calls into reused buffers (fuse) or calling the rules per block."""
    unfused(monkeypatch, fuse)
    for graph, seed in graphs_of(expr, shapes, domain, dtype):
        if not economy.blockable(graph, graph.output):
            continue
        cot = np.random.default_rng(seed).normal(size=graph.nodes[graph.output].shape)
        for block in (1, 2, 4):
            assert_blocked_is_plain(graph, cot.astype(dtype), block, expr)


@pytest.mark.parametrize("name,k,sample", ELEMENTWISE, ids=[f"{n}-{k}" for n, k, _ in ELEMENTWISE])
@pytest.mark.parametrize("n", [5, 70_000])
@pytest.mark.parametrize("fuse", [True, False])
def test_pointwise_programs_take_the_blocked_path(name, k, sample, n, fuse, monkeypatch):
    """Each pointwise op on leaves of the output's shape is blockable (so the test above
    compares the blocked path, not a silent refusal), and gives the plain path's numbers at
    special values; at 70,000 elements in blocks of BLOCK, numpy's vector loops run at the
    same alignment as on the whole array, the last block shorter."""
    expr, shapes, domain = sample
    unfused(monkeypatch, fuse)
    same = {v: (n,) for v in shapes}
    for seed, special in ((0, False), (1, True), (2, True)):
        graph = compile_with(expr, sample_inputs(same, domain, seed, special))
        if graph.nodes[graph.output].shape != (n,):
            pytest.skip("a constant operand changes the output's shape")
        assert economy.blockable(graph, graph.output), expr
        cot = np.random.default_rng(seed).normal(size=n)
        cot[:3] = (0.0, -0.0, np.inf)
        for block in ((2, 3) if n < 100 else (economy.BLOCK,)):
            assert_blocked_is_plain(graph, cot, block, expr)


# rules that call only elementwise ufuncs are recorded; the others (np.where, `**`, a
# Python branch on a value) are refused by name, never replayed approximately
FUSED = {"3*a + 2*b*b + log(c)", "exp(x) * exp(x) + x * x * x", "sin(a) * b - a / c",
         "tanh(x) * x + sigmoid(x)", "x * y + 2"}
NOT_FUSED = {"sqrt(x) * relu(x)", "x ** 2 + 1", "abs(x) + 1", "softplus(x)"}


@pytest.mark.parametrize("expr", sorted(FUSED | NOT_FUSED))
def test_fused_recording_takes_ufunc_rules_and_refuses_the_rest(expr):
    names = sorted(set(re.findall(r"\b[abcxy]\b", expr)))
    bindings = {v: np.linspace(0.5, 2.0, 10) for v in names}
    graph = compile_with(expr, bindings)
    assert economy.blockable(graph, graph.output)
    progs = economy.fused_programs(graph, graph.output, 10, 4, np.dtype("float64"))
    assert (progs is not None) == (expr in FUSED), expr
    if progs is not None:
        assert sorted(progs) == [2, 4]        # the last block is recorded apart
        cot = np.linspace(-1, 1, 10)
        assert_blocked_is_plain(graph, cot, 4, expr)


def test_fused_program_reuses_buffers_and_writes_results_in_place():
    """The seed expression's 12 calls need 3 block buffers; the output and the grads are
    written by the calls that compute them (nothing copied at the end of a block)."""
    graph = compile_with("3*a + 2*b*b + log(c)", {v: np.linspace(0.5, 2, 8) for v in "abc"})
    prog = economy.fused_programs(graph, graph.output, 8, 8, np.dtype("float64"))[8]
    assert len(prog.calls) == 12
    assert len(prog.buffers) == 3
    assert prog.copies == []


@pytest.mark.parametrize("expr,shapes", [
    ("sum(x * x)", {"x": (4,)}),                      # a reduction
    ("x * y", {"x": (4,), "y": ()}),                  # a broadcast leaf: its grad is a sum
    ("x * y", {"x": (4,), "y": (1,)}),
    ("x * w", {"x": (4,), "w": (3, 4)}),              # the output is larger than x
    ("x * mean(x)", {"x": (4,)}),                     # every element reads all of x
    ("A @ x", {"A": (4, 4), "x": (4,)}),
    ("x.T * 2", {"x": (2, 3)}),
])
def test_blocked_path_refuses_programs_whose_elements_interact(expr, shapes):
    graph = compile_with(expr, sample_inputs(shapes, (0.5, 2.0), 0, False))
    assert not economy.blockable(graph, graph.output), expr


def test_blocked_path_accepts_a_number_without_grad():
    graph = Compiler("x * y + 2", {"x": np.arange(4.0), "y": np.array(3.0)}, wrt=["x"], limits=LIMITS) \
        .program(parse_program("x * y + 2", LIMITS.max_depth))
    assert economy.blockable(graph, graph.output)
    values, grads = economy.run_blocked(graph, graph.output, np.ones(4), 3)
    assert values[graph.output].tolist() == [2.0, 5.0, 8.0, 11.0]
    assert grads[graph.leaves["x"]].tolist() == [3.0, 3.0, 3.0, 3.0]


# ---------------------------------------------------------------- through the API and JSON Lines
API_CASES = [
    ("3*a + 2*b*b + log(c)", {"a": "linspace(-1, 1, 300)", "b": "linspace(0, 2, 300)",
                              "c": "linspace(0.5, 3, 300)"}, "linspace(-1, 1, 300)"),
    ("sin(a)*b + a**2", {"a": "linspace(-3, 3, 70)", "b": "linspace(1, 2, 70)"}, 1.0),
    ("W @ tanh(a)", {"W": "reshape(linspace(-1, 1, 4900), 70, 70)", "a": "linspace(-2, 2, 70)"},
     1.0),
    ("y = x * x\nz = exp(y) + y\nsum(z * x)", {"x": "linspace(-1, 1, 100000)"}, None),
    ("sqrt(x) * relu(x)", {"x": "linspace(-1, 1, 101)"}, 1.0),
    # small pointwise programs: their recorded calls replayed once on the whole arrays, the
    # Jacobian's batch through them (a zero, -0.0 and a negative under log: NaN, -inf)
    ("3*a + 2*b*b + log(c)", {"a": "1, -0.0, 2", "b": "0, 3, -1", "c": "0, -1, 2"},
     "1, 0, -0.0"),
    ("tanh(x) * x + sigmoid(x) - exp(x) * exp(x)", {"x": "linspace(-3, 3, 40)"}, 1.0),
]


@pytest.mark.parametrize("expr,vars_,grad", API_CASES, ids=[c[0].replace("\n", ";")
                                                             for c in API_CASES])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("jacobian", [True, False])
def test_api_economies_change_no_output(expr, vars_, grad, dtype, jacobian, monkeypatch):
    """gradcalc.compute with every economy (lean forward above LEAN_MIN, structured and
    one-pass Jacobians; without the Jacobian, pointwise programs block by block) against the
    plain path: the same JSON, byte for byte."""
    import json

    import gradcalc

    def run():
        r = gradcalc.compute(expr, grad=grad, dtype=dtype, check="none", jacobian=jacobian,
                             **vars_)
        return json.dumps(r.to_json(), allow_nan=False), r

    monkeypatch.setattr(economy, "LEAN_MIN", 1000)
    monkeypatch.setattr(economy, "BLOCK_MIN", 50)
    monkeypatch.setattr(economy, "BLOCK", 64)
    run()                   # (a program's second run replays its whole tape, if it has one)
    fast, r = run()
    monkeypatch.setattr(engine, "ECONOMY", False)
    plain, _ = run()
    assert fast == plain
    monkeypatch.setattr(engine, "ECONOMY", True)
    # a reader of Result.values sees every intermediate, dropped or not
    full = plain_forward(r.graph, r.output_id)
    for i, v in enumerate(full):
        if v is not None:
            assert_same(r.values[i], v, f"{expr}: Result.values[{i}]")


def _requests():
    rng = np.random.default_rng(7)
    reqs = []
    for k in range(12):
        a, b = rng.uniform(-2, 2, (2, 3)).round(3).tolist()
        c = rng.uniform(0.5, 3, 3).round(3).tolist()
        reqs.append({"id": k, "expr": "3*a + 2*b*b + log(c)", "vars": {"a": a, "b": b, "c": c},
                     "grad": [0.1, 1.0, 0.0001]})
    reqs += [
        {"id": "shape", "expr": "3*a + 2*b*b + log(c)", "vars": {"a": [1, 2], "b": [3, 4],
                                                                  "c": [5, 6]}, "grad": 1},
        {"id": "f32", "expr": "3*a + 2*b*b + log(c)", "dtype": "float32",
         "vars": {"a": [1, 2], "b": [3, 4], "c": [5, 6]}, "grad": 1},
        {"id": "wrt", "expr": "3*a + 2*b*b + log(c)", "wrt": ["b"],
         "vars": {"a": [1, 2], "b": [3, 4], "c": [5, 6]}, "grad": 1},
        {"id": "prog", "program": "#: --grad 1\nx = ones(2, 2)\ny = x * w\nmean(y ** 2)",
         "vars": {"w": [[1, 2], [3, 4]]}},
        {"id": "prog2", "program": "#: --grad 1\nx = ones(2, 2)\ny = x * w\nmean(y ** 2)",
         "vars": {"w": [[5, 6], [7, 8]]}},
        {"id": "override", "program": "x = ones(2, 2)\nmean(x * w)", "vars": {"x": [[2, 2], [2, 2]],
                                                                           "w": [[1, 2], [3, 4]]}},
        {"id": "override2", "program": "x = ones(2, 2)\nmean(x * w)",
         "vars": {"w": [[1, 2], [3, 4]]}},
        {"id": "rand", "expr": "sum(x * rand(3))", "vars": {"x": [1, 2, 3]}},
        {"id": "rand2", "expr": "sum(x * rand(3))", "vars": {"x": [1, 2, 3]}},
        {"id": "bad", "expr": "log(c) + q", "vars": {"c": [1, 2]}, "grad": 1},
        {"id": "bad2", "expr": "log(c) + q", "vars": {"c": [1, 2]}, "grad": 1},
        {"id": "nan", "expr": "log(c) * a", "vars": {"c": [-1, 0], "a": [1, 2]}, "grad": 1},
        {"id": "nan2", "expr": "log(c) * a", "vars": {"c": [1, 0], "a": [0, 2]}, "grad": 1},
        {"id": "of", "program": "y = a * b\nz = sum(y)", "of": "y", "vars": {"a": [1, 2],
                                                                         "b": [3, 4]}, "grad": 1},
        {"id": "unused", "expr": "a * 2", "vars": {"a": [1, 2], "b": [3]}, "grad": 1},
        {"id": "unused2", "expr": "a * 2", "vars": {"b": [3], "a": [1, 2]}, "grad": 1},
    ]
    return reqs


def _serve(reqs, options=()):
    import io
    import sys

    from gradcalc.errors import Limits
    from gradcalc.jsonl import serve
    from gradcalc.settings import Settings

    data = "".join(json.dumps(r) + "\n" for r in reqs).encode()

    class Stdin:
        buffer = io.BytesIO(data)

    out = io.StringIO()
    old = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = Stdin, out
    try:
        status = serve(Settings(*options), Limits())
    finally:
        sys.stdin, sys.stdout = old
    return status, out.getvalue()


import json  # noqa: E402


@pytest.mark.parametrize("check", ["none", "symbolic", "numeric"])
def test_cached_json_lines_equal_uncached(check, monkeypatch):
    """Each distinct program is compiled once and rebound: the stream's output is the one
    compiling every request gives, byte for byte (random programs drawn anew, errors
    repeated, leaves bound in another order kept apart)."""
    from gradcalc import programs

    reqs = _requests()
    for r in reqs:
        r["check"] = check
    cached = _serve(reqs, (None, None, None, None, None, None, None, None, None, 0))
    compiled = []
    real = programs.compile_program

    def counting(*a, **k):
        compiled.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(programs, "compile_program", counting)
    again = _serve(reqs, (None, None, None, None, None, None, None, None, None, 0))
    assert cached == again
    # the seed program was compiled once for its 12 requests with 3-element vars
    assert compiled.count("3*a + 2*b*b + log(c)") == 1 + 3    # + 2-element, float32, wrt
    assert compiled.count("sum(x * rand(3))") == 2
    monkeypatch.setattr(programs.ProgramCache, "graph",
                        lambda self, text, b, d, s, lim, ext=None: programs.compile_program(
                            text, b, d, s, lim, ext))
    uncached = _serve(reqs, (None, None, None, None, None, None, None, None, None, 0))
    assert cached == uncached
    lines = cached[1].splitlines()
    assert len(lines) == len(reqs)
    by_id = {json.loads(ln).get("id"): json.loads(ln) for ln in lines}
    assert by_id[0]["grads"]["a"] == [0.30000000000000004, 3.0, 0.00030000000000000003]
    assert by_id["prog"]["grads"]["w"] != by_id["prog2"]["grads"]["w"]
    assert by_id["rand"]["output"] == by_id["rand2"]["output"]      # seeded by seed=0


def test_json_lines_finite_writer_equals_strict_objects():
    """The stream writes arrays without scanning them number by number (Result.finite_json:
    one sum per array), writing the strict object where a sum is not finite: each line must
    be the strict object of its request (requests with NaN and infinite results included)."""
    from gradcalc import api
    from gradcalc.jsontext import encode
    from gradcalc.errors import GradcalcError, Limits
    from gradcalc.settings import Settings

    reqs = _requests()
    status, text = _serve(reqs, (None,) * 9 + (0,))          # --seed 0
    lines = text.splitlines()
    assert len(lines) == len(reqs)
    nonfinite = 0
    for req, line in zip(reqs, lines):
        settings = Settings(grad=req.get("grad"), wrt=req.get("wrt"), of=req.get("of"),
                            dtype=req.get("dtype"), seed=0)
        text_ = req.get("expr", req.get("program"))
        try:
            r = api.run(text_, req["vars"], settings, Limits(), allow_files=False)
            want = {"id": req["id"], **r.to_json()}
            nonfinite += want["nonfinite"] is not None
        except GradcalcError as err:
            want = {"id": req["id"], "error": err.with_source(text_).to_json()}
        assert line == encode(want).decode(), req["id"]
    assert nonfinite == 2          # "nan" and "nan2" took the strict path


def test_json_lines_derive_each_program_once(monkeypatch):
    """The symbolic check keeps an elementwise program's derivation in the program's memo:
    twelve requests of the seed program derive once; a program whose constants come from the
    leaves (detach) derives every time, since its formulas hold this request's values."""
    from gradcalc.checks import symbolic

    calls = []
    real = symbolic.derive_elementwise

    def counting(session, context, *cut):
        calls.append(context.graph.source)
        return real(session, context, *cut)

    monkeypatch.setattr(symbolic, "derive_elementwise", counting)
    reqs = [r for r in _requests() if r["id"] in range(12)]
    reqs += [{"id": f"d{k}", "expr": "detach(x) * x", "vars": {"x": [k + 1.0, 2.0]}, "grad": 1}
             for k in range(3)]
    for r in reqs:
        r["check"] = "symbolic"
    status, text = _serve(reqs)
    assert status == 0
    assert calls.count("3*a + 2*b*b + log(c)") == 1
    assert calls.count("detach(x) * x") == 3
    out = [json.loads(line) for line in text.splitlines()]
    assert all(o["checks"]["symbolic"]["passed"] is True for o in out)
    assert out[0]["checks"]["symbolic"]["derivatives"] == {"a": "3", "b": "4*b", "c": "1/c"}
    assert out[11]["checks"]["symbolic"]["derivatives"] == {"a": "3", "b": "4*b", "c": "1/c"}


def test_result_block_is_reused_only_when_nothing_refers_to_it(monkeypatch):
    """A fused run's results share one block, kept for the next run of that shape: reused
    only once every view of it was dropped, so a result the caller holds is never
    overwritten."""
    monkeypatch.setattr(economy, "_KEPT", [])
    graph = compile_with("3*a + 2*b*b + log(c)", {v: np.linspace(0.5, 2, 9) for v in "abc"})
    cot = np.linspace(-1, 1, 9)
    held, grads = economy.run_blocked(graph, graph.output, cot, 4)
    first = held[graph.output].copy()
    again = economy.run_blocked(graph, graph.output, cot * 2, 4)
    assert not np.shares_memory(again[0][graph.output], held[graph.output])
    assert_same(held[graph.output], first, "a held result after another run")
    base = again[0][graph.output].base
    del again, held, grads, base
    third = economy.run_blocked(graph, graph.output, cot, 4)
    assert np.shares_memory(third[0][graph.output], economy._KEPT[0])
    assert_same(third[0][graph.output], first, "the output written into a reused block")


def test_diagonal_jacobians_in_a_reused_block_are_cleared(monkeypatch):
    """An elementwise program's Jacobians share one block, kept for the next run of that
    shape: reused (never while a Jacobian of it is held) with every entry written again, so
    a NaN column left by the last run is gone."""
    monkeypatch.setattr(economy, "_KEPT", [])
    n = economy.STRUCTURE_MIN

    def jacobians(x):
        graph = compile_with("sqrt(x)*y", {"x": x, "y": np.linspace(1, 2, n)})
        values = plain_forward(graph, graph.output)
        ids = [graph.leaves["x"], graph.leaves["y"]]
        want = plain_jacobian(graph, values, graph.output, ids)
        return economy.jacobian(graph, values, graph.output, ids, structure=True), want

    nan_x, finite_x = np.linspace(0, 2, n), np.linspace(1, 2, n)  # sqrt'(0) = inf: 0*inf
    held, want = jacobians(nan_x)
    assert any(np.isnan(J).any() for J in want.values())
    copies = {i: J.copy() for i, J in held.items()}
    got, want_finite = jacobians(finite_x)
    for i in want:
        assert not np.shares_memory(got[i], held[i])
        assert_same(held[i], copies[i], "a held Jacobian after another run")
        assert_same(got[i], want_finite[i], "a Jacobian in a new block")
    del held, got
    got, _ = jacobians(nan_x)           # into the block of the last run (nothing holds it)
    for i in want:
        assert np.shares_memory(got[i], economy._KEPT[0])
        assert_same(got[i], want[i], "NaN columns written into a reused block")
    del got
    got, _ = jacobians(finite_x)        # the same block: the NaN columns must be cleared
    for i in want:
        assert np.shares_memory(got[i], economy._KEPT[0])
        assert_same(got[i], want_finite[i], "a Jacobian written into a reused block")


def test_many_tiny_values_skip_the_lean_forward(monkeypatch):
    """Over LEAN_MIN elements in all but no value of LEAN_NODE_MIN: the scheduled forward
    (the lean one's bookkeeping costs more than it saves); the numbers are the plain ones."""
    text = "+".join(["x"] * 20_000)
    graph = compile_with(text, {"x": np.linspace(-1, 1, 8)})
    assert economy.elements(graph, graph.output)[0] >= economy.LEAN_MIN
    monkeypatch.setattr(economy, "forward_lean", lambda *a: pytest.fail("lean forward"))
    monkeypatch.setattr(economy, "run_blocked", lambda *a: None)
    ans = engine.differentiate(engine.Request(graph, graph.output, np.ones(8),
                                              (graph.leaves["x"],), drop_values=True))
    want = plain_forward(graph, graph.output)
    assert_same(ans.values[graph.output], want[graph.output], text[:20])
    assert_same(ans.grads[graph.leaves["x"]], np.full(8, 20_000.0), "grad")


@pytest.mark.parametrize("expr,drops", [("W @ tanh(a)", False), ("sum(sin(W @ a) * 2)", True)])
def test_a_lean_forward_runs_only_where_it_drops_a_value(expr, drops, monkeypatch):
    """Above LEAN_MIN, W @ tanh(a) keeps every value for its rules (the product's reads W and
    tanh(a), tanh's its result): its lean forward would be the scheduled one plus bookkeeping,
    so the scheduled one runs. sin(W @ a) is read by no rule and is dropped. The numbers are
    the plain ones either way."""
    rng = np.random.default_rng(8)
    graph = compile_with(expr, {"W": rng.uniform(-1, 1, (300, 300)), "a": rng.uniform(-2, 2, 300)})
    assert economy.elements(graph, graph.output)[0] >= economy.LEAN_MIN
    lean = economy.forward_lean
    called = []
    monkeypatch.setattr(economy, "forward_lean", lambda *a: called.append(1) or lean(*a))
    cot = np.ones(graph.nodes[graph.output].shape)
    leaves = (graph.leaves["a"],)
    for jac in (False, True):
        called.clear()
        ans = engine.differentiate(engine.Request(graph, graph.output, cot, leaves,
                                                  jacobian=jac, drop_values=True))
        assert called == ([1] if drops else [])
        want = plain_forward(graph, graph.output)
        assert_same(ans.values[graph.output], want[graph.output], expr)
        assert_same(ans.grads[leaves[0]], plain_backward(graph, want, cot)[leaves[0]], expr)
        if jac:
            J = plain_jacobian(graph, want, graph.output, leaves)[leaves[0]]
            assert_same(ans.jacobians[leaves[0]], J, expr)


@pytest.mark.parametrize("length,paused", [(5, False), (20_001, True)])
def test_compute_pauses_the_collector_for_long_texts_only(length, paused, monkeypatch):
    import gc
    from gradcalc import api
    seen = []
    real = api.calculate
    monkeypatch.setattr(api, "calculate",
                        lambda *a, **k: seen.append(gc.isenabled()) or real(*a, **k))
    assert gc.isenabled()
    text = "+".join(["x"] * ((length + 1) // 2))
    r = api.compute(text, x=[1.0, 2.0], grad=1.0, check="none")
    assert seen == [not paused]
    assert gc.isenabled()
    assert r.grads["x"].tolist() == [(length + 1) // 2] * 2


LM_MODELS = [
    ("A*exp(-k*x) + c - y", ["A", "k", "c"], True),
    ("a*x**2 + b*sin(x) - c/x - y", ["a", "b", "c"], True),
    ("sigmoid(k*(x - m))*h + tanh(b)*x - y", ["k", "m", "h", "b"], True),
    ("A*exp(-k*x) - mean(y)", ["A", "k"], False),          # a reduction: not pointwise
]


@pytest.mark.parametrize("text,names,pointwise", LM_MODELS, ids=[t for t, _, _ in LM_MODELS])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("blocked", [False, True])
def test_lm_pointwise_columns_equal_the_reverse_jacobian(text, names, pointwise, dtype,
                                                         blocked, monkeypatch):
    """lm's one-pass columns (parameters spread to the residuals' shape) against the plain
    reverse Jacobian of the program as written: equal wherever every contribution is finite,
    up to the sign of a zero (the reverse row adds the other positions' exact zeros); and the
    pass's output, which lm takes as the residuals, is the plain forward's, bit for bit.
    Whole, or block by block (blocks of 16: the last one short) as 10^5 residuals run."""
    from gradcalc.fit import loop
    from gradcalc.fit.lm import Layout
    if blocked:
        for name in ("BLOCK_MIN", "BLOCK", "FUSED_BLOCK"):
            monkeypatch.setattr(economy, name, 16)
    rng = np.random.default_rng(8)
    n = 40
    bindings = {"x": rng.uniform(0.5, 3, n).astype(dtype), "y": rng.uniform(-1, 1, n).astype(dtype),
                **{p: np.asarray(rng.uniform(-1.5, 1.5), dtype=dtype) for p in names}}
    req = loop.FitRequest(text=text, values=bindings, params=names, optimizer="lm",
                          dtype=dtype, limits=LIMITS)
    loss = loop.Loss(req)
    layout = Layout.of({p: bindings[p] for p in names})
    graph, _, _ = loss.point(layout, bindings)
    got = loss.jacobian(graph, layout, bindings)
    assert loss.pointwise is pointwise
    if not pointwise:
        return
    values = plain_forward(graph, graph.output)
    residuals, _ = loss.one_pass(layout, bindings, (n,))
    assert_same(np.asarray(residuals), values[graph.output], f"{text}: residuals")
    ids = [graph.leaves[p] for p in names]
    want = plain_jacobian(graph, values, graph.output, ids)
    assert got.shape == (n, len(names)) and got.dtype == np.float64
    for k, i in enumerate(ids):
        column = np.asarray(want[i], dtype=np.float64).reshape(n)
        assert np.isfinite(column).all()
        assert_same(got[:, k] + 0.0, column + 0.0, f"{text}: column {names[k]}")


# ---------------------------------------------------------------- the symbolic check's tapes
# issue 15: in the usual case (nothing at a kink, everything finite) an elementwise leaf's
# derivative runs as a compiled tape, block by block, and is compared block by block
# (Verdict.feed_usual); anything else takes the Evaluator's way. The report must be the
# one the Evaluator's way gives, number for number, whether the leaf passes or not.
def _symbolic_reports(expr, vars_, grad, dtype, jacobian, monkeypatch, tapes):
    import gradcalc
    from gradcalc import api, programs
    from gradcalc.checks import symbolic
    monkeypatch.setattr(symbolic, "TAPES", tapes)
    monkeypatch.setattr(api, "PROGRAMS", programs.ProgramCache())   # the rules of this call
    r = gradcalc.compute(expr, grad=grad, dtype=dtype, check="symbolic", jacobian=jacobian,
                         seed=0, limits=_Limits(max_memory=8 * 1024**3), **vars_)
    return r.checks


def _fed(monkeypatch):
    """Counts of the leaves fed by their tapes (True) and refused by the tape way (False)."""
    from gradcalc.checks import verdict
    fed = []
    real = verdict.Verdict.feed_usual

    def counting(self, *a):
        got = real(self, *a)
        fed.append(bool(got))
        return got
    monkeypatch.setattr(verdict.Verdict, "feed_usual", counting)
    return fed


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=CASE_IDS)
def test_symbolic_tapes_equal_the_evaluators_way(expr, shapes, domain, dtype, monkeypatch):
    """Every op sample and extra program, at ordinary and at special inputs (0, -0.0,
    inf, NaN: kinks, non-finite values, refinement), with and without the Jacobian."""
    for seed in (0, 1):
        for special in (False, True):
            vars_ = sample_inputs(shapes, domain, seed, special)
            try:
                graph = compile_with(expr, vars_, dtype)
            except GradcalcError:
                continue
            oshape = graph.nodes[graph.output].shape
            grad = np.random.default_rng(seed).uniform(-1, 1, oshape) if oshape else None
            for jac in (False, True):
                args = (expr, vars_, grad, dtype, jac, monkeypatch)
                try:
                    plain_ = _symbolic_reports(*args, tapes=False)
                except GradcalcError:
                    continue
                assert _symbolic_reports(*args, tapes=True) == plain_, (seed, special, jac)


@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=CASE_IDS)
def test_kink_sites_by_blocks_equal_the_whole_masks(expr, shapes, domain, monkeypatch):
    """issue 15: a pointwise op's kink predicate is first tried block by block, and a node
    at no kink is passed without its whole mask; the check's report (the points it names,
    the ops and conventions behind them) is the whole masks' either way, at ordinary inputs
    and at special ones (0, ties, inf, NaN)."""
    from gradcalc.checks import kinks
    for seed in (0, 1):
        for special in (False, True):
            vars_ = sample_inputs(shapes, domain, seed, special)
            try:
                graph = compile_with(expr, vars_, "float64")
            except GradcalcError:
                continue
            oshape = graph.nodes[graph.output].shape
            grad = np.random.default_rng(seed).uniform(-1, 1, oshape) if oshape else None
            args = (expr, vars_, grad, "float64", True, monkeypatch)
            monkeypatch.setattr(kinks, "_none_by_blocks", lambda *a: False)
            try:
                whole = _symbolic_reports(*args, tapes=True)
            except GradcalcError:
                continue
            monkeypatch.undo()
            monkeypatch.setattr(kinks, "BLOCK", 1)      # every element a block of its own
            assert _symbolic_reports(*args, tapes=True) == whole, (seed, special)
            monkeypatch.undo()


# wrong rules: the tape way gives up on a leaf at its first disagreeing block, and the
# Evaluator's way lists what disagrees
_WRONG = [("mul", "3*a + 2*b*b + log(c)"), ("log", "3*a + 2*b*b + log(c)"),
          ("add", "3*a + 2*b*b + log(c)"), ("sin", "sin(a)*b + a**2"),
          ("exp", "exp(a) * x"), ("mul", "a * x")]


@pytest.mark.parametrize("n", [3, 70_000, 200_000])
@pytest.mark.parametrize("op,expr", _WRONG, ids=[f"{o}:{e}" for o, e in _WRONG])
def test_symbolic_tapes_fail_a_wrong_rule_as_the_evaluator_does(op, expr, n, monkeypatch):
    """A rule scaled by 1.5 (or wrong in one element only, in the last block) fails the
    check with the same report either way; the right rule passes by the tapes (several
    blocks, a last one shorter, broadcast leaves, a number leaf)."""
    rng = np.random.default_rng(5)
    vars_ = {k: rng.uniform(0.5, 2.0, n) for k in "abcx"}
    vars_["a"] = vars_["a"] if expr != "a * x" else 1.25             # a number leaf
    used = {k: v for k, v in vars_.items() if k in expr}
    grad = rng.uniform(-1, 1, n)
    fed = _fed(monkeypatch)
    right = _symbolic_reports(expr, used, grad, "float64", None, monkeypatch, tapes=True)
    assert right["symbolic"]["passed"] is True
    assert right == _symbolic_reports(expr, used, grad, "float64", None, monkeypatch,
                                      tapes=False)
    assert any(fed) or right["symbolic"]["method"] != "elementwise"
    rules = OPS[op].vjps
    for wrong in ("scaled", "one element"):
        def broken(rule, wrong=wrong):
            def w(g, ans, *a, **p):
                v = np.array(rule(g, ans, *a, **p), dtype=float)
                if wrong == "scaled":
                    return 1.5 * v
                if v.ndim:
                    v.reshape(-1)[-1] += 1e-3 * (1 + abs(v.reshape(-1)[-1]))
                return v
            return w
        monkeypatch.setattr(OPS[op], "vjps", tuple(broken(r) for r in rules))
        fed.clear()
        got = _symbolic_reports(expr, used, grad, "float64", None, monkeypatch, tapes=True)
        want = _symbolic_reports(expr, used, grad, "float64", None, monkeypatch, tapes=False)
        assert got == want
        assert got["symbolic"]["passed"] is False and got["symbolic"]["disagreements"]
        assert got["symbolic"]["elements_checked"] == got["symbolic"]["elements_total"]
        assert False in fed or got["symbolic"]["method"] != "elementwise"
        monkeypatch.setattr(OPS[op], "vjps", rules)


@pytest.mark.parametrize("where", ["nothing", "rounding", "inf in v", "overflow",
                                   "nan in v"])
def test_equal_blocks_are_taken_as_equal_only_where_finite(where, monkeypatch):
    """A leaf whose blocks equal autograd's entry for entry is passed over two passes a block
    (_equal_finite); a later block that differs by rounding, or equal but not finite (an
    infinite or NaN cotangent, a product that overflows), is compared or refused as before:
    the report is the Evaluator's way's, number for number, and only a finite one is fed."""
    from gradcalc.checks import verdict
    n = 3 * verdict.BLOCK + 1000                    # the odd entry in the third block
    rng = np.random.default_rng(21)
    a, x = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n)
    grad = rng.uniform(-1, 1, n)
    k = 2 * verdict.BLOCK + 17
    if where == "rounding":         # d(a*x + log(x))/dx = a + 1/x: two roundings, not one
        expr = "a * x + log(x)"
    else:
        expr = "a * x"              # d/da = x, times v: autograd's v*x exactly
        grad[k] = {"nothing": grad[k], "inf in v": np.inf, "overflow": 1e10,
                   "nan in v": np.nan}[where]
        if where == "overflow":     # a*x is 1, v*x overflows (in autograd's grad and in ours)
            a[k], x[k] = 1e-300, 1e300
    equal = []
    real = verdict._equal_finite

    def spy(e, g, differs):
        equal.append(real(e, g, differs))
        return equal[-1]
    monkeypatch.setattr(verdict, "_equal_finite", spy)
    fed = _fed(monkeypatch)
    got = _symbolic_reports(expr, {"a": a, "x": x}, grad, "float64", None, monkeypatch,
                            tapes=True)["symbolic"]
    fed_by_tapes = list(fed)
    want = _symbolic_reports(expr, {"a": a, "x": x}, grad, "float64", None, monkeypatch,
                             tapes=False)["symbolic"]
    assert got == want
    finite = where in ("nothing", "rounding")
    assert fed_by_tapes == [finite]
    assert got["passed"] is True or not finite
    if where == "nothing":
        assert equal == [True] * 8 and got["max_abs_error"] == 0.0      # 2 leaves, 4 blocks
    if where == "rounding":
        assert False in equal and got["max_rel_error"] > 0
    if where in ("inf in v", "overflow", "nan in v"):
        assert equal[-1] is False and equal[:-1] == [True] * (len(equal) - 1)


def test_comparisons_borrow_the_kept_buffers_one_at_a_time(monkeypatch):
    """The work buffers kept for the process (reserved by the thread that starts a check)
    go to one comparison at a time and come back after it, also after an exception; a
    comparison that finds them taken, or needs more entries, gets buffers of its own; and
    a check's report is the same with them kept or made afresh."""
    from gradcalc.checks import verdict
    monkeypatch.setattr(verdict, "_KEPT", [])
    verdict.reserve()
    kept = verdict._KEPT[0]

    def only_kept():        # (reads `kept` when called)
        return len(verdict._KEPT) == 1 and verdict._KEPT[0] is kept
    verdict.reserve()                                   # one set is enough
    assert only_kept()
    with verdict._borrowed(100) as w:
        assert w is kept and verdict._KEPT == []
        with verdict._borrowed(100) as other:           # another comparison, meanwhile
            assert other is not kept and other[0].size == verdict.BLOCK
    assert len(verdict._KEPT) == 1                      # one of the two sets is kept
    kept = verdict._KEPT[0]
    with pytest.raises(KeyboardInterrupt):
        with verdict._borrowed(100):
            raise KeyboardInterrupt
    assert only_kept()
    with verdict._borrowed(verdict.BLOCK + 1) as big:
        assert big[0].size == verdict.BLOCK + 1 and only_kept()
    assert only_kept()
    import gradcalc
    rng = np.random.default_rng(3)
    n = 2 * verdict.BLOCK + 5
    vars_ = {k: rng.uniform(0.5, 2.0, n) for k in "abc"}
    grad = rng.uniform(-1, 1, n)
    first = gradcalc.compute("3*a + 2*b*b + log(c)", grad=grad, check="symbolic", **vars_)
    kept[0][:] = kept[1][:] = kept[2][:] = kept[3][:] = np.nan     # what the last one left
    again = gradcalc.compute("3*a + 2*b*b + log(c)", grad=grad, check="symbolic", **vars_)
    assert not np.isnan(kept[3]).all() and only_kept()     # `again` compared in the kept set
    monkeypatch.setattr(verdict, "_KEPT", [])                    # a new set, reserved
    fresh = gradcalc.compute("3*a + 2*b*b + log(c)", grad=grad, check="symbolic", **vars_)
    assert first.checks == again.checks == fresh.checks
    assert first.checks["symbolic"]["passed"] is True
    assert first.checks["symbolic"]["max_rel_error"] > 0       # (compared, not only equal)


@pytest.mark.parametrize("expr,shapes,domain", CASES, ids=CASE_IDS)
def test_a_number_times_a_form_differentiates_as_sympy_does(expr, shapes, domain,
                                                            monkeypatch):
    """chain.scaled_diff (a number times the form's derivative, where sympy's diff of the
    product differentiates the number too) gives sympy's derivative, form for form: every
    op sample, and the same form times 3, -1/2 and 2.5, reports the same derivatives and
    errors as sympy's diff of the whole product gives."""
    from gradcalc.checks import chain
    vars_ = sample_inputs(shapes, domain, 0, False)
    for scaled in (expr, f"3*({expr})", f"-({expr})/2", f"2.5*({expr})"):
        try:
            graph = compile_with(scaled, vars_, "float64")
        except GradcalcError:
            continue
        oshape = graph.nodes[graph.output].shape
        grad = np.random.default_rng(0).uniform(-1, 1, oshape) if oshape else None
        args = (scaled, vars_, grad, "float64", False, monkeypatch)
        try:
            ours = _symbolic_reports(*args, tapes=True)
        except GradcalcError:
            continue
        with monkeypatch.context() as m:
            m.setattr(chain, "scaled_diff", lambda sp, form, s: sp.diff(form, s))
            assert _symbolic_reports(*args, tapes=True) == ours, scaled


def test_symbolic_tape_compiles_smooth_heads_only():
    """A derivative with a switch (Heaviside, sign, Piecewise) or an atom that is no finite
    number has no tape; a smooth one has, and runs to the Evaluator's value."""
    import sympy as sp
    from gradcalc.checks.evaluator import Evaluator, Tape
    from gradcalc.checks.symbolic import Budget, Session

    session = Session(sp, Budget(10))
    session.budget.begin()
    x, y = sp.Dummy("x", real=True), sp.Dummy("y", real=True)
    env = {x: np.array([0.5, 1.0, 3.0]), y: np.array([2.0, -1.0, 0.25])}
    for d in (sp.Heaviside(x), sp.sign(x) * y, sp.Piecewise((x, x > 0), (y, True)),
              x * sp.oo, x + sp.Dummy("free")):
        assert Tape.compile(session.sp, d, env) is None, d
    for d in (4 * x, 1 / x, x ** sp.Rational(1, 2) * sp.cos(y) + sp.exp(x * y) - sp.pi,
              sp.Integer(3), x ** y, sp.log(x) / sp.sqrt(x)):
        tape = Tape.compile(session.sp, d, env)
        want = Evaluator(session, dict(env)).evaluate(d)[0]
        with np.errstate(all="ignore"):
            got = tape.run([env[s] for s in tape.inputs])
        assert np.array_equal(np.broadcast_to(got, (3,)), np.broadcast_to(want, (3,))), d
    tape = Tape.compile(session.sp, sp.exp(x) * y, env)         # exp(800) overflows
    at = {x: np.array([800.0]), y: np.array([0.0])}
    with np.errstate(all="ignore"):
        assert tape.run([at[s] for s in tape.inputs]) is None


def test_symbolic_check_kept_per_program_and_wrt_gives_a_fresh_ones_report(monkeypatch):
    """JSON Lines: the requests of one program share its derivation, and those of one wrt
    its leaves' derivatives (symbolic._taken), and run in the caller's thread; each report
    is the one a fresh program gives (other wrt, a leaf without a path, a kink, a value
    that is not finite, a float32 request, in between)."""
    import gradcalc
    from gradcalc import api, programs
    rng = np.random.default_rng(11)
    kept = programs.ProgramCache()
    expr = "3*a + 2*b*b + log(c) + relu(b - 1)"
    for i, wrt in enumerate([None, None, ["b"], ["a", "c", "d"], None, ["b"], None, None]):
        vars_ = {k: rng.uniform(0.5, 2, 3) for k in "abcd"}
        if i == 4:
            vars_["b"][1] = 1.0                       # relu at its kink
        if i == 6:
            vars_["c"][2] = -1.0                      # log of a negative: NaN
        dtype = "float32" if i == 7 else "float64"
        grad = rng.uniform(-1, 1, 3)
        reports = []
        for cache in (kept, programs.ProgramCache()):
            monkeypatch.setattr(api, "PROGRAMS", cache)
            r = gradcalc.compute(expr, grad=grad, wrt=wrt, dtype=dtype, check="symbolic",
                                 **vars_)
            reports.append(r.checks)
        assert reports[0] == reports[1], (i, wrt)


@pytest.mark.parametrize("expr", ["3*a + 2*b*b + log(a)", "relu(a) * b + abs(b - 1)",
                                  "maximum(a, b) * exp(-a)"])
def test_symbolic_check_reads_dropped_values_back(expr):
    """Under the symbolic check alone the engine may drop intermediates (a blocked or lean
    pass at this size); the check reads what it needs back (kinks at 0 and at ties here):
    its report is the one it gives next to the numeric check, which keeps every value."""
    import gradcalc
    rng = np.random.default_rng(4)
    n = 70_000
    a = rng.choice([0.0, 1.0, -1.5, 0.5, 2.0], n) + (rng.uniform(0, 1, n) < 0.5) * 0.25
    b = np.where(rng.uniform(0, 1, n) < 0.1, a, rng.uniform(-2, 2, n))
    grad = rng.uniform(-1, 1, n)
    alone = gradcalc.compute(expr, a=a, b=b, grad=grad, check="symbolic")
    assert isinstance(alone.values, economy.Values)          # the values were dropped
    both = gradcalc.compute(expr, a=a, b=b, grad=grad, check="all")
    assert alone.checks["symbolic"] == both.checks["symbolic"]
    assert alone.checks["symbolic"]["elements_checked"] == 2 * n


def test_one_block_comparison_equals_the_blocked_one():
    """verdict._close (one block, fresh arrays or reused buffers) gives _all_close's
    (max_abs, max_rel) or None, on agreeing, disagreeing, tied and non-finite entries."""
    from gradcalc.checks import verdict
    rng = np.random.default_rng(9)
    n = 3 * verdict.SMALL                     # _all_close takes its buffered loop here
    base = rng.uniform(-2, 2, n)
    cases = {"equal": base.copy(), "rounding": base * (1 + rng.uniform(-1e-16, 1e-16, n)),
             "tiny": base + rng.uniform(-1e-11, 1e-11, n), "off": base + 1e-3,
             "one off": base.copy(), "nan": base.copy(), "inf": base.copy(),
             "subnormal": np.full(n, 1e-310)}
    cases["one off"][-1] += 1.0
    cases["nan"][7] = np.nan
    cases["inf"][3] = np.inf
    for name, a in cases.items():
        e = np.full(n, 1e-310) if name == "subnormal" else base
        a = a * 0.5 if name == "subnormal" else a
        want = verdict._all_close(e, a, 1e-7, 1e-10, None)
        work = tuple(np.empty(n) for _ in range(3))
        with np.errstate(all="ignore"):
            for got in (verdict._close(e, a, 1e-7, 1e-10),
                        verdict._close(e, a, 1e-7, 1e-10, work)):
                assert got == want, name
            # a relative error found already (`beat`): the larger of it and the block's is
            # the same, whether the block computes its own or not
            rel = 0.0 if want is None else want[1]
            for beat in (1e-300, rel / 2, np.nextafter(rel, 0), rel, np.nextafter(rel, 1), 1.0):
                for w in (None, work):
                    got = verdict._close(e, a, 1e-7, 1e-10, w, beat)
                    assert (got is None) == (want is None), (name, beat)
                    if got is not None:
                        assert got[0] == want[0] and max(got[1], beat) == max(rel, beat), \
                            (name, beat)
        assert (want is None) == (name in ("off", "one off", "nan", "inf")), name

def test_few_entries_compared_as_floats_equal_numpys_comparison():
    """verdict._close_floats (a few entries as Python floats: a JSON Lines request's) gives
    _close's (max_abs, max_rel), or None where _close gives None or an infinite difference
    (_finite), on agreeing, rounding-close, disagreeing, tied, zero, subnormal, infinite and
    NaN entries."""
    from gradcalc.checks import verdict
    rng = np.random.default_rng(5)
    n = 9
    base = rng.uniform(-2, 2, n)
    inf, nan = np.inf, np.nan
    cases = {"equal": (base, base.copy()),
             "rounding": (base, base * (1 + rng.uniform(-1e-16, 1e-16, n))),
             "tiny": (base, base + rng.uniform(-1e-11, 1e-11, n)),
             "within rtol": (base, base * (1 + 5e-8)),
             "off": (base, base + 1e-3), "one off": (base, np.r_[base[:-1], base[-1] + 1]),
             "zeros": (np.zeros(n), np.r_[np.zeros(n - 1), -0.0]),
             "subnormal": (np.full(n, 1e-310), np.full(n, 0.5e-310)),
             "nan in autograd's": (base, np.r_[base[:3], nan, base[4:]]),
             "nan expected": (np.r_[base[:3], nan, base[4:]], base),
             "inf in autograd's": (base, np.r_[base[:3], inf, base[4:]]),
             "inf expected": (np.r_[base[:3], -inf, base[4:]], base),
             "inf in both": (np.r_[base[:3], inf, base[4:]], np.r_[base[:3], inf, base[4:]]),
             "huge": (np.full(n, 1e308), np.full(n, -1e308)), "empty": (np.zeros(0), np.zeros(0))}
    for name, (e, a) in cases.items():
        with np.errstate(all="ignore"):
            want = verdict._finite(verdict._close(e, a, 1e-7, 1e-10))
        got = verdict._finite(verdict._close_floats(e.tolist(), a.tolist(), 1e-7, 1e-10))
        assert got == want, name
        assert (want is None) == (name in ("off", "one off", "nan in autograd's", "nan expected",
                                           "inf in autograd's", "inf expected", "inf in both",
                                           "huge")), name


@pytest.mark.parametrize("jacobian", [False, True])
def test_a_requests_few_entries_as_floats_give_numpys_report(jacobian, monkeypatch):
    """The symbolic check of a small request (its entries compared as Python floats,
    Verdict._usual_tiny) reports what the numpy comparison reports, number for number: a
    vector, a scalar cotangent broadcast, and a scalar leaf broadcast beside vectors."""
    from gradcalc.checks import verdict
    taken = []
    real = verdict.Verdict._usual_tiny

    def counting(self, *a):
        taken.append(True)
        return real(self, *a)
    monkeypatch.setattr(verdict.Verdict, "_usual_tiny", counting)
    tiny_way = verdict.TINY             # (read once: the loop below sets it to 0)
    rng = np.random.default_rng(8)
    cases = [("3*a + 2*b*b + log(c)", {k: rng.uniform(0.5, 2, 3) for k in "abc"},
              rng.uniform(-1, 1, 3)),
             ("sin(a) * exp(b) / c", {k: rng.uniform(0.5, 2, (2, 2)) for k in "abc"}, 0.5),
             ("a * b - c", {"a": rng.uniform(-1, 1, 4), "b": 2.5, "c": rng.uniform(0, 1, 4)},
              rng.uniform(-1, 1, 4))]
    for expr, vars_, grad in cases:
        reports = []
        for tiny in (tiny_way, 0):
            monkeypatch.setattr(verdict, "TINY", tiny)
            taken.clear()
            reports.append(_symbolic_reports(expr, vars_, grad, "float64", jacobian,
                                             monkeypatch, tapes=True))
            assert bool(taken) is (tiny > 0), (expr, tiny)   # each way really taken
        assert reports[0] == reports[1] and reports[0]["symbolic"]["passed"], expr
        assert reports[0]["symbolic"]["max_rel_error"] > 0 or expr == "a * b - c"


def test_what_a_pause_made_is_moved_old_and_a_callers_frozen_objects_stay_frozen():
    """The end of compute()'s pause moves the objects it made to the oldest generation (no
    young collection walks them), by freeze and unfreeze, but never when the caller froze
    objects of its own: those stay frozen."""
    import gc
    from gradcalc import api
    text = "+".join(["x"] * 10_001)
    r = api.compute(text, x=[1.0, 2.0], grad=1.0, check="none")
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    assert any(o is r.graph.nodes[-1] for o in gc.get_objects(generation=2))
    mine = [[] for _ in range(3)]
    gc.freeze()
    try:
        r = api.compute(text, x=[1.0, 2.0], grad=1.0, check="none")
        assert gc.get_freeze_count() > 0 and gc.isenabled()
        assert not any(o is mine for g in range(3) for o in gc.get_objects(generation=g))
        assert r.grads["x"].tolist() == [10_001.0] * 2
    finally:
        gc.unfreeze()
    del mine


def test_compute_keeps_resolved_options_and_each_call_keeps_its_grad():
    """compute() keeps its options validated and resolved over the text's `#:` lines per
    text, limits and options: a repeated call gives what a first call gives, with its own
    grad (the text's `#: --grad` where it passes none), and an option of another type
    (repeat=True, equal to 1) is validated afresh and refused."""
    from gradcalc import api
    text = "#: --grad 2\n#: --repeat 2\nsum(a*a)"
    first = {}
    for n, grad in enumerate([None, 3.0, None, 0.5, None]):
        if n == 1:
            first = dict(api._RESOLVED)
        r = api.compute(text, a=[1.0, 2.0], grad=grad, check="none")
        assert r.grads["a"].tolist() == [4.0 * (grad or 2.0), 8.0 * (grad or 2.0)], grad
        assert r.repeat == 2 and r.cotangent.tolist() == (grad or 2.0)
    assert first and all(api._RESOLVED[k] is v for k, v in first.items())   # kept, reused
    assert api.compute(text, a=[1.0, 2.0], repeat=1, check="none").grads["a"].tolist() == \
        [4.0, 8.0]
    for _ in range(2):
        with pytest.raises(GradcalcError, match="repeat"):
            api.compute(text, a=[1.0, 2.0], repeat=True, check="none")
    with pytest.raises(GradcalcError, match="check"):
        api.compute(text, a=[1.0, 2.0], check="nonee")
    # a list (wrt=["a"]) is kept too, as its items with their types: wrt=[1] (equal to
    # [True]) is refused each time, a tuple of the same names gives the same settings
    for _ in range(2):
        before = len(api._RESOLVED)
        r = api.compute(text, a=[1.0, 2.0], b=[3.0], wrt=["a"], check="none")
        assert r.grads["a"].tolist() == [8.0, 16.0] and r.wrt == ["a"] and "b" not in r.grads
    assert len(api._RESOLVED) == before
    assert api.compute(text, a=[1.0, 2.0], b=[3.0], wrt=("a",), check="none").wrt == ["a"]
    for wrt in ([1], [True], [1], [["a"]], [["a"]]):
        with pytest.raises(GradcalcError, match="wrt"):
            api.compute(text, a=[1.0, 2.0], wrt=wrt, check="none")
    # a one-number grad as a float, an int and a numpy float: one cotangent, byte for byte
    cots = [api.compute("a*a", a=[1.0, 2.0], grad=g, check="none", dtype=dt).cotangent
            for dt in ("float32", "float64") for g in (2.0, 2, np.float64(2.0))]
    assert all(c.dtype == cots[3 * (k // 3)].dtype and c.tobytes() == cots[3 * (k // 3)].tobytes()
               and c.flags.writeable and c.flags.c_contiguous for k, c in enumerate(cots))


# ---------------------------------------------------------------- mse_loss's forward
# issue 15, figure 17a: mse_loss's forward does np.mean's own arithmetic without its Python
# layers (the sum in the dtype, divided by the count in double precision, rounded back);
# it must give np.mean's number to the bit, at every size, shape and dtype, with overflow,
# NaN, an empty input and a broadcast target.
def _mse_cases():
    rng = np.random.default_rng(31)
    for dtype in ("float32", "float64"):
        for n in [*range(0, 40), 100, 257, 1000, 4099, 65536, 100_003]:
            x = rng.standard_normal(n) * rng.choice([1e-3, 1, 1e3, 1e20])
            yield x.astype(dtype), rng.standard_normal(n).astype(dtype)
        big = np.finfo(dtype).max
        yield np.array([big, -big], dtype), np.zeros(2, dtype)                  # overflow
        yield np.array([1.0, np.nan], dtype), np.zeros(2, dtype)
        yield np.array(2.5, dtype), np.array(1.0, dtype)                        # 0-d
        yield rng.standard_normal((7, 3)).astype(dtype), rng.standard_normal(3).astype(dtype)


def test_mse_forward_is_np_mean_bit_for_bit():
    from gradcalc.ops.losses import mse
    for k, (x, t) in enumerate(_mse_cases()):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")           # np.mean of an empty input warns
            want = np.asarray(np.mean((x - t) * (x - t)))
            got = mse(x, t)
        assert type(got) is np.ndarray and got.dtype == want.dtype == x.dtype, k
        assert got.shape == () and got.tobytes() == want.tobytes(), (k, got, want)


def test_the_json_size_counts_as_np_size():
    """check_json_size reads an array's size in C and anything else's by np.size: the count
    (which sets the memory limit's refusal and the bulk writer) is np.size's sum either way."""
    from gradcalc import api
    from gradcalc.errors import Limits
    from gradcalc.result import check_json_size
    r = api.compute("a*b", a=[1.0, 2.0], b=[3.0, 4.0], grad=1.0, check="none")
    assert check_json_size(r, Limits()) == 2 + 2 + 4 + 4 + 8
    for odd in (np.float64(2.0), 2.0, [1.0, 2.0, 3.0], np.zeros((2, 3), dtype=np.float32)):
        r.hvp = {"a": np.ones(2), "b": odd}
        want = sum(np.size(v) for v in (r.output, r.cotangent, *r.grads.values(),
                                         *r.leaves.values(), *r.jacobian.values(),
                                         *r.hvp.values()))
        assert check_json_size(r, Limits()) == want, odd


@pytest.mark.parametrize("value", [
    np.array([1.5, -0.0, 1e-5]), np.array([[1.5, 2.0]], dtype=np.float32),
    np.array([1.5, 2.25], dtype=np.float16), np.array([1.5, 2.0], dtype=">f8"),
    np.array([1, 2], dtype=np.int64), np.array([True, False]), np.float64(0.1),
    np.array(2.5), 3, 0.1])
def test_summed_lists_equal_strict_ones(value):
    """Result.finite_json() turns a float64 or float32 array into lists straight away and
    everything else the general way: for finite numbers of any dtype, the same numbers of
    the same types as the strict conversion, and their sum beside them."""
    from gradcalc.result import _summed, to_plain

    sums = []
    fast, strict = _summed(sums)(value), to_plain(value)
    assert repr(fast) == repr(strict)
    assert sums == [float(np.sum(np.asarray(value, dtype=np.float64)))]
