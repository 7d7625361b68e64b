"""Forward mode: J·u as a program, node by node from the leaves (SPEC 9's --tangent, --taylor).

Each node's tangent is its op's `jvp` rule where the table entry declares one (torch's own
forward-mode formulas, derivatives.yaml's `result:`, which differ from the backward's
Jacobian at ties, NaNs and the float range's edges), and otherwise the transpose of the
node's VJP rule, taken on a small program of that node alone (the rule is linear in its
cotangent, so this is exact). The tangents are recorded as equations of table ops
(traced.py), so that Taylor's next order differentiates them again; where a value is not
finite, as torch's nested jacfwd does with its efficient zero tangents (Nested). It never changes a
gradient, an HVP or a Hessian: those are torch's double backward, not its forward mode.
"""
from __future__ import annotations

import numpy as np

from . import plain
from .traced import Builder, Traced, Tracer, dot

COTANGENT = "#w"


class Nested:
    """Taylor's orders taken as torch's nested jacfwd takes them where a value is not finite
    (higher.taylor asks). Torch's forward mode holds a missing tangent as an efficient zero
    (ZeroTensor): an op with a ZeroTensor kernel (its entry's `keeps_zero`: add, sub, mul,
    div, the views) passes it on as zero, so the terms it would make vanish even against
    an infinite partial; any other op turns it into real zeros, and 0·inf = NaN. Where a
    tangent is missing at the next order is decided by torch's formulas: the directions u
    (here the leaves named DIRECTION + leaf) have none, nor have the real zeros an op made
    (the leaves named ZERO + shape), nor their products with a missing tangent. A one-input
    pointwise op's tangent is its VJP rule applied to the tangent, torch's
    auto_element_wise (rsqrt(1 - x²)·u for asin: the zero meets the partial by a
    product), not the rule transposed; an entry's `nested_jvp` (torch's own formula, 1 / x
    as reciprocal) comes before both. `order`: the orders already taken."""

    __slots__ = ("order",)

    def __init__(self):
        self.order = 0


EFFICIENT = "efficient zero"        # a missing tangent that an op may still read (Nested)
DIRECTION, ZERO = "#u:", "#0:"


def jvp_program(graph, output: int, tangent: dict, limits, values=None,
                nested: Nested | None = None):
    """A program whose output is J·u of `graph`'s node `output` (u: {leaf name: array});
    `values`: graph's values when known, not computed again; `nested`: Taylor's state when
    taken as torch's nested jacfwd (Nested). Returns (program, values)."""
    t = Traced(graph, limits, values)
    tans: dict = {}
    outer = nested is not None and nested.order >= 1
    for eq in graph.nodes[: output + 1]:
        if eq.kind == "leaf" and eq.name in tangent and eq.requires_grad:
            tans[eq.id] = _seed(t, graph, eq, tangent[eq.name], nested)
        elif outer and eq.kind == "leaf" and eq.name.startswith((DIRECTION, ZERO)):
            tans[eq.id] = EFFICIENT
        elif eq.kind == "op" and any(i in tans for i in eq.inputs):
            ins = _efficient([tans.get(i) for i in eq.inputs], t, graph, eq)
            if ins is EFFICIENT:
                tans[eq.id] = EFFICIENT
                continue
            tan = _nested_formula(t, eq, ins) if nested is not None else None
            if tan is None and nested is not None and eq.op.pointwise and len(ins) == 1 \
                    and eq.op.jvp is None:
                tan = _element_wise(t, eq, ins[0])
            elif tan is None:
                tan = _node_tangent(t, eq, ins, limits)
            if tan is not None:
                tans[eq.id] = t.b.lift(plain.sum_to(tan, 0, (), eq.shape))
    out = tans.get(output)
    if out is None or out is EFFICIENT:
        out = t.b.const(np.zeros(graph.nodes[output].shape, graph.dtype))
    if nested is not None:
        nested.order += 1
    return t.program(out)


def _efficient(ins: list, t: Traced, graph, eq):
    """The input tangents of node `eq` as its rule reads them: an efficient zero is absent
    where the op keeps it (EFFICIENT itself when no other tangent is left), else a leaf of
    real zeros (Nested)."""
    if not any(u is EFFICIENT for u in ins):
        return ins
    if eq.op.keeps_zero:
        ins = [None if u is EFFICIENT else u for u in ins]
        return EFFICIENT if all(u is None for u in ins) else ins
    return [_zeros(t, graph, graph.nodes[i].shape) if u is EFFICIENT else u
            for i, u in zip(eq.inputs, ins)]


def _seed(t: Traced, graph, eq, u, nested):
    """Leaf `eq`'s tangent u: a constant, or (Nested) a leaf of the program, one per leaf."""
    if nested is None:
        return t.b.lift(np.asarray(u, graph.dtype))
    name = DIRECTION + eq.name
    if name in graph.leaves:
        return t.nodes[graph.leaves[name]]
    return t.b.leaf(name, np.asarray(u, graph.dtype))


def _zeros(t: Traced, graph, shape):
    """Real zeros an op made of an efficient zero (Nested): a leaf, one per shape."""
    name = f"{ZERO}{shape}"
    if name in graph.leaves:
        return t.nodes[graph.leaves[name]]
    if name in t.b.comp.leaves:
        return Tracer(t.b, t.b.comp.leaves[name])
    return t.b.leaf(name, np.zeros(shape, graph.dtype))


def _nested_formula(t: Traced, eq, ins: list):
    """Node `eq`'s tangent by its entry's `nested_jvp` (torch's own formula, read by Nested
    alone), or None where it has none or declines."""
    if eq.op.nested_jvp is None:
        return None
    return eq.op.nested_jvp(ins, t.nodes[eq.id], *[t.nodes[i] for i in eq.inputs], **eq.params)


def _element_wise(t: Traced, eq, u):
    """torch's auto_element_wise: the op's VJP rule applied to the tangent u."""
    rule = eq.op.vjp(0)
    if u is None or rule is None:
        return None
    return rule(u, t.nodes[eq.id], t.nodes[eq.inputs[0]], **eq.params)


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
