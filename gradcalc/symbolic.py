"""Symbolic cross-check: sympy differentiates the program's forward formulas and the
derivatives, evaluated at the inputs, are compared with autograd's grads and Jacobian.

It owns the translation of a graph into sympy (from the op table's `sympy` forward forms,
never from its VJP rules), a small evaluator of sympy trees over numpy, the two paths
(elementwise: one derivative per leaf, evaluated over every element at once; per-element: a
bounded sample of leaf elements as symbols) and the time budget. Symbols are internal Dummy
symbols; user text is never handed to sympy (no sympify, parse_expr, S() or lambdify): leaf
names only appear in the printed formulas, as Symbols built from validated identifiers.
sympy is imported here, in the worker thread, only when a symbolic check runs.
"""
from __future__ import annotations

import functools
import math
import operator
import threading
import time

import numpy as np

from . import checks
from .ops import symforms

DEFAULT_TIMEOUT = 10.0          # seconds (limits.symbolic_timeout, --symbolic-timeout)
# Per-element path (programs whose elements mix: reductions, matmul, indexing, losses):
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
# Both paths:
MAX_FORMULA_NODES = 400         # a longer derivative is not printed ("derivatives": null)
MAX_REFINE = 32                 # non-finite float64 entries re-evaluated with mpmath


class _Timeout(BaseException):
    """Raised in the worker when the budget is spent (BaseException: sympy's own
    `except Exception` blocks must not swallow it)."""


class Unsupported(Exception):
    """The check cannot be run on this program; the message says why (reported as skipped)."""


def check(result, grads_once, *, rtol=None, atol=None, limits=None):
    """The symbolic check's report (SPEC section 4), or {"passed": None, "skipped": why} when
    it cannot finish within `limits.symbolic_timeout` seconds. The sympy work runs in a worker
    thread; on expiry it is told to stop and abandoned, so the caller never hangs."""
    budget = getattr(limits, "symbolic_timeout", None)
    budget = DEFAULT_TIMEOUT if budget is None else float(budget)
    state = {"deadline": time.monotonic() + budget, "importing": True}
    box: dict = {}
    worker = threading.Thread(target=_work, name="gradcalc-symbolic", daemon=True,
                              args=(box, state, result, grads_once, rtol, atol))
    worker.start()
    worker.join(max(budget, 0.0) + 0.05)
    if worker.is_alive() or box.get("timeout"):
        state["deadline"] = -math.inf           # cooperative stop at the next step
        if worker.is_alive() and not state["importing"]:
            _interrupt(worker)                  # and an exception inside sympy's own loops
        return {"passed": None,
                "skipped": f"the symbolic check ran out of its time budget of {budget:g} s "
                           "(--symbolic-timeout)"}
    return box["report"]


def _interrupt(thread):
    """Raise _Timeout inside `thread` at its next bytecode (it may be deep inside sympy)."""
    import ctypes
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               ctypes.py_object(_Timeout))


def _skipped(reason):
    return {"passed": None, "skipped": reason}


def _work(box, state, result, grads_once, rtol, atol):
    try:
        import sympy as sp
        state["importing"] = False
        box["report"] = _check(_Context(sp, state), result, grads_once, rtol, atol)
    except _Timeout:
        box["timeout"] = True
    except Unsupported as exc:
        box["report"] = _skipped(str(exc))
    except RecursionError:
        box["report"] = _skipped("the expression is nested too deeply for sympy")
    except MemoryError:
        box["report"] = _skipped("the symbolic check ran out of memory")
    except Exception as exc:    # a check that cannot run must not cost the user the grads
        box["report"] = _skipped(f"the symbolic check failed ({type(exc).__name__}: "
                                 f"{str(exc)[:200]}); please report it")


class _Context:
    def __init__(self, sp, state):
        self.sp, self.state = sp, state
        self.fast = _Unevaluated(sp)

    def tick(self):
        if time.monotonic() > self.state["deadline"]:
            raise _Timeout()


class _Unevaluated:
    """The sympy module as the per-element path hands it to the op forms: Max and Min are
    built unevaluated, since their constructor compares every pair of arguments through the
    assumptions system (milliseconds each, for thousands of entries). Their derivatives
    (Heaviside of the differences) and values are the same."""

    def __init__(self, sp):
        self._sp = sp
        self.Max = functools.partial(_unevaluated, sp.Max)
        self.Min = functools.partial(_unevaluated, sp.Min)

    def __getattr__(self, name):
        return getattr(self._sp, name)


def _unevaluated(cls, *args):
    """Max/Min without the pairwise comparisons, but with repeated arguments dropped: the
    derivative of an unevaluated Max(e, e, e) would be 3 * Heaviside(0) = 3/2 times e'."""
    args = list(dict.fromkeys(args))
    return args[0] if len(args) == 1 else cls(*args, evaluate=False)


# ------------------------------------------------------------------ the check
def _check(ctx, result, grads_once, rtol, atol):
    graph, out = result.graph, result.output_id
    rtol, atol = checks.default_tolerances("symbolic", result.dtype, rtol, atol)
    vals = checks.values64(result)
    ids = checks.ancestors(graph, out)
    elementwise = checks.is_elementwise(graph, ids)
    oshape = graph.nodes[out].shape
    sites = checks.kink_sites(graph, vals, ids)
    tally = checks.Tally("symbolic", rtol, atol, result.dtype,
                         checks.nan_may_arise(graph, vals, ids, sites))
    labeller = checks.Labeller(graph, sites, oshape, elementwise,
                               "sympy's derivative is undefined or one-sided here")
    run = _elementwise if elementwise else _per_element
    extra = run(ctx, result, grads_once, ids, vals, tally, labeller)
    return tally.report(**extra)


def _leaf_inputs(result, grads_once, name):
    graph = result.graph
    eq = graph.nodes[graph.leaves[name]]
    g = grads_once.get(name)
    g = np.zeros(eq.shape) if g is None else np.asarray(g, dtype=np.float64)
    jac = None if result.jacobian is None else np.asarray(result.jacobian[name], np.float64)
    return eq, g, jac


def _no_path(tally, name, eq, g, jac, oshape):
    """A leaf the output does not depend on: every derivative is exactly 0."""
    tally.add(name, "grad", np.zeros(eq.shape), g, eq.shape)
    if jac is not None:
        tally.add(name, "jacobian", np.zeros(jac.shape), jac, jac.shape)


def _number(sp, v):
    v = float(v)
    if math.isnan(v):
        return sp.nan
    if math.isinf(v):
        return sp.oo if v > 0 else -sp.oo
    if v.is_integer() and abs(v) < 2**53:
        return sp.Integer(int(v))
    return sp.Float(v)            # the exact double; printed short (full_prec=False)


# ------------------------------------------------------------------ elementwise path
def _elementwise(ctx, result, grads_once, ids, vals, tally, labeller):
    """One scalar symbol per leaf: one derivative per leaf, evaluated over all elements."""
    sp, graph, out = ctx.sp, result.graph, result.output_id
    oshape = graph.nodes[out].shape
    names = {i: n for n, i in graph.leaves.items()}
    env, exprs, leaf_sym = {}, {}, {}

    def constant(i):
        v = np.asarray(vals[i], dtype=np.float64)
        if v.size and (v.size == 1 or np.all(v == v.flat[0])):
            return _number(sp, v.flat[0])
        d = sp.Dummy(f"c{i}", real=True)          # an array constant: a symbol with its value
        env[d] = v
        return d

    for i in ids:
        eq = graph.nodes[i]
        if eq.kind == "leaf" and i in names:
            s = sp.Dummy(f"x{i}", real=True)
            env[s] = np.asarray(vals[i], dtype=np.float64)
            exprs[i] = leaf_sym[i] = s
        elif eq.kind != "op":
            exprs[i] = constant(i)
        else:
            args = [exprs[j] if eq.op.vjp(k) is not None else constant(j)
                    for k, j in enumerate(eq.inputs)]
            params = {k: _number(sp, v) if isinstance(v, float) else v
                      for k, v in eq.params.items()}       # softplus(beta=1): x, not 1.0*x
            exprs[i] = eq.op.sympy(sp, *args, **params)
        ctx.tick()

    display = {s: sp.Symbol(names[i], real=True) for i, s in leaf_sym.items()}
    cot = np.asarray(result.cotangent, dtype=np.float64)
    not_finite = _not_finite(vals[out], oshape)
    at_site = None
    for _, m, _ in labeller.sites:           # elementwise: each site's mask is per element
        m = np.broadcast_to(m, oshape)
        at_site = m if at_site is None else (at_site | m)
    ev = Evaluator(ctx, env)
    derivatives = {}
    for name in result.wrt:
        eq, g, jac = _leaf_inputs(result, grads_once, name)
        if eq.id not in leaf_sym:
            derivatives[name] = "0"
            _no_path(tally, name, eq, g, jac, oshape)
            continue
        d = sp.diff(exprs[out], leaf_sym[eq.id])
        ctx.tick()
        derivatives[name] = _formula(ctx, d, display)
        D, flag, lo, hi = _evaluate_array(ctx, ev, d, env, oshape, not_finite)
        if at_site is not None and (at_site & ~flag).any():
            # an op sits at a kink there, but sympy simplified it away (minimum(x,
            # maximum(relu(x), x)) is x): PyTorch's composed conventions are not sympy's
            new = at_site & ~flag
            flag = flag | new
            lo, hi = np.where(new, np.nan, lo), np.where(new, np.nan, hi)
        if not_finite is not None:       # the function itself is not finite there
            flag = flag | not_finite
            lo, hi = np.where(not_finite, np.nan, lo), np.where(not_finite, np.nan, hi)
        checks._tally_partials(tally, name, eq, g, jac, cot, D, flag, lo, hi, labeller,
                               checks.src_index(eq.shape, oshape), quiet=not_finite)
        ctx.tick()
    n = sum(graph.nodes[graph.leaves[w]].size for w in result.wrt)
    N = math.prod(oshape)
    return {"derivatives": derivatives, "method": "elementwise",
            "elements_checked": n, "elements_total": n,
            "jacobian_entries_checked": None if result.jacobian is None else N * n,
            "jacobian_entries_total": None if result.jacobian is None else N * n}


def _not_finite(value, oshape):
    """Output elements whose value is not finite (log of a negative, an overflow): there a
    derivative means nothing, whatever sympy's rewritten formula evaluates to."""
    bad = ~np.isfinite(np.broadcast_to(np.asarray(value, dtype=np.float64), oshape))
    return bad if bad.any() else None


def _evaluate_array(ctx, ev, d, env, oshape, not_finite=None):
    """The derivative over every output element, with the flags of the check: kinks (a tie
    choice such as Heaviside(0) changes the value; [lo, hi] spans the choices) and singular
    points (non-finite although the inputs are finite, even in mpmath's arithmetic)."""
    val, cand = ev.eval(d)
    D = np.asarray(val, dtype=np.float64)
    D = np.broadcast_to(D, oshape)        # read-only: it may be a leaf's own values
    lo = hi = D
    flag = np.zeros(oshape, bool)
    if cand is not None and np.any(cand):
        cand = np.broadcast_to(cand, oshape)
        d0 = np.broadcast_to(Evaluator(ctx, env, ties=0).eval(d)[0], oshape)
        d1 = np.broadcast_to(Evaluator(ctx, env, ties=1).eval(d)[0], oshape)
        kink = cand & ~((d0 == D) & (d1 == D))
        with np.errstate(invalid="ignore"):
            lo = np.where(kink, np.minimum(np.minimum(d0, d1), D), lo)
            hi = np.where(kink, np.maximum(np.maximum(d0, d1), D), hi)
        flag |= kink
    bad = ~np.isfinite(D)
    if bad.any():
        syms = [s for s in d.free_symbols if s in env]
        for s in syms:
            bad &= np.broadcast_to(np.isfinite(env[s]), oshape)
        if not_finite is not None:            # no derivative to refine where f is not finite
            bad &= ~not_finite
        for k in np.flatnonzero(bad)[:MAX_REFINE]:
            point = {s: float(np.broadcast_to(env[s], oshape).flat[k]) for s in syms}
            v = _refine(ctx, d, point)
            if math.isfinite(v):
                if not D.flags.writeable:
                    D, lo, hi = np.array(D), np.array(lo), np.array(hi)
                D.flat[k] = lo.flat[k] = hi.flat[k] = v
                bad.flat[k] = False
        lo = np.where(bad, np.nan, lo)        # no derivative there: PyTorch's is convention
        hi = np.where(bad, np.nan, hi)
        flag |= bad
    return D, flag, lo, hi


def _refine(ctx, d, point):
    """`d` at `point` in mpmath's arithmetic (no float64 overflow); NaN if undefined."""
    sp = ctx.sp
    ctx.tick()
    try:
        # substituted, then evaluated: evalf(subs=...) turns an exact zero under a root
        # into a tiny number (1/sqrt(0) came out 6e79); 40-digit Floats keep powers cheap
        r = d.xreplace({s: sp.Float(v, 40) for s, v in point.items()}).evalf(30)
        return float(r)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return math.nan


def _formula(ctx, d, display):
    """sympy's printing of a derivative with the leaves' names, or None when it involves
    something without a name (an array constant) or is too long to read."""
    if not d.free_symbols <= set(display):
        return None
    if _tree_size(d, MAX_FORMULA_NODES) > MAX_FORMULA_NODES:
        return None
    ctx.tick()
    return ctx.sp.sstr(d.xreplace(display), full_prec=False)


def _tree_size(expr, cap):
    """Nodes of the printed tree (shared subtrees count each time), stopping past `cap`."""
    size, stack = 0, [expr]
    while stack and size <= cap:
        e = stack.pop()
        size += 1
        stack.extend(e.args)
    return size


# ------------------------------------------------------------------ per-element path
def _per_element(ctx, result, grads_once, ids, vals, tally, labeller):
    """Leaf elements as symbols (all of them up to MAX_SYMBOLS, else a seeded sample); each
    node is its float64 value plus the entries that depend on a symbol, as sympy
    expressions. Jacobian columns of the chosen elements are differentiated entry by entry
    (at most MAX_DERIVATIVES derivatives) and give the grads as vᵀ times each column."""
    sp, graph, out = ctx.sp, result.graph, result.output_id
    oshape = graph.nodes[out].shape
    N = math.prod(oshape)
    idset = set(ids)
    cot = np.asarray(result.cotangent, dtype=np.float64).reshape(-1)
    not_finite = _not_finite(vals[out], oshape)

    in_path = [graph.leaves[w] for w in result.wrt if graph.leaves[w] in idset]
    sizes = {i: graph.nodes[i].size for i in in_path}
    total = sum(sizes.values())
    cands = _choose(in_path, sizes, total, total <= MAX_SYMBOLS)
    order = []                                   # round robin over the leaves
    for r in range(max((len(p) for p in cands.values()), default=0)):
        order += [(i, cands[i][r]) for i in in_path if r < len(cands[i])]
    order = _affordable(ctx, graph, vals, ids, order)
    exact = len(order) == total
    picks = {i: sorted(k for j, k in order if j == i) for i in in_path}
    syms, env = {}, {}
    for i in in_path:
        v = np.asarray(vals[i], dtype=np.float64).reshape(-1)
        syms[i] = [sp.Dummy(f"x{i}_{k}", real=True) for k in picks[i]]
        for k, s in zip(picks[i], syms[i]):
            env[s] = np.float64(v[k])     # numpy scalars: IEEE arithmetic, no ZeroDivisionError
    order = [(i, picks[i].index(k)) for i, k in order]

    parts = {}
    empty = np.zeros(0, dtype=np.int64)
    for i in ids:
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
            elif checks.is_elementwise_op(eq.op):
                parts[i] = _apply_sparse(ctx, eq, ins, v)
            else:
                parts[i] = _apply_object(ctx, eq, ins, v, vals)
        ctx.tick()

    _, out_idx, out_ex = parts[out]
    deps: dict = {}
    cost: dict = {}          # sympy differentiations a symbol's column needs (terms of sums)
    for o, e in zip(out_idx, out_ex):
        for s in e.free_symbols:
            deps.setdefault(s, []).append((int(o), e))
        for t in (e.args if isinstance(e, sp.Add) else (e,)):
            for s in t.free_symbols:
                cost[s] = cost.get(s, 0) + 1
    chosen, count = [], 0
    for i, r in order:
        s = syms[i][r]
        n = cost.get(s, 0)
        if chosen and count + n > MAX_DERIVATIVES:
            continue
        chosen.append((i, r))
        count += n

    ev = Evaluator(ctx, env)
    cols: dict = {}
    derivs = []
    for i, r in chosen:
        s = syms[i][r]
        col = np.zeros(N)
        cand = np.zeros(N, bool)
        exprs = []
        for o, e in deps.get(s, ()):
            d = _diff(sp, e, s)
            val, c = ev.eval(d)
            col[o] = float(val)
            if c is not None and bool(np.any(c)):
                cand[o] = True
            exprs.append((o, d))
            ctx.tick()
        cols[(i, r)] = (col, cand, exprs)
        derivs.append(len(exprs))

    ev0, ev1 = Evaluator(ctx, env, ties=0), Evaluator(ctx, env, ties=1)
    refined = 0
    derivatives = {}
    display = _element_names(sp, graph, syms, picks) if exact else {}
    checked = 0
    for name in result.wrt:
        eq, g, jac = _leaf_inputs(result, grads_once, name)
        i = eq.id
        if i not in idset:
            derivatives[name] = "0"
            _no_path(tally, name, eq, g, jac, oshape)
            checked += eq.size
            continue
        rows = [(r, cols[(i, r)]) for (j, r) in chosen if j == i]
        rows.sort(key=lambda t: picks[i][t[0]])
        if not rows:
            derivatives[name] = None
            continue
        P = len(rows)
        C = np.zeros((P, N))
        F = np.zeros((P, N), bool)
        LO, HI = np.zeros((P, N)), np.zeros((P, N))
        for p, (r, (col, cand, exprs)) in enumerate(rows):
            C[p], LO[p], HI[p] = col, col, col
            for o, d in exprs:
                if cand[o]:
                    v0, v1 = float(ev0.eval(d)[0]), float(ev1.eval(d)[0])
                    if not (v0 == col[o] and v1 == col[o]):
                        F[p, o] = True
                        LO[p, o] = min(v0, v1, col[o])
                        HI[p, o] = max(v0, v1, col[o])
                if not math.isfinite(col[o]) and (not_finite is None
                                                  or not not_finite.reshape(-1)[o]):
                    point = {s: env[s] for s in d.free_symbols if s in env}
                    if not all(math.isfinite(x) for x in point.values()):
                        continue
                    v = _refine(ctx, d, point) if refined < MAX_REFINE else math.nan
                    refined += 1
                    if math.isfinite(v):
                        C[p, o] = LO[p, o] = HI[p, o] = v
                    else:
                        F[p, o] = True
                        LO[p, o] = HI[p, o] = math.nan
        kpicks = np.array([picks[i][r] for r, _ in rows], dtype=np.int64)
        Q = None
        if not_finite is not None:       # the function itself is not finite there
            Q = np.broadcast_to(not_finite.reshape(1, -1), F.shape)
            F = F | Q
            LO, HI = np.where(Q, np.nan, LO), np.where(Q, np.nan, HI)
        checks._tally_columns(tally, name, eq, g, jac, cot, kpicks, C, F, LO, HI, labeller,
                              oshape, quiet=Q)
        checked += P
        derivatives[name] = None
        if exact and N == 1 and eq.size == 1:
            exprs = rows[0][1][2]
            derivatives[name] = _formula(ctx, exprs[0][1], display) if exprs else "0"
        ctx.tick()
    n_total = sum(graph.nodes[graph.leaves[w]].size for w in result.wrt)
    return {"derivatives": derivatives, "method": "per-element",
            "elements_checked": checked, "elements_total": n_total,
            "jacobian_entries_checked": None if result.jacobian is None else N * checked,
            "jacobian_entries_total": None if result.jacobian is None else N * n_total,
            "derivatives_taken": int(count)}


def _diff(sp, e, s):
    """sympy's derivative of `e` by `s`, skipping the terms of a sum that do not contain `s`
    (a reduction's output is a sum of many terms, each holding a few of the symbols)."""
    if isinstance(e, sp.Add):
        return sp.Add(*[sp.diff(t, s) for t in e.args if s in t.free_symbols])
    return sp.diff(e, s)


def _affordable(ctx, graph, vals, ids, order):
    """The longest prefix of `order` (all, 16, 4 or 1 leaf elements) whose symbols reach at
    most MAX_SYMBOLIC_ENTRIES entries of the program (and MAX_SYMBOLIC_TERMS entries times
    symbols). The reach is measured numerically: a NaN put at those leaf elements shows, in
    one float forward pass, every entry that would hold a sympy expression."""
    last = None
    for k in sorted({len(order), 16, 4, 1}, reverse=True):
        if k > len(order) or k == 0:
            continue
        reach = _reach(graph, vals, ids, order[:k])
        if reach <= MAX_SYMBOLIC_ENTRIES and reach * k <= MAX_SYMBOLIC_TERMS:
            return order[:k]
        last = reach
        ctx.tick()
    if not order:
        return order
    raise Unsupported(f"too large for the per-element symbolic check: one leaf element "
                      f"reaches {last:,} entries of the program (at most "
                      f"{MAX_SYMBOLIC_ENTRIES:,}); use --check numeric")


def _reach(graph, vals, ids, elems):
    """How many entries of the nodes in `ids` depend on the leaf elements `elems`."""
    new, count = {}, len(elems)
    for i, k in elems:
        if i not in new:
            new[i] = np.array(vals[i], dtype=np.float64)
        new[i].flat[k] = np.nan
    with np.errstate(all="ignore"):
        for i in ids:
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


def _symbolic_entries(arr):
    """(flat positions, expressions) of the entries of an object array that still depend on
    a symbol (an entry that came out constant keeps the node's float64 value)."""
    flat = np.asarray(arr, dtype=object).reshape(-1)
    pos, ex = [], []
    for k in np.flatnonzero(symforms.is_sym(flat)):
        e = flat[k]
        if getattr(e, "free_symbols", None):
            pos.append(int(k))
            ex.append(e)
    return np.asarray(pos, dtype=np.int64), ex


def _apply_sparse(ctx, eq, ins, v):
    """An elementwise op on the entries that depend on a symbol; the rest keep v."""
    sp = ctx.sp
    shape = eq.shape
    size = v.size
    mask = np.zeros(size, bool)
    srcs = []
    for val, idx, ex in ins:
        val = np.asarray(val, dtype=np.float64)
        src = checks.src_index(val.shape, shape).reshape(-1)
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
        out[n] = eq.op.sympy(ctx.fast, *args, **eq.params)
        if n % 256 == 255:
            ctx.tick()
    keep = [n for n, e in enumerate(out) if getattr(e, "free_symbols", None)]
    return v, pos[keep], [out[n] for n in keep]


def _apply_object(ctx, eq, ins, v, vals):
    big = max([np.size(p[0]) for p in ins] + [v.size])
    if big > MAX_OBJECT_ELEMENTS:
        raise Unsupported(f"too large for the per-element symbolic check: {eq.op.name}() on "
                          f"{big:,} elements (at most {MAX_OBJECT_ELEMENTS:,}); use "
                          "--check numeric")
    at = tuple(np.asarray(vals[j], dtype=np.float64) for j in eq.inputs)
    with np.errstate(all="ignore"):
        res = eq.op.sympy(ctx.fast, *[_objects(p) for p in ins], _at=at, **eq.params)
    res = np.asarray(res, dtype=object)
    if res.shape != tuple(eq.shape):
        res = np.broadcast_to(res, eq.shape)
    pos, ex = _symbolic_entries(res)
    return v, pos, ex


# ------------------------------------------------------------------ evaluator
def _erf(x):
    if np.ndim(x) == 0:
        return np.float64(math.erf(float(x)))       # numpy scalars: IEEE division later
    return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)


@functools.lru_cache(maxsize=4)
def _table(sp):
    """sympy head -> numpy function of the evaluated arguments (the smooth ones)."""
    add = lambda *v: functools.reduce(operator.add, v)    # noqa: E731
    mul = lambda *v: functools.reduce(operator.mul, v)    # noqa: E731
    return {
        sp.Add: add, sp.Mul: mul,
        sp.exp: np.exp, sp.log: lambda x, b=None: np.log(x) if b is None else np.log(x) / np.log(b),
        sp.sin: np.sin, sp.cos: np.cos, sp.tan: np.tan,
        sp.cot: lambda x: 1 / np.tan(x), sp.sec: lambda x: 1 / np.cos(x),
        sp.csc: lambda x: 1 / np.sin(x),
        sp.asin: np.arcsin, sp.acos: np.arccos, sp.atan: np.arctan,
        sp.acot: lambda x: np.arctan(1 / x), sp.atan2: np.arctan2,
        sp.sinh: np.sinh, sp.cosh: np.cosh, sp.tanh: np.tanh,
        sp.coth: lambda x: 1 / np.tanh(x), sp.sech: lambda x: 1 / np.cosh(x),
        sp.csch: lambda x: 1 / np.sinh(x),
        sp.asinh: np.arcsinh, sp.acosh: np.arccosh, sp.atanh: np.arctanh,
        sp.erf: _erf, sp.erfc: lambda x: 1 - _erf(x),
        sp.Abs: np.abs, sp.floor: np.floor, sp.ceiling: np.ceil,
        # of a real argument (a NaN stands for a complex value here)
        sp.re: lambda x: x, sp.im: lambda x: np.where(np.isnan(x), np.nan, 0.0),
        sp.arg: lambda x: np.where(x > 0, 0.0, np.where(x < 0, np.pi, np.nan)),
        sp.Max: lambda *v: functools.reduce(np.maximum, v),
        sp.Min: lambda *v: functools.reduce(np.minimum, v),
    }


class Evaluator:
    """Evaluates sympy trees over numpy values of their symbols (arrays or floats), walking
    each shared subtree once (memo) and without recursion.

    Each value comes with a mask of "tie candidates": elements where a function that is
    discontinuous in its argument sits exactly on its switch (Heaviside(0), sign(0),
    DiracDelta(0), an inequality between equal sides). There sympy's choice (Heaviside(0) =
    1/2) is one convention among several: `ties=0` or `ties=1` re-evaluates with the switch
    resolved each way, which spans the one-sided values."""

    _REL = None

    def __init__(self, ctx, env, ties=None):
        self.ctx, self.sp, self.env, self.ties = ctx, ctx.sp, env, ties
        self.memo: dict = {}
        self.table = _table(ctx.sp)
        sp = ctx.sp
        self.rel = {sp.StrictGreaterThan: operator.gt, sp.GreaterThan: operator.ge,
                    sp.StrictLessThan: operator.lt, sp.LessThan: operator.le}
        self.eqrel = {sp.Equality: operator.eq, sp.Unequality: operator.ne}

    def eval(self, expr):
        """(value, candidate mask or None)."""
        memo = self.memo
        if expr in memo:
            return memo[expr]
        stack = [expr]
        steps = 0
        with np.errstate(all="ignore"):
            while stack:
                e = stack[-1]
                if e in memo:
                    stack.pop()
                    continue
                if isinstance(e, (self.sp.Derivative, self.sp.Subs)):
                    raise Unsupported(
                        f"sympy left the derivative of {type(e.args[0]).__name__}() "
                        "unevaluated (it cannot tell that its argument is real)")
                pending = [a for a in e.args if a not in memo]
                if pending:
                    stack.extend(pending)
                    continue
                stack.pop()
                memo[e] = self._node(e)
                steps += 1
                if steps % 512 == 0:
                    self.ctx.tick()
        return memo[expr]

    def _node(self, e):
        sp = self.sp
        if not e.args:
            return self._atom(e), None
        got = [self.memo[a] for a in e.args]
        vals = [g[0] for g in got]
        cands = [g[1] for g in got if g[1] is not None]
        cand = functools.reduce(np.logical_or, cands) if cands else None
        head = type(e)
        f = self.table.get(head)
        if f is not None:
            return f(*vals), cand
        if head is sp.Pow:
            return self._pow(e, *vals), cand
        if head is sp.Heaviside:
            x = vals[0]
            h0 = (vals[1] if len(vals) > 1 else 0.5) if self.ties is None else float(self.ties)
            at = self._zero(e.args[0], x)
            v = np.where(at, h0, np.where(x > 0, 1.0, np.where(x < 0, 0.0, np.nan)))
            return v, _or(cand, at)
        if head is sp.sign:
            x = vals[0]
            at = self._zero(e.args[0], x)
            v = np.where(at, 0.0 if self.ties is None else (1.0 if self.ties else -1.0),
                         np.sign(x))
            return v, _or(cand, at)
        if head is sp.DiracDelta:
            at = self._zero(e.args[0], vals[0])
            return np.where(at, np.nan, 0.0), _or(cand, at)
        if head in self.rel:
            lhs, rhs = vals
            with np.errstate(all="ignore"):
                mag = np.abs(lhs) + np.abs(rhs)
                at = (lhs == rhs) | (np.isfinite(mag) & (np.abs(lhs - rhs) <= _TIE * mag))
            v = self.rel[head](lhs, rhs)
            v = np.where(at, bool(self.ties) if self.ties is not None else
                         self.rel[head](0.0, 0.0), v)
            return v, _or(cand, at)
        if head in self.eqrel:
            return self.eqrel[head](*vals), cand
        if head is sp.And:
            return functools.reduce(np.logical_and, vals), cand
        if head is sp.Or:
            return functools.reduce(np.logical_or, vals), cand
        if head is sp.Not:
            return np.logical_not(vals[0]), cand
        if head is sp.ITE:                        # nested Piecewise conditions
            return np.where(np.asarray(vals[0], dtype=bool), vals[1], vals[2]), cand
        if head is sp.Xor:
            return functools.reduce(np.logical_xor, vals), cand
        if head is _expr_cond_pair():
            return tuple(vals), cand
        if head is sp.Piecewise:
            out, taken = np.nan, False
            for v, c in vals:
                c = np.asarray(c, dtype=bool)
                out = np.where(c & ~np.asarray(taken), v, out)
                taken = np.logical_or(taken, c)
            return np.where(taken, out, np.nan), cand
        raise Unsupported(f"the symbolic check cannot evaluate sympy's {head.__name__}()")

    def _zero(self, arg, value):
        """Where `value` (of the expression `arg`) is zero up to the rounding of the sum it
        came from: sympy rearranges a tie's difference (Min(b, c) - a) into a sum whose
        terms cancel only to within a few ulps."""
        v = np.asarray(value, dtype=np.float64)
        if isinstance(arg, self.sp.Add):
            mag = sum(np.abs(np.asarray(self.memo[t][0], dtype=np.float64)) for t in arg.args)
            with np.errstate(all="ignore"):
                return (v == 0) | (np.isfinite(mag) & (np.abs(v) <= _TIE * mag))
        return v == 0

    def _pow(self, e, b, x):
        ex = e.args[1]
        if ex == -1:
            return 1.0 / b
        if ex == 2:
            return b * b
        if ex == self.sp.Rational(1, 2):
            return np.sqrt(b)
        if ex == self.sp.Rational(-1, 2):
            return 1.0 / np.sqrt(b)
        return np.power(np.asarray(b, dtype=np.float64), x)

    def _atom(self, e):
        sp = self.sp
        if e in self.env:
            return self.env[e]
        if e is sp.nan or e is sp.zoo:
            return np.float64(math.nan)
        if e is sp.oo:
            return np.float64(math.inf)
        if e is sp.S.NegativeInfinity:
            return np.float64(-math.inf)
        if e is sp.I:                 # a complex value: NaN, as numpy's real arithmetic has it
            return np.float64(math.nan)
        if e is sp.true:
            return True
        if e is sp.false:
            return False
        if e.is_Number or isinstance(e, sp.NumberSymbol):
            return np.float64(float(e))
        raise Unsupported(f"the symbolic check cannot evaluate {type(e).__name__}")


@functools.lru_cache(maxsize=1)
def _expr_cond_pair():
    from sympy.functions.elementary.piecewise import ExprCondPair
    return ExprCondPair


_TIE = 64 * np.finfo(np.float64).eps      # a difference this small next to its terms is 0


def _or(a, b):
    b = np.asarray(b, dtype=bool)
    return b if a is None else np.logical_or(a, b)
