"""The plain interpreter of a compiled graph: forward, backward and the dense Jacobian.

`forward` walks `graph.nodes` in order and keeps every value; `backward` walks them in
reverse (`walk` over `schedule`, the walk the economies share), keeping cotangents in a dict
and reducing a broadcast cotangent to its operand's shape in one place (`sum_to`);
`jacobian` is backward with the identity as a batch of cotangents. This is the definition every economy (economy.py) must reproduce bit for bit, so
it must never take a shortcut, reuse a buffer or remember anything between calls.
"""
from __future__ import annotations

import math

import numpy as np


def sum_to(v, nb: int, batch: tuple, shape: tuple):
    """Reduce `v` (broadcastable to batch + some out shape) to batch + `shape`: PyTorch's
    sum_to for broadcast operands, done once here instead of in every rule. A traced array
    (engine/traced.py) passes as it is: its own methods record the same reductions."""
    if not hasattr(v, "__array_function__"):
        v = np.asarray(v)
    if v.shape == batch + shape:
        return v
    lead = v.ndim - nb - len(shape)
    if lead < 0:
        return np.broadcast_to(v, batch + shape)
    axes = tuple(range(nb, nb + lead)) + tuple(
        nb + lead + i for i, s in enumerate(shape) if s == 1 and v.shape[nb + lead + i] != 1)
    if axes:
        v = v.sum(axis=axes, keepdims=True)
    v = v.reshape(v.shape[:nb] + v.shape[nb + lead:]) if lead else v
    if v.shape != batch + shape:
        v = np.broadcast_to(v, batch + shape)
    return v


def forward(graph, leaf_values: dict | None = None, upto: int | None = None) -> list:
    """Values of every node up to `upto` (default the output), a list indexed by node id.
    `leaf_values` maps a node id to a replacement value (the numeric check perturbs leaves)."""
    last = graph.output if upto is None else upto
    replaced = leaf_values or {}
    values = [None] * len(graph.nodes)
    with np.errstate(all="ignore"):
        for eq in graph.nodes[: last + 1]:
            if eq.kind != "op":
                values[eq.id] = replaced.get(eq.id, eq.value)
                continue
            out = eq.op.forward(*[values[i] for i in eq.inputs], **eq.params)
            values[eq.id] = np.asarray(out, dtype=graph.dtype)
    return values


def schedule(graph, out: int) -> list:
    """The backward's order from `out`: in reverse, each op node that requires grad (or is
    the output) with its edges that carry gradient, each (input id, rule, input shape).
    The economies remember it per program; plain.backward builds it afresh each call."""
    nodes = graph.nodes
    steps = []
    for eq in reversed(nodes[: out + 1]):
        if eq.kind != "op" or (not eq.requires_grad and eq.id != out):
            continue
        edges = []
        for j, i in enumerate(eq.inputs):
            if nodes[i].requires_grad:
                rule = eq.op.vjp(j)
                if rule is not None:
                    edges.append((i, rule, nodes[i].shape))
        if edges:
            steps.append((eq, edges))
    return steps


def walk(steps, values, ct: dict, take) -> dict:
    """The backward walk every interpreter shares (this one, the blocked run and the fused
    recording of economy.py and fused.py): pop each node's cotangent `g` from `ct`, call each
    edge's rule as rule(g, value, *input values, **params), pass what it returns (unless
    None) through `take(eq, shape, v)` and add that to the input's cotangent. `take` is the
    interpreter's step: it conforms a contribution to `shape` and the dtype as that
    interpreter does, or raises to end the walk. Returns `ct`: the cotangents no step popped
    (the leaves', among them)."""
    for eq, edges in steps:
        g = ct.pop(eq.id, None)
        if g is None:
            continue
        ans = values[eq.id]
        args = [values[i] for i in eq.inputs]
        params = eq.params
        for i, rule, shape in edges:
            v = rule(g, ans, *args, **params) if params else rule(g, ans, *args)
            if v is None:
                continue
            v = take(eq, shape, v)
            ct[i] = v if i not in ct else ct[i] + v
    return ct


class Stop(Exception):
    """A hook ended plain.backward's walk."""


def backward(graph, values, cotangent, output: int | None = None, batch: tuple = (),
             hook=None) -> dict:
    """Cotangents of the leaves after pulling `cotangent` (shape batch + output shape) back
    from `output`: node id -> array of shape batch + leaf shape; a leaf the output does not
    reach is absent. `hook(eq, v)` sees every contribution `v` a rule of node `eq` makes
    (already summed to its input's shape); when it returns True the walk stops there."""
    nodes = graph.nodes
    out = graph.output if output is None else output
    nb, dtype = len(batch), graph.dtype

    def take(eq, shape, v):
        v = sum_to(v, nb, batch, shape).astype(dtype)
        if hook is not None and hook(eq, v):
            raise Stop
        return v

    try:
        with np.errstate(all="ignore"):
            ct = walk(schedule(graph, out), values, {out: cotangent}, take)
    except Stop:
        return {}
    return {i: v for i, v in ct.items() if nodes[i].kind == "leaf"}


def jacobian(graph, values, output: int, leaf_ids) -> dict:
    """Every leaf's Jacobian, laid out output.shape + leaf.shape as
    torch.autograd.functional.jacobian: its rows are the VJPs with the basis vectors, so one
    backward with the identity as a batch of cotangents gives them all."""
    oshape = graph.nodes[output].shape
    eye = np.eye(math.prod(oshape), dtype=graph.dtype).reshape(oshape + oshape)
    grads = backward(graph, values, eye, output, batch=oshape)
    return {i: grads[i] if i in grads else np.zeros(oshape + graph.nodes[i].shape, graph.dtype)
            for i in leaf_ids}
