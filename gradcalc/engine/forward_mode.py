"""Forward mode: J·u as a program, node by node from the leaves (SPEC 9's --tangent, --taylor).

Each node's tangent is its op's `jvp` rule where the table entry declares one (torch's own
forward-mode formulas, derivatives.yaml's `result:`, which differ from the backward's
Jacobian at ties, NaNs and the float range's edges), and otherwise the transpose of the
node's VJP rule, taken on a small program of that node alone (the rule is linear in its
cotangent, so this is exact). The tangents are recorded as equations of table ops
(traced.py), so that Taylor's next order differentiates them again. It never changes a
gradient, an HVP or a Hessian: those are torch's double backward, not its forward mode.
"""
from __future__ import annotations

import numpy as np

from . import plain
from .traced import Builder, Traced, dot

COTANGENT = "#w"


def jvp_program(graph, output: int, tangent: dict, limits, values=None):
    """A program whose output is J·u of `graph`'s node `output` (u: {leaf name: array});
    `values`: graph's values when known, not computed again. Returns (program, values)."""
    t = Traced(graph, limits, values)
    tans: dict = {}
    for eq in graph.nodes[: output + 1]:
        if eq.kind == "leaf" and eq.name in tangent and eq.requires_grad:
            tans[eq.id] = t.b.lift(np.asarray(tangent[eq.name], graph.dtype))
        elif eq.kind == "op" and any(i in tans for i in eq.inputs):
            tan = _node_tangent(t, eq, [tans.get(i) for i in eq.inputs], limits)
            if tan is not None:
                tans[eq.id] = t.b.lift(plain.sum_to(tan, 0, (), eq.shape))
    out = tans.get(output)
    if out is None:
        out = t.b.const(np.zeros(graph.nodes[output].shape, graph.dtype))
    return t.program(out)


def _node_tangent(t: Traced, eq, tans: list, limits):
    args = [t.nodes[i] for i in eq.inputs]
    if eq.op.jvp is not None:
        return eq.op.jvp(tans, t.nodes[eq.id], *args, **eq.params)
    return _transposed(t, eq, args, tans, limits)


def _transposed(t: Traced, eq, args, tans, limits):
    """The tangent of node `eq` as the derivative, with respect to its cotangent w, of
    Σ_j VJP_j(w)·tangent_j: recorded on a program of the node's own inputs, then replayed
    into the main program with those inputs in place."""
    b = t.b
    local = Builder(b.comp.source, b.dtype, limits)
    names = {}

    def leaf(name, tracer):
        if b.comp.nodes[tracer.id].kind == "const":     # a rule may read a constant's number
            return local.const(tracer.value)
        names[name] = tracer
        return local.leaf(name, tracer.value, requires_grad=False)
    ins = [leaf(f"#a{j}", a) for j, a in enumerate(args)]
    ans = leaf("#ans", t.nodes[eq.id])
    w = local.leaf(COTANGENT, np.zeros(eq.shape, b.dtype))
    pairs = []
    for j, (a, u) in enumerate(zip(ins, tans)):
        rule = eq.op.vjp(j)
        if u is None or rule is None:
            continue
        c = rule(w, ans, *ins, **eq.params)
        if c is not None:
            pairs.append((local.lift(plain.sum_to(c, 0, (), a.shape)), leaf(f"#t{j}", u)))
    if not pairs:
        return None
    s = dot(local, pairs)
    prog, values = local.graph(s.id), list(local.values)
    second = Traced(prog, limits, values, wrt={COTANGENT})
    ju = second.backward(np.ones((), b.dtype)).get(COTANGENT)
    if ju is None:
        return None
    return _replay(second.b, second.b.lift(ju), names, b)


def _replay(src: Builder, out, names: dict, b: Builder):
    """Node `out` of builder `src`, recorded again in builder `b` with src's leaves replaced
    by the tracers `names` gives them (only the nodes `out` reads)."""
    nodes = src.comp.nodes
    need, work = set(), [out.id]
    while work:
        i = work.pop()
        if i not in need:
            need.add(i)
            work.extend(nodes[i].inputs if nodes[i].kind == "op" else ())
    got = {}
    for i in sorted(need):
        eq = nodes[i]
        if eq.kind == "leaf":
            got[i] = names[eq.name]
        elif eq.kind == "const":
            got[i] = b.const(src.values[i])
        else:
            got[i] = b.apply(eq.op, [got[j] for j in eq.inputs], eq.params, src.values[i])
    return got[out.id]
