"""What a cross-check needs of one calculation, as one record built by the caller (`Context`),
and the facts about the program that both methods derive from it (the nodes the output
depends on, whether they are all pointwise, every value in float64, one leaf's inputs).

It reads the calculation and never changes it; it decides nothing about correctness and
never imports sympy.
"""
from __future__ import annotations

import copy
import math
from typing import Any, NamedTuple

import numpy as np

from .. import engine
from ..compile import Graph
from ..errors import Limits


class once:
    """functools.cached_property without its lock (Python 3.11 takes one at each first
    read: microseconds that a JSON Lines request pays for every property): the value is
    computed on the first read and kept in the instance. A context is read by one check at
    a time, and a property computed twice would give the same value."""

    def __init__(self, f):
        self.f, self.name, self.__doc__ = f, f.__name__, f.__doc__

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        v = obj.__dict__[self.name] = self.f(obj)
        return v


class Leaf(NamedTuple):
    """One leaf the grads are taken by: its equation, and autograd's grad and Jacobian
    columns for it (float64; a zero grad where no path reaches it). A named tuple: a check
    makes one per leaf (JSON Lines: per request)."""

    name: str
    eq: Any
    grad: np.ndarray
    jac: np.ndarray | None


class Higher:
    """The answers of SPEC 9 a check compares, each None unless asked for, with the
    directions they were taken along ({leaf name: array of its shape}; a leaf without one
    moved by 0): J·u along `tangent`, the Taylor derivatives of order 1..len(taylor) along
    `along`, {a: {b: H_ab}} (an array, or a block with `.diag` when it is diagonal) and
    {leaf: H·u} along `hvp_dir`, all of vᵀ·y for the context's cotangent v. Plain classes
    here and for the other records of the checks: a dataclass costs 0.3-1 ms to define, at
    the first check of every process (issue 15, figures 2 and 7)."""

    __slots__ = ("jvp", "tangent", "taylor", "along", "hessian", "hvp", "hvp_dir")

    def __init__(self, jvp=None, tangent: dict | None = None, taylor: list | None = None,
                 along: dict | None = None, hessian: dict | None = None,
                 hvp: dict | None = None, hvp_dir: dict | None = None):
        self.jvp, self.tangent, self.taylor, self.along = jvp, tangent, taylor, along
        self.hessian, self.hvp, self.hvp_dir = hessian, hvp, hvp_dir


class Context:
    """Everything a check reads of a calculation, never changed once made. `grads` maps each
    leaf name of `wrt` to autograd's grad from ONE backward (None: no path), `jacobian` each
    to its Jacobian or is None when it was not computed; `cotangent` is None when only J·u
    or Taylor was asked (nothing of first order to check); `higher` holds the second-order
    answers, if any; `rtol`/`atol` are the user's (None: the method's default); `dtype` is
    "float64" or "float32". What the checks derive from it is kept in its __dict__ (`once`)."""

    def __init__(self, graph: Graph, values: Any, output_id: int, cotangent: np.ndarray,
                 wrt: tuple, grads: dict, jacobian: dict | None, dtype: str, limits: Limits,
                 rtol: float | None = None, atol: float | None = None,
                 higher: Higher | None = None):
        self.graph = graph
        self.values = values              # node values, indexed by node id
        self.output_id, self.cotangent, self.wrt, self.grads = output_id, cotangent, wrt, grads
        self.jacobian, self.dtype, self.limits = jacobian, dtype, limits
        self.rtol, self.atol, self.higher = rtol, atol, higher

    def tolerances(self, kind):
        """(rtol, atol): the user's, else symbolic 1e-7/1e-10 (float64), numeric 1e-5/1e-7
        (its own truncation and rounding are added per entry as slack). In float32 both
        expectations are still computed in float64 (at the float32 inputs), so what remains
        is autograd's float32 rounding: 1e-4/1e-6 for both."""
        if self.dtype != "float64":
            r, a = 1e-4, 1e-6
        elif kind == "numeric":
            r, a = 1e-5, 1e-7
        else:
            r, a = 1e-7, 1e-10
        return (r if self.rtol is None else self.rtol), (a if self.atol is None else self.atol)

    @once
    def ids(self):
        """Ids of the nodes the output depends on, in graph order (once per compiled
        program: its memo is shared by every rebinding to new values)."""
        memo, key = self.graph.memo, ("check: ancestors", self.output_id)
        ids = memo.get(key)
        if ids is None:
            ids = memo[key] = ancestors(self.graph, self.output_id)
        return ids

    @once
    def elementwise(self):
        """True when every op the output depends on is pointwise (broadcasting allowed): each
        output element then depends on one element of each leaf. Once per compiled
        program."""
        memo, key = self.graph.memo, ("check: pointwise path", self.output_id)
        hit = memo.get(key)
        if hit is None:
            nodes = self.graph.nodes
            hit = memo[key] = all(nodes[i].kind != "op" or nodes[i].op.pointwise
                                  for i in self.ids)
        return hit

    @once
    def out_shape(self):
        return tuple(self.graph.nodes[self.output_id].shape)

    @once
    def vals(self):
        """Every node's value in float64 (finite differences and the symbolic evaluation in
        float32 would be noise)."""
        if self.graph.dtype == np.float64:
            return self.values
        return engine.forward(self.wide, self.lifted, upto=self.output_id)

    @once
    def wide(self):
        """The graph computing in float64 (itself when it already does)."""
        graph = self.graph
        if graph.dtype == np.float64:
            return graph
        wide = copy.copy(graph)       # a fresh shallow copy: never a cached, collected graph
        wide.dtype = np.dtype(np.float64)
        return wide

    @once
    def lifted(self):
        """Every leaf's and constant's value in float64, by node id."""
        return {eq.id: np.asarray(eq.value, dtype=np.float64) for eq in self.graph.nodes
                if eq.kind != "op"}

    @once
    def not_finite(self):
        """Output elements whose value is not finite (log of a negative, an overflow), or
        None: there a derivative means nothing, whatever a method's formula gives."""
        v = np.asarray(self.vals[self.output_id], dtype=np.float64)
        if v.size and engine.economy.all_finite(v):
            return None
        bad = ~np.isfinite(np.broadcast_to(v, self.out_shape))
        return bad if bad.any() else None

    @once
    def leaves_total(self):
        """Elements of every leaf the grads are taken by."""
        return sum(self.graph.nodes[self.graph.leaves[n]].size for n in self.wrt)

    def leaf(self, name) -> Leaf:
        eq = self.graph.nodes[self.graph.leaves[name]]
        g = self.grads.get(name)
        g = np.zeros(eq.shape) if g is None else np.asarray(g, dtype=np.float64)
        jac = None if self.jacobian is None else np.asarray(self.jacobian[name], np.float64)
        return Leaf(name, eq, g, jac)


def ancestors(graph, out):
    """Ids of the nodes `out` depends on, in graph order."""
    need = {out}
    for eq in reversed(graph.nodes[: out + 1]):
        if eq.id in need and eq.kind == "op":
            need.update(eq.inputs)
    return [i for i in range(out + 1) if i in need]


def src_index(shape, out_shape):
    """For each output element, the flat index of the element of an operand of `shape`
    broadcast to `out_shape` that it reads."""
    n = math.prod(shape)
    return np.broadcast_to(np.arange(n).reshape(shape), out_shape)


def sum_to(v, shape):
    """`v` summed down to `shape`, as the engine reduces a broadcast operand's gradient."""
    return np.asarray(engine.sum_to(v, 0, (), tuple(shape)))
