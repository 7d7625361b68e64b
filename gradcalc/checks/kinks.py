"""Points where the function is not differentiable, and PyTorch's convention at each.

Each op's entry in the table declares its kinks and singular points (relu at 0, a tie of
maximum, clamp at a bound, sqrt at 0, ...) with the derivative PyTorch 2.13 defines there
(`ops.Kink`). Both checks use them, through this module, to name the op behind a
nondifferentiable point they found, and to know where PyTorch's conventions may compose
beyond what calculus gives. It decides nothing about correctness on its own and never
imports sympy.
"""
from __future__ import annotations

import math

import numpy as np

from .context import ancestors, sum_to

BLOCK = 1 << 16                 # elements a pointwise op's kink predicate is first tried on


def nan_may_arise(context, sites):
    """True when autograd may legitimately produce NaN (0 * inf, inf - inf): a kink site
    on the path, or a non-finite value anywhere on it."""
    if sites:
        return True
    vals = context.vals
    with np.errstate(all="ignore"):
        return not all(np.isfinite(np.asarray(vals[i], dtype=np.float64)).all()
                       for i in context.ids)


def _mask(pred, eq, vals):
    return pred(*[np.asarray(vals[j]) for j in eq.inputs], **eq.params)


def kink_sites(context):
    """[(node, mask over the node's shape, whole, words)] for every op node on the path that
    sits at one of its kinks at the inputs; `whole` where the kink's convention defines
    every derivative through the node."""
    sites, vals, nodes = [], context.vals, context.graph.nodes
    with np.errstate(all="ignore"):
        for i, kink in _kinks_on_path(context):
            eq = nodes[i]
            if _none_by_blocks(kink.where, eq, vals):
                continue
            try:
                m = np.asarray(_mask(kink.where, eq, vals), dtype=bool)
            except Exception:               # a predicate that cannot run names nothing
                continue
            if m.any():                     # (none at the inputs: none broadcast)
                try:
                    m = np.broadcast_to(m, eq.shape)
                except ValueError:          # a mask over the inputs of a loss: the whole node
                    m = np.broadcast_to(m.any(), eq.shape)
            if m.any():
                whole = kink.whole is not None and bool(np.any(_mask(kink.whole, eq, vals)))
                sites.append((eq, m, whole, kink.words))
    return sites


def _none_by_blocks(pred, eq, vals):
    """True when a pointwise op whose inputs all have its shape (or are numbers) sits at no
    kink: its predicate, elementwise, is tried block by block (small temporaries, in cache,
    where the whole mask would be a fresh array of the node's size: the usual case, a
    million elements and no kink, pays no page faults). False: look at the whole mask (a
    site, or inputs of other shapes, or a predicate that raises)."""
    size = math.prod(eq.shape)
    if not eq.op.pointwise or size <= BLOCK:
        return False
    ins = [np.asarray(vals[j]) for j in eq.inputs]
    if not all(v.ndim == 0 or v.shape == tuple(eq.shape) for v in ins):
        return False
    flat = [v if v.ndim == 0 else v.reshape(-1) for v in ins]
    try:
        for lo in range(0, size, BLOCK):
            block = [v if v.ndim == 0 else v[lo:lo + BLOCK] for v in flat]
            if np.any(pred(*block, **eq.params)):
                return False
    except Exception:               # the whole mask's way decides
        return False
    return True


def _kinks_on_path(context):
    """(node id, kink) of every op on the path that declares kinks, once per compiled
    program (its memo is shared by every rebinding to new values)."""
    memo, key = context.graph.memo, ("check: kinks on path", context.output_id)
    hit = memo.get(key)
    if hit is None:
        nodes = context.graph.nodes
        hit = memo[key] = [(i, kink) for i in context.ids if nodes[i].kind == "op"
                           for kink in nodes[i].op.kinks]
    return hit


class Labeller:
    """Names the op (and PyTorch's convention) behind a flagged leaf element. In an
    elementwise program a site's mask maps element by element to the leaf; otherwise the
    first op on the path that sits at a kink anywhere is named."""

    def __init__(self, context, sites, fallback):
        graph = self.graph = context.graph
        self.sites, self.fallback = sites, fallback
        self.elementwise, self.out_shape = context.elementwise, context.out_shape
        self.per_leaf = {}
        # leaves upstream of a WHOLE_NODE site: every derivative of theirs is convention
        self.whole = set()
        for eq, _, whole, _ in sites:
            if whole:
                self.whole.update(i for i in ancestors(graph, eq.id)
                                  if graph.nodes[i].kind == "leaf")

    def label(self, leaf_eq, flat_index):
        if not self.sites:
            return None, self.fallback
        if not self.elementwise:
            names = sorted({e.op.name for e, _, _, _ in self.sites})
            return ", ".join(names), self.sites[0][3]
        if leaf_eq.id not in self.per_leaf:
            masks = []
            for eq, m, _, words in self.sites:
                if leaf_eq.id not in ancestors(self.graph, eq.id):
                    continue                # a kink on another leaf's path explains nothing here
                mo = np.broadcast_to(m, self.out_shape).astype(np.int64)
                masks.append((eq, sum_to(mo, leaf_eq.shape).reshape(-1) > 0, words))
            self.per_leaf[leaf_eq.id] = masks
        for eq, m, words in self.per_leaf[leaf_eq.id]:
            if m[flat_index]:
                return eq.op.name, words
        return None, self.fallback


