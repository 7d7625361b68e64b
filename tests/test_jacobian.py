"""The batched Jacobian against the row-by-row one, for every op of the table.

The engine's Jacobian runs backward once, with the identity as a batch of cotangents in front
of the output's shape; every VJP rule must carry those leading batch axes through. Here the
same Jacobian is built the slow way, one backward per basis cotangent, and the two must agree
to 1e-12 (they do the same arithmetic in another order). Then vᵀJ, contracted by hand, must
equal backward(v) for a random v: the grads a user sees are the Jacobian's rows combined by
the cotangent, as SPEC 1 says. Inputs are random inside each sample's domain.

The last part checks broadcasting: a leaf broadcast to the output's shape gets its grad
summed back to its own shape, with sums derived by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcalc
from gradcalc.engine import economy, plain
from gradcalc.compile import Compiler
from gradcalc.ops import OPS
from gradcalc.parser import parse_program

from gradcalc.errors import Limits as _Limits  # noqa: E402
LIMITS = _Limits()      # the edge: tests build the limits, the library takes them

TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=2e-6, atol=1e-6)}


def compile_sample(expr, shapes, domain, seed, dtype="float64"):
    rng = np.random.default_rng(seed)
    lo, hi = domain
    bindings = {n: rng.uniform(lo, hi, size=s) for n, s in shapes.items()}
    return Compiler(expr, bindings, dtype=np.dtype(dtype), seed=seed, limits=LIMITS).program(parse_program(expr, LIMITS.max_depth))


def row_by_row(graph, values, output, leaf_ids):
    """The Jacobian with one backward per basis cotangent (the slow way)."""
    oshape = graph.nodes[output].shape
    n = math.prod(oshape)
    rows = {i: [] for i in leaf_ids}
    for k in range(n):
        e = np.zeros(n, dtype=graph.dtype)
        e[k] = 1.0
        grads = plain.backward(graph, values, e.reshape(oshape), output)
        for i in leaf_ids:
            g = grads.get(i)
            if g is None:
                g = np.zeros(graph.nodes[i].shape, dtype=graph.dtype)
            assert g.shape == graph.nodes[i].shape
            rows[i].append(np.ravel(g))
    return {i: np.array(rows[i]).reshape(oshape + graph.nodes[i].shape) for i in leaf_ids}


def check_graph(graph, seed, dtype="float64", output=None):
    output = graph.output if output is None else output
    values = plain.forward(graph)
    leaf_ids = sorted(graph.leaves.values())
    oshape = graph.nodes[output].shape
    J = economy.jacobian(graph, values, output, leaf_ids, structure=False)
    slow = row_by_row(graph, values, output, leaf_ids)
    # the structured shortcuts (a diagonal for elementwise programs, the matrix itself for an
    # identity batch through a product at the output) must give the same numbers, NaN
    # positions included
    S = economy.jacobian(graph, values, output, leaf_ids, structure=True)
    for i in leaf_ids:
        np.testing.assert_allclose(S[i], slow[i], **TOL[dtype],
                                   err_msg=f"structured Jacobian for {graph.nodes[i].name}")
    rng = np.random.default_rng(seed + 1000)
    v = rng.normal(size=oshape).astype(dtype)
    grads = economy.backward(graph, values, v, output)
    for i in leaf_ids:
        leaf = graph.nodes[i]
        assert J[i].shape == oshape + leaf.shape, (leaf.name, J[i].shape)
        assert J[i].dtype == np.dtype(dtype), (leaf.name, J[i].dtype)
        np.testing.assert_allclose(J[i], slow[i], **TOL[dtype],
                                   err_msg=f"batched != row-by-row Jacobian for {leaf.name}")
        # v^T J: contract the output axes of J with v
        vj = np.tensordot(v.astype(np.float64), J[i].astype(np.float64), axes=len(oshape))
        g = grads.get(i, np.zeros(leaf.shape))
        assert g.shape == leaf.shape
        np.testing.assert_allclose(g, vj, **TOL[dtype],
                                   err_msg=f"backward(v) != v^T J for {leaf.name}")
    return J, grads, values


SAMPLES = [(name, k, s) for name in sorted(OPS) for k, s in enumerate(OPS[name].samples)]


@pytest.mark.parametrize("name,k,sample", SAMPLES, ids=[f"{n}-{k}" for n, k, _ in SAMPLES])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batched_jacobian_equals_row_by_row(name, k, sample, dtype):
    expr, shapes, domain = sample
    for seed in (0, 1):
        graph = compile_sample(expr, shapes, domain, seed, dtype)
        if OPS[name].family != "constructor":
            assert any(eq.kind == "op" and eq.op.name == name for eq in graph.nodes), expr
        check_graph(graph, seed, dtype)


# Calls beyond the table's samples that stress the batch axes: keepdim, dims of 3-D arrays,
# negative dims, matmul with batch broadcasting and 1-D operands, ties, zeros in prod,
# class-index targets, nested indexing.
EXTRA = [
    ("sum(x, dim=0, keepdim=True)", {"x": (2, 3)}, (-2.0, 2.0)),
    ("mean(x, dim=1)", {"x": (2, 3, 2)}, (-2.0, 2.0)),
    ("prod(x, dim=-1, keepdim=True)", {"x": (2, 3)}, (-2.0, 2.0)),
    ("prod(x * [1, 0, 1, 1])", {"x": (4,)}, (-2.0, 2.0)),        # one zero
    ("prod(x * [1, 0, 1, 0])", {"x": (4,)}, (-2.0, 2.0)),        # two zeros: all grads 0
    ("prod(x * [[1, 0, 1], [1, 1, 1]], dim=1)", {"x": (2, 3)}, (-2.0, 2.0)),
    ("max(x + zeros(2, 3))", {"x": (3,)}, (-2.0, 2.0)),          # each max tied twice
    ("max(x + zeros(2, 3), dim=0)", {"x": (3,)}, (-2.0, 2.0)),   # ties: first index
    ("min(x, dim=0, keepdim=True)", {"x": (3, 2)}, (-2.0, 2.0)),
    ("logsumexp(x, dim=0, keepdim=True)", {"x": (2, 3)}, (-2.0, 2.0)),
    ("norm(x, dim=-1)", {"x": (2, 2, 3)}, (-2.0, 2.0)),
    ("norm(x, p=1.5)", {"x": (4,)}, (-2.0, 2.0)),
    ("norm(x, p=0.5, dim=0)", {"x": (3, 2)}, (0.2, 2.0)),
    ("norm(x, p=-inf)", {"x": (4,)}, (-2.0, 2.0)),
    ("softmax(x, dim=1)", {"x": (2, 3, 2)}, (-2.0, 2.0)),
    ("log_softmax(x, dim=-2)", {"x": (3, 2)}, (-2.0, 2.0)),
    ("A @ B", {"A": (2, 2, 3), "B": (2, 3, 4)}, (-2.0, 2.0)),
    ("A @ B", {"A": (3, 2, 3), "B": (3, 2)}, (-2.0, 2.0)),
    ("A @ B", {"A": (2, 3), "B": (2, 3, 2)}, (-2.0, 2.0)),
    ("A @ v", {"A": (2, 2, 3), "v": (3,)}, (-2.0, 2.0)),
    ("v @ B", {"v": (3,), "B": (2, 3, 4)}, (-2.0, 2.0)),
    ("(A @ B).T", {"A": (2, 3), "B": (3, 4)}, (-2.0, 2.0)),
    ("trace(M @ M.T)", {"M": (2, 3)}, (-2.0, 2.0)),
    ("outer(u, v) @ w", {"u": (2,), "v": (3,), "w": (3,)}, (-2.0, 2.0)),
    ("x[1:, ::2]", {"x": (3, 4)}, (-2.0, 2.0)),
    ("x[0, :, -1]", {"x": (2, 3, 4)}, (-2.0, 2.0)),
    ("x[-2::1][0]", {"x": (3, 2)}, (-2.0, 2.0)),    # a negative step is refused, as in torch
    ("T.T", {"T": (2, 3, 4)}, (-2.0, 2.0)),
    ("reshape(x, -1)", {"x": (2, 3)}, (-2.0, 2.0)),
    ("stack(x, y, x, dim=-1)", {"x": (2, 3), "y": (2, 3)}, (-2.0, 2.0)),
    ("cat(x, y, dim=-1)", {"x": (2, 2), "y": (2, 3)}, (-2.0, 2.0)),
    ("cat(x, x * 2, x)", {"x": (2,)}, (-2.0, 2.0)),
    ("cross_entropy(x, [0, 2])", {"x": (2, 3)}, (-2.0, 2.0)),      # class indices
    ("cross_entropy(x, 1)", {"x": (3,)}, (-2.0, 2.0)),              # one sample, 1-D logits
    ("cross_entropy(x, [[0, 1], [2, 0]])", {"x": (2, 3, 2)}, (-2.0, 2.0)),
    ("mse_loss(x, y)", {"x": (2, 3), "y": (3,)}, (-2.0, 2.0)),      # broadcast target
    ("binary_cross_entropy_with_logits(x * ones(2, 3), y)", {"x": (3,), "y": (2, 3)}, (0.0, 1.0)),
    ("binary_cross_entropy(sigmoid(x), y)", {"x": (2, 3), "y": (2, 3)}, (0.1, 0.9)),
    ("clamp(x, lo, hi)", {"x": (2, 3), "lo": (3,), "hi": ()}, (-1.0, 1.0)),
    ("x ** y", {"x": (2, 1), "y": (1, 3)}, (0.5, 2.0)),
    ("detach(x) * x + detach(x * x)", {"x": (3,)}, (-2.0, 2.0)),
    ("sum(sin(x) @ W) * tanh(x)", {"x": (3,), "W": (3, 2)}, (-2.0, 2.0)),
    ("W @ x", {"W": (3, 4), "x": (4,)}, (-2.0, 2.0)),
    ("x @ W", {"W": (4, 3), "x": (4,)}, (-2.0, 2.0)),
    # non-finite values: rows of NaN/inf must match, position by position
    ("log(x) * y", {"x": (2, 3), "y": (2, 3)}, (-1.0, 1.0)),
    ("relu(log(x)) + sqrt(x)", {"x": (5,)}, (-1.0, 1.0)),
    ("maximum(log(x), y)", {"x": (4,), "y": (4,)}, (-1.0, 1.0)),
    ("clamp(log(x), -1, 1) * x", {"x": (4,)}, (-1.0, 1.0)),
    ("x / (x - x)", {"x": (3,)}, (-1.0, 1.0)),
    ("abs(log(x)) + sign(log(x))", {"x": (4,)}, (-1.0, 1.0)),
    ("W @ log(x)", {"W": (2, 3), "x": (3,)}, (-1.0, 1.0)),
    ("log(W) @ x", {"W": (2, 3), "x": (3,)}, (-1.0, 1.0)),
]


@pytest.mark.parametrize("expr,shapes,domain", EXTRA, ids=[e[0] for e in EXTRA])
def test_batched_jacobian_extra(expr, shapes, domain):
    graph = compile_sample(expr, shapes, domain, seed=3)
    check_graph(graph, seed=3)


def test_jacobian_of_an_intermediate():
    # --of: the Jacobian of y, not of the final output
    text = "y = x * w\nz = sum(y ** 2)"
    graph = Compiler(text, {"x": np.array([1.0, 2.0]), "w": np.array([3.0, -1.0])}, limits=LIMITS).program(
        parse_program(text, LIMITS.max_depth))
    J, grads, _ = check_graph(graph, seed=0, output=graph.names["y"])
    # y = x * w elementwise: dy/dx = diag(w), dy/dw = diag(x)
    np.testing.assert_array_equal(J[graph.leaves["x"]], [[3.0, 0.0], [0.0, -1.0]])
    np.testing.assert_array_equal(J[graph.leaves["w"]], [[1.0, 0.0], [0.0, 2.0]])


def test_jacobian_hand_derived_matmul():
    # y = A @ v with A (2, 2), v (2,): dy_i/dA_jk = [i == j] v_k, dy_i/dv_k = A_ik
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    v = np.array([5.0, 6.0])
    graph = Compiler("A @ v", {"A": A, "v": v}, limits=LIMITS).program(parse_program("A @ v", LIMITS.max_depth))
    J, _, _ = check_graph(graph, seed=0)
    JA = J[graph.leaves["A"]]
    assert JA.shape == (2, 2, 2)
    np.testing.assert_array_equal(JA[0], [[5.0, 6.0], [0.0, 0.0]])
    np.testing.assert_array_equal(JA[1], [[0.0, 0.0], [5.0, 6.0]])
    np.testing.assert_array_equal(J[graph.leaves["v"]], A)


def test_jacobian_of_max_tie_splits_and_dim_picks_first():
    # max over all of [[1, 3], [3, 0]]: the max 3 is tied twice, each gets 1/2
    # max(dim=0) of the same: column 1 has 3 at row 0 only; column 0 has 3 at row 1
    M = np.array([[1.0, 3.0], [3.0, 0.0]])
    g = Compiler("max(M)", {"M": M}, limits=LIMITS).program(parse_program("max(M)", LIMITS.max_depth))
    J, _, _ = check_graph(g, 0)
    np.testing.assert_array_equal(J[g.leaves["M"]], [[0.0, 0.5], [0.5, 0.0]])
    T = np.array([[3.0, 3.0], [3.0, 1.0]])            # column 0 tied: first index (row 0)
    g = Compiler("max(T, dim=0)", {"T": T}, limits=LIMITS).program(parse_program("max(T, dim=0)", LIMITS.max_depth))
    J, _, _ = check_graph(g, 0)
    np.testing.assert_array_equal(J[g.leaves["T"]], [[[1.0, 0.0], [0.0, 0.0]],
                                                     [[0.0, 1.0], [0.0, 0.0]]])


# ---------------------------------------------------------------- broadcasting
def grads_of(expr, grad, **vars):
    r = gradcalc.compute(expr, grad=grad, check="none", jacobian=True, **vars)
    return r


def test_broadcast_row_vector_sums_over_rows():
    # out[i, j] = x[j] * y[i, j]; grad_x[j] = sum_i v[i, j] * y[i, j]; grad_y = v * x
    x = [1.0, 2.0, 3.0]
    y = [[1.0, -1.0, 2.0], [0.5, 4.0, -3.0]]
    v = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    r = grads_of("x * y", v, x=x, y=y)
    # grad_x = [1*1 + 4*0.5, 2*-1 + 5*4, 3*2 + 6*-3] = [3, 18, -12]
    assert r.grads["x"].shape == (3,)
    np.testing.assert_array_equal(r.grads["x"], [3.0, 18.0, -12.0])
    np.testing.assert_array_equal(r.grads["y"], [[1.0, 4.0, 9.0], [4.0, 10.0, 18.0]])
    assert r.jacobian["x"].shape == (2, 3, 3)


def test_broadcast_column_and_row():
    # out[i, j] = a[i, 0] + b[0, j], a (2, 1), b (1, 3): grad_a = row sums of v,
    # grad_b = column sums of v
    v = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    r = grads_of("a + b", v, a=[[1.0], [2.0]], b=[[1.0, 2.0, 3.0]])
    assert r.output.shape == (2, 3)
    np.testing.assert_array_equal(r.grads["a"], [[6.0], [15.0]])      # 1+2+3, 4+5+6
    np.testing.assert_array_equal(r.grads["b"], [[5.0, 7.0, 9.0]])    # 1+4, 2+5, 3+6
    assert r.jacobian["a"].shape == (2, 3, 2, 1)
    assert r.jacobian["b"].shape == (2, 3, 1, 3)


def test_broadcast_scalar_leaf():
    # out = s * M with s a scalar leaf: grad_s = sum(v * M)
    M = [[1.0, 2.0], [3.0, 4.0]]
    v = [[1.0, 0.0], [-1.0, 2.0]]
    r = grads_of("s * M", v, s=2.0, M=M)
    assert r.grads["s"].shape == ()
    assert float(r.grads["s"]) == 1.0 - 3.0 + 8.0          # 1*1 + 0*2 - 1*3 + 2*4 = 6
    np.testing.assert_array_equal(r.grads["M"], [[2.0, 0.0], [-2.0, 4.0]])


def test_broadcast_leading_axes_and_size_one_axes():
    # out (3, 2, 2) = x (2, 1) * y (3, 1, 2): with v = ones,
    # grad_x[i, 0] = sum_{b, j} y[b, 0, j] (each x element meets every y element once)
    # grad_y[b, 0, j] = sum_i x[i, 0]
    x = [[1.0], [2.0]]
    y = [[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]]
    r = grads_of("x * y", 1, x=x, y=y)
    assert r.output.shape == (3, 2, 2)
    np.testing.assert_array_equal(r.grads["x"], [[21.0], [21.0]])     # 1+2+...+6
    np.testing.assert_array_equal(r.grads["y"], [[[3.0, 3.0]]] * 3)   # 1 + 2
    assert r.grads["y"].shape == (3, 1, 2)
    # v^T J layout: jacobian[x] is output.shape + x.shape
    assert r.jacobian["x"].shape == (3, 2, 2, 2, 1)
    np.testing.assert_array_equal(np.sum(r.jacobian["x"], axis=(0, 1, 2)), r.grads["x"])


def test_broadcast_through_a_reduction_with_keepdim():
    # x - mean(x, dim=1, keepdim=True): the (2, 1) mean broadcasts back over columns.
    # Each row of the Jacobian is I - 1/n: with v = [[1, 0, 0], [0, 0, 0]] the grad of row 0
    # is [1 - 1/3, -1/3, -1/3] and row 1 gets 0
    r = grads_of("x - mean(x, dim=1, keepdim=True)", [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                 x=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(r.grads["x"], [[2 / 3, -1 / 3, -1 / 3], [0.0, 0.0, 0.0]],
                               rtol=1e-15, atol=1e-15)


def test_broadcast_same_leaf_twice():
    # x (3,) reaches the (3, 3) output three ways: out[i, j] = x[i] x[j] + x[j], so
    # d out[i, j] / d x[k] = [i == k] x[j] + x[i] [j == k] + [j == k].
    # With v = ones: grad_x[k] = sum_j x[j] + sum_i x[i] + 3 (the broadcast + x adds x[k]
    # to each of the 3 rows) = 7 + 7 + 3
    x = [1.0, 2.0, 4.0]
    r = grads_of("outer(x, x) + x", 1, x=x)
    np.testing.assert_array_equal(r.grads["x"], [7.0 + 7.0 + 3.0] * 3)
