"""The backward pass written out as the chain rule (SPEC 9, --steps).

It walks the graph from the output to the leaves as plain.backward does, but runs each rule
on traced arrays (traced.py), so every contribution is an expression of table ops over the
incoming cotangent ḡ, the node's inputs and its value; that expression is printed with the
language's own operators, beside its value. It computes nothing the backward does not, and
never prints to a terminal (the view does).
"""
from __future__ import annotations

import numpy as np

from . import plain
from .traced import Traced

BAR = "\u0305"      # combining overline: g-bar


def chain_rule(graph, output: int, cotangent, values, limits) -> list:
    """[{"target", "formula", "value"}]: one step per contribution a rule makes, in the
    order backward applies them (from the output to the leaves)."""
    t = Traced(graph, limits, values)
    names = _labels(graph, output)
    shown = {i: names[i] for i in range(len(graph.nodes))}   # builder id -> how it is named
    v = t.leaf("#v", np.asarray(cotangent, graph.dtype), requires_grad=False)
    shown[v.id] = "v"
    ct = {output: v}
    first = "g" + BAR + "_" + names[output]
    steps = [{"target": first, "formula": f"{first} = v", "value": np.asarray(v.value)}]
    for eq in reversed(graph.nodes[: output + 1]):
        if eq.kind != "op" or eq.id not in ct:
            continue
        g = ct.pop(eq.id)
        before = shown.get(g.id)
        shown[g.id] = "g" + BAR + "_" + names[eq.id]     # this rule's incoming cotangent
        args = [t.nodes[i] for i in eq.inputs]
        for j, i in enumerate(eq.inputs):
            rule = eq.op.vjp(j)
            if rule is None or not graph.nodes[i].requires_grad:
                continue
            first = len(t.b.comp.nodes)
            contribution = rule(g, t.nodes[eq.id], *args, **eq.params)
            if contribution is None:
                continue
            c = t.b.lift(plain.sum_to(contribution, 0, (), graph.nodes[i].shape))
            target = "g" + BAR + "_" + names[i]
            steps.append({"target": target,
                          "formula": f"{target} += {_expr(t.b, c.id, shown, first)}",
                          "value": np.asarray(c.value)})
            ct[i] = c if i not in ct else t.b.apply("add", [ct[i], c])
        if before is not None:
            shown[g.id] = before
    return steps


def definitions(graph, output: int) -> list:
    """"t1 = 3 * a", ...: what each unnamed intermediate the steps mention stands for."""
    names = _labels(graph, output)
    nodes = _Nodes(graph)
    return [f"{names[eq.id]} = {_expr(nodes, eq.id, names, eq.id)}"
            for eq in graph.nodes[: output + 1] if eq.kind == "op"]


class _Nodes:
    """A compiled graph seen as _expr sees a builder."""

    def __init__(self, graph):
        self.comp = graph


def _labels(graph, output) -> dict:
    """A name per node: a leaf or an assigned name as written, the output y, else t1, t2,
    ... in order."""
    out, k = {}, 0
    for eq in graph.nodes:
        if eq.kind == "op" and not eq.name:
            k += 1
        out[eq.id] = eq.name or (f"t{k}" if eq.kind == "op" else _number(eq.value))
    for name, i in graph.names.items():
        out[i] = name
    if not graph.nodes[output].name and output not in graph.names.values():
        out[output] = "y"
    return out


def _number(value) -> str:
    a = np.asarray(value)
    if a.size == 1:
        return f"{float(a.reshape(())):g}"
    return f"const{list(a.shape)}"


def _expr(b, i, shown, first, top=True) -> str:
    """The expression of builder node `i`: nodes made before the rule ran (id < first) by
    their names, the rule's own equations spelled out with operators where the table has
    one."""
    eq = b.comp.nodes[i]
    if i in shown and (i < first or eq.kind != "op"):
        return shown[i]
    if eq.kind != "op":
        return _number(eq.value)
    op = eq.op
    args = [_expr(b, k, shown, first, False) for k in eq.inputs]
    if not (op.syntax and "x" not in op.syntax and len(args) == 2):
        args = [_expr(b, k, shown, first) for k in eq.inputs]     # inside f(...): no parens
    zeros = [k for k in eq.inputs if b.comp.nodes[k].kind == "const"
             and not np.any(b.comp.nodes[k].value)]
    if op.name == "add" and zeros and b.comp.nodes[zeros[0]].shape == eq.shape:
        # how the tracer broadcasts (x + zeros of the target shape)
        other = args[1] if eq.inputs[0] == zeros[0] else args[0]
        return f"broadcast({other}, {tuple(eq.shape)})"
    if op.syntax and "x" not in op.syntax and len(args) == 2:
        text = f"{args[0]} {op.syntax} {args[1]}"
        return text if top else f"({text})"
    if op.name == "neg":
        return f"-{args[0]}"
    params = ", ".join(f"{k}={v}" for k, v in eq.params.items()
                       if not k.startswith("_") and v is not None and v is not False)
    return f"{op.name}({', '.join(args + ([params] if params else []))})"

