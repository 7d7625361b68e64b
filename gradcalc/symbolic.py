"""Symbolic cross-check: sympy differentiates the program's forward formulas and the
derivatives, evaluated at the inputs, are compared with autograd's grads and Jacobian.

It owns the translation of a graph into sympy (from the op table's `sympy` forward forms,
never from its VJP rules), the elementwise path (one scalar symbol per leaf, one derivative
per leaf, evaluated over every element at once by sympy_eval.py), the time budget, and what
both paths share; programs whose elements mix go to symbolic_mixed.py. Symbols are internal Dummy
symbols; user text is never handed to sympy (none of its string parsers, its S converter or lambdify): leaf
names only appear in the printed formulas, as Symbols built from validated identifiers.
sympy is imported here, in the worker thread, only when a symbolic check runs.
"""
from __future__ import annotations

import functools
import math
import threading
import time

import numpy as np

from . import checks
from .kinks import Labeller, kink_sites, nan_may_arise
from .sympy_eval import Evaluator, Unsupported

DEFAULT_TIMEOUT = 10.0          # seconds (limits.symbolic_timeout, --symbolic-timeout)
# (the per-element path's caps are in symbolic_mixed.py)
MAX_FORMULA_NODES = 400         # a longer derivative is not printed ("derivatives": null)
MAX_REFINE = 32                 # non-finite float64 entries re-evaluated with mpmath


class _Timeout(BaseException):
    """Raised in the worker when the budget is spent (BaseException: sympy's own
    `except Exception` blocks must not swallow it)."""


def check(result, grads_once, *, rtol=None, atol=None, limits=None):
    """The symbolic check's report (SPEC section 4), or {"passed": None, "skipped": why} when
    it cannot finish within `limits.symbolic_timeout` seconds. The sympy work runs in a worker
    thread; on expiry it is told to stop and abandoned, so the caller never hangs."""
    budget = getattr(limits, "symbolic_timeout", None)
    budget = DEFAULT_TIMEOUT if budget is None else float(budget)
    state = {"deadline": time.monotonic() + budget, "importing": True}
    box: dict = {}
    worker = _Worker(target=_work, name="gradcalc-symbolic", daemon=True,
                     args=(box, state, result, grads_once, rtol, atol))
    worker.start()
    worker.join(max(budget, 0.0) + 0.05)
    if worker.is_alive() or box.get("timeout"):
        state["deadline"] = -math.inf           # cooperative stop at the next step
        if worker.is_alive() and not state["importing"] and "report" not in box:
            _interrupt(worker)                  # and an exception inside sympy's own loops
        return {"passed": None,
                "skipped": f"the symbolic check ran out of its time budget of {budget:g} s "
                           "(--symbolic-timeout)"}
    return box["report"]


class _Worker(threading.Thread):
    """A thread whose late _Timeout (delivered as it was finishing anyway) ends it quietly
    instead of printing a traceback through threading.excepthook."""

    def run(self):
        try:
            super().run()
        except _Timeout:
            pass


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
    sites = kink_sites(graph, vals, ids)
    tally = checks.Tally("symbolic", rtol, atol, result.dtype,
                         nan_may_arise(graph, vals, ids, sites))
    labeller = Labeller(graph, sites, oshape, elementwise,
                        "sympy's derivative is undefined or one-sided here")
    if elementwise:
        run = _elementwise
    else:
        from .symbolic_mixed import per_element as run
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
    # the derivation depends on the program alone when every constant in it is one of the
    # program's own (not a value computed from the leaves, as detach(x) is): then it is
    # kept in the compiled program's memo, which JSON Lines shares between the requests of
    # one program, and only the leaves' values are new
    key = ("symbolic-elementwise", out, result.dtype, tuple(ids))
    derived = graph.memo.get(key)
    if derived is None:
        derived = _derive_elementwise(ctx, graph, ids, vals, names)
        if derived[-1]:
            graph.memo[key] = derived
    leaf_sym, exprs, const_env, diffs, _ = derived
    env = dict(const_env)
    for i, s in leaf_sym.items():
        env[s] = np.asarray(vals[i], dtype=np.float64)

    cot = np.asarray(result.cotangent, dtype=np.float64)
    not_finite = _not_finite(vals[out], oshape)
    at_site = None
    for _, m, _, _ in labeller.sites:           # elementwise: each site's mask is per element
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
        hit = diffs.get(eq.id)
        if hit is None:
            d = sp.diff(exprs[out], leaf_sym[eq.id])
            ctx.tick()
            display = {s: sp.Symbol(names[i], real=True) for i, s in leaf_sym.items()}
            hit = diffs[eq.id] = (d, _formula(ctx, d, display))
        d, derivatives[name] = hit
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


def _derive_elementwise(ctx, graph, ids, vals, names):
    """(leaf symbols, sympy forms of the nodes, values of the array constants' symbols,
    {} for the derivatives, whether it all depends on the program alone)."""
    sp = ctx.sp
    env, exprs, leaf_sym = {}, {}, {}
    alone = [True]

    def constant(i):
        if graph.nodes[i].kind != "const":
            alone[0] = False                    # a value of this request (detach(x))
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
    return leaf_sym, exprs, env, {}, alone[0]


def _not_finite(value, oshape):
    """Output elements whose value is not finite (log of a negative, an overflow): there a
    derivative means nothing, whatever sympy's rewritten formula evaluates to."""
    bad = ~np.isfinite(np.broadcast_to(np.asarray(value, dtype=np.float64), oshape))
    return bad if bad.any() else None


def _evaluate_array(ctx, ev, d, env, oshape, not_finite=None):
    """The derivative over every output element, with the flags of the check: kinks (a tie
    choice such as Heaviside(0) changes the value; [lo, hi] spans the choices) and singular
    points (non-finite although the inputs are finite, even in mpmath's arithmetic)."""
    val, cand = ev.evaluate(d)
    D = np.asarray(val, dtype=np.float64)
    D = np.broadcast_to(D, oshape)        # read-only: it may be a leaf's own values
    lo = hi = D
    flag = np.zeros(oshape, bool)
    if cand is not None and np.any(cand):
        cand = np.broadcast_to(cand, oshape)
        d0 = np.broadcast_to(Evaluator(ctx, env, ties=0).evaluate(d)[0], oshape)
        d1 = np.broadcast_to(Evaluator(ctx, env, ties=1).evaluate(d)[0], oshape)
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
