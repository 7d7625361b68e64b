"""Forward evaluation and reverse-mode backward over a compiled graph.

The engine owns two loops: `forward` walks `graph.nodes` in order, `backward` walks them in
reverse, reading and accumulating cotangents in a dict, and reducing a broadcast cotangent
back to its operand's shape in one place (`sum_to`). Cotangents may carry leading batch
axes: backward with an identity batch gives whole Jacobians in one pass. It never parses,
prints or knows about the CLI.
"""
from __future__ import annotations

import math

import numpy as np

from .compile import Graph


def sum_to(v, nb: int, batch: tuple, shape: tuple):
    """Reduce `v` (broadcastable to batch + some out shape) to batch + `shape`: PyTorch's
    sum_to for broadcast operands, done once here instead of in every rule."""
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


def _params(eq):
    return {k: v for k, v in eq.params.items()}


def forward(graph: Graph, leaf_values: dict | None = None, upto: int | None = None):
    """Values of every node (a list indexed by node id). `leaf_values` maps node id to a
    replacement value (the numeric check perturbs leaves this way)."""
    nodes = graph.nodes
    last = graph.output if upto is None else upto
    values = [None] * len(nodes)
    dtype = graph.dtype
    with np.errstate(all="ignore"):
        for eq in nodes[: last + 1]:
            if eq.kind != "op":
                values[eq.id] = eq.value
                if leaf_values and eq.id in leaf_values:
                    values[eq.id] = leaf_values[eq.id]
                continue
            out = eq.op.forward(*[values[i] for i in eq.inputs], **eq.params)
            if not isinstance(out, np.ndarray) or out.dtype != dtype:
                out = np.asarray(out, dtype=dtype)
            values[eq.id] = out
    return values


def backward(graph: Graph, values, cotangent, output: int | None = None, batch: tuple = ()):
    """Cotangents of every node that requires grad, after pulling `cotangent` (shape
    batch + output shape) back from `output`. Returns a dict node id -> array of shape
    batch + node shape; leaves that the output does not reach are absent."""
    nodes = graph.nodes
    out = graph.output if output is None else output
    nb = len(batch)
    ct = {out: cotangent}
    with np.errstate(all="ignore"):
        for eq in reversed(nodes[: out + 1]):
            if eq.kind != "op" or eq.id not in ct:
                continue
            g = ct.pop(eq.id)
            args = [values[i] for i in eq.inputs]
            for j, i in enumerate(eq.inputs):
                src = nodes[i]
                if not src.requires_grad:
                    continue
                rule = eq.op.vjp(j)
                if rule is None:
                    continue
                v = rule(g, values[eq.id], *args, **eq.params)
                if v is None:
                    continue
                v = sum_to(v, nb, batch, src.shape)
                if v.dtype != graph.dtype:
                    v = v.astype(graph.dtype)
                ct[i] = v if i not in ct else ct[i] + v
    return {i: v for i, v in ct.items() if nodes[i].kind == "leaf"}


def jacobian_entries(graph: Graph, output: int, leaf_ids) -> int:
    out_size = graph.nodes[output].size
    return out_size * sum(graph.nodes[i].size for i in leaf_ids)


def jacobian_memory(graph: Graph, output: int) -> int:
    """Bytes of the batched backward: an out-sized batch of cotangents at every node that
    requires grad (an upper bound, counted before anything is allocated)."""
    out_size = graph.nodes[output].size
    total = sum(n.size for n in graph.nodes[: output + 1] if n.requires_grad)
    return 2 * out_size * total * graph.dtype.itemsize


def jacobian(graph: Graph, values, output: int, leaf_ids):
    """Every leaf's Jacobian in one batched pass: the identity as a batch of cotangents.
    Layout output.shape + leaf.shape, as torch.autograd.functional.jacobian."""
    oshape = graph.nodes[output].shape
    n = math.prod(oshape)
    eye = np.eye(n, dtype=graph.dtype).reshape(oshape + oshape)
    grads = backward(graph, values, eye, output, batch=oshape)
    out = {}
    for i in leaf_ids:
        shape = oshape + graph.nodes[i].shape
        out[i] = grads[i] if i in grads else np.zeros(shape, dtype=graph.dtype)
    return out


def first_nonfinite(graph: Graph, values, output: int):
    """The first op node whose value is non-finite although its inputs are finite."""
    with np.errstate(all="ignore"):
        finite = {}
        for eq in graph.nodes[: output + 1]:
            v = values[eq.id]
            if v is None:
                continue
            ok = bool(np.isfinite(v).all())
            finite[eq.id] = ok
            if not ok and eq.kind == "op" and all(finite.get(i, True) for i in eq.inputs):
                return eq
    return None


def first_nonfinite_grad(graph: Graph, values, cotangent, output: int):
    """Re-run backward watching for the first rule that turns finite cotangents into
    non-finite ones (PyTorch's anomaly mode). Only called when a grad is non-finite."""
    nodes = graph.nodes
    ct = {output: cotangent}
    if not np.isfinite(cotangent).all():
        return None, None
    with np.errstate(all="ignore"):
        for eq in reversed(nodes[: output + 1]):
            if eq.kind != "op" or eq.id not in ct:
                continue
            g = ct.pop(eq.id)
            args = [values[i] for i in eq.inputs]
            for j, i in enumerate(eq.inputs):
                if not nodes[i].requires_grad or eq.op.vjp(j) is None:
                    continue
                v = eq.op.vjp(j)(g, values[eq.id], *args, **eq.params)
                if v is None:
                    continue
                v = sum_to(v, 0, (), nodes[i].shape)
                if not np.isfinite(v).all():
                    return eq, j
                ct[i] = v if i not in ct else ct[i] + v
    return None, None
