"""The symbolic check for programs whose elements mix (reductions, matmul, indexing, losses).

Leaf elements become symbols (all of them up to MAX_SYMBOLS, else a seeded sample, then as
many as NaN-propagation shows affordable); every node is its float64 value plus the entries
that depend on a symbol, as sympy expressions built by the op table's forms over numpy
object arrays. Jacobian columns of the chosen elements are differentiated entry by entry
(at most MAX_DERIVATIVES sympy differentiations) and give the grads as vᵀ times each column.
It is handed the check's session (sympy, `tick()`) by symbolic.py and never imports sympy.
"""
from __future__ import annotations

import math

import numpy as np

from ..ops import symforms
from .context import src_index
from .evaluator import MAX_REFINE, OVERFLOW, Evaluator, Unsupported, formula, refine
from .verdict import Partials

# Caps (documented in the README):
MAX_SYMBOLS = 64                # candidate leaf elements: all of them up to this many, else a
                                # seeded sample of this many
MAX_SYMBOLIC_ENTRIES = 2_000    # entries (over all nodes) that depend on the chosen symbols;
MAX_SYMBOLIC_TERMS = 40_000     # and those entries times the number of symbols. The first of
                                # all/16/4/1 candidates that fits is used (NaN-propagation
                                # measures it before sympy builds anything)
MAX_DERIVATIVES = 300           # sympy differentiations (of an output entry, or of one term of
                                # an output entry that is a sum) by a symbol; each takes sympy
                                # milliseconds. Columns (leaf elements) are taken while they fit
MAX_OBJECT_ELEMENTS = 2_000_000 # the largest array of sympy entries built


def per_element(session, context, verdict):
    """Leaf elements as symbols (all of them up to MAX_SYMBOLS, else a seeded sample); each
    node is its float64 value plus the entries that depend on a symbol, as sympy
    expressions. Jacobian columns of the chosen elements are differentiated entry by entry
    (at most MAX_DERIVATIVES derivatives) and give the grads as vᵀ times each column."""
    sp, graph = session.sp, context.graph
    N = math.prod(context.out_shape)
    idset = set(context.ids)
    in_path = [graph.leaves[w] for w in context.wrt if graph.leaves[w] in idset]
    syms, picks, env, order, exact = symbols(session, context, in_path)
    parts = forms(session, context, syms, picks)
    chosen, count, deps = _choose_columns(session, parts[context.output_id], syms, order)
    cols = _columns(session, Evaluator(session, env), chosen, syms, deps, N)
    display = _element_names(sp, graph, syms, picks) if exact else {}
    ties = Evaluator(session, env, ties=0), Evaluator(session, env, ties=1)
    refined = [0]
    derivatives = {}
    checked = 0
    for name in context.wrt:
        leaf = context.leaf(name)
        i = leaf.eq.id
        if i not in idset:
            derivatives[name] = "0"
            verdict.no_path(leaf)
            checked += leaf.eq.size
            continue
        rows = [(r, cols[(i, r)]) for (j, r) in chosen if j == i]
        rows.sort(key=lambda t: picks[i][t[0]])
        derivatives[name] = None
        if not rows:
            continue
        verdict.feed(_partials(session, context, leaf, rows, picks[i], env, ties, refined))
        checked += len(rows)
        if exact and N == 1 and leaf.eq.size == 1:
            exprs = rows[0][1][2]
            derivatives[name] = formula(session, exprs[0][1], display) if exprs else "0"
        session.tick()
    n_total = context.leaves_total
    has_jac = context.jacobian is not None
    return {"derivatives": derivatives, "method": "per-element",
            "elements_checked": checked, "elements_total": n_total,
            "jacobian_entries_checked": N * checked if has_jac else None,
            "jacobian_entries_total": N * n_total if has_jac else None,
            "derivatives_taken": int(count)}


def symbols(session, context, in_path):
    """(symbols and picked elements per leaf, their values, the affordable (leaf, symbol
    number) in round-robin order, whether every leaf element is a symbol)."""
    sp, graph, vals = session.sp, context.graph, context.vals
    sizes = {i: graph.nodes[i].size for i in in_path}
    total = sum(sizes.values())
    cands = _choose(in_path, sizes, total, total <= MAX_SYMBOLS)
    order = []                                   # round robin over the leaves
    for r in range(max((len(p) for p in cands.values()), default=0)):
        order += [(i, cands[i][r]) for i in in_path if r < len(cands[i])]
    order = _affordable(session, context, order)
    exact = len(order) == total
    picks = {i: sorted(k for j, k in order if j == i) for i in in_path}
    syms, env = {}, {}
    for i in in_path:
        v = np.asarray(vals[i], dtype=np.float64).reshape(-1)
        syms[i] = [sp.Dummy(f"x{i}_{k}", real=True) for k in picks[i]]
        for k, s in zip(picks[i], syms[i]):
            env[s] = np.float64(v[k])     # numpy scalars: IEEE arithmetic, no ZeroDivisionError
    order = [(i, picks[i].index(k)) for i, k in order]
    return syms, picks, env, order, exact


def forms(session, context, syms, picks):
    """Every node on the path as (float64 value, flat positions of its symbolic entries,
    their sympy expressions)."""
    graph, vals = context.graph, context.vals
    parts = {}
    empty = np.zeros(0, dtype=np.int64)
    for i in context.ids:
        eq = graph.nodes[i]
        v = np.asarray(vals[i], dtype=np.float64)
        if i in syms:
            parts[i] = (v, np.asarray(picks[i], dtype=np.int64), list(syms[i]))
        elif eq.kind != "op":
            parts[i] = (v, empty, [])
        else:
            ins = [parts[j] if eq.op.vjp(k) is not None else
                   (np.asarray(vals[j], dtype=np.float64), empty, [])
                   for k, j in enumerate(eq.inputs)]
            if all(len(p[1]) == 0 for p in ins):
                parts[i] = (v, empty, [])
            elif eq.op.pointwise:
                parts[i] = _apply_sparse(session, eq, ins, v)
            else:
                parts[i] = _apply_object(session, eq, ins, v, vals)
        session.tick()
    return parts


def _choose_columns(session, out_part, syms, order):
    """The columns (leaf, symbol number) differentiated, in `order` while they fit in
    MAX_DERIVATIVES; their count; and for each symbol the output entries holding it."""
    sp = session.sp
    _, out_idx, out_ex = out_part
    deps: dict = {}
    cost: dict = {}          # sympy differentiations a symbol's column needs (terms of sums)
    for o, e in zip(out_idx, out_ex):
        session.afford(e)
        for s in e.free_symbols:
            deps.setdefault(s, []).append((int(o), e))
        for t in (e.args if isinstance(e, sp.Add) else (e,)):
            for s in t.free_symbols:
                cost[s] = cost.get(s, 0) + 1
    chosen, count = [], 0
    for i, r in order:
        n = cost.get(syms[i][r], 0)
        if chosen and count + n > MAX_DERIVATIVES:
            continue
        chosen.append((i, r))
        count += n
    return chosen, count, deps


def _columns(session, ev, chosen, syms, deps, N):
    """{(leaf, symbol number): (column values, tie candidates, [(output entry, derivative)],
    entries whose float64 value passed through an overflow)}."""
    cols = {}
    for i, r in chosen:
        s = syms[i][r]
        col = np.zeros(N)
        cand = np.zeros(N, bool)
        over = np.zeros(N, bool)
        exprs = []
        for o, e in deps.get(s, ()):
            session.afford(e)
            d = _diff(session.sp, e, s)
            val, c = ev.evaluate(d)
            col[o] = float(val)
            over[o] = ev.overflowed(d) is not None    # perhaps wrong though finite
            if c is not None and bool(np.any(c)):
                cand[o] = True
            exprs.append((o, d))
            session.tick()
        cols[(i, r)] = (col, cand, exprs, over)
    return cols


def _partials(session, context, leaf, rows, leaf_picks, env, ties, refined):
    """One leaf's columns as Partials: tie candidates re-evaluated each way (a kink, with the
    one-sided range), non-finite entries refined in mpmath (at most MAX_REFINE in all,
    counted in `refined`) or flagged undefined."""
    N = math.prod(context.out_shape)
    not_finite = context.not_finite
    nf = None if not_finite is None else not_finite.reshape(-1)
    P = len(rows)
    C = np.zeros((P, N))
    F = np.zeros((P, N), bool)
    LO, HI = np.zeros((P, N)), np.zeros((P, N))
    U = np.zeros((P, N), bool)
    for p, (_, (col, cand, exprs, over)) in enumerate(rows):
        C[p], LO[p], HI[p], U[p] = col, col, col, over
        for o, d in exprs:
            if cand[o]:
                v0, v1 = (float(ev.evaluate(d)[0]) for ev in ties)
                if not (v0 == col[o] and v1 == col[o]):
                    F[p, o] = True
                    LO[p, o] = min(v0, v1, col[o])
                    HI[p, o] = max(v0, v1, col[o])
            if (over[o] or not math.isfinite(col[o])) and (nf is None or not nf[o]):
                point = {s: env[s] for s in d.free_symbols if s in env}
                if not all(math.isfinite(x) for x in point.values()):
                    continue
                v = refine(session, d, point) if refined[0] < MAX_REFINE else math.nan
                refined[0] += 1
                if math.isfinite(v):
                    C[p, o] = LO[p, o] = HI[p, o] = v
                else:
                    F[p, o] = True
                    LO[p, o] = HI[p, o] = math.nan
            session.tick()
    kpicks = np.array([leaf_picks[r] for r, _ in rows], dtype=np.int64)
    Q = None
    if not_finite is not None:       # the function itself is not finite there
        Q = np.broadcast_to(not_finite.reshape(1, -1), F.shape)
        F = F | Q
        LO, HI = np.where(Q, np.nan, LO), np.where(Q, np.nan, HI)
    return Partials(leaf, C, F, LO, HI, quiet=Q, picks=kpicks, unverifiable=U,
                    reason=OVERFLOW)


def _diff(sp, e, s):
    """sympy's derivative of `e` by `s`, skipping the terms of a sum that do not contain `s`
    (a reduction's output is a sum of many terms, each holding a few of the symbols)."""
    if isinstance(e, sp.Add):
        return sp.Add(*[sp.diff(t, s) for t in e.args if s in t.free_symbols])
    return sp.diff(e, s)


def _affordable(session, context, order):
    """The longest prefix of `order` (all, 16, 4 or 1 leaf elements) whose symbols reach at
    most MAX_SYMBOLIC_ENTRIES entries of the program (and MAX_SYMBOLIC_TERMS entries times
    symbols). The reach is measured numerically: a NaN put at those leaf elements shows, in
    one float forward pass, every entry that would hold a sympy expression."""
    last = None
    for k in sorted({len(order), 16, 4, 1}, reverse=True):
        if k > len(order) or k == 0:
            continue
        reach = _reach(session, context, order[:k])
        if reach <= MAX_SYMBOLIC_ENTRIES and reach * k <= MAX_SYMBOLIC_TERMS:
            return order[:k]
        last = reach
    if not order:
        return order
    raise Unsupported(f"too large for the per-element symbolic check: one leaf element "
                      f"reaches {last:,} entries of the program (at most "
                      f"{MAX_SYMBOLIC_ENTRIES:,}); use --check numeric")


def _reach(session, context, elems):
    """How many entries of the nodes on the path depend on the leaf elements `elems`."""
    graph, vals = context.graph, context.vals
    new, count = {}, len(elems)
    for i, k in elems:
        if i not in new:
            new[i] = np.array(vals[i], dtype=np.float64)
        new[i].flat[k] = np.nan
    with np.errstate(all="ignore"):
        for i in context.ids:
            session.tick()
            eq = graph.nodes[i]
            if eq.kind != "op" or not any(j in new and eq.op.vjp(k) is not None
                                          for k, j in enumerate(eq.inputs)):
                continue
            args = [new[j] if j in new and eq.op.vjp(k) is not None else vals[j]
                    for k, j in enumerate(eq.inputs)]
            try:
                v = np.asarray(eq.op.forward(*args, **eq.params), dtype=np.float64)
            except Exception:               # e.g. a class index made NaN: assume all of it
                v = np.full(eq.shape, np.nan)
            hit = np.count_nonzero(np.isnan(v) & ~np.isnan(np.asarray(vals[i])))
            if hit:
                new[i] = v
                count += hit
    return count


def _choose(in_path, sizes, total, exact):
    """Leaf elements that become symbols: all of them, or a seeded sample of MAX_SYMBOLS
    spread over the leaves (every leaf gets at least one)."""
    if exact:
        return {i: list(range(sizes[i])) for i in in_path}
    rng = np.random.default_rng(0)
    flat = np.sort(rng.choice(total, MAX_SYMBOLS, replace=False))
    picks, start = {}, 0
    for i in in_path:
        sel = flat[(flat >= start) & (flat < start + sizes[i])] - start
        if not len(sel) and sizes[i]:
            sel = np.array([int(rng.integers(sizes[i]))])
        picks[i] = [int(k) for k in sel]
        start += sizes[i]
    return picks


def _element_names(sp, graph, syms, picks):
    names = {i: n for n, i in graph.leaves.items()}
    out = {}
    for i, ss in syms.items():
        shape = graph.nodes[i].shape
        for k, s in zip(picks[i], ss):
            idx = ", ".join(str(int(j)) for j in np.unravel_index(k, shape)) if shape else ""
            out[s] = sp.Symbol(f"{names[i]}[{idx}]" if shape else names[i], real=True)
    return out


def _objects(part):
    v, idx, ex = part
    o = v.astype(object, order="C")      # C order: `flat` below must be a view
    flat = o.reshape(-1)
    for k, e in zip(idx, ex):
        flat[k] = e
    return o


def _symbolic_entries(session, arr):
    """(flat positions, expressions) of the entries of an object array that still depend on
    a symbol (an entry that came out constant keeps the node's float64 value)."""
    flat = np.asarray(arr, dtype=object).reshape(-1)
    pos, ex = [], []
    for n, k in enumerate(np.flatnonzero(symforms.is_sym(flat))):
        if n % 256 == 255:
            session.tick()
        e = flat[k]
        if getattr(e, "free_symbols", None):
            pos.append(int(k))
            ex.append(e)
    return np.asarray(pos, dtype=np.int64), ex


def _apply_sparse(session, eq, ins, v):
    """An elementwise op on the entries that depend on a symbol; the rest keep v."""
    shape = eq.shape
    size = v.size
    mask = np.zeros(size, bool)
    srcs = []
    for val, idx, ex in ins:
        val = np.asarray(val, dtype=np.float64)
        src = src_index(val.shape, shape).reshape(-1)
        symflag = np.zeros(val.size, bool)
        symflag[idx] = True
        lookup = np.empty(val.size, dtype=object)
        for k, e in zip(idx, ex):
            lookup[k] = e
        mask |= symflag[src]
        srcs.append((src, symflag, lookup, val.reshape(-1)))
    pos = np.flatnonzero(mask)
    out = np.empty(len(pos), dtype=object)
    for n, o in enumerate(pos):
        args = [lk[s[o]] if sf[s[o]] else float(vf[s[o]]) for s, sf, lk, vf in srcs]
        out[n] = eq.op.sympy(session.fast, *args, **eq.params)
        if n % 256 == 255:
            session.tick()
    keep = [n for n, e in enumerate(out) if getattr(e, "free_symbols", None)]
    return v, pos[keep], [out[n] for n in keep]


def _apply_object(session, eq, ins, v, vals):
    big = max([np.size(p[0]) for p in ins] + [v.size])
    if big > MAX_OBJECT_ELEMENTS:
        raise Unsupported(f"too large for the per-element symbolic check: {eq.op.name}() on "
                          f"{big:,} elements (at most {MAX_OBJECT_ELEMENTS:,}); use "
                          "--check numeric")
    at = tuple(np.asarray(vals[j], dtype=np.float64) for j in eq.inputs)
    with np.errstate(all="ignore"):
        res = eq.op.sympy(session.fast, *[_objects(p) for p in ins], _at=at, **eq.params)
    res = np.asarray(res, dtype=object)
    if res.shape != tuple(eq.shape):
        res = np.broadcast_to(res, eq.shape)
    pos, ex = _symbolic_entries(session, res)
    return v, pos, ex
