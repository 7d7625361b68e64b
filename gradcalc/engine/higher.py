"""Derivatives past the first: HVP, Hessian, J·u and Taylor coefficients, from traced programs.

The HVP and the Hessian are plain backwards (plain.py) of programs that traced.py recorded,
torch's double backward: the HVP is the gradient of (the traced gradient · u), taken as the
gradient, with respect to the cotangent v, of vᵀ(traced gradient's Jacobian)u (exact: the
backward is linear in v); the Hessian is the Jacobian of the traced gradient. J·u and Taylor
order k (J·u of the program of order k-1) are forward mode (forward_mode.py), as torch's
jvp and jacfwd. Economies give the same numbers: a large final program's output by the lean
forward, a large elementwise program's Hessian diagonals from one recorded program run
block by block, a dense Hessian by the economic Jacobian with the identity batch kept as a
diagonal through the gradient's pointwise tail. The first-order path never comes here.
Sizes are checked against the limits before a dense Hessian is allocated.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import GradcalcError, Limits, fmt_bytes
from . import economy, forward_mode, plain
from .traced import Builder, Traced, Untraceable, Values, dot

# the name of the cotangent leaf of a traced J·u program: no user name starts with '#'
COTANGENT = "#v"


def _leaf_ids(graph, names):
    return {n: graph.leaves[n] for n in names if n in graph.leaves}


def _grads_dot(t: Traced, cotangent, output, tangent: dict):
    grads = t.backward(cotangent, output)
    pairs = [(grads[n], u) for n, u in tangent.items() if n in grads]
    return dot(t.b, pairs)


def hvp(graph, output: int, cotangent, tangent: dict, leaves, limits: Limits):
    """{leaf: H·u} for the scalar vᵀy (v = `cotangent`), each of the leaf's shape: the
    derivative of the traced gradient along u, as torch's hvp (where torch's conventions
    make H asymmetric, H·u and not uᵀ·H)."""
    prog, values, layout = gradient_program(graph, output, cotangent, leaves, limits)
    if not layout:
        return {}
    # torch's hvp is a double backward: the transposed gradient program, not forward mode
    flat = final_output(*jvp_program(prog, prog.output, tangent, limits, values=values,
                                     final=True))
    return {n: flat[start:start + math.prod(shape)].reshape(shape)
            for n, (start, shape) in layout.items()}


def traced_diagonals(t: Traced, grads: dict, graph, limits: Limits,
                     block: int = economy.BLOCK) -> dict | None:
    """diagonal_hessian's numbers, bit for bit, in one block-by-block pass: the backward of
    each sum(grad_a) is itself recorded (the same rules on tracers, as diagonal_hessian runs
    them on arrays), so one program holds every diagonal, a value the gradient and several
    diagonals need (sin(a) for the gradient, sin''s rule and cos''s) is one equation, and
    economy.forward_blocked computes them all while each block is in cache. None when
    that program cannot be recorded within the limits or is not blockable."""
    b = t.b
    sums = {a: b.apply("sum", [g], {"dim": None, "keepdim": False}) for a, g in grads.items()}
    prog, values = t.program(max(sums.values(), key=lambda s: s.id))
    try:
        second = Traced(prog, limits, values)
        cells = []
        for a, s in sums.items():
            back = second.backward(np.ones((), graph.dtype), s.id)
            cells += [(a, bn, second.b.lift(back[bn] if bn in back else
                                            np.zeros(g.shape, graph.dtype)).id)
                      for bn, g in grads.items()]
    except GradcalcError as err:          # Untraceable, or over a limit: the plain route
        if isinstance(err, Untraceable) or err.kind == "limit":
            return None
        raise
    cone, ids = second.b.cone([i for _, _, i in cells])
    got = economy.forward_blocked(cone, ids, block)
    if got is None:
        return None
    out = {a: {} for a in grads}
    for (a, bn, _), d in zip(cells, got):
        out[a][bn] = d
    return out


def gradient_program(graph, output: int, cotangent, leaves, limits: Limits,
                     traced: tuple | None = None):
    """The traced gradient of vᵀy as one program whose output is every leaf's grad flattened
    and joined, its values, and {leaf: (offset, shape)} in that vector. `traced`: a
    (Traced, grads) pair already recorded."""
    t, grads = traced or _traced_grads(graph, output, cotangent, limits)
    b = t.b
    flat, layout, start = [], {}, 0
    for n, g in _grads_of(t, grads, graph, leaves).items():
        shape = graph.nodes[graph.leaves[n]].shape
        size = math.prod(shape)
        flat.append(g if g.shape == (size,) else b.apply("reshape", [g], {"shape": (size,)}))
        layout[n] = (start, shape)
        start += size
    if not flat:
        return None, None, {}
    vec = flat[0] if len(flat) == 1 else b.apply("cat", flat, {"dim": -1})
    prog, values = t.program(vec)
    return prog, values, layout


def _traced_grads(graph, output, cotangent, limits):
    t = Traced(graph, limits)
    return t, t.backward(cotangent, output)


def _grads_of(t, grads, graph, leaves) -> dict:
    """{leaf: its traced grad} (a constant 0 where the output does not reach it)."""
    out = {}
    for n, i in _leaf_ids(graph, leaves).items():
        g = grads.get(n)
        out[n] = t.b.lift(g if g is not None else np.zeros(graph.nodes[i].shape, graph.dtype))
    return out


def elementwise(t: Traced, grads: dict) -> tuple | None:
    """The common shape S when every traced grad is elementwise in the leaves (element k of
    each grad reads element k of each leaf, all leaves of shape S): then each Hessian block
    is diagonal. None otherwise. Read from the recorded program: only pointwise ops of
    shape S between the grads and the leaves, constants aside."""
    nodes = t.b.comp.nodes
    shapes = {g.shape for g in grads.values()}
    if len(shapes) != 1:
        return None
    shape = shapes.pop()
    seen, work = set(), [g.id for g in grads.values()]
    while work:
        i = work.pop()
        if i in seen:
            continue
        seen.add(i)
        eq = nodes[i]
        if eq.kind == "const" or (eq.kind == "leaf" and not eq.requires_grad):
            continue
        if eq.shape != shape or (eq.kind == "op" and not eq.op.pointwise):
            return None
        work.extend(eq.inputs)
    return shape


def diagonal_hessian(t: Traced, grads: dict, graph) -> dict:
    """{a: {b: diagonal of H_ab}} of an elementwise program: H_ab[k, k] is element k of the
    gradient of sum(grad_a) with respect to b, one backward of the traced program per a."""
    out = {}
    for a, g in grads.items():
        s = t.b.apply("sum", [g], {"dim": None, "keepdim": False})
        prog, values = t.program(s)
        back = plain.backward(prog, values, np.ones((), graph.dtype))
        ids = _leaf_ids(prog, grads)
        out[a] = {b: back.get(i, np.zeros(prog.nodes[i].shape, graph.dtype))
                  for b, i in ids.items()}
    return out


def jvp_program(graph, output: int, tangent: dict, limits: Limits, values=None,
                final=False):
    """A program whose output is J·u of `graph`'s node `output` (its leaves and values);
    `values`: graph's values when known (a traced program's), not computed again; `final`:
    the program will not be differentiated again (its leaves then need no grad)."""
    t = Traced(graph, limits, values)
    oshape = graph.nodes[output].shape
    v = t.leaf(COTANGENT, np.zeros(oshape, graph.dtype))
    s = _grads_dot(t, v, output, tangent)
    prog, values = t.program(s)
    # a `final` program is not differentiated again: only the cotangent's derivative is
    # wanted, so paths from the other leaves alone get no backward work (the numbers on
    # the cotangent's paths are the same)
    second = Traced(prog, limits, values, wrt={COTANGENT} if final else None)
    got = second.backward(np.ones((), graph.dtype))
    ju = got.get(COTANGENT)
    out = second.b.lift(ju if ju is not None else np.zeros(oshape, graph.dtype))
    return second.program(out)


def final_output(prog, values):
    """The output of a program nobody differentiates again: a large one is computed by the
    lean forward (economy.forward_lean: dead values dropped, their buffers written again)
    over the equations it depends on (Builder.cone)."""
    if prog.nodes[prog.output].size < economy.LEAN_MIN:
        return values[prog.output]
    cone, (out,) = values.b.cone([prog.output])
    return economy.forward_lean(cone, out)[out]


def jvp(graph, output: int, tangent: dict, limits: Limits):
    """J·u, of the output's shape, in forward mode as torch.func.jvp (forward_mode.py)."""
    return final_output(*forward_mode.jvp_program(graph, output, tangent, limits))


def taylor(graph, output: int, tangent: dict, order: int, limits: Limits):
    """[d^k/dt^k y(x + t u) at t = 0 for k = 1..order]: J·u of J·u ... of the program, in
    forward mode as torch's nested jacfwd. Where a value of the programs is not finite,
    again with torch's efficient zero tangents (forward_mode.Nested), which differ from
    plain zeros only there (0·inf); the finite common case keeps the plain route."""
    out = _taylor(graph, output, tangent, order, limits, None)
    if out is None:
        out = _taylor(graph, output, tangent, order, limits, forward_mode.Nested())
    return out


def _taylor(graph, output, tangent, order, limits, nested):
    """The orders, or None when not `nested` and a value computed is not finite."""
    out, prog, values = [], graph, None
    for k in range(1, order + 1):
        prog, values = forward_mode.jvp_program(prog, output if k == 1 else prog.output,
                                                tangent, limits, values, nested)
        out.append(values[prog.output])
        if nested is None and order > 1 and not all(
                economy.all_finite(v) for v in values.known if v is not None):
            return None
    return out


def hessian_bytes(graph, leaves) -> int:
    """Bytes of the dense Hessian over `leaves`."""
    n = sum(graph.nodes[i].size for i in _leaf_ids(graph, leaves).values())
    return n * n * graph.dtype.itemsize


class DiagonalBlock:
    """A Hessian block of an elementwise program, kept as its diagonal `diag` (the leaf's
    shape): it reads as the dense block of shape diag.shape + diag.shape (zeros off the
    diagonal) through np.asarray, and says its dense `shape` and `size` without forming it."""

    __slots__ = ("diag",)

    def __init__(self, diag):
        self.diag = diag

    shape = property(lambda self: self.diag.shape + self.diag.shape)
    size = property(lambda self: self.diag.size * self.diag.size)
    dtype = property(lambda self: self.diag.dtype)

    def __array__(self, dtype=None, copy=None):
        n = self.diag.size
        block = np.zeros((n, n), dtype or self.diag.dtype)
        block[np.arange(n), np.arange(n)] = self.diag.reshape(-1)
        return block.reshape(self.shape)


def hessian(graph, output: int, cotangent, leaves, limits: Limits):
    """{a: {b: H_ab}} with H_ab of shape a.shape + b.shape (torch's hessian layout): the
    Jacobian of the traced gradient, or, for an elementwise program, a DiagonalBlock each
    (O(n) work and memory). The memory limit is checked against what is allocated: the
    diagonals, or the dense matrix before it is formed; a dense Hessian that cannot fit
    is refused with a pointer to --hvp."""
    t, grads = _traced_grads(graph, output, cotangent, limits)
    grads = _grads_of(t, grads, graph, leaves)
    shape = elementwise(t, grads) if grads else None
    if shape is not None:
        _within(len(grads) ** 2 * math.prod(shape) * graph.dtype.itemsize, limits,
                "the Hessian's diagonals need")
        diag = None
        if math.prod(shape) >= economy.BLOCK_MIN:
            diag = traced_diagonals(t, grads, graph, limits)
        if diag is None:
            diag = diagonal_hessian(t, grads, graph)
        return {a: {b: DiagonalBlock(d) for b, d in row.items()} for a, row in diag.items()}
    _within(hessian_bytes(graph, leaves), limits, "the dense Hessian needs")
    shapes = {n: graph.nodes[graph.leaves[n]].shape for n in grads}
    out = {}
    for a, g in grads.items():
        # torch's hessian takes each row as the gradient of one element of a's gradient: a
        # backward of a's gradient alone, which never visits another leaf's gradient (where
        # a zero cotangent would meet an infinite partial: 0·inf = NaN). The rows of one
        # leaf share a batch: each rule treats its rows apart, so each is the one torch takes
        size = math.prod(shapes[a])
        flat = g if g.shape == (size,) else t.b.apply("reshape", [g], {"shape": (size,)})
        prog, values = t.program(flat)
        pids = _leaf_ids(prog, grads)
        jac = dense_jacobian(prog, values, list(pids.values()), limits)
        out[a] = {bn: jac[pids[bn]].reshape(shapes[a] + shapes[bn]) for bn in grads}
    return out


def dense_jacobian(prog, values, ids: list, limits: Limits) -> dict:
    """{leaf id: its Jacobian} of the traced gradient program `prog` (a vector): plain.jacobian's
    numbers, bit for bit (tests/test_higher_economy.py), by the economic Jacobian (in-place
    sums, structure). The identity batch stays diagonal through the program's pointwise
    tail (its last equations, each elementwise in the output: a gradient's final factors),
    so the tail runs on two rows, ones and zeros (the diagonal, and what a zero cotangent
    becomes off it: 0, -0.0 or NaN), and seeds the equations it reads with those; a
    matrix product by a constant matrix (the gradient of W @ h carries one) takes its
    diagonal seed as the matrix scaled, not multiplied by a diagonal matrix: a matrix
    product, the dense Hessian's dominant cost, saved."""
    start = _tail_start(prog)
    if start is None:
        return economy.jacobian(prog, values, prog.output, ids)
    seeds = _tail_seeds(prog, values, start, limits)
    oshape = prog.nodes[prog.output].shape
    grads = economy.backward(prog, values, None, prog.output, batch=oshape, seeds=seeds)
    return {i: grads[i] if i in grads else
            np.zeros(oshape + prog.nodes[i].shape, prog.dtype) for i in ids}


def _tail_start(prog) -> int | None:
    """The first id of the program's pointwise tail: the longest run of last equations, each
    pointwise, of the (1-D) output's shape, with every input that requires grad of that
    shape too; None when the output is not such an equation."""
    nodes, out = prog.nodes, prog.output
    shape = nodes[out].shape
    if len(shape) != 1 or nodes[out].kind != "op":
        return None
    start = out + 1
    for eq in reversed(nodes[: out + 1]):
        if eq.kind == "op":
            if not (eq.op.pointwise and eq.shape == shape and all(
                    nodes[i].shape == shape for i in eq.inputs if nodes[i].requires_grad)):
                break
        elif eq.requires_grad:
            break
        start = eq.id
    return start if start <= out else None


def _tail_seeds(prog, values, start: int, limits: Limits) -> dict:
    """{id: its cotangent batch} of the equations the tail reads, from the tail run on the
    rows [ones, zeros] (plain.backward of the tail alone, its inputs made leaves)."""
    cut, cut_values, frontier = _tail_program(prog, values, start, limits)
    oshape = prog.nodes[prog.output].shape
    rows = np.zeros((2,) + oshape, prog.dtype)
    rows[0] = 1
    got = plain.backward(cut, cut_values, rows, batch=(2,))
    users: dict = {}
    for eq in prog.nodes[: prog.output + 1]:
        for i in (eq.inputs if eq.kind == "op" else ()):
            users.setdefault(i, []).append(eq.id)
    seeds = {}
    for k, i in frontier.items():
        if k in got:
            d, o = got[k]
            seeds.update(_scaled(prog, values, i, d, o, users, start) or
                         {i: _diagonal_rows(d, o)})
    return seeds


def _tail_program(prog, values, start: int, limits: Limits):
    """The tail (equations start..output) recorded alone: what it reads below `start` is a
    leaf when it requires grad, else a constant. Returns (program, its values,
    {leaf id in it: id in prog})."""
    b = Builder(prog.source, prog.dtype, limits)
    new, frontier = {}, {}

    def node(i):
        if i not in new:
            if prog.nodes[i].requires_grad:
                new[i] = b.leaf(f"#f{i}", values[i])
                frontier[new[i].id] = i
            else:
                new[i] = b.const(values[i])
        return new[i]
    for eq in prog.nodes[start: prog.output + 1]:
        if eq.kind == "op":
            new[eq.id] = b.apply(eq.op, [node(i) for i in eq.inputs], eq.params, values[eq.id])
        else:
            node(eq.id)
    return b.graph(new[prog.output].id), Values(b), frontier


def _diagonal_rows(d, o):
    """The batch of rows whose diagonal is d and whose column j is o[j] off it."""
    n = d.size
    rows = np.empty((n, n), d.dtype)
    rows[...] = o
    rows.reshape(-1)[:: n + 1] = d
    return rows


def _scaled(prog, values, i, d, o, users, start) -> dict | None:
    """{a: rows} when node i is a @ W (a a vector, W a constant matrix), only the tail reads
    it and only it reads a: diag-rows(d, o) @ W.T is W.T scaled by d, exactly, when d, W
    are finite and o is 0 (every other term of each sum is an exact zero; BLAS's sums start
    from +0.0, so a zero comes out +0.0). None otherwise."""
    eq = prog.nodes[i]
    if eq.kind != "op" or eq.op.name != "matmul":
        return None
    a, w = eq.inputs
    W = values[w]
    if (prog.nodes[a].shape != (W.shape[0],) or W.ndim != 2 or prog.nodes[w].requires_grad
            or users.get(a) != [i] or any(u < start for u in users[i])
            or np.any(o) or not (economy.all_finite(d) and economy.all_finite(W))):
        return None
    return {a: d[:, None] * W.T + 0.0}


def _within(need, limits, what):
    if need > limits.max_memory:
        raise GradcalcError("limit", f"{what} {fmt_bytes(need)}, over the memory limit of "
                                     f"{fmt_bytes(limits.max_memory)} (--max-memory); --hvp "
                                     "gives the Hessian times a direction without forming "
                                     "it")
