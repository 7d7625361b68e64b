"""The engine's entry point and the plain backward's hook, with numbers derived by hand.

`engine.differentiate` answers a Request with values, per-leaf grads, Jacobians and the
leaves the output does not reach, on the plain path and the economic one alike; the hook of
`plain.backward` sees each rule's contribution in order and can stop the walk, which is all
the non-finite diagnosis needs.
"""
from __future__ import annotations

import numpy as np
import pytest

from gradcalc import engine
from gradcalc.compile import Compiler
from gradcalc.engine import plain
from gradcalc.parser import parse_program

from gradcalc.errors import Limits as _Limits  # noqa: E402
LIMITS = _Limits()      # the edge: tests build the limits, the library takes them


def compile_(expr, **bindings):
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in bindings.items()}
    return Compiler(expr, arrays, limits=LIMITS).program(parse_program(expr, LIMITS.max_depth))


@pytest.mark.parametrize("economy", [True, False])
@pytest.mark.parametrize("drop", [True, False])
def test_differentiate_answers_the_request(economy, drop, monkeypatch):
    # y = x * x + 3 * a, b unused: dy/dx = 2x, dy/da = 3, b has no path
    monkeypatch.setattr(engine, "ECONOMY", economy)
    graph = compile_("x * x + 3 * a + 0 * detach(b)", x=[1.0, -2.0], a=[5.0, 6.0], b=[7.0, 8.0])
    ids = tuple(graph.leaves[n] for n in ("x", "a", "b"))
    cot = np.array([1.0, 10.0])
    answer = engine.differentiate(engine.Request(graph, graph.output, cot, ids,
                                                 jacobian=True, drop_values=drop))
    x, a, b = ids
    assert answer.values[graph.output].tolist() == [16.0, 22.0]
    assert answer.grads[x].tolist() == [2.0, -40.0]
    assert answer.grads[a].tolist() == [3.0, 30.0]
    assert answer.no_path == [b] and b not in answer.grads
    assert answer.jacobians[x].tolist() == [[2.0, 0.0], [0.0, -4.0]]
    assert answer.jacobians[a].tolist() == [[3.0, 0.0], [0.0, 3.0]]
    assert answer.jacobians[b].tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_differentiate_without_jacobian_answers_none():
    graph = compile_("sum(x * x)", x=[3.0, 4.0])
    (x,) = graph.leaves.values()
    answer = engine.differentiate(engine.Request(graph, graph.output, np.array(2.0), (x,)))
    assert answer.jacobians is None
    assert answer.grads[x].tolist() == [12.0, 16.0]


def test_hook_sees_each_contribution_and_stops_the_walk():
    # y = sqrt(x) * 2 at x = 0: mul's rule gives 2 (finite), sqrt's gives 2 / (2 * 0) = inf
    graph = compile_("sqrt(x) * 2", x=[0.0, 4.0])
    values = plain.forward(graph)
    seen = []

    def watch(eq, v):
        seen.append((eq.op.name, v.tolist()))
        return not np.isfinite(v).all()

    grads = plain.backward(graph, values, np.ones(2), hook=watch)
    assert seen == [("mul", [2.0, 2.0]), ("sqrt", [np.inf, 0.5])]
    assert grads == {}                    # stopped: no grads are answered
    # without a hook the same walk reaches the leaf
    assert plain.backward(graph, values, np.ones(2))[graph.leaves["x"]].tolist() == [np.inf, 0.5]


def test_memory_estimates_count_before_allocating():
    graph = compile_("sum(x * y)", x=np.zeros(10), y=np.zeros(10))
    x, y = graph.leaves["x"], graph.leaves["y"]
    total, needing = engine.elements(graph, graph.output)
    assert (total, needing) == (10 + 10 + 10 + 1, 10 + 10 + 10 + 1)
    assert engine.jacobian_entries(graph, graph.output, [x, y]) == 20
    assert engine.jacobian_memory(graph, graph.output) == 2 * 1 * 31 * 8
